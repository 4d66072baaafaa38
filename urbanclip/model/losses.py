"""The two pretraining objectives, apart from the model (open_clip `loss.py` style).

* `contrastive_loss`: symmetric InfoNCE over the batch (CLIP; MISSION.md section 6).
* `captioning_loss`: next-token cross-entropy that ignores padding (CoCa's L_lm).
* `clamp_logit_scale`: CLIP's learnable temperature, capped at 100 so it cannot blow up.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MAX_LOGIT_SCALE = math.log(100.0)
INIT_LOGIT_SCALE = math.log(1 / 0.07)


def clamp_logit_scale(logit_scale: torch.Tensor) -> torch.Tensor:
    """exp(logit_scale) clamped to <= 100 (CLIP's trick against a collapsing temperature)."""
    return logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()


def contrastive_loss(img_emb: torch.Tensor, txt_emb: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE: mean of image->text and text->image cross-entropy.

    img_emb, txt_emb: [N, D] normalised; row i of each is a positive pair.
    `logit_scale` is the raw (log) parameter. Under DDP the caller passes the
    embeddings gathered from all ranks (`distributed.all_gather_with_grad`), so
    every rank sees every negative.
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
