"""Tile2Vec (Jean et al., AAAI 2019): triplet loss where the positive is a grid neighbour
(adjacent row/col in the same city) and the negative a distant tile."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from urbanclip.evaluation.baselines.common import (BaselineConfig, few_threads, StepCallback, distant_sampler, embed_in_batches, fit_subset,
                                        grid_neighbours, load_pixels, train_triplets)
from urbanclip.data.workspace import Workspace


@dataclass
class Tile2VecConfig(BaselineConfig):
    margin: float = 1.0
    l2: float = 0.01
    neighbour_radius: int = 1
    min_distance: int = 4  # rows/cols between an anchor and its negative


class Tile2VecEncoder:
    label = "Tile2Vec"

    def __init__(self, cfg: Tile2VecConfig | None = None):
        self.cfg = cfg or Tile2VecConfig()
        self.key = f"tile2vec-{self.cfg.digest()}"
        self.on_step: StepCallback | None = None

    @few_threads
    def embed(self, workspace: Workspace, cell_ids: Sequence[str]) -> np.ndarray:
        c = self.cfg
        pixels = load_pixels(workspace, cell_ids, c.image_size)
        fit = fit_subset(workspace, cell_ids, c.fit_on)
        fit_ids = [cell_ids[i] for i in fit]
        pos = grid_neighbours(workspace, fit_ids, c.neighbour_radius)
        enc = train_triplets(pixels[fit], pos, distant_sampler(workspace, fit_ids, c.min_distance), c,
                             margin=c.margin, l2=c.l2, on_step=self.on_step)
        return embed_in_batches(enc, pixels)
