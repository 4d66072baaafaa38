"""Tile images as model input: the one normalisation, the eval transform and the augmentations.

`eval_transform` is the ONE place image normalisation is defined; every encoder
that embeds tiles with our model uses it. Augmentations suit nadir imagery: a
satellite tile has no "up", so the 8 flips/90-degree rotations are free, plus a
small brightness/contrast jitter; no crops, so a tile keeps all of its ~1 km².
Randomness comes from a `torch.Generator` the caller seeds per step, which is
what makes `--resume` continue bit-for-bit.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from PIL import Image

# CLIP's statistics, so an optional open_clip initialisation sees familiar inputs
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
JITTER = 0.1  # +-10% brightness and contrast


def to_uint8_tensor(img: Image.Image, image_size: int) -> torch.Tensor:
    """RGB PIL image -> uint8 [3, S, S] (bilinear resize)."""
    img = img.convert("RGB")
    if img.size != (image_size, image_size):
        img = img.resize((image_size, image_size), Image.BILINEAR)
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 or [0, 1] float [..., 3, H, W] -> model input (CLIP mean/std)."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    mean = torch.tensor(MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random dihedral transform (flip x rot90) and colour jitter per image; [b, 3, H, W] in [0, 1]."""
    b = images.shape[0]
    flips = torch.rand(b, generator=generator) < 0.5
    turns = torch.randint(0, 4, (b,), generator=generator)
    bright = 1 + (torch.rand(b, generator=generator) * 2 - 1) * JITTER
    contrast = 1 + (torch.rand(b, generator=generator) * 2 - 1) * JITTER
    out = images.clone()
    out[flips] = out[flips].flip(-1)
    for k in (1, 2, 3):
        sel = turns == k
        if sel.any():
            out[sel] = torch.rot90(out[sel], k, dims=(-2, -1))
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * contrast.view(b, 1, 1, 1) + mean
    return (out * bright.view(b, 1, 1, 1)).clamp(0, 1)


def eval_transform(image_size: int) -> Callable[[Image.Image], torch.Tensor]:
    """PIL tile -> normalised float [3, S, S]; deterministic."""
    def transform(img: Image.Image) -> torch.Tensor:
        return normalise(to_uint8_tensor(img, image_size))
    return transform


def train_transform(image_size: int, generator: torch.Generator | None = None) -> Callable[[Image.Image], torch.Tensor]:
    """PIL tile -> augmented, normalised float [3, S, S] (random flips/rotations/jitter)."""
    gen = generator or torch.Generator().manual_seed(0)

    def transform(img: Image.Image) -> torch.Tensor:
        x = to_uint8_tensor(img, image_size).float().div(255).unsqueeze(0)
        return normalise(augment(x, gen)[0])
    return transform
