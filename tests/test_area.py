"""Area queries: polygon and cell-list aggregates against brute force, bad inputs, similar areas,
map events (drawn polygon vs clicked cell), the offline draw tool, and the Map page's area panel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from app_helpers import pixel_context
from shapely.geometry import Point, box, mapping

from urbanclip.data.workspace import Workspace, split_sentences
from urbanclip.errors import UserError
from urbanclip.search.index import grid_windows
from urbanclip.services.area import (
    area_from_cells,
    area_from_polygon,
    cells_in_polygon,
    combined_description,
    parse_geometry,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ctx(tiny_workspace_path):
    c = pixel_context(Workspace.load(tiny_workspace_path))
    rng = np.random.default_rng(0)
    c.predictions = {k: rng.uniform(0, 100, len(c.workspace.cells)) for k in c.workspace.indicator_names}
    return c


def _city_polygon(ws, city: str, fx: tuple[float, float], fy: tuple[float, float]) -> dict:
    """A rectangle over a fraction of the city's bounds (x: west->east, y: south->north)."""
    w, s, e, n = ws.manifest.cities[city].bounds
    return mapping(box(w + fx[0] * (e - w), s + fy[0] * (n - s), w + fx[1] * (e - w), s + fy[1] * (n - s)))


def test_polygon_aggregate_matches_brute_force(ctx):
    ws = ctx.workspace
    city = ws.cities[1]
    poly = _city_polygon(ws, city, (0.1, 0.63), (0.2, 0.71))
    shape = parse_geometry(poly)
    inside = [i for i, (c, lat, lon) in enumerate(zip(ws.cells["city"], ws.cells["lat"], ws.cells["lon"]))
              if c == city and shape.contains(Point(lon, lat))]
    s = area_from_polygon(ctx, poly, city)
    assert s.selection == "polygon" and s.rule == "centre within" and s.city == city
    assert sorted(s.cell_ids) == sorted(ws.cells["cell_id"].iloc[inside])
    assert 1 < s.n_cells < len(ws.city_cells(city))
    for iv in s.indicators:
        assert iv.aggregation == "sum"  # population, gdp and carbon are cell totals
        assert iv.observed == pytest.approx(ws.cells[iv.name].iloc[inside].sum())
        assert iv.observed_cells == len(inside)
        assert iv.predicted == pytest.approx(ctx.predictions[iv.name][inside].sum())
    assert any("Predicted sums add up each cell's predicted value, a median" in n for n in s.notes)
    assert s.area_km2 > 0
    # with expected values (probe heads that know their residuals' spread) those are what is summed
    import dataclasses

    with_mean = dataclasses.replace(ctx, expected={k: v * 1.25 for k, v in ctx.predictions.items()})
    s2 = area_from_polygon(with_mean, poly, city)
    for iv in s2.indicators:
        assert iv.predicted_from == "expected"
        assert iv.predicted == pytest.approx(with_mean.expected[iv.name][inside].sum())
    assert not any("a median" in n for n in s2.notes)
    # a Feature or JSON text of the same polygon selects the same cells; no city = searched everywhere
    feature = {"type": "Feature", "properties": {}, "geometry": poly}
    import json

    assert cells_in_polygon(ws, json.dumps(feature)) == s.cell_ids


def test_selection_by_cell_ids(ctx):
    ws = ctx.workspace
    city = ws.cities[0]
    ids = list(ws.city_cells(city)["cell_id"].iloc[[0, 1, 9, 9]])  # a duplicate is counted once
    s = area_from_cells(ctx, ids)
    assert s.cell_ids == ids[:3] and s.selection == "cells"
    pop = ws.cells.set_index("cell_id").loc[ids[:3], "population"].sum()
    assert {iv.name: iv.observed for iv in s.indicators}["population"] == pytest.approx(pop)
    assert s.window == (2, 2)  # rows 0-1, cols 0-1 of the grid


