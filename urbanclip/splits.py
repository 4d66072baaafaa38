"""Train/val/test assignment of cells, seeded and stored in the workspace.

The paper splits 60/20/20 at random; every method must see the same cells, so
the split is a column of the workspace, not something each script redraws.
"""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)


def random_split(n: int, seed: int = 0, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> np.ndarray:
    """Return an array of 'train'/'val'/'test' labels for n items, seeded."""
    if n < 3:
        raise ValueError(f"need at least 3 cells for a train/val/test split, got {n}")
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) <= 0:
        raise ValueError(f"split fractions must be positive and sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    n_train = min(max(n_train, 1), n - 2)
    n_val = min(max(n_val, 1), n - n_train - 1)
    labels = np.empty(n, dtype=object)
    labels[order[:n_train]] = "train"
    labels[order[n_train:n_train + n_val]] = "val"
    labels[order[n_train + n_val:]] = "test"
    return labels
