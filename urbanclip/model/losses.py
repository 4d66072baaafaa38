"""The pretraining objectives, apart from the model (open_clip's `loss.py` boundary).

The model's forward pass returns a `CoCaOutput`; a loss object turns it into
`LossOutput`. The loss owns what the model must not know about:

* the DDP all-gather (`all_gather_with_grad`), so every rank sees every negative;
* the loss weights (`lambda_con`, `lambda_lm`; 0 switches a term off for the ablations).

* `contrastive_loss`: THE symmetric InfoNCE (CLIP); the baselines use it too.
* `captioning_loss`: next-token cross-entropy that ignores padding (CoCa's L_lm).
* `CoCaLoss`: lambda_con * InfoNCE(image, text) + lambda_lm * L_lm (UrbanCLIP).
* `TwoViewLoss`: InfoNCE between two augmented views of the same tiles (UrbanViT, SimCLR-style).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F

MAX_LOGIT_SCALE = math.log(100.0)
INIT_LOGIT_SCALE = math.log(1 / 0.07)


class CoCaOutput(NamedTuple):
    """What one forward pass of the model gives the losses (open_clip's CoCa output, typed)."""

    image_emb: torch.Tensor               # [b, d], L2-normalised
    text_emb: torch.Tensor | None         # [b, d], L2-normalised; None without text or contrast
    logits: torch.Tensor | None           # [b, l, vocab] next-token logits; None without captions
    targets: torch.Tensor | None          # [b, l] next-token targets (padding = the tokenizer's pad id)
    logit_scale: torch.Tensor             # raw (log) temperature parameter


class LossOutput(NamedTuple):
    """total = lambda_con * con + lambda_lm * lm (a switched-off term is 0)."""

    total: torch.Tensor
    con: torch.Tensor
    lm: torch.Tensor


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from all ranks, keeping the gradient of the local slice (open_clip's trick).

    Identity when not distributed, so single-process code pays nothing.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts, dim=0)


def clamp_logit_scale(logit_scale: torch.Tensor) -> torch.Tensor:
    """exp(logit_scale) clamped to <= 100 (CLIP's trick against a collapsing temperature)."""
    return logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()


def contrastive_loss(img_emb: torch.Tensor, txt_emb: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE: mean of image->text and text->image cross-entropy.

    img_emb, txt_emb: [N, D] normalised; row i of each is a positive pair.
    `logit_scale` is the raw (log) parameter. Pass gathered embeddings to use
    every rank's negatives (the loss classes below do).
    """
    if img_emb.shape != txt_emb.shape:
        raise ValueError(f"embeddings must have the same shape, got {tuple(img_emb.shape)} and {tuple(txt_emb.shape)}")
    scale = clamp_logit_scale(logit_scale)
    logits = scale * img_emb @ txt_emb.t()  # [N, N]
    labels = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


def captioning_loss(logits: torch.Tensor, targets: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Token-level cross-entropy; logits [N, L, V], targets [N, L]; padding ignored."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=pad_id)


class CoCaLoss:
    """UrbanCLIP's objective: lambda_con * InfoNCE(image, text) over all ranks + lambda_lm * captioning."""

    def __init__(self, lambda_con: float = 1.0, lambda_lm: float = 1.0, pad_id: int = 0):
        if lambda_con < 0 or lambda_lm < 0 or lambda_con + lambda_lm == 0:
            raise ValueError(f"loss weights must be >= 0 and not both 0, got {lambda_con}, {lambda_lm}")
        self.lambda_con = float(lambda_con)
        self.lambda_lm = float(lambda_lm)
        self.pad_id = int(pad_id)

    @property
    def needs(self) -> dict[str, bool]:
        """Which parts of the forward pass the loss reads (the model skips the others)."""
        return {"contrast": self.lambda_con > 0, "captions": self.lambda_lm > 0}

    def __call__(self, out: CoCaOutput) -> LossOutput:
        zero = out.image_emb.new_zeros(())
        con = lm = zero
        if self.lambda_con > 0:
            if out.text_emb is None:
                raise ValueError("the contrastive term needs text embeddings; run the model with contrast=True")
            con = contrastive_loss(all_gather_with_grad(out.image_emb), all_gather_with_grad(out.text_emb),
                                   out.logit_scale)
        if self.lambda_lm > 0:
            if out.logits is None:
                raise ValueError("the captioning term needs logits; run the model with captions=True")
            lm = captioning_loss(out.logits, out.targets, self.pad_id)
        return LossOutput(self.lambda_con * con + self.lambda_lm * lm, con, lm)


class TwoViewLoss:
    """UrbanViT: symmetric InfoNCE between the first and second half of the batch (two views of the same tiles)."""

    def __call__(self, out: CoCaOutput) -> LossOutput:
        za, zb = out.image_emb.chunk(2, dim=0)
        con = contrastive_loss(all_gather_with_grad(za), all_gather_with_grad(zb), out.logit_scale)
        return LossOutput(con, con, con.new_zeros(()))
