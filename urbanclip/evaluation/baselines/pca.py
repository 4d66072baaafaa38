"""PCA baseline (paper Table 2): the first 10 principal components of the raw pixels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from urbanclip.evaluation.baselines.common import BaselineConfig, StepCallback, few_threads, fit_subset, load_pixels
from urbanclip.errors import UserError
from urbanclip.data.workspace import Workspace


@dataclass
class PCAConfig(BaselineConfig):
    image_size: int = 32
    dim: int = 10  # number of components, as in the paper


class PCAEncoder:
    """Fits PCA on the flattened training tiles (no labels involved), projects every tile."""

    label = "PCA (10 components)"

    def __init__(self, cfg: PCAConfig | None = None):
        self.cfg = cfg or PCAConfig()
        self.key = f"pca-{self.cfg.digest()}"
        self.on_step: StepCallback | None = None

    @few_threads
    def embed(self, workspace: Workspace, cell_ids: Sequence[str]) -> np.ndarray:
        from sklearn.decomposition import PCA

        x = load_pixels(workspace, cell_ids, self.cfg.image_size).reshape(len(cell_ids), -1).numpy()
        fit = fit_subset(workspace, cell_ids, self.cfg.fit_on)
        k = min(self.cfg.dim, len(fit), x.shape[1])
        if k < 1:
            raise UserError("PCA needs at least one tile")
        pca = PCA(n_components=k, svd_solver="randomized" if k < min(len(fit), x.shape[1]) else "full",
                  random_state=self.cfg.seed)
        pca.fit(x[fit])
        z = pca.transform(x)
        if self.on_step:
            self.on_step(1, 1, float(pca.explained_variance_ratio_.sum()))
        return z.astype(np.float32)
