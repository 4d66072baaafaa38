"""Cell profile: indicators with units, source description, look-alikes in other cities, fast."""

from __future__ import annotations

import math

import pytest
from app_helpers import pixel_context, tiny_workspace

from urbanclip.errors import UserError
from urbanclip.services.context import AppContext
from urbanclip.services.profile import format_value, profile_cell


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return tiny_workspace(tmp_path_factory.mktemp("pf") / "ws")


def test_profile_without_model_shows_observed_and_says_why(ws):
    ctx = AppContext(workspace=ws)
    cid = ws.cells["cell_id"].iloc[7]
    p = profile_cell(ctx, cid)
    assert p.generated is None and "No model loaded" in p.generated_note
    assert p.image_path is not None and p.image_path.is_file()
    assert p.source_description and p.source_column == "text_raw"
    units = {iv.name: iv.unit for iv in p.indicators}
    assert units["population"] == "persons" and units["carbon"] == "ton CO2"
    assert all(iv.predicted is None for iv in p.indicators)
    pop = next(iv for iv in p.indicators if iv.name == "population")
    assert pop.observed == pytest.approx(float(ws.cell(cid)["population"]))
    assert p.similar == [] and "trained model" in p.similar_note


def test_similar_cells_come_from_other_cities_ranked(ws):
    ctx = pixel_context(ws)
    cid = ws.cells["cell_id"].iloc[3]
    p = profile_cell(ctx, cid, k=4)
    assert len(p.similar) == 4
    assert all(s.city != p.city for s in p.similar)
    assert [s.score for s in p.similar] == sorted((s.score for s in p.similar), reverse=True)
    if "demo_landuse" in ws.cells:  # pixel colour follows land use, so the best match shares it
        assert ws.cell(p.similar[0].cell_id)["demo_landuse"] == ws.cell(cid)["demo_landuse"]
    assert p.timings_ms["total"] < 300


def test_unknown_cell_is_a_user_error(ws):
    with pytest.raises(UserError, match="not in workspace"):
        profile_cell(AppContext(workspace=ws), "Nowhere/r9_c9")


def test_format_value_reads_as_a_planner_says_it():
    assert format_value(None, "persons") == "—"
    assert format_value(math.nan, "persons") == "—"
    assert format_value(12345.4, "persons") == "12,345 persons"
    assert format_value(1, "persons") == "1 person"
    assert format_value(2.5e6, "ton CO2") == "2.5 million ton CO2"
    assert format_value(2860, "million yuan") == "2.86 billion yuan"  # never '2.86 M million yuan'
    assert format_value(0.05, "million yuan") == "50,000 yuan"
    assert format_value(3.14159, "") == "3.14"
    assert format_value(0, "persons") == "0 persons"
    assert format_value(2860, "million yuan", with_unit=False) == "2.86 billion"


def test_similarity_basis_says_what_look_alikes_compare():
    from types import SimpleNamespace

    from urbanclip.services.profile import similarity_basis

    assert "what the captioner reads" in similarity_basis(SimpleNamespace(index=SimpleNamespace(reading_offset=[0.5])))
    plain = similarity_basis(SimpleNamespace(index=SimpleNamespace(reading_offset=None)))
    assert "image embeddings" in plain and "captioner" not in plain
    assert similarity_basis(SimpleNamespace(index=None)) == ""
