"""Map: layers read in their own units, the files the map component draws (written once, safely
under concurrency), a grid that never travels in the component's arguments, an offline component."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from app_helpers import tiny_workspace
from PIL import Image

from urbanclip.services.context import AppContext
from urbanclip.services.lookup import search
from urbanclip.services.mapview import (
    COMPONENT_DIR,
    city_grid,
    city_mosaic,
    city_view,
    grid_file,
    grid_points,
    jump_view,
    layer_data,
    layer_files,
    legend_html,
    map_args,
    map_dir,
    map_event,
    mosaic_note,
    same_scale,
)
from urbanclip.services.profile import format_value


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> AppContext:
    return AppContext(workspace=tiny_workspace(tmp_path_factory.mktemp("mv") / "ws"))


def fresh_ctx(tiny_workspace_copy) -> AppContext:
    from urbanclip.data.workspace import Workspace

    return AppContext(workspace=Workspace.load(tiny_workspace_copy))


def test_observed_layer_colours_on_a_log_scale_but_reads_in_persons(ctx):
    city = ctx.workspace.cities[0]
    layer = layer_data(ctx, city, "observed", "population")
    raw = ctx.workspace.city_cells(city)["population"].to_numpy()
    assert np.allclose(layer.values, np.log1p(raw))
    assert layer.labels == [format_value(v, "persons") for v in raw]
    assert "persons" in layer.title and "log1p" not in layer.title
    html = legend_html(layer)
    assert "log1p" not in html and len(layer.ticks) >= 3
    # tick labels are round raw values placed where their log1p falls on the colour ramp
    for pos, label in layer.ticks:
        v = float(label.replace(",", ""))
        assert pos == pytest.approx((np.log1p(v) - layer.vmin) / (layer.vmax - layer.vmin), abs=0.011)
        assert label in html


def test_predicted_layers_absent_without_probes(ctx):
    city = ctx.workspace.cities[0]
    assert layer_data(ctx, city, "predicted", "gdp") is None
    assert layer_data(ctx, city, "residual", "gdp") is None


def test_residual_reads_as_a_ratio_and_text_layer_uses_scores(ctx):
    ws = ctx.workspace
    city = ws.cities[0]
    with_pred = AppContext(workspace=ws, predictions={"gdp": ws.cells["gdp"].to_numpy() * 2.0})
    res = layer_data(with_pred, city, "residual", "gdp")
    assert res.vmin == -res.vmax and np.nanmax(res.values) > 0
    assert "predicted ÷ observed" in res.title and "1 ×" in [t for _, t in res.ticks]
    assert any(lbl.startswith("predicted ≈ 2") and "yuan" in lbl for lbl in res.labels)
    r = search(ctx, "river water")
    text = layer_data(ctx, city, "text match", text_scores=r.scores)
    assert len(text.values) == len(ws.city_cells(city)) and text.labels[0].startswith("match ")


def test_two_cities_share_one_colour_scale(ctx):
    a, b = (layer_data(ctx, c, "observed", "carbon") for c in ctx.workspace.cities[:2])
    sa, sb = same_scale(a, b)
    assert (sa.vmin, sa.vmax) == (sb.vmin, sb.vmax) == (min(a.vmin, b.vmin), max(a.vmax, b.vmax))
    assert sa.ticks == sb.ticks and np.array_equal(sa.values, a.values)


def test_layer_files_hold_one_pixel_and_one_label_per_cell(ctx):
    ws = ctx.workspace
    city = ws.cities[1]
    layer = layer_data(ctx, city, "observed", "gdp")
    colour, labels = layer_files(ctx, city, layer)
    g = city_grid(ctx, city)
    img = np.asarray(Image.open(map_dir(ctx) / colour))
    assert img.shape == (g.n_rows, g.n_cols, 4)
    rgba = layer.rgba()
    for j in (0, 7, len(g.cell_ids) - 1):
        r, c = g.grid_rc[j]
        assert tuple(img[r, c, :3]) == tuple(rgba[j, :3]) and img[r, c, 3] == 255  # opacity is the map's
    text = json.loads((map_dir(ctx) / labels).read_text("utf-8"))
    r, c = g.grid_rc[5]
    assert text[r * g.n_cols + c] == layer.labels[5]
    mtime = (map_dir(ctx) / colour).stat().st_mtime_ns
    assert layer_files(ctx, city, layer) == (colour, labels)  # same layer: same files, not rewritten
    assert (map_dir(ctx) / colour).stat().st_mtime_ns == mtime
    other = layer_files(ctx, city, layer_data(ctx, city, "observed", "population"))
    assert other[0] != colour


def test_grid_file_places_the_patch_corners_on_the_cells_own_corners(ctx):
    ws = ctx.workspace
    city = ws.cities[0]
    doc = json.loads((map_dir(ctx) / grid_file(ctx, city)).read_text("utf-8"))
    g = city_grid(ctx, city)
    assert (doc["rows"], doc["cols"]) == (g.n_rows, g.n_cols)
    assert doc["ids"][g.grid_rc[3][0] * g.n_cols + g.grid_rc[3][1]] == g.cell_ids[3]
    p, pts = grid_points(ctx, city)
    assert pts.shape == (-(-g.n_rows // p) + 1, -(-g.n_cols // p) + 1, 2)
    # the north-west point is the first cell's north-west vertex; the south-east one the last cell's
    first = ws.cell(g.cell_ids[int(np.argmin(g.grid_rc.sum(axis=1)))]).geometry
    assert min(np.hypot(*(np.asarray(v) - pts[0, 0])) for v in first.exterior.coords) < 1e-9
    lat_lng = doc["points"][0]
    assert lat_lng == [pytest.approx(pts[0, 0, 1]), pytest.approx(pts[0, 0, 0])]


def test_missing_cells_get_their_corners_from_a_fit(tiny_workspace_copy):
    c = fresh_ctx(tiny_workspace_copy)
    ws = c.workspace
    city = ws.cities[0]
    full = grid_points(c, city)[1]
    keep = ~((ws.cells["city"] == city) & (ws.cells["row"] == 0) & (ws.cells["col"] == 0))
    ws.cells = ws.cells[keep.to_numpy()].reset_index(drop=True)
    holed = grid_points(AppContext(workspace=ws), city)[1]
    # the corner no cell carries any more is recovered within a few metres
    assert np.abs(holed - full).max() < 1e-4


def test_arguments_stay_small_whatever_the_city_size(ctx):
    """The grid travels in files fetched once; a click changes only the outline in the arguments."""
    ws = ctx.workspace
    city = ws.cities[0]
    layer = layer_data(ctx, city, "observed", "population")
    ids = list(ws.city_cells(city)["cell_id"])
    a = map_args(ctx, city, layer, "/data/", city_view(ctx, city, 1), selected=ids[0])
    b = map_args(ctx, city, layer, "/data/", city_view(ctx, city, 1), selected=ids[9])
    assert len(json.dumps(a)) < 3000
    assert {k for k in a if a[k] != b[k]} == {"selected"}
    assert a["selected"]["id"] == ids[0] and len(a["selected"]["ring"]) == 4
    assert a == map_args(ctx, city, layer, "/data/", city_view(ctx, city, 1), selected=ids[0])  # deterministic
    for name in (a["grid"], a["colour"], a["labels"], a["mosaic"]):
        assert (map_dir(ctx) / name).is_file()
    assert not re.findall(r"https?://", json.dumps({k: v for k, v in a.items() if k != "online_url"}))


def test_views_fit_the_city_or_jump_to_a_clickable_zoom(ctx):
    ws = ctx.workspace
    cid = ws.cells["cell_id"].iloc[10]
    v = jump_view(ctx, cid, seq=4)
    assert v["seq"] == 4 and v["center"] == [float(ws.cell(cid)["lat"]), float(ws.cell(cid)["lon"])]
    g = city_grid(ctx, ws.cell(cid)["city"])
    assert 256 * 2 ** v["zoom"] * g.cell_deg / 360 == pytest.approx(48, rel=0.02)  # a cell is ~48 px wide
    fit = city_view(ctx, ws.cities[0], seq=5)
    (s, w), (n, e) = fit["bounds"]
    assert s < n and w < e and fit["seq"] == 5


def test_map_events_resolve_clicks_and_drawings(ctx):
    ws = ctx.workspace
    city = ws.cities[2]
    g = city_grid(ctx, city)
    r, c = (int(x) for x in g.grid_rc[4])
    ev = map_event(ctx, city, {"kind": "click", "row": r, "col": c, "id": "ignored", "n": 3})
    assert ev.n == 3 and ev.cell_id == g.cell_ids[4] and ev.polygon is None
    poly = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
    assert map_event(ctx, city, {"kind": "draw", "geometry": poly, "n": 4}).polygon == poly
    line = {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}
    assert map_event(ctx, city, {"kind": "draw", "geometry": line, "n": 5}) is None
    assert map_event(ctx, city, {"kind": "click", "row": 999, "col": 0, "n": 6}) is None
    assert map_event(ctx, city, None) is None and map_event(ctx, city, {"kind": "click"}) is None


def test_mosaic_is_cached_and_sized_from_the_grid(ctx):
    city = ctx.workspace.cities[0]
    m1 = city_mosaic(ctx, city)
    mtime = m1.path.stat().st_mtime_ns
    assert city_mosaic(ctx, city).path == m1.path and m1.path.stat().st_mtime_ns == mtime
    info = ctx.workspace.manifest.cities[city]
    w, h = Image.open(m1.path).size
    assert w // info.n_cols == h // info.n_rows and w % info.n_cols == 0
    assert m1.unreadable == [] and mosaic_note(m1, city) is None


def test_concurrent_builders_on_a_cold_cache_never_collide(tiny_workspace_copy):
    """Five sessions building the same mosaic, grid and layer files at once: no error, one result."""
    from urbanclip.data.workspace import Workspace

    ws = Workspace.load(tiny_workspace_copy)
    city = ws.cities[0]
    results, errors = [], []

    def build():
        try:
            c = AppContext(workspace=ws)  # its own memo: every thread really builds
            layer = layer_data(c, city, "observed", "population")
            results.append((city_mosaic(c, city).path, grid_file(c, city), layer_files(c, city, layer)))
        except Exception as e:  # noqa: BLE001 - the test reports any
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(results)) == 1
    leftovers = [p.name for p in (tiny_workspace_copy / "cache" / "map").iterdir() if p.name.startswith(".")]
    assert leftovers == []  # every temporary file was renamed into place


def test_an_unreadable_tile_is_drawn_missing_and_named(tiny_workspace_copy):
    c = fresh_ctx(tiny_workspace_copy)
    ws = c.workspace
    city = ws.cities[0]
    bad = ws.city_cells(city)["cell_id"].iloc[3]
    ws.image_path(bad).write_bytes(np.random.default_rng(0).bytes(500))
    m = city_mosaic(c, city)
    assert m.unreadable == [bad] and m.path.is_file()
    assert bad in mosaic_note(m, city) and "cannot be read" in mosaic_note(m, city)
    assert city_mosaic(fresh_ctx(tiny_workspace_copy), city).unreadable == [bad]  # the note survives the cache


def test_city_without_imagery_still_maps_and_profiles(tmp_path):
    from urbanclip.data.grid import square_grid
    from urbanclip.data.indicators import STANDARD
    from urbanclip.data.workspace import Manifest, WorkspaceBuilder
    from urbanclip.services.profile import profile_cell

    g = square_grid("Blind", 10.0, 50.0, 3, 3, 1000.0)
    g["text_raw"] = "A town."
    g["population"] = 5.0
    with WorkspaceBuilder(tmp_path / "w") as b:
        ws = b.finish(g, Manifest(name="noimg", indicators=dict(STANDARD)))
    c = AppContext(workspace=ws)
    assert city_mosaic(c, "Blind") is None
    a = map_args(c, "Blind", layer_data(c, "Blind", "observed", "population"), "/d/", city_view(c, "Blind"))
    assert a["mosaic"] is None and a["colour"] and a["grid"]
    p = profile_cell(c, "Blind/r001_c001")
    assert p.image_path is None and "Imagery is unavailable" in p.generated_note
    assert p.source_description == "A town."


def test_the_map_component_loads_nothing_from_the_internet():
    html = (COMPONENT_DIR / "index.html").read_text()
    js = (COMPONENT_DIR / "urbanmap.js").read_text()
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs and all(not r.startswith(("http:", "https:", "//")) for r in refs)
    assert all((COMPONENT_DIR / r).is_file() for r in refs)  # Leaflet and Leaflet.draw are vendored
    assert not re.findall(r"https?://", js)  # the online imagery URL comes from Python, only when asked
    assert (Path(COMPONENT_DIR) / "vendor" / "NOTICE.md").is_file()
