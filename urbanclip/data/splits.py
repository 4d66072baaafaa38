"""Train/val/test assignment of cells, seeded and stored in the workspace.

The paper splits 60/20/20 at random; every method must see the same cells, so
the split is a column of the workspace, not something each script redraws.

A random split puts test cells right next to train cells, and urban indicators
are spatially autocorrelated, so it flatters every method. The spatial-block
split (column `split_block`) assigns whole k x k blocks of cells to one split
(spatial cross-validation, Roberts et al. 2017, Ecography), a harder and more
honest estimate of how a probe does on unseen neighbourhoods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from urbanclip.errors import UserError

if TYPE_CHECKING:  # workspace imports this module; no import cycle at run time
    from urbanclip.data.workspace import Workspace

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


# ---------------------------------------------------------------------------------
# spatial blocks: neighbouring cells share a split, so test cells are not next to train cells

# how a split is named on the command line -> the workspace column holding it
SPLIT_COLUMNS = {"random": "split", "block": "split_block"}
DEFAULT_BLOCK_SIZE = 4


def parse_splits(text: str | Sequence[str]) -> tuple[str, ...]:
    """'random,block' (or a list) -> validated split names, in the given order, without repeats."""
    names = [s.strip().lower() for s in (text.split(",") if isinstance(text, str) else text) if str(s).strip()]
    if not names:
        raise UserError(f"--splits is empty; choose from {', '.join(SPLIT_COLUMNS)}")
    for n in names:
        if n not in SPLIT_COLUMNS:
            raise UserError(f"--splits: unknown split {n!r}; choose from {', '.join(SPLIT_COLUMNS)}")
    return tuple(dict.fromkeys(names))


def check_block_size(block_size: int) -> int:
    if isinstance(block_size, bool) or int(block_size) != block_size or block_size < 1:
        raise UserError(f"block size must be a whole number of cells >= 1 (block side, in cells), got {block_size!r}; "
                        f"pass e.g. --block-size {DEFAULT_BLOCK_SIZE}")
    return int(block_size)


def block_ids(cities: Sequence, rows: Sequence[int], cols: Sequence[int], block_size: int) -> np.ndarray:
    """'<city>/<row//k>_<col//k>' for every cell: the k x k block it belongs to (blocks never span cities)."""
    k = check_block_size(block_size)
    return np.array([f"{c}/{int(r) // k}_{int(q) // k}" for c, r, q in zip(cities, rows, cols)], dtype=object)


def block_split(cities: Sequence, rows: Sequence[int], cols: Sequence[int], block_size: int = DEFAULT_BLOCK_SIZE,
                seed: int = 0, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> np.ndarray:
    """'train'/'val'/'test' per cell, assigning whole k x k blocks (per city) by a seeded shuffle.

    The shuffled blocks are cut where the running cell count is closest to 60 % and
    80 % of all cells, so the split is 60/20/20 by cells as closely as whole blocks allow
    (edge blocks are smaller). Every split gets at least one block.
    """
    blocks = block_ids(cities, rows, cols, block_size)
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) <= 0:
        raise ValueError(f"split fractions must be positive and sum to 1, got {fractions}")
    uniq, inverse, sizes = np.unique(blocks.astype(str), return_inverse=True, return_counts=True)
    if len(uniq) < 3:
        raise UserError(f"block size {block_size} leaves only {len(uniq)} block(s) of cells; a train/val/test "
                        "split needs at least 3: pass a smaller --block-size")
    order = np.random.default_rng(seed).permutation(len(uniq))
    cum = np.cumsum(sizes[order])
    n = cum[-1]

    def cut(target: float, lo: int, hi: int) -> int:
        """Number of leading blocks (in lo..hi) whose cell count is closest to target."""
        cand = np.arange(lo, hi + 1)
        return int(cand[np.argmin(np.abs(cum[cand - 1] - target))])

    n_train = cut(fractions[0] * n, 1, len(uniq) - 2)
    n_trval = cut((fractions[0] + fractions[1]) * n, n_train + 1, len(uniq) - 1)
    label_of_block = np.empty(len(uniq), dtype=object)
    label_of_block[order[:n_train]] = "train"
    label_of_block[order[n_train:n_trval]] = "val"
    label_of_block[order[n_trval:]] = "test"
    return label_of_block[inverse]


def store_block_split(workspace: "Workspace", block_size: int = DEFAULT_BLOCK_SIZE, seed: int | None = None,
                      save: bool = True) -> str:
    """Make sure the workspace's `split_block` column holds the block split for (block_size, seed).

    Reused when already stored with the same parameters; otherwise computed, recorded in
    the manifest (extra["split_block"] and provenance) and saved, so every method that asks
    for the same block size scores on the same cells. seed None = the manifest's split seed.
    Returns the column name.
    """
    k = check_block_size(block_size)
    seed = workspace.manifest.split_seed if seed is None else int(seed)
    col = SPLIT_COLUMNS["block"]
    params = {"block_size": k, "seed": seed, "fractions": list(DEFAULT_FRACTIONS)}
    if col in workspace.cells.columns and workspace.manifest.extra.get(col) == params:
        return col
    cells = workspace.cells
    labels = block_split(cells["city"].to_numpy(), cells["row"].to_numpy(), cells["col"].to_numpy(), k, seed)
    workspace.set_column(col, labels.astype(str), f"urbanclip.data.splits.block_split(block_size={k}, seed={seed})")
    workspace.manifest.extra[col] = params
    if save:
        workspace.save()
    return col


def split_column(workspace: "Workspace", split: str) -> str:
    """The workspace column of a split name, with a clear error when it was never stored."""
    if split not in SPLIT_COLUMNS:
        raise UserError(f"unknown split {split!r}; choose from {', '.join(SPLIT_COLUMNS)}")
    col = SPLIT_COLUMNS[split]
    if col not in workspace.cells.columns:
        raise UserError(f"workspace {workspace.root} has no {col!r} column; store the block split first "
                        "(`python -m urbanclip probe ... --splits random,block` does, or urbanclip.data.splits.store_block_split)")
    bad = sorted(set(workspace.cells[col].astype(str)) - set(SPLITS))
    if bad:
        raise UserError(f"workspace column {col!r} must hold {SPLITS}, found {bad[0]!r}; recompute it with store_block_split")
    return col
