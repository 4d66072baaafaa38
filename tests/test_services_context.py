"""AppContext: which workspace/model the app opens, and friendly degradation."""

from __future__ import annotations

import json

import pytest
from app_helpers import tiny_workspace

from urbanclip import paths
from urbanclip.errors import UserError
from urbanclip.services import context as C


def test_workspace_dir_env_then_demo(monkeypatch, tmp_path):
    monkeypatch.delenv(C.WORKSPACE_ENV, raising=False)
    assert C.workspace_dir() == paths.demo_workspace_dir()
    monkeypatch.setenv(C.WORKSPACE_ENV, str(tmp_path / "w"))
    assert C.workspace_dir() == tmp_path / "w"


def test_active_model_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv(C.MODEL_ENV, raising=False)
    monkeypatch.setattr(C, "SHIPPED_MODEL_DIR", tmp_path / "shipped")
    assert C.active_model_path() is None
    (tmp_path / "shipped").mkdir()
    (tmp_path / "shipped" / "model.pt").write_bytes(b"x")
    assert C.active_model_path() == tmp_path / "shipped"
    C.active_model_file().parent.mkdir(parents=True, exist_ok=True)
    C.active_model_file().write_text(json.dumps({"path": str(tmp_path / "run")}))
    assert C.active_model_path() == tmp_path / "run"
    monkeypatch.setenv(C.MODEL_ENV, str(tmp_path / "env"))
    assert C.active_model_path() == tmp_path / "env"
    monkeypatch.delenv(C.MODEL_ENV)
    C.active_model_file().write_text("{broken")
    with pytest.raises(UserError, match="active_model.json"):
        C.active_model_path()


def test_context_without_model_has_notes(tmp_path):
    tiny_workspace(tmp_path / "ws")
    ctx = C.load_context(tmp_path / "ws", model_path=None)
    assert ctx.model is None and not ctx.has_predictions
    assert any("No trained model" in n for n in ctx.notes)


def test_broken_model_path_becomes_a_note(tmp_path):
    tiny_workspace(tmp_path / "ws")
    ctx = C.load_context(tmp_path / "ws", model_path=tmp_path / "no-such-run")
    assert ctx.model is None
    assert any("Model not loaded" in n or "not available" in n for n in ctx.notes)


def test_missing_workspace_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        C.load_context(tmp_path / "nothing", model_path=None)


def test_default_demo_is_built_on_first_start(monkeypatch):
    pytest.importorskip("urbanclip.data.demo", reason="demo builder not available yet")
    monkeypatch.delenv(C.WORKSPACE_ENV, raising=False)
    import urbanclip.data.demo as demo

    calls = []
    real = demo.build_demo
    monkeypatch.setattr(demo, "build_demo", lambda root, **kw: calls.append(root) or real(root, rows=4, cols=4, tile_px=32))
    msgs = []
    ws = C.ensure_workspace(progress=msgs.append)
    assert calls and ws.root == paths.demo_workspace_dir().resolve() and "demo" in msgs[0]


def test_the_loaded_context_leaves_the_garbage_collectors_reach():
    import gc

    try:
        C.freeze_long_lived()
        assert gc.get_freeze_count() > 0  # Streamlit's full GC after each run no longer walks these objects
    finally:
        gc.unfreeze()


def test_per_click_inference_runs_on_one_thread(monkeypatch):
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv(C.INTERACTIVE_THREADS_ENV, raising=False)
        assert C.use_interactive_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv(C.INTERACTIVE_THREADS_ENV, "2")
        assert C.use_interactive_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_checkpoint_with_lead_sentences_gives_look_alikes_its_captioners_readings(tmp_path, capsys):
    """The app's index and the `similar` command both add the captioner's readings (one policy)."""
    import argparse

    import numpy as np
    from app_helpers import tiny_checkpoint

    from urbanclip.commands import similar
    from urbanclip.data.workspace import split_sentences
    from urbanclip.services.profile import similar_cells

    ws = tiny_workspace(tmp_path / "ws")
    leads = sorted({split_sentences(t)[0] for t in ws.cells["text_raw"]})[:6]
    ckpt = tiny_checkpoint(ws, tmp_path / "m.pt", lead_sentences=leads)
    ctx = C.load_context(ws.root, ckpt, fit_missing_probes=False)
    assert ctx.model.lead_sentences == leads
    assert ctx.readings is not None and np.asarray(ctx.readings.vectors).shape == (len(ctx.cell_ids), len(leads))
    assert np.allclose(np.linalg.norm(ctx.readings.vectors, axis=1), 1, atol=1e-4)  # sqrt of probabilities
    assert ctx.index.reading_offset.shape == (len(leads),) and ctx.index.image_dim == ctx.vectors.shape[1]
    cell = ctx.cell_ids[0]
    sims = similar_cells(ctx, cell, k=3)
    assert len(sims) == 3 and all(s.city != ws.cell(cell)["city"] for s in sims)
    args = argparse.Namespace(workspace=str(ws.root), cell=cell, encoder=f"urbanclip:{ckpt}", k=3, same_city=False,
                              per_city=False, opt=[])
    assert similar.run(args) in (0, None)
    out = capsys.readouterr().out
    assert "+ captioner readings" in out and all(s.cell_id in out for s in sims)
    # a checkpoint without them: embeddings only, as before
    plain = C.load_context(ws.root, tiny_checkpoint(ws, tmp_path / "p.pt"), fit_missing_probes=False)
    assert plain.readings is None and plain.index.reading_offset is None
