"""Every baseline is a real trainable encoder: right shapes, deterministic, learns, cache keys differ."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from probe_helpers import build_signal_workspace

from urbanclip.evaluation.baselines.common import BaselineConfig, distant_sampler, grid_neighbours, text_neighbours, train_pairs
from urbanclip.evaluation.encoders import BASELINE_NAMES, make_encoder, parse_opts
from urbanclip.errors import UserError

SMALL = {"epochs": 1, "image_size": 32, "batch_size": 16, "width": 8, "dim": 16}


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return build_signal_workspace(tmp_path_factory.mktemp("b") / "ws", n=5)


@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_baseline_embeds_every_cell_deterministically(ws, name):
    ids = list(ws.cells["cell_id"])
    opts = {} if name == "pca" else SMALL
    a = make_encoder(name, ws, **opts).embed(ws, ids)
    b = make_encoder(name, ws, **opts).embed(ws, ids)
    assert a.shape[0] == len(ids) and a.ndim == 2 and np.isfinite(a).all()
    assert np.allclose(a, b, atol=1e-5)
    assert a.std(axis=0).max() > 0  # not a constant output


def test_pca_has_ten_components_and_resnet_says_random_init(ws):
    assert make_encoder("pca", ws).embed(ws, list(ws.cells["cell_id"])).shape[1] == 10
    enc = make_encoder("resnet18", ws)
    assert enc.label == "ResNet-18 (random init)"
    with pytest.raises(UserError, match="does not exist"):
        make_encoder("resnet18:/no/such/weights.pth", ws)


def test_keys_change_with_options_and_unknown_specs_fail(ws):
    assert make_encoder("tile2vec", ws, epochs=1).key != make_encoder("tile2vec", ws, epochs=2).key
    assert make_encoder("tile2vec", ws).key != make_encoder("simclr-geo", ws).key
    with pytest.raises(UserError, match="unknown encoder"):
        make_encoder("vgg", ws)
    with pytest.raises(UserError, match="no option 'colour'"):
        make_encoder("pca", ws, colour=1)
    with pytest.raises(UserError, match="needs a run folder"):
        make_encoder("urbanclip", ws)
    assert parse_opts(["epochs=3", "lr=0.01", "text_column=text_raw"]) == {"epochs": 3, "lr": 0.01, "text_column": "text_raw"}
    with pytest.raises(UserError, match="key=value"):
        parse_opts(["epochs"])


def test_neighbours_follow_the_grid_and_stay_in_the_city(ws):
    ids = list(ws.cells["cell_id"])
    nb = grid_neighbours(ws, ids)
    cells = ws.cells.set_index("cell_id")
    i = ids.index("Alpha/r002_c002")
    got = {ids[j] for j in nb[i]}
    assert len(got) == 8 and all(c.startswith("Alpha/") for c in got)
    for j in nb[i]:
        r, c = cells.loc[ids[j], ["row", "col"]]
        assert max(abs(r - 2), abs(c - 2)) == 1
    corner = ids.index("Beta/r000_c000")
    assert len(nb[corner]) == 3
    neg = distant_sampler(ws, ids, min_distance=3)(np.array([i] * 50), np.random.default_rng(0))
    for j in neg:
        r, c = cells.loc[ids[j], ["row", "col"]]
        assert cells.loc[ids[j], "city"] != "Alpha" or max(abs(r - 2), abs(c - 2)) >= 3


def test_text_neighbours_pick_similar_descriptions():
    texts = ["red brick houses", "red brick houses and shops", "blue lake water", "deep blue lake water", ""]
    nb = text_neighbours(texts, k=1)
    assert nb[0].tolist() == [1] and nb[2].tolist() == [3] and len(nb[4]) == 0
    custom = text_neighbours(texts[:4], k=1, similarity_fn=lambda t: -np.abs(np.subtract.outer(range(len(t)), range(len(t)))))
    assert custom[0].tolist() == [1]


def test_contrastive_training_lowers_its_loss():
    from urbanclip.evaluation.probe import single_thread

    # two visually distinct groups; positives = same group
    x = torch.cat([torch.rand(32, 3, 32, 32) * 0.2, 0.8 + torch.rand(32, 3, 32, 32) * 0.2])
    groups = np.repeat([0, 1], 32)
    pos = [np.flatnonzero((groups == groups[i]) & (np.arange(64) != i)) for i in range(64)]
    losses = []
    with single_thread():
        train_pairs(x, pos, BaselineConfig(epochs=6, batch_size=32, image_size=32, dim=16, width=8),
                    on_step=lambda s, t, l: losses.append(l))
    assert len(losses) == 12 and np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < np.mean(losses[:3])


def test_baseline_probe_beats_noise_on_signal_workspace(ws):
    from urbanclip.data.embeddings import cached_embeddings
    from urbanclip.evaluation.probe import ProbeConfig, fit_probes

    t = cached_embeddings(ws, make_encoder("pca", ws))
    r2 = fit_probes(ws, t, "population", ProbeConfig(hidden=(32,), seeds=(0,), min_train=5)).summary()["population"]["R2"]["mean"]
    assert r2 > 0.5
