"""Losses: symmetric InfoNCE, log(N) for indistinguishable pairs, padding-free captioning loss."""

from __future__ import annotations

import math

import pytest
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


def test_coca_loss_owns_the_weights_and_switches_terms_off():
    from urbanclip.model.losses import CoCaLoss, CoCaOutput

    torch.manual_seed(0)
    img, txt = F.normalize(torch.randn(4, 8), dim=-1), F.normalize(torch.randn(4, 8), dim=-1)
    logits, targets = torch.randn(4, 5, 30), torch.randint(1, 30, (4, 5))
    out = CoCaOutput(img, txt, logits, targets, torch.tensor(2.0))
    full = CoCaLoss(1.0, 2.0, pad_id=0)(out)
    assert torch.allclose(full.total, full.con + 2.0 * full.lm)
    assert torch.allclose(full.con, contrastive_loss(img, txt, torch.tensor(2.0)))
    no_lm = CoCaLoss(1.0, 0.0)
    assert no_lm.needs == {"contrast": True, "captions": False}
    assert float(no_lm(out._replace(logits=None)).lm) == 0.0
    with pytest.raises(ValueError, match="not both 0"):
        CoCaLoss(0.0, 0.0)


def test_two_view_loss_pairs_the_halves_of_the_batch():
    from urbanclip.model.losses import CoCaOutput, TwoViewLoss

    a = F.normalize(torch.randn(6, 8), dim=-1)
    out = TwoViewLoss()(CoCaOutput(torch.cat([a, a]), None, None, None, torch.tensor(3.0)))
    assert torch.allclose(out.total, contrastive_loss(a, a, torch.tensor(3.0))) and float(out.lm) == 0.0
