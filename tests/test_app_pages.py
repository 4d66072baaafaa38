"""Each page rendered with streamlit.testing.v1.AppTest; selection injected through session_state."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from app_helpers import pixel_context, tiny_workspace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import pages._shared as shared  # noqa: E402

TIMEOUT = 60


@pytest.fixture(scope="module")
def ws_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pages") / "ws"
    tiny_workspace(root)
    return root


@pytest.fixture
def env(ws_root, monkeypatch):
    monkeypatch.setenv("URBANCLIP_WORKSPACE", str(ws_root))
    monkeypatch.delenv("URBANCLIP_MODEL", raising=False)
    monkeypatch.setattr("urbanclip.services.context.SHIPPED_MODEL_DIR", ws_root / "no-shipped-model")
    st.cache_resource.clear()
    yield ws_root
    st.cache_resource.clear()


@pytest.fixture
def with_embeddings(env, monkeypatch):
    """Pages get a context with pixel embeddings (test scaffold for the similarity plumbing)."""
    from urbanclip.data.workspace import Workspace

    ctx = pixel_context(Workspace.load(env))
    monkeypatch.setattr(shared, "load_context", lambda root, progress=None: ctx)
    return ctx


def workspace_cities(root: Path) -> list[str]:
    from urbanclip.data.workspace import Workspace

    return list(Workspace.load(root).cities)


def _text(at) -> str:
    parts = [e.value for e in at.markdown] + [e.value for e in at.caption] + [e.value for e in at.info]
    parts += [e.value for e in at.warning] + [e.value for e in at.error] + [e.value for e in at.subheader]
    return "\n".join(str(p) for p in parts)


def test_map_page_empty_state(env):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert at.title[0].value == "Urban Insights"
    assert "Click a cell on the map" in _text(at)
    assert "No trained model yet" in _text(at)
    assert at.selectbox(key="city").value == workspace_cities(env)[0]


def test_map_page_panel_for_injected_selection(env, with_embeddings):
    ws = with_embeddings.workspace
    cid = ws.city_cells(ws.cities[1])["cell_id"].iloc[5]
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.session_state["selected_cell"] = cid
    at.run()
    assert not at.exception
    text = _text(at)
    assert cid in text and "Source description" in text
    assert "| Population |" in text and "persons" in text
    assert "Most similar cells in other cities" in text and "similarity" in text
    go = [b for b in at.button if b.label.startswith("Go to ")]
    assert go, "each similar cell has a jump button"
    target = go[0].label.removeprefix("Go to ")
    go[0].click().run()
    assert at.session_state["selected_cell"] == target
    assert at.session_state["city"] == ws.cell(target)["city"]


def test_map_page_search(env):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT).run()
    at.text_input(key="query").input("12345")
    at.button[0].click().run()
    assert "Search accepts" in _text(at)
    other = workspace_cities(env)[1]
    at.text_input(key="query").input(other)
    at.button[0].click().run()
    assert at.session_state["city"] == other


def test_map_page_missing_workspace(monkeypatch, tmp_path):
    monkeypatch.setenv("URBANCLIP_WORKSPACE", str(tmp_path / "absent"))
    st.cache_resource.clear()
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert "Cannot open the workspace" in _text(at) and "python -m urbanclip demo" in _text(at)


def test_compare_page_without_and_with_embeddings(env, monkeypatch):
    at = AppTest.from_file(str(REPO / "pages" / "compare.py"), default_timeout=TIMEOUT).run()
    # no model: look-alikes fall back to the training-free PCA embedding, and the page says so
    assert not at.exception and "'pca' baseline image embedding" in _text(at)
    from urbanclip.data.workspace import Workspace

    ctx = pixel_context(Workspace.load(env))
    monkeypatch.setattr(shared, "load_context", lambda root, progress=None: ctx)
    st.cache_resource.clear()
    cid = ctx.workspace.city_cells(ctx.workspace.cities[0])["cell_id"].iloc[2]
    at = AppTest.from_file(str(REPO / "pages" / "compare.py"), default_timeout=TIMEOUT)
    at.session_state["selected_cell"] = cid
    at.run()
    assert not at.exception
    assert at.selectbox(key="cmp_cell").value == cid
    assert "similarity" in _text(at)
    at.radio(key="cmp_scope").set_value("all cells").run()
    assert not at.exception
    assert len(at.get("plotly_chart")) >= 1 and len(at.dataframe) == 1


def test_train_page_lists_runs_and_activates_checkpoint(env):
    from urbanclip import paths
    from urbanclip.services.context import active_model_path

    run = paths.runs_dir() / "pretrain-x"
    run.mkdir(parents=True)
    events = [{"event": "start", "command": "pretrain", "total_steps": 2, "time": 1},
              {"event": "step", "step": 1, "total_steps": 2, "epoch": 0, "loss": 2.0, "time": 2},
              {"event": "step", "step": 2, "total_steps": 2, "epoch": 0, "loss": 1.0, "time": 3},
              {"event": "end", "status": "completed", "summary": {"final_loss": 1.0}, "time": 4}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (run / "model.pt").write_bytes(b"weights")
    at = AppTest.from_file(str(REPO / "pages" / "train.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert any("pretrain-x" in e.label for e in at.expander)
    assert "No run in progress" in _text(at)
    use = [b for b in at.button if b.label == "Use this checkpoint on the Map page"]
    use[0].click().run()
    assert active_model_path() == run.resolve()


def test_train_page_refuses_busy_output_folder(env):
    from urbanclip import paths

    busy = paths.runs_dir() / "busy"
    busy.mkdir(parents=True)
    import os

    (busy / ".lock").write_text(f"{os.getpid()}\n")  # this live process "owns" the folder
    at = AppTest.from_file(str(REPO / "pages" / "train.py"), default_timeout=TIMEOUT).run()
    at.text_input[1].set_value(str(busy))
    at.button[0].click().run()
    assert not at.exception
    assert "already writing" in _text(at)


def test_map_page_with_predictions_offers_predicted_layers(env, monkeypatch):
    from urbanclip.data.workspace import Workspace

    ctx = pixel_context(Workspace.load(env))
    ctx.predictions = {k: ctx.workspace.cells[k].to_numpy() * 1.5 for k in ctx.workspace.indicator_names}
    monkeypatch.setattr(shared, "load_context", lambda root, progress=None: ctx)
    cid = ctx.workspace.cells["cell_id"].iloc[0]
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.session_state["selected_cell"] = cid
    at.run()
    assert {"observed", "predicted", "residual"} <= set(at.radio(key="layer").options)
    at.radio(key="layer").set_value("residual").run()
    assert not at.exception
    text = _text(at)
    assert "residual Population: predicted − observed" in text
    obs = float(ctx.workspace.cell(cid)["population"])
    from urbanclip.services.profile import format_value

    assert f"| Population | {format_value(obs * 1.5, 'persons')} | {format_value(obs, 'persons')} |" in text


def test_train_page_shows_live_progress(env):
    import os

    from urbanclip import paths

    run = paths.runs_dir() / "live"
    run.mkdir(parents=True)
    (run / ".lock").write_text(f"{os.getpid()}\n")
    events = [{"event": "start", "command": "pretrain", "total_steps": 4, "time": 1},
              {"event": "step", "step": 1, "total_steps": 4, "epoch": 0, "eta_s": 90, "loss": 2.0, "time": 2}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    at = AppTest.from_file(str(REPO / "pages" / "train.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    bars = at.get("progress")
    assert bars and bars[0].value == 25  # AppTest reports percent
    assert any(b.label == "Cancel" for b in at.button)