@pytest.mark.parametrize("geojson, message", [
    ({"type": "Polygon", "coordinates": []}, "empty"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [2, 2], [0, 0]]]}, "empty"),
    ("{not json", "not valid JSON"),
    ({"coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}, "'type'"),
    ([1, 2, 3], "'type'"),
    ({"type": "Point", "coordinates": [0, 0]}, "Polygon or MultiPolygon"),
    ({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, "Polygon or MultiPolygon"),
    ({"type": "Polygon"}, "no 'coordinates'"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1]]]}, "malformed"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [2, 2], [2, 0], [0, 2], [0, 0]]]}, "invalid"),
    ({"type": "Polygon", "coordinates": [[[10, 200], [11, 200], [11, 201], [10, 200]]]}, "longitude, latitude"),
    ({"type": "FeatureCollection", "features": []}, "exactly one polygon"),
    ({"type": "Feature", "properties": {}}, "no geometry"),
])
def test_bad_geojson_is_a_clear_user_error(ctx, geojson, message):
    with pytest.raises(UserError, match=message):
        area_from_polygon(ctx, geojson)


def test_polygon_outside_the_city_or_between_centres(ctx):
    ws = ctx.workspace
    city = ws.cities[0]
    with pytest.raises(UserError, match="outside city"):
        area_from_polygon(ctx, mapping(box(1, 1, 2, 2)), city)
    # another city's polygon, asked for in this city
    with pytest.raises(UserError, match="outside city"):
        area_from_polygon(ctx, _city_polygon(ws, ws.cities[1], (0.2, 0.8), (0.2, 0.8)), city)
    # a sliver inside one cell that misses its centre
    cell = ws.city_cells(city).iloc[10]
    x0, y0, x1, y1 = cell.geometry.bounds
    sliver = mapping(box(x0 + 0.01 * (x1 - x0), y0 + 0.01 * (y1 - y0), x0 + 0.2 * (x1 - x0), y0 + 0.2 * (y1 - y0)))
    with pytest.raises(UserError, match="contains no cell centre"):
        area_from_polygon(ctx, sliver, city)


def test_bad_cell_lists(ctx):
    ws = ctx.workspace
    a, b = ws.cities[0], ws.cities[1]
    with pytest.raises(UserError, match="not in workspace"):
        area_from_cells(ctx, ["Atlantis/r000_c000"])
    with pytest.raises(UserError, match="no cells"):
        area_from_cells(ctx, [])
    with pytest.raises(UserError, match="several cities"):
        area_from_cells(ctx, [ws.city_cells(a)["cell_id"].iloc[0], ws.city_cells(b)["cell_id"].iloc[0]])
    with pytest.raises(UserError, match="not in the selected city"):
        area_from_cells(ctx, [ws.city_cells(a)["cell_id"].iloc[0]], city=b)


def test_similar_areas_are_other_city_windows_best_first_without_overlap(ctx):
    ws = ctx.workspace
    city = ws.cities[2]
    sub = ws.city_cells(city)
    ids = list(sub[(sub["row"].between(2, 3)) & (sub["col"].between(1, 3))]["cell_id"])
    s = area_from_cells(ctx, ids, k=4)
    assert s.window == (2, 3) and len(s.similar) == 4
    scores = [m.score for m in s.similar]
    assert scores == sorted(scores, reverse=True) and all(-1 <= x <= 1 for x in scores)
    seen: dict[str, set] = {}
    for m in s.similar:
        assert m.city != city and len(m.cell_ids) == 6 and m.centre in m.cell_ids and m.anchor in m.cell_ids
        cells = set(m.cell_ids)
        assert not (cells & seen.get(m.city, set())), "windows of one city do not overlap"
        seen.setdefault(m.city, set()).update(cells)
        assert m.observed["population"] == pytest.approx(ws.cells.set_index("cell_id").loc[m.cell_ids, "population"].sum())
    one = area_from_cells(ctx, ids[:1], k=2)
    assert one.window == (1, 1) and all(len(m.cell_ids) == 1 for m in one.similar)


