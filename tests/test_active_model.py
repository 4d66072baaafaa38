"""The model the Map page loads: when the active one fails to load, the page says why, still finds
look-alikes, and offers a way back to the shipped model."""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st
from app_helpers import tiny_checkpoint, tiny_workspace
from streamlit.testing.v1 import AppTest

from urbanclip.services.context import active_model_file, active_model_path, load_context

REPO = Path(__file__).resolve().parents[1]


def test_a_broken_active_model_becomes_a_note_and_look_alikes_fall_back(tmp_path):
    tiny_workspace(tmp_path / "ws")
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.pt").write_bytes(b"not a checkpoint")
    ctx = load_context(tmp_path / "ws", model_path=run)
    assert not ctx.has_model and "cannot be read" in ctx.model_error
    assert any(n.startswith("Model not loaded") for n in ctx.notes)
    assert ctx.vectors is not None and ctx.index is not None  # look-alikes from the training-free baseline


def test_the_map_page_offers_the_shipped_model_when_the_active_one_fails(tmp_path, monkeypatch):
    ws = tiny_workspace(tmp_path / "ws")
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    tiny_checkpoint(ws, shipped / "model.pt")
    monkeypatch.setattr("urbanclip.services.context.SHIPPED_MODEL_DIR", shipped)
    monkeypatch.setenv("URBANCLIP_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.delenv("URBANCLIP_MODEL", raising=False)
    gone = tmp_path / "deleted-run"
    active_model_file().parent.mkdir(parents=True, exist_ok=True)
    active_model_file().write_text(json.dumps({"path": str(gone)}))
    st.cache_resource.clear()
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert not at.exception
    assert any("Model not loaded" in i.value and "deleted" in i.value for i in at.info)
    back = [b for b in at.button if b.label == "Use the shipped model"]
    assert back
    back[0].click().run()
    assert not at.exception
    assert not active_model_file().exists() and active_model_path() == shipped
    assert not [b for b in at.button if b.label == "Use the shipped model"]
    assert not any("Model not loaded" in i.value for i in at.info)
    st.cache_resource.clear()
