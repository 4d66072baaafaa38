"""Losses: symmetric InfoNCE, log(N) for indistinguishable pairs, padding-free captioning loss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from urbanclip.model.losses import MAX_LOGIT_SCALE, captioning_loss, clamp_logit_scale, contrastive_loss


def _emb(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_contrastive_is_symmetric():
    a, b = _emb(6, 8, 0), _emb(6, 8, 1)
    scale = torch.tensor(2.0)
    assert torch.allclose(contrastive_loss(a, b, scale), contrastive_loss(b, a, scale))


def test_identical_embeddings_give_log_n():
    n = 7
    same = F.normalize(torch.ones(n, 4), dim=-1)
    assert math.isclose(float(contrastive_loss(same, same, torch.tensor(3.0))), math.log(n), rel_tol=1e-6)


def test_aligned_pairs_give_low_loss_and_shuffled_high():
    a = F.normalize(torch.eye(5), dim=-1)
    scale = torch.tensor(MAX_LOGIT_SCALE)
    assert float(contrastive_loss(a, a, scale)) < 1e-3
    assert float(contrastive_loss(a, a.roll(1, 0), scale)) > 10


def test_temperature_is_clamped_at_100():
    assert math.isclose(float(clamp_logit_scale(torch.tensor(50.0))), 100.0, rel_tol=1e-5)
    assert math.isclose(float(clamp_logit_scale(torch.tensor(1.0))), math.e, rel_tol=1e-6)


def test_captioning_loss_ignores_padding():
    logits = torch.randn(2, 5, 11)
    targets = torch.tensor([[4, 5, 6, 0, 0], [7, 8, 0, 0, 0]])
    loss = captioning_loss(logits, targets, pad_id=0)
    changed = logits.clone()
    changed[0, 3:] = 100.0
    changed[1, 2:] = -100.0
    assert torch.allclose(loss, captioning_loss(changed, targets, pad_id=0))
    real = targets != 0
    manual = F.cross_entropy(logits[real], targets[real])
    assert torch.allclose(loss, manual)
