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


def _success(at) -> str:
    return "\n".join(str(e.value) for e in at.success)


def test_search_says_what_it_found_and_clears_a_stale_text_layer(env, with_embeddings):
    ws = with_embeddings.workspace
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT).run()
    at.radio(key="layer").set_value("residual" if "residual" in at.radio(key="layer").options else "none").run()
    before = at.radio(key="layer").value
    at.text_input(key="query").input("industrial warehouses")
    at.button[0].click().run()
    assert not at.exception
    assert at.radio(key="layer").value == "text match" and "Keyword match" in _success(at)
    assert any(b.label.startswith(("0.", "1.")) for b in at.button)  # the ranked hits
    cid = ws.cells["cell_id"].iloc[30]
    at.text_input(key="query").input(cid)
    at.button[0].click().run()
    assert at.radio(key="layer").value == before  # the text-match layer of the old query is gone
    assert f"**Cell** · Cell {shared.plain(cid)}" in _success(at) and at.session_state["selected_cell"] == cid
    cell = ws.cell(cid)
    at.text_input(key="query").input(f"{cell['lat']:.6f}, {cell['lon']:.6f}")
    at.button[0].click().run()
    assert "**Coordinates**" in _success(at)
    at.text_input(key="query").input("industrial warehouses")
    at.button[0].click().run()
    next(b for b in at.button if b.label == "Clear").click().run()
    assert at.radio(key="layer").value == before and _success(at) == ""


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
    ws = ctx.workspace
    at = AppTest.from_file(str(REPO / "pages" / "compare.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert "Click a cell on the map of" in _text(at)
    # the two cities' totals side by side, in the indicators' own units, and their distributions
    totals = at.table[0].value
    assert list(totals.columns) == [at.selectbox(key="cmp_a").value, at.selectbox(key="cmp_b").value]
    assert totals.loc["Population (sum), observed"].iloc[0].endswith("persons")
    assert len(at.get("plotly_chart")) >= 2 and len(at.dataframe) == 1
    # a cell selected (on the Map page or by clicking map A): its look-alikes in city B
    cid = ws.city_cells(ws.cities[0])["cell_id"].iloc[2]
    at.session_state["selected_cell"] = cid
    at.run()
    assert not at.exception
    text = _text(at)
    assert cid in text and "similarity" in text
    assert at.selectbox(key="cmp_a").value == ws.cities[0]


def test_compare_page_says_when_a_correlation_is_undefined(env, monkeypatch):
    from urbanclip.data.workspace import Workspace

    ws = Workspace.load(env)
    ws.cells["carbon"] = 7.0  # constant: Pearson r is undefined
    ctx = pixel_context(ws)
    monkeypatch.setattr(shared, "load_context", lambda root, progress=None: ctx)
    st.cache_resource.clear()
    at = AppTest.from_file(str(REPO / "pages" / "compare.py"), default_timeout=TIMEOUT)
    at.run()
    at.selectbox(key="cmp_ind").set_value("carbon").run()
    assert not at.exception
    text = _text(at)
    assert "= nan" not in text.lower() and "correlation is undefined" in text


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
    assert "Residual of Population: predicted ÷ observed" in text and "log1p" not in text
    obs = float(ctx.workspace.cell(cid)["population"])
    from urbanclip.services.profile import format_value

    row = at.table[0].value.loc["Population"]
    assert (row["Predicted"], row["Observed"]) == (format_value(obs * 1.5, 'persons'), format_value(obs, 'persons'))


def test_map_and_compare_pages_log_no_deprecation_warnings(env, with_embeddings, monkeypatch):
    """Streamlit logs a warning each time a deprecated argument is used (use_container_width was
    logged 849 times in one session); the Map and Compare pages use none."""
    import streamlit.deprecation_util as dep

    logged: list[str] = []

    class Recorder:
        def warning(self, msg, *a, **k):
            logged.append(str(msg))

        def __getattr__(self, name):
            return lambda *a, **k: None

    monkeypatch.setattr(dep, "_LOGGER", Recorder())
    ws = with_embeddings.workspace
    city = ws.cities[0]
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.session_state["selected_cell"] = ws.city_cells(city)["cell_id"].iloc[3]
    at.session_state["area"] = {"kind": "cells", "city": city, "cell_ids": list(ws.city_cells(city)["cell_id"].iloc[:4])}
    at.run()
    at.text_input(key="query").input("river water")
    at.button[0].click().run()
    assert not at.exception
    cmp = AppTest.from_file(str(REPO / "pages" / "compare.py"), default_timeout=TIMEOUT)
    cmp.session_state["selected_cell"] = ws.city_cells(city)["cell_id"].iloc[3]
    cmp.run()
    assert not cmp.exception
    assert logged == []


def test_an_unreadable_tile_is_a_note_not_a_traceback(tmp_path, monkeypatch):
    import shutil

    from urbanclip.data.workspace import Workspace

    root = tmp_path / "ws"
    tiny_workspace(root)
    ws = Workspace.load(root)
    city = ws.cities[0]
    bad = ws.city_cells(city)["cell_id"].iloc[5]
    ws.image_path(bad).write_bytes(b"\x00not an image" * 40)
    monkeypatch.setenv("URBANCLIP_WORKSPACE", str(root))
    from urbanclip.services.context import AppContext

    ctx = AppContext(workspace=ws)  # no embeddings: nothing reads the broken file before the map does
    monkeypatch.setattr(shared, "load_context", lambda root, progress=None: ctx)
    st.cache_resource.clear()
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.session_state["selected_cell"] = bad
    at.run()
    assert not at.exception
    warnings = "\n".join(str(w.value) for w in at.warning)
    assert bad in warnings and "cannot be read" in warnings          # the map's note names the tile
    assert shared.plain(str(ws.image_path(bad))) in warnings and "it is shown as missing" in warnings  # the panel too
    shutil.rmtree(root, ignore_errors=True)
