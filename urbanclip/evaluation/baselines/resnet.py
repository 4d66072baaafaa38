"""ResNet-18 baseline (timm). Random initialisation unless a local weights file is given:
no weights are ever downloaded. With random weights, BatchNorm statistics are
re-estimated on the workspace's tiles so the random features are well scaled;
the table labels the row "ResNet-18 (random init)" so nobody mistakes it for ImageNet features."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from urbanclip.evaluation.baselines.common import BaselineConfig, few_threads, StepCallback, embed_in_batches, fit_subset, load_pixels, seed_everything
from urbanclip.errors import UserError
from urbanclip.data.workspace import Workspace


@dataclass
class ResNetConfig(BaselineConfig):
    weights: str = ""  # local .pth/.safetensors state dict; "" = random init
    dim: int = 512     # fixed by the architecture


class ResNetEncoder:
    def __init__(self, cfg: ResNetConfig | None = None):
        self.cfg = cfg or ResNetConfig()
        w = self.cfg.weights
        if w and not Path(w).is_file():
            raise UserError(f"ResNet-18 weights file {w} does not exist; give a local state dict or leave it empty for random init")
        stamp = f"{Path(w).resolve()}:{Path(w).stat().st_size}" if w else "random"
        import hashlib

        self.key = f"resnet18-{self.cfg.digest()}-{hashlib.sha256(stamp.encode()).hexdigest()[:8]}"
        self.label = "ResNet-18 (random init)" if not w else f"ResNet-18 ({Path(w).name})"
        self.on_step: StepCallback | None = None

    def build(self) -> torch.nn.Module:
        import timm

        seed_everything(self.cfg.seed)
        model = timm.create_model("resnet18", pretrained=False, num_classes=0)
        if self.cfg.weights:
            path = Path(self.cfg.weights)
            try:
                if path.suffix == ".safetensors":
                    from safetensors.torch import load_file

                    state = load_file(str(path))
                else:
                    state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:
                raise UserError(f"ResNet-18 weights {path} cannot be read ({e})") from None
            state = state.get("state_dict", state) if isinstance(state, dict) else state
            missing, _ = model.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")}, strict=False)
            if missing:
                raise UserError(f"ResNet-18 weights {path} do not fit timm's resnet18 (missing {missing[:3]}...)")
        return model

    @few_threads
    def embed(self, workspace: Workspace, cell_ids: Sequence[str]) -> np.ndarray:
        pixels = load_pixels(workspace, cell_ids, self.cfg.image_size)
        model = self.build()
        mean = torch.tensor(model.pretrained_cfg.get("mean", (0.5, 0.5, 0.5))).view(1, 3, 1, 1)
        std = torch.tensor(model.pretrained_cfg.get("std", (0.5, 0.5, 0.5))).view(1, 3, 1, 1)
        x = (pixels - mean) / std
        if not self.cfg.weights:
            # random init: estimate BatchNorm running statistics on the tiles (cumulative average)
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.reset_running_stats()
                    m.momentum = None
            model.train()
            xf = x[fit_subset(workspace, cell_ids, self.cfg.fit_on)]
            with torch.no_grad():
                for i in range(0, len(xf), 128):
                    model(xf[i:i + 128])
        model.eval()
        if self.on_step:
            self.on_step(1, 1, 0.0)
        return embed_in_batches(model, x, 128)
