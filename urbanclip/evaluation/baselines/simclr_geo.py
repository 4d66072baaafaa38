"""PG-SimCLR-style baseline (Xi et al., WWW 2022, geo part): SimCLR where the second
view of a cell is a geographically adjacent cell, so "nearby looks alike" is learned.
(The POI-similarity positives of the original need POI data, which workspaces lack.)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from urbanclip.evaluation.baselines.common import (BaselineConfig, few_threads, StepCallback, embed_in_batches, fit_subset, grid_neighbours,
                                        load_pixels, train_pairs)
from urbanclip.data.workspace import Workspace


@dataclass
class SimCLRGeoConfig(BaselineConfig):
    temperature: float = 0.2
    neighbour_radius: int = 1


class SimCLRGeoEncoder:
    label = "PG-SimCLR (geo-adjacent positives)"

    def __init__(self, cfg: SimCLRGeoConfig | None = None):
        self.cfg = cfg or SimCLRGeoConfig()
        self.key = f"simclr-geo-{self.cfg.digest()}"
        self.on_step: StepCallback | None = None

    @few_threads
    def embed(self, workspace: Workspace, cell_ids: Sequence[str]) -> np.ndarray:
        c = self.cfg
        pixels = load_pixels(workspace, cell_ids, c.image_size)
        fit = fit_subset(workspace, cell_ids, c.fit_on)
        enc = train_pairs(pixels[fit], grid_neighbours(workspace, [cell_ids[i] for i in fit], c.neighbour_radius), c,
                          temperature=c.temperature, on_step=self.on_step)
        return embed_in_batches(enc, pixels)
