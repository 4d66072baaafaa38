"""Convolutional autoencoder baseline: reconstruct the tile, keep the bottleneck as the embedding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from urbanclip.evaluation.baselines.common import (BaselineConfig, few_threads, ConvEncoder, StepCallback, augment, embed_in_batches,
                                        finite_or_raise, fit_subset, load_pixels, seed_everything)
from urbanclip.data.workspace import Workspace


@dataclass
class AutoencoderConfig(BaselineConfig):
    epochs: int = 10


class ConvAutoencoder(nn.Module):
    """ConvEncoder down to a `dim` vector, mirrored transposed convs back to the image."""

    def __init__(self, image_size: int, width: int, dim: int):
        super().__init__()
        if image_size % 16:
            raise ValueError(f"autoencoder image_size must be a multiple of 16, got {image_size}")
        self.encoder = ConvEncoder(width, dim)
        c, s = self.encoder.feature_channels, image_size // 16
        self.seed_shape = (c, s, s)
        self.expand = nn.Linear(dim, c * s * s)
        chans = [c, width * 4, width * 2, width]
        ups: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:]):
            ups += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
        ups += [nn.ConvTranspose2d(width, 3, 4, stride=2, padding=1)]
        self.decoder = nn.Sequential(*ups)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        recon = torch.sigmoid(self.decoder(self.expand(z).view(len(z), *self.seed_shape)))
        return z, recon


class AutoencoderEncoder:
    label = "Autoencoder"

    def __init__(self, cfg: AutoencoderConfig | None = None):
        self.cfg = cfg or AutoencoderConfig()
        self.key = f"autoencoder-{self.cfg.digest()}"
        self.on_step: StepCallback | None = None

    def train(self, pixels: torch.Tensor) -> ConvAutoencoder:
        cfg = self.cfg
        rng = seed_everything(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        model = ConvAutoencoder(cfg.image_size, cfg.width, cfg.dim)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        n, bs = len(pixels), min(cfg.batch_size, len(pixels))
        total = cfg.epochs * max(1, n // bs)
        step = 0
        model.train()
        while step < total:
            perm = rng.permutation(n)
            for b in range(0, n - bs + 1, bs):
                if step >= total:
                    break
                x = augment(pixels[perm[b:b + bs]], gen)
                loss = F.mse_loss(model(x)[1], x)
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
                finite_or_raise("autoencoder", loss.item())
                if self.on_step:
                    self.on_step(step, total, loss.item())
        return model.eval()

    @few_threads
    def embed(self, workspace: Workspace, cell_ids: Sequence[str]) -> np.ndarray:
        pixels = load_pixels(workspace, cell_ids, self.cfg.image_size)
        model = self.train(pixels[fit_subset(workspace, cell_ids, self.cfg.fit_on)])
        return embed_in_batches(model.encoder, pixels)
