"""Search box: each accepted form dispatches to the right lookup; unknown input lists the forms."""

from __future__ import annotations

import numpy as np
import pytest
from app_helpers import pixel_context, tiny_workspace

from urbanclip.services.context import AppContext
from urbanclip.services.lookup import search


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> AppContext:
    return pixel_context(tiny_workspace(tmp_path_factory.mktemp("lk") / "ws"))


def test_cell_id_and_city(ctx):
    cid = ctx.workspace.cells["cell_id"].iloc[40]
    r = search(ctx, f"  {cid} ")
    assert (r.kind, r.cell_id, r.city) == ("cell", cid, ctx.workspace.cell(cid)["city"])
    city = ctx.workspace.cities[1]
    r = search(ctx, city.upper())
    assert r.kind == "city" and r.city == city and r.center is not None


def test_coordinates_find_the_containing_cell(ctx):
    cell = ctx.workspace.cells.iloc[10]
    r = search(ctx, f"{cell['lat']:.6f}, {cell['lon']:.6f}")
    assert r.kind == "latlon" and r.cell_id == cell["cell_id"]
    r = search(ctx, "(0.0 0.0)")
    assert r.kind == "error" and "No cell contains" in r.message and "lat" in r.message
    assert search(ctx, "95, 10").kind == "error"


def test_place_names_from_the_manifest(ctx, monkeypatch):
    cell = ctx.workspace.cells.iloc[7]
    monkeypatch.setitem(ctx.workspace.manifest.extra, "places", {"Old Harbour": [float(cell["lat"]), float(cell["lon"])]})
    r = search(ctx, "old harbour")
    assert r.kind == "place" and "old harbour" in r.message.lower()
    assert r.cell_id == cell["cell_id"]


def test_free_text_ranks_matching_descriptions(ctx):
    r = search(ctx, "industrial warehouses")
    assert r.kind == "text" and r.method == "keyword"  # no model loaded in this context
    assert len(r.ranked) == 10 and r.scores.shape == (len(ctx.workspace.cells),)
    top = ctx.workspace.cell(r.ranked[0].cell_id)
    assert "warehouse" in top["text_raw"].lower() or "industrial" in top["text_raw"].lower()
    assert all(a.score >= b.score for a, b in zip(r.ranked, r.ranked[1:]))
    only = search(ctx, "industrial warehouses")  # deterministic
    assert [h.cell_id for h in only.ranked] == [h.cell_id for h in r.ranked]
    assert np.isfinite(r.scores).all()


@pytest.mark.parametrize("query", ["", "12345", "?!", "qqqq zzzz"])
def test_unknown_input_lists_accepted_forms(ctx, query):
    r = search(ctx, query)
    assert r.kind == "error"
    assert ("cell id" in r.message and "lat, lon" in r.message) or "No description mentions" in r.message
