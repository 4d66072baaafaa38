"""Embedding cache: computed once, reused, invalidated when images/texts or the encoder change."""

from __future__ import annotations

import numpy as np
import pytest
from probe_helpers import build_signal_workspace

from urbanclip.data.embeddings import EmbeddingTable, cache_paths, cached_embeddings
from urbanclip.errors import UserError
from urbanclip.data.workspace import Workspace


class CountingEncoder:
    """Deterministic fake encoder (mean colour of the tile) that counts its calls."""

    label = "mean colour"

    def __init__(self, key="count-v1"):
        self.key = key
        self.calls = 0

    def embed(self, ws, ids):
        self.calls += 1
        return np.stack([np.asarray(ws.load_image(c, 8), np.float32).mean(axis=(0, 1)) for c in ids])


@pytest.fixture
def ws(tmp_path):
    return build_signal_workspace(tmp_path / "ws", n=4)


def test_cache_hit_returns_same_vectors_without_recomputing(ws):
    enc = CountingEncoder()
    a = cached_embeddings(ws, enc)
    b = cached_embeddings(Workspace.load(ws.root), enc)
    assert enc.calls == 1
    assert a.cell_ids == b.cell_ids == list(ws.cells["cell_id"])
    assert np.array_equal(a.vectors, b.vectors) and b.vectors.dtype == np.float32
    vec, ids = cache_paths(ws, enc)
    assert vec.is_file() and ids.is_file() and vec.parent == ws.cache_dir / "embeddings"


def test_changing_a_text_or_an_image_invalidates(ws):
    enc = CountingEncoder()
    cached_embeddings(ws, enc)
    ws.set_column("text_raw", ["Changed."] + list(ws.cells["text_raw"][1:]), "test")
    ws.save()
    cached_embeddings(Workspace.load(ws.root), enc)
    assert enc.calls == 2
    first = ws.image_path(ws.cells["cell_id"][0])
    first.write_bytes(first.read_bytes() + b"\0" * 10)  # a different file (size) = new content
    cached_embeddings(Workspace.load(ws.root), enc)
    assert enc.calls == 3
    cached_embeddings(Workspace.load(ws.root), enc)
    assert enc.calls == 3


def test_a_different_encoder_key_is_a_different_entry(ws):
    a, b = CountingEncoder("enc-a"), CountingEncoder("enc-b")
    cached_embeddings(ws, a)
    cached_embeddings(ws, b)
    assert a.calls == b.calls == 1
    assert cache_paths(ws, a)[0] != cache_paths(ws, b)[0]


def test_refresh_and_corrupt_cache_recompute(ws):
    enc = CountingEncoder()
    cached_embeddings(ws, enc)
    cached_embeddings(ws, enc, refresh=True)
    assert enc.calls == 2
    cache_paths(ws, enc)[0].write_bytes(b"garbage")
    t = cached_embeddings(ws, enc)
    assert enc.calls == 3 and len(t) == len(ws.cells)


def test_nan_embeddings_are_refused(ws):
    class Broken(CountingEncoder):
        def embed(self, ws, ids):
            return np.full((len(ids), 3), np.nan)

    with pytest.raises(UserError, match="NaN"):
        cached_embeddings(ws, Broken("broken"))


def test_table_rows_and_subset():
    t = EmbeddingTable(["a", "b", "c"], np.eye(3))
    assert t.rows(["c", "a"]).tolist() == [2, 0]
    assert t.subset(["b"]).vectors.tolist() == [[0, 1, 0]]
    with pytest.raises(UserError, match="no embedding"):
        t.rows(["zz"])
    with pytest.raises(UserError, match="2 cell ids"):
        EmbeddingTable(["a", "b"], np.eye(3))


def test_model_encoder_embeds_with_the_models_transform(ws, tmp_path):
    from urbanclip.model.config import tiny_config
    from urbanclip.evaluation.encoders import ModelImageEncoder, make_encoder
    from urbanclip.model.model import UrbanCLIP

    model = UrbanCLIP(tiny_config()[0], None, with_text=False).eval()
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.pt").write_bytes(b"stand-in: the model object is passed directly")
    enc = ModelImageEncoder(run, kind="urbanvit", model=model)
    t = cached_embeddings(ws, enc)
    assert t.vectors.shape == (len(ws.cells), model.config.embed_dim)
    assert np.allclose(np.linalg.norm(t.vectors, axis=1), 1.0, atol=1e-4)
    old_key = enc.key
    import os

    os.utime(run / "model.pt", ns=(1, 1))  # new weights file -> new key -> recomputed
    assert ModelImageEncoder(run, kind="urbanvit", model=model).key != old_key
    with pytest.raises(UserError, match="does not exist"):
        make_encoder(f"urbanclip:{tmp_path / 'nope'}", ws)