def test_grid_windows_equal_brute_force_means():
    rng = np.random.default_rng(1)
    rows, cols = np.meshgrid(np.arange(4), np.arange(5), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    keep = np.ones(len(rows), bool)
    keep[[3, 7]] = False  # two cells without an embedding
    vecs = rng.normal(size=(len(rows), 6))
    anchors, means = grid_windows(rows[keep], cols[keep], vecs[keep], 2, 3)
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    assert len(anchors) == (4 - 1) * (5 - 2)
    for (r0, c0), m in zip(anchors, means):
        inside = keep & (rows >= r0) & (rows < r0 + 2) & (cols >= c0) & (cols < c0 + 3)
        assert np.allclose(m, unit[inside].mean(axis=0), atol=1e-5)
    assert len(grid_windows(rows, cols, vecs, 10, 10)[0]) == 1  # clipped to the grid


def test_combined_description_counts_sentences_per_cell(ctx):
    ws = ctx.workspace
    ids = list(ws.city_cells(ws.cities[0])["cell_id"].iloc[:12])
    phrases, note = combined_description(ctx, ids, top=3)
    assert "not grounding-checked" in note  # the pixel context has no model
    counts: dict[str, int] = {}
    for c in ids:
        for s in set(split_sentences(ws.cell(c)["text_raw"])):
            counts[s] = counts.get(s, 0) + 1
    assert phrases[0].cells == max(counts.values()) and phrases[0].grounding is None
    assert [p.cells for p in phrases] == sorted([p.cells for p in phrases], reverse=True)


def test_combined_description_keeps_grounded_sentences_with_a_model(tiny_workspace_path, tmp_path):
    from app_helpers import tiny_checkpoint

    from urbanclip.model.checkpoint import load_model
    from urbanclip.services.context import AppContext
    from urbanclip.text.faithfulness import image_embeddings

    ws = Workspace.load(tiny_workspace_path)
    model = load_model(tiny_checkpoint(ws, tmp_path / "m.pt"))
    table = image_embeddings(model, ws)
    ctx = AppContext(workspace=ws, model=model, encoder_key="urbanclip-tiny", cell_ids=table.cell_ids,
                     vectors=table.vectors)
    ids = list(ws.city_cells(ws.cities[0])["cell_id"].iloc[:16])
    phrases, note = combined_description(ctx, ids, top=4)
    assert "grounded" in note and phrases
    assert all(p.grounding is not None and 0.5 <= p.grounding <= 1 and 1 <= p.cells <= 16 for p in phrases)


def test_draw_tool_is_vendored_in_the_map_component():
    """Leaflet.draw ships inside the map component's folder (assets/map/vendor), loaded by relative path."""
    from urbanclip.services.mapview import COMPONENT_DIR

    html = (COMPONENT_DIR / "index.html").read_text()
    assert 'src="vendor/leaflet-draw/leaflet.draw.js"' in html and "cdnjs" not in html
    css = (COMPONENT_DIR / "vendor" / "leaflet-draw" / "leaflet.draw.css").read_text()
    assert "url('images/" not in css and "data:image/png;base64," in css
    assert "leaflet-draw" in (COMPONENT_DIR / "vendor" / "NOTICE.md").read_text()
    js = (COMPONENT_DIR / "urbanmap.js").read_text()
    assert "L.Control.Draw" in js and 'kind: "draw"' in js


def test_map_page_area_panel(tiny_workspace_path, monkeypatch):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    import urbanclip.ui as shared

    monkeypatch.setenv("URBANCLIP_WORKSPACE", str(tiny_workspace_path))
    monkeypatch.delenv("URBANCLIP_MODEL", raising=False)
    ws = Workspace.load(tiny_workspace_path)
    ctx = pixel_context(ws)
    monkeypatch.setattr(shared, "load_context", lambda root, progress=None: ctx)
    st.cache_resource.clear()
    city = ws.cities[0]
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    at.session_state["city"] = city
    at.session_state["area"] = {"kind": "polygon", "city": city,
                                "geometry": _city_polygon(ws, city, (0.0, 0.5), (0.5, 1.0))}
    at.run()
    assert not at.exception
    text = "\n".join(str(e.value) for e in list(at.markdown) + list(at.caption) + list(at.warning))
    assert "cells whose centre is inside the polygon" in text
    assert "Population (sum)" in at.table[0].value.index
    assert "Most similar areas in other cities" in text and "similarity" in text
    go = [b for b in at.button if b.label.startswith("Go to ")]
    assert go
    # picking cells replaces the polygon; a bad polygon is a warning, not a crash
    at.session_state["area"] = {"kind": "polygon", "city": city, "geometry": {"type": "Point", "coordinates": [0, 0]}}
    at.run()
    assert not at.exception and any("Polygon or MultiPolygon" in str(w.value) for w in at.warning)
    st.cache_resource.clear()
