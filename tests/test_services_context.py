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
