"""PG-SimCLR-style baseline (Xi et al., WWW 2022, geo part): SimCLR where the second
view of a cell is a geographically adjacent cell, so "nearby looks alike" is learned.
(The POI-similarity positives of the original need POI data, which workspaces lack.)"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from urbanclip.data.workspace import Workspace
from urbanclip.evaluation.baselines.common import (
    BaselineConfig,
    SelfSupervisedEncoder,
    grid_neighbours,
    train_pairs,
)


@dataclass
class SimCLRGeoConfig(BaselineConfig):
    temperature: float = 0.2
    neighbour_radius: int = 1


class SimCLRGeoEncoder(SelfSupervisedEncoder):
    name = "simclr-geo"
    label = "PG-SimCLR (geo-adjacent positives)"
    config_class = SimCLRGeoConfig

    def learn(self, workspace: Workspace, fit_ids: list[str], pixels: torch.Tensor) -> nn.Module:
        c = self.cfg
        return train_pairs(pixels, grid_neighbours(workspace, fit_ids, c.neighbour_radius), c,
                           temperature=c.temperature, on_step=self.on_step)
