"""Each page rendered with streamlit.testing.v1.AppTest; selection injected through session_state."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import streamlit as st
from app_helpers import pixel_context, tiny_workspace
from streamlit.testing.v1 import AppTest

import urbanclip.ui as shared

REPO = Path(__file__).resolve().parents[1]

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
    return re.sub(r"\\(.)", r"\1", "\n".join(str(p) for p in parts))  # user text is Markdown-escaped (ui.plain)


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
    table = at.table[0].value
    assert "Population" in table.index and table.loc["Population", "Observed"].endswith("persons")
    assert "Most similar cells in other cities" in text and "similarity" in text
    go = [b for b in at.button if b.label.startswith("Go to ")]
    assert go, "each similar cell has a jump button"
    target = re.sub(r"\\(.)", r"\1", go[0].label.removeprefix("Go to "))  # labels are Markdown-escaped
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

    row = at.table[0].value.loc["Population"]
    assert (row["Predicted"], row["Observed"]) == (format_value(obs * 1.5, 'persons'), format_value(obs, 'persons'))
