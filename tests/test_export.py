"""Exports: cells round-trip through geopandas in every format; reports as Markdown/CSV; clear errors."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from app_helpers import pixel_context

from urbanclip.data.workspace import Workspace
from urbanclip.errors import UserError
from urbanclip.services.export import (
    FORMATS,
    cells_frame,
    export_cells,
    export_report,
    file_name,
    format_from_path,
    write_cells,
)


@pytest.fixture(scope="module")
def ctx(tiny_workspace_path):
    """Pixel embeddings plus made-up predictions and intervals (the export only copies them)."""
    ctx = pixel_context(Workspace.load(tiny_workspace_path))
    cells = ctx.workspace.cells
    for k in ctx.workspace.indicator_names:
        obs = cells[k].to_numpy(dtype=float)
        ctx.predictions[k] = obs * 1.1 + 1.0
        ctx.intervals[k] = (obs * 0.5, obs * 2.0 + 2.0)
        if k != "carbon":  # carbon: heads saved before expected values existed
            ctx.expected[k] = obs * 1.3 + 1.0
    ctx.predictions["gdp"][3] = np.nan  # a cell without a prediction stays empty, not 0
    ctx.interval_level = 0.8
    return ctx


def _read(path, fmt):
    if fmt == "geoparquet":
        return gpd.read_parquet(path)
    if fmt == "csv":
        return gpd.read_file(path, AUTODETECT_TYPE="YES").set_crs(4326)  # lon/lat WKT; a CSV cannot say so
    return gpd.read_file(path)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_city_round_trips_through_geopandas(ctx, tmp_path, fmt):
    ws = ctx.workspace
    city = ws.cities[1]
    path = write_cells(ctx, tmp_path / file_name(ctx, fmt, city), city=city)
    back = _read(path, fmt)
    want = cells_frame(ctx, city=city)
    assert list(back["cell_id"]) == list(ws.city_cells(city)["cell_id"])
    for col in ("population_observed", "population_predicted", "gdp_predicted", "carbon_lower", "carbon_upper",
                "population_expected", "carbon_expected", "lat", "interval_level"):
        # (a CSV column with no value at all reads back as empty strings, hence to_numeric)
        assert np.allclose(pd.to_numeric(back[col], errors="coerce"), want[col].astype(float), equal_nan=True), col
    assert np.isnan(want["gdp_predicted"]).sum() == (1 if ws.cells["city"].iloc[3] == city else 0)
    assert want["carbon_expected"].isna().all() and want["population_expected"].notna().all()
    assert list(back["description"]) == list(want["description"]) and back["description"].str.len().min() > 0
    assert set(back["split"]) <= {"train", "val", "test"}
    assert back.crs.to_epsg() == 4326
    assert back.geometry.geom_equals_exact(want.geometry.reset_index(drop=True), tolerance=1e-9).all()


def test_selection_and_whole_workspace(ctx):
    ws = ctx.workspace
    ids = list(ws.cells["cell_id"].iloc[[5, 2, 5]])
    sel = cells_frame(ctx, cell_ids=ids)
    assert list(sel["cell_id"]) == [ids[0], ids[1]]  # duplicates dropped, order kept
    assert len(cells_frame(ctx)) == len(ws.cells)
    assert sel.columns[-1] == "geometry" and "population_upper" in sel.columns


def test_without_predictions_the_columns_are_empty(tiny_workspace_path):
    from urbanclip.services.context import AppContext

    frame = cells_frame(AppContext(workspace=Workspace.load(tiny_workspace_path)), city="Riverton")
    assert frame["population_predicted"].isna().all() and frame["interval_level"].isna().all()
    assert frame["population_observed"].notna().any()


def test_bad_inputs_are_clear_errors(ctx, tmp_path):
    with pytest.raises(UserError, match="format 'xlsx' is not supported; choose one of geojson, geoparquet, csv"):
        export_cells(ctx, "xlsx")
    with pytest.raises(UserError, match="no cells selected"):
        export_cells(ctx, "csv", cell_ids=[])
    with pytest.raises(UserError, match="'Nowhere/1' is not in workspace"):
        export_cells(ctx, "csv", cell_ids=["Nowhere/1"])
    other = ctx.workspace.city_cells(ctx.workspace.cities[0])["cell_id"].iloc[0]
    with pytest.raises(UserError, match="is not in city"):
        export_cells(ctx, "csv", city=ctx.workspace.cities[1], cell_ids=[other])
    with pytest.raises(UserError, match="city 'Atlantis' is not in workspace"):
        export_cells(ctx, "geojson", city="Atlantis")
    with pytest.raises(UserError, match="cannot tell the export format"):
        format_from_path(tmp_path / "cells.xlsx")
    with pytest.raises(UserError, match="no report at"):
        export_report(tmp_path, "md")
    with pytest.raises(UserError, match="format 'pdf' is not supported; choose one of md, csv"):
        export_report(tmp_path, "pdf")


def test_cli_exports_cells_and_report(tiny_workspace_copy, tmp_path, capsys):
    from urbanclip.cli import main

    w = str(tiny_workspace_copy)
    out = tmp_path / "city.geojson"
    assert main(["export", "-w", w, "-o", str(out), "--city", "Riverton", "--model", "none"]) == 0
    back = gpd.read_file(out)
    assert len(back) == 64 and "carbon_observed" in back.columns and back.crs.to_epsg() == 4326
    assert main(["export", "-w", w, "-o", str(tmp_path / "two.parquet"), "--cells", "Riverton/r000_c000,Riverton/r000_c001",
                 "--model", "none"]) == 0
    assert list(gpd.read_parquet(tmp_path / "two.parquet")["cell_id"]) == ["Riverton/r000_c000", "Riverton/r000_c001"]
    capsys.readouterr()
    assert main(["export", "-w", w, "-o", str(tmp_path / "x.txt"), "--model", "none"]) == 2
    assert "cannot tell the export format" in capsys.readouterr().err
    assert main(["export", "-w", w, "-o", str(tmp_path / "x.csv"), "--cells", " , ", "--model", "none"]) == 2
    assert "no cells selected" in capsys.readouterr().err

    rep = tmp_path / "rep"
    assert main(["probe", "-w", w, "-e", "pca", "-o", str(rep), "--indicators", "population", "--hidden", "8",
                 "--max-epochs", "20", "--ensemble", "2"]) == 0
    assert main(["export", "--report", str(rep), "-o", str(tmp_path / "table.md")]) == 0
    md = (tmp_path / "table.md").read_text()
    assert md == (rep / "report.md").read_text() and "| PCA (10 components) | spatial block |" in md
    assert main(["export", "--report", str(rep / "report.json"), "-o", str(tmp_path / "table.csv")]) == 0
    assert list(pd.read_csv(tmp_path / "table.csv")["split"]) == ["random", "block"]


def test_map_page_offers_downloads(ctx, tiny_workspace_path, monkeypatch):
    import streamlit as st
    from app_helpers import map_page_with

    at = map_page_with(ctx, tiny_workspace_path, monkeypatch).run()
    assert not at.exception
    assert at.radio(key="export_format").options == list(FORMATS)
    labels = [e.proto.label for e in at.get("download_button")]
    city = at.selectbox(key="city").value
    assert f"{city} (64 cells)" in labels and "Download this cell" not in labels
    at.session_state["selected_cell"] = ctx.workspace.city_cells(city)["cell_id"].iloc[0]
    at.run()
    assert "Download this cell" in [e.proto.label for e in at.get("download_button")]
    st.cache_resource.clear()
