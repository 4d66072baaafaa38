"""Map: layers with units, an offline basemap from the workspace's tiles, no CDN links."""

from __future__ import annotations

import re

import numpy as np
import pytest

from app_helpers import tiny_workspace
from urbanclip.services.context import AppContext
from urbanclip.services.lookup import search
from urbanclip.services.mapview import build_map, city_geojson, city_mosaic, layer_data, legend_html


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> AppContext:
    return AppContext(workspace=tiny_workspace(tmp_path_factory.mktemp("mv") / "ws"))


def test_observed_layer_is_log_scaled_with_unit(ctx):
    city = ctx.workspace.cities[0]
    layer = layer_data(ctx, city, "observed", "population")
    raw = ctx.workspace.city_cells(city)["population"].to_numpy()
    assert np.allclose(layer.values, np.log1p(raw))
    assert "persons" in layer.title and layer.vmin < layer.vmax
    html = legend_html(layer)
    assert "persons" in html and f"{layer.vmax:.2f}" in html


def test_predicted_layers_absent_without_probes(ctx):
    city = ctx.workspace.cities[0]
    assert layer_data(ctx, city, "predicted", "gdp") is None
    assert layer_data(ctx, city, "residual", "gdp") is None


def test_residual_is_symmetric_and_text_layer_uses_scores(ctx):
    ws = ctx.workspace
    city = ws.cities[0]
    pred = {"gdp": ws.cells["gdp"].to_numpy() * 2.0}
    with_pred = AppContext(workspace=ws, predictions=pred)
    res = layer_data(with_pred, city, "residual", "gdp")
    assert res.vmin == -res.vmax
    assert np.nanmax(res.values) > 0
    r = search(ctx, "river water")
    text = layer_data(ctx, city, "text match", text_scores=r.scores)
    assert len(text.values) == len(ws.city_cells(city))


def test_mosaic_is_cached_and_sized_from_the_grid(ctx):
    city = ctx.workspace.cities[0]
    p1 = city_mosaic(ctx, city)
    mtime = p1.stat().st_mtime_ns
    assert city_mosaic(ctx, city) == p1 and p1.stat().st_mtime_ns == mtime
    from PIL import Image

    info = ctx.workspace.manifest.cities[city]
    w, h = Image.open(p1).size
    assert w // info.n_cols == h // info.n_rows and w % info.n_cols == 0


def test_map_html_is_offline_and_carries_cell_ids(ctx):
    city = ctx.workspace.cities[1]
    cid = ctx.workspace.city_cells(city)["cell_id"].iloc[0]
    m = build_map(ctx, city, layer_data(ctx, city, "observed", "carbon"), selected=cid)
    html = m.get_root().render()
    assert re.findall(r"https?://[^\s\"')]+", html) == []  # no CDN, no online tiles
    assert "data:text/javascript;base64," in html and "data:image/jpg;base64," in html
    gj = city_geojson(ctx, city, None)
    assert {f["properties"]["cell_id"] for f in gj["features"]} == set(ctx.workspace.city_cells(city)["cell_id"])
    online = build_map(ctx, city, None, online_imagery=True).get_root().render()
    assert "arcgisonline" in online  # only when the user opts in


def test_city_without_imagery_still_maps_and_profiles(tmp_path):
    from urbanclip.data.grid import square_grid
    from urbanclip.data.indicators import STANDARD
    from urbanclip.services.profile import profile_cell
    from urbanclip.data.workspace import Manifest, WorkspaceBuilder

    g = square_grid("Blind", 10.0, 50.0, 3, 3, 1000.0)
    g["text_raw"] = "A town."
    g["population"] = 5.0
    with WorkspaceBuilder(tmp_path / "w") as b:
        ws = b.finish(g, Manifest(name="noimg", indicators=dict(STANDARD)))
    ctx = AppContext(workspace=ws)
    assert city_mosaic(ctx, "Blind") is None
    html = build_map(ctx, "Blind", layer_data(ctx, "Blind", "observed", "population")).get_root().render()
    assert "leaflet-image-layer" not in html and "Blind/r000_c000" in html
    p = profile_cell(ctx, "Blind/r001_c001")
    assert p.image_path is None and "Imagery is unavailable" in p.generated_note
    assert p.source_description == "A town."


def test_tooltip_label_is_on_the_indicator_scale(ctx):
    from urbanclip.services.profile import format_value

    city = ctx.workspace.cities[0]
    layer = layer_data(ctx, city, "observed", "population")
    feats = city_geojson(ctx, city, layer)["features"]
    raw = ctx.workspace.city_cells(city)["population"].to_numpy()
    assert feats[3]["properties"]["label"] == format_value(float(raw[3]), "persons")
    assert "persons" in feats[3]["properties"]["label"]
