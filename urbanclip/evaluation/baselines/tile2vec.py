"""Tile2Vec (Jean et al., AAAI 2019): triplet loss where the positive is a grid neighbour
(adjacent row/col in the same city) and the negative a distant tile."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from urbanclip.data.workspace import Workspace
from urbanclip.evaluation.baselines.common import (
    BaselineConfig,
    SelfSupervisedEncoder,
    distant_sampler,
    grid_neighbours,
    train_triplets,
)


@dataclass
class Tile2VecConfig(BaselineConfig):
    margin: float = 1.0
    l2: float = 0.01
    neighbour_radius: int = 1
    min_distance: int = 4  # rows/cols between an anchor and its negative


class Tile2VecEncoder(SelfSupervisedEncoder):
    name = "tile2vec"
    label = "Tile2Vec"
    config_class = Tile2VecConfig

    def learn(self, workspace: Workspace, fit_ids: list[str], pixels: torch.Tensor) -> nn.Module:
        c = self.cfg
        pos = grid_neighbours(workspace, fit_ids, c.neighbour_radius)
        return train_triplets(pixels, pos, distant_sampler(workspace, fit_ids, c.min_distance), c,
                              margin=c.margin, l2=c.l2, on_step=self.on_step)
