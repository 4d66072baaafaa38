"""The app's services on workspaces unlike the demo: no indicators, few imaged cells, a model from
another domain, capped values, cells without imagery, place names (issue 14, item 5)."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from app_helpers import pixel_context, tiny_checkpoint, tiny_workspace
from streamlit.testing.v1 import AppTest

import urbanclip.ui as shared
from urbanclip.data.grid import square_grid
from urbanclip.data.workspace import Manifest, Workspace, WorkspaceBuilder, flag_suspect_values
from urbanclip.services.context import _attach_predictions, load_context, model_domain_note
from urbanclip.services.lookup import Place, gazetteer_lookup, search
from urbanclip.services.mapview import available_layers, default_indicator, layer_data
from urbanclip.services.profile import indicator_table, profile_cell

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def bare(tmp_path) -> Workspace:
    """What `import xyz` makes: imagery over a real place (central Beijing), no indicators, no text."""
    grid = square_grid("Beijing", 116.37, 39.93, 4, 4, 1000.0)
    rng = np.random.default_rng(0)
    with WorkspaceBuilder(tmp_path / "bare") as b:
        grid["image"] = [b.write_image("Beijing", f"{i}.png", rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
                         for i in range(len(grid))]
        return b.finish(grid, Manifest(name="bare", indicators={}, source="test"))


def test_workspace_without_indicators_loads_profiles_and_maps(bare):
    ctx = load_context(bare.root, model_path=None)
    assert any("no indicators" in n and "attach" in n for n in ctx.notes)
    assert available_layers(ctx) == ["text match", "none"]
    assert default_indicator(bare) is None
    assert layer_data(ctx, "Beijing", "observed", None) is None
    prof = profile_cell(ctx, bare.cells["cell_id"].iloc[5], generate=False)
    assert prof.indicators == [] and "attach" in prof.indicator_note
    assert prof.similar or prof.similar_note  # look-alikes (pca fallback) still run


def test_map_page_on_a_workspace_without_indicators(bare, monkeypatch):
    """The IndexError at ws.indicator_names[0] (issue 14) is gone: the page renders, a cell panel too."""
    ctx = load_context(bare.root, model_path=None)
    monkeypatch.setenv("URBANCLIP_WORKSPACE", str(bare.root))
    monkeypatch.setattr(shared, "load_context", lambda root, progress=None: ctx)
    st.cache_resource.clear()
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    at.session_state["selected_cell"] = bare.cells["cell_id"].iloc[0]
    at.run()
    assert not at.exception
    assert at.radio(key="layer").value == "none"
    text = "\n".join(str(e.value) for e in [*at.caption, *at.info, *at.markdown])
    assert "no indicators yet" in text
    st.cache_resource.clear()


def test_predictions_need_enough_labelled_imaged_training_cells(tiny_workspace_copy):
    ctx = pixel_context(Workspace.load(tiny_workspace_copy))
    ctx.encoder_key = "pixels"
    _attach_predictions(ctx, fit_missing=True, progress=lambda m: None)  # default minimum: 200 train cells
    assert not ctx.has_predictions and not ctx.has_intervals
    n = ctx.probe_counts["population"]
    assert 0 < n["train"] < 200
    assert f"only {n['train']} train / {n['val']} val / {n['test']} test cells" in ctx.prediction_notes["population"]
    assert any("No predictions for" in note and "at least 200" in note for note in ctx.notes)
    prof = profile_cell(ctx, ctx.cell_ids[0], generate=False)
    assert prof.interval_caption is None  # no interval, no "calibrated on held-out cells" caption
    assert all(iv.predicted is None and "a probe needs at least 200" in iv.note for iv in prof.indicators)
    assert "Note" in indicator_table(prof).columns
    # with a minimum the workspace meets, the same call predicts and the caption appears
    ctx.notes.clear()
    ctx.prediction_notes.clear()
    _attach_predictions(ctx, fit_missing=True, progress=lambda m: None, min_train=50)
    assert ctx.has_predictions and ctx.has_intervals
    assert "80% prediction interval" in profile_cell(ctx, ctx.cell_ids[0], generate=False).interval_caption


def test_grounding_needs_enough_reference_tiles(tmp_path):
    from urbanclip.model.checkpoint import load_model

    ws = tiny_workspace(tmp_path / "ws", n=5)  # 25 tiles per city: 24 to compare with
    ctx = pixel_context(ws)
    ctx.model = load_model(tiny_checkpoint(ws, tmp_path / "m.pt"))
    ctx.encoder_key, ctx.index = "urbanclip-test", None  # grounding reads the model's own embeddings
    import torch

    from urbanclip.model.transforms import eval_transform

    tf = eval_transform(ctx.model.config.image_size)
    with torch.no_grad():
        ctx.vectors = ctx.model.encode_image(torch.stack([tf(ws.load_image(c)) for c in ctx.cell_ids])).numpy()
    prof = profile_cell(ctx, ctx.cell_ids[0], generate=False)
    assert prof.source_grounding is None and prof.grounding is None
    assert "only 24 other tiles" in prof.grounding_note and "at least 50" in prof.grounding_note


def test_model_from_another_domain_is_noted(bare, tmp_path):
    class M:
        train_provenance = {"workspace": "/somewhere/demo", "workspace_name": "demo", "synthetic": True}

    note = model_domain_note(bare, M(), tmp_path / "run")
    assert "SYNTHETIC" in note and "demo" in note and "pretrain --workspace" in note
    M.train_provenance = {"workspace": str(bare.root), "synthetic": False}
    assert model_domain_note(bare, M(), tmp_path / "run") == ""
    M.train_provenance = {"workspace": "/other/real", "workspace_name": "other", "synthetic": False}
    assert "another workspace (other)" in model_domain_note(bare, M(), tmp_path / "run")
    M.train_provenance = {}  # the shipped checkpoint predates provenance: known to be the demo's
    from urbanclip.services.context import SHIPPED_MODEL_DIR

    assert "SYNTHETIC" in model_domain_note(bare, M(), SHIPPED_MODEL_DIR)


def test_capped_values_carry_a_caveat_in_profile_and_area(tmp_path):
    from urbanclip.data.indicators import STANDARD
    from urbanclip.services.area import area_from_cells

    grid = square_grid("T", 116.3, 39.9, 10, 10, 1000.0)
    grid["gdp"] = np.where(np.arange(100) % 4 == 0, 10000.0, np.arange(100) * 3.0 + 1)
    m = Manifest(name="t", indicators={"gdp": STANDARD["gdp"]}, source="test")
    flag_suspect_values(grid.assign(flags=""), m, ["gdp"])
    with WorkspaceBuilder(tmp_path / "w") as b:
        grid["flags"] = ""
        flag_suspect_values(grid, m, ["gdp"])
        ws = b.finish(grid, m)
    ctx = load_context(ws.root, model_path=None)
    capped = ws.cells.loc[ws.cells["gdp"] == 10000, "cell_id"].iloc[0]
    iv = profile_cell(ctx, capped, generate=False).indicators[0]
    assert "cap or fill value" in iv.note and "25 cells" in iv.note
    assert "(cap/fill?)" in indicator_table(profile_cell(ctx, capped, generate=False)).loc["GDP", "Observed"]
    s = area_from_cells(ctx, list(ws.cells["cell_id"].iloc[:8]), describe=False)
    assert any("exactly 10,000" in n and "cap" in n for n in s.notes)


def test_city_names_come_from_the_offline_gazetteer(bare):
    ctx = load_context(bare.root, model_path=None)
    hit = search(ctx, "Beijing")  # the workspace's own city name wins
    assert hit.kind == "city"
    far = search(ctx, "Shenzhen")  # a real city this workspace does not cover: said so, not a text search
    assert far.kind == "error" and "offline gazetteer" in far.message and "outside every city grid" in far.message
    assert gazetteer_lookup("park") is None  # lower-case common words are not towns


def test_place_names_need_permission_for_the_online_geocoder(bare):
    ctx = load_context(bare.root, model_path=None)
    calls = []

    def fake(q):
        calls.append(q)
        return Place("Tiananmen", 39.9087, 116.3975, "OpenStreetMap Nominatim", "Dongcheng, Beijing")

    off = search(ctx, "Tiananmen", geocoder=fake)
    assert calls == [] and "online place search is off" in off.message  # not silently semantic
    on = search(ctx, "Tiananmen", allow_network=True, geocoder=fake)
    assert calls == ["Tiananmen"] and on.kind == "place" and "OpenStreetMap" in on.message


def test_geopy_nominatim_against_a_local_server(bare, monkeypatch):
    """The real geopy code path, answered by a local stand-in for Nominatim (never the internet)."""
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.path)
            body = json.dumps([{"lat": "39.9087", "lon": "116.3975", "display_name": "Tiananmen, Dongcheng, Beijing",
                                "place_id": 1}] if "Tiananmen" in self.path else []).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("URBANCLIP_GEOCODER_URL", f"http://127.0.0.1:{srv.server_address[1]}")
        ctx = load_context(bare.root, model_path=None)
        res = search(ctx, "Tiananmen", allow_network=True)
        assert res.kind == "place" and res.cell_id is not None and "Dongcheng" in res.message
        assert seen and seen[0].startswith("/search")
        none = search(ctx, "Nowhere Special", allow_network=True)
        assert "OpenStreetMap knows no place called 'Nowhere Special'" in none.message
    finally:
        srv.shutdown()
        srv.server_close()


def test_free_text_searches_descriptions_when_cells_lack_imagery(tmp_path):
    """The release case: thousands of described cells, a handful of tiles; every described cell is ranked."""
    grid = square_grid("T", 116.3, 39.9, 6, 6, 1000.0)
    words = ["A wide river with boats and a bridge.", "Dense residential blocks and narrow streets.",
             "Farmland with green fields."]
    grid["text_raw"] = [words[i % 3] for i in range(len(grid))]
    rng = np.random.default_rng(0)
    with WorkspaceBuilder(tmp_path / "w") as b:
        grid["image"] = [b.write_image("T", f"{i}.png", rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
                         if i < 3 else None for i in range(len(grid))]
        ws = b.finish(grid, Manifest(name="t", indicators={}, source="test"))
    ctx = load_context(ws.root, model_path=None)
    res = search(ctx, "a river with a bridge")
    assert res.kind == "text" and res.method in ("descriptions", "keyword")
    assert "36 cells' descriptions" in res.message and "3 have imagery" in res.message
    top = [ws.cell(h.cell_id)["text_raw"] for h in res.ranked[:5]]
    assert all("river" in t for t in top)
    assert np.isfinite(res.scores).sum() == 36
