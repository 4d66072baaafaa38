"""A tile that cannot be read never takes a page down: it is shown as missing, flagged, skipped by the
embeddings (the rest keeps embeddings, predictions and look-alikes) and named in a note; and the caches
key on the tiles' content, so a changed tile is embedded again."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from app_helpers import tiny_checkpoint, tiny_workspace
from PIL import Image
from streamlit.testing.v1 import AppTest

from urbanclip.data.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def broken(tmp_path):
    """A tiny workspace whose cell #10 tile is replaced by random bytes of the same size, and a model."""
    ws = tiny_workspace(tmp_path / "ws")
    ckpt = tiny_checkpoint(ws, tmp_path / "model.pt")
    bad = str(ws.cells["cell_id"].iloc[10])
    path = ws.image_path(bad)
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))
    return Workspace.load(tmp_path / "ws"), ckpt, bad


def test_an_unreadable_tile_is_skipped_flagged_and_named(broken):
    from urbanclip.services.context import load_context
    from urbanclip.services.profile import profile_cell

    ws, ckpt, bad = broken
    assert list(ws.unreadable_images()) == [bad]
    assert f"unreadable image {ws.cell(bad)['image']} of cell {bad}" in ws.summary()  # what `info` prints
    ctx = load_context(ws.root, model_path=ckpt)
    note = next(n for n in ctx.notes if "cannot be read" in n)
    assert str(ws.cell(bad)["image"]) in note and "Replace or remove" in note
    assert ctx.has_model and len(ctx.cell_ids) == len(ws.cells) - 1 and bad not in ctx.cell_ids
    i = ws.index_of(bad)
    for values in ctx.predictions.values():  # every other cell keeps its prediction
        assert np.isnan(values[i]) and np.isfinite(np.delete(values, i)).all()
    good = str(ws.cells["cell_id"].iloc[11])
    prof = profile_cell(ctx, good, generate=True)
    assert prof.similar and prof.generated and not prof.image_problem
    prof = profile_cell(ctx, bad, generate=True)  # the bad cell's own panel: no exception, a clear flag
    assert prof.image_path is None and prof.generated is None and not prof.similar
    assert str(ws.image_path(bad)) in prof.image_problem and "Replace or remove" in prof.image_problem
    assert all(m.cell_id != bad for m in profile_cell(ctx, good).similar)


def test_a_same_size_in_place_change_is_embedded_again(tmp_path):
    from urbanclip.data.embeddings import cached_embeddings
    from urbanclip.evaluation.encoders import make_encoder

    ws = tiny_workspace(tmp_path / "ws")
    enc = make_encoder(f"urbanclip:{tiny_checkpoint(ws, tmp_path / 'model.pt')}", ws)
    before = cached_embeddings(ws, enc)
    cid = str(ws.cells["cell_id"].iloc[3])
    path = ws.image_path(cid)
    st_before = path.stat()
    buf = io.BytesIO()
    Image.new("RGB", Image.open(path).size, (250, 10, 10)).save(buf, format="PNG")
    data = buf.getvalue()
    assert len(data) <= st_before.st_size
    with open(path, "r+b") as f:  # same file, same size (PNG ignores bytes after its end), same mtime
        f.write(data + b"\0" * (st_before.st_size - len(data)))
    os.utime(path, ns=(st_before.st_atime_ns, st_before.st_mtime_ns))
    st_after = path.stat()
    assert (st_after.st_size, st_after.st_mtime_ns, st_after.st_ino) == (st_before.st_size, st_before.st_mtime_ns,
                                                                          st_before.st_ino)
    after = cached_embeddings(Workspace.load(ws.root), enc)
    row = before.cell_ids.index(cid)
    assert not np.allclose(before.vectors[row], after.vectors[row])  # re-embedded, not the stale cache entry
    others = [i for i in range(len(before)) if i != row]
    assert np.allclose(before.vectors[others], after.vectors[others], atol=1e-5)


def test_pages_show_an_unreadable_tile_as_missing(broken, monkeypatch):
    ws, ckpt, bad = broken
    monkeypatch.setenv("URBANCLIP_WORKSPACE", str(ws.root))
    monkeypatch.setenv("URBANCLIP_MODEL", str(ckpt))
    st.cache_resource.clear()
    at = AppTest.from_file(str(REPO / "pages" / "compare.py"), default_timeout=120)
    at.session_state["selected_cell"] = bad
    at.run()
    assert not at.exception
    assert "The tile image cannot be read" in [e.value for e in at.info]
    assert any("cannot be read" in e.value for e in at.info)  # the status note names the file

    def panel():
        from urbanclip import ui

        ctx = ui.get_context()
        ui.cell_panel(ctx, ctx.workspace.cells["cell_id"].iloc[10], generate=True)

    at = AppTest.from_function(panel, default_timeout=120).run()
    assert not at.exception
    assert any("Unreadable tile" in m.value for m in at.markdown)  # st.badge is a Markdown element
    assert any("cannot be read" in w.value and "Replace or remove" in w.value for w in at.warning)
    st.cache_resource.clear()
