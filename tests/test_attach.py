"""`attach`: indicators from rasters (any CRS, pixels larger or smaller than cells) and tables (by id or location)."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import Point, box

from urbanclip.cli import main
from urbanclip.data.attach import attach_raster, attach_table
from urbanclip.data.grid import square_grid
from urbanclip.data.workspace import Manifest, Workspace, WorkspaceBuilder
from urbanclip.data.zonal import zonal_raster
from urbanclip.errors import UserError

WEST, NORTH = 116.30, 39.95


@pytest.fixture
def ws(tmp_path) -> Workspace:
    """4 x 5 cells of 500 m and no indicators: what `import geotiff` / `import xyz` make."""
    grid = square_grid("T", WEST, NORTH, 4, 5, 500.0)
    with WorkspaceBuilder(tmp_path / "ws") as b:
        return b.finish(grid, Manifest(name="t", indicators={}, source="test"))


def _raster(path, arr, crs, transform, nodata=None):
    with rasterio.open(path, "w", driver="GTiff", height=arr.shape[0], width=arr.shape[1], count=1, dtype=arr.dtype,
                       crs=crs, transform=transform, nodata=nodata) as d:
        d.write(arr[None])
    return path


def _utm(ws):
    return ws.cells.estimate_utm_crs()


def test_worldpop_style_raster_in_degrees_with_pixels_larger_than_cells(ws, tmp_path):
    """0.01 deg pixels (~0.85 x 1.1 km) over 500 m cells: each cell gets its area share of the pixels it overlaps."""
    pix = 0.01
    arr = np.full((6, 6), 1000.0, np.float32)  # 1000 persons per pixel everywhere
    path = _raster(tmp_path / "wp.tif", arr, "EPSG:4326", from_origin(WEST - 0.01, NORTH + 0.01, pix, pix), nodata=-99999)
    rep = attach_raster(ws, "population", path)
    ws = Workspace.load(ws.root)
    cell_area = ws.cells.to_crs(_utm(ws)).area.to_numpy()
    # the pixel's true area at this latitude (a 0.01 deg square)
    px_area = gpd.GeoSeries([box(WEST, NORTH - pix, WEST + pix, NORTH)], crs=4326).to_crs(_utm(ws)).area.iloc[0]
    assert np.allclose(ws.cells["population"], 1000 * cell_area / px_area, rtol=0.01)
    spec = ws.manifest.indicators["population"]
    assert (spec.aggregation, spec.unit) == ("sum", "persons")
    assert "area-weighted sum" in ws.manifest.provenance["population"]
    assert ws.manifest.extra["attached"]["population"]["kind"] == "raster"
    assert "20 of 20 cells have a value" in rep.summary()


def test_raster_sum_conserves_totals_and_mean_averages_with_nodata_unknown(ws, tmp_path):
    utm = _utm(ws)
    minx, miny, maxx, maxy = ws.cells.to_crs(utm).total_bounds
    arr = np.arange(40 * 40, dtype=np.float32).reshape(40, 40) % 7  # 100 m pixels
    arr[:, :3] = -1  # nodata along the west
    path = _raster(tmp_path / "u.tif", arr, utm, from_origin(minx - 200, maxy + 200, 100, 100), nodata=-1)
    values, coverage = zonal_raster(path, ws.cells.geometry, "sum")
    # every valid pixel wholly inside the grid's footprint is counted exactly once
    inner = arr[2:2 + int((maxy - miny) // 100), 2:2 + int((maxx - minx) // 100)]
    assert values.sum() == pytest.approx(inner[inner >= 0].sum(), rel=2e-3)
    assert coverage.min() < 1 and coverage.max() == pytest.approx(1, abs=1e-6)
    means, _ = zonal_raster(path, ws.cells.geometry, "mean")
    assert np.nanmin(means) >= 0 and np.nanmax(means) <= 6


def test_raster_that_misses_the_cells_or_is_negative_is_refused(ws, tmp_path):
    far = _raster(tmp_path / "far.tif", np.ones((5, 5), np.float32), "EPSG:4326", from_origin(10, 50, 0.01, 0.01))
    with pytest.raises(UserError, match="far.tif: the raster does not overlap the cells"):
        attach_raster(ws, "population", far)
    neg = np.ones((6, 6), np.float32)
    neg[2, 3] = -5
    path = _raster(tmp_path / "neg.tif", neg, "EPSG:4326", from_origin(WEST - 0.01, NORTH + 0.01, 0.01, 0.01))
    with pytest.raises(UserError, match=r"neg.tif: band 1 has negative values \(e.g. -5 at row 2, col 3\)"):
        attach_raster(ws, "population", path)
    assert "population" not in Workspace.load(ws.root).manifest.indicators


def test_table_by_cell_id_validates_like_the_release_csv(ws, tmp_path):
    ids = list(ws.cells["cell_id"])
    pd.DataFrame({"cell_id": ids[:10] + ["T/r099_c099"], "gdp_musd": [str(i) for i in range(11)]}).to_csv(
        tmp_path / "g.csv", index=False)
    rep = attach_table(ws, tmp_path / "g.csv", {"gdp_musd": "gdp"}, units={"gdp": "million USD"})
    ws = Workspace.load(ws.root)
    assert list(ws.cells.set_index("cell_id").loc[ids[:10], "gdp"]) == list(range(10))
    assert ws.cells["gdp"].isna().sum() == 10
    assert ("T/r099_c099", "cell_id is not a cell of this workspace") in rep.skipped
    assert ws.manifest.indicators["gdp"].unit == "million USD"
    bad = pd.DataFrame({"cell_id": ids[:3], "v": ["1", "x", "2"]})
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(UserError, match=r"bad.csv, line 3, column 'v': not a number \(empty or NaN\) \(value 'x'\)"):
        attach_table(ws, tmp_path / "bad.csv", {"v": "carbon"})
    pd.DataFrame({"cell_id": [ids[0], ids[0]], "v": ["1", "2"]}).to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(UserError, match=r"dup.csv, line 3, column 'cell_id': duplicate cell id"):
        attach_table(ws, tmp_path / "dup.csv", {"v": "carbon"})
    with pytest.raises(UserError, match="already has indicator 'gdp'; pass --replace"):
        attach_table(ws, tmp_path / "g.csv", {"gdp_musd": "gdp"})


def test_polygons_are_split_by_area_and_points_counted_per_cell(ws, tmp_path):
    utm = _utm(ws)
    minx, miny, maxx, maxy = ws.cells.to_crs(utm).total_bounds
    mid = (minx + maxx) / 2
    districts = gpd.GeoDataFrame({"pop": [10000.0, 30000.0], "density": [10.0, 30.0]},
                                 geometry=[box(minx - 50, miny - 50, mid, maxy + 50), box(mid, miny - 50, maxx + 50, maxy + 50)],
                                 crs=utm).to_crs(4326)
    districts.to_file(tmp_path / "d.geojson", driver="GeoJSON")
    attach_table(ws, tmp_path / "d.geojson", {"pop": "population"})
    got = Workspace.load(ws.root).cells
    inside = 10000 * (mid - minx) / (mid - minx + 50) + 30000 * (maxx - mid) / (maxx - mid + 50)
    share_y = (maxy - miny) / (maxy - miny + 100)
    assert got["population"].sum() == pytest.approx(inside * share_y, rel=1e-3)  # area outside the grid stays outside
    ws2 = Workspace.load(ws.root)
    attach_table(ws2, tmp_path / "d.geojson", {"density": "crowding"}, aggregation="mean")
    dens = Workspace.load(ws.root).cells["crowding"]
    assert dens.min() == pytest.approx(10) and dens.max() == pytest.approx(30)  # straddling cells lie between
    pts = gpd.GeoDataFrame({"shops": [1.0, 2.0, 4.0]}, crs=4326,
                           geometry=[Point(ws2.cells["lon"].iloc[0], ws2.cells["lat"].iloc[0])] * 2
                           + [Point(ws2.cells["lon"].iloc[5], ws2.cells["lat"].iloc[5])])
    pts.to_file(tmp_path / "p.gpkg", driver="GPKG")
    attach_table(Workspace.load(ws.root), tmp_path / "p.gpkg", {"shops": "shops"})
    shops = Workspace.load(ws.root).cells["shops"]
    assert shops.iloc[0] == 3 and shops.iloc[5] == 4 and shops.isna().sum() == len(shops) - 2


def test_capped_values_are_flagged_per_cell_and_recorded(tmp_path):
    grid = square_grid("T", WEST, NORTH, 10, 10, 500.0)
    with WorkspaceBuilder(tmp_path / "ws") as b:
        ws = b.finish(grid, Manifest(name="t", indicators={}, source="test"))
    vals = np.linspace(1, 500, 100)
    vals[::3] = 10000.0  # 34 cells hold one exact value
    pd.DataFrame({"cell_id": ws.cells["cell_id"], "gdp": vals}).to_csv(tmp_path / "g.csv", index=False)
    rep = attach_table(ws, tmp_path / "g.csv", {"gdp": "gdp"})
    ws = Workspace.load(ws.root)
    flagged = ws.cells["flags"].str.contains("suspect_value:gdp")
    assert flagged.sum() == 34 and (ws.cells.loc[flagged, "gdp"] == 10000).all()
    info = ws.suspect_values()["gdp"]
    assert info["value"] == 10000 and info["cells"] == 34
    assert any("probably a cap or fill value" in n for n in rep.notes)


def test_cli_attach_raster_and_table(ws, tmp_path, capsys):
    path = _raster(tmp_path / "wp.tif", np.full((6, 6), 5.0, np.float32), "EPSG:4326",
                   from_origin(WEST - 0.01, NORTH + 0.01, 0.01, 0.01))
    assert main(["attach", "raster", str(path), "-w", str(ws.root), "--name", "carbon", "--aggregation", "mean"]) == 0
    assert "indicator carbon" in capsys.readouterr().out
    assert np.allclose(Workspace.load(ws.root).cells["carbon"], 5)
    assert main(["attach", "raster", str(path), "-w", str(ws.root), "--name", "carbon"]) == 2
    assert "--replace" in capsys.readouterr().err
    assert main(["attach", "raster", str(tmp_path / "nope.tif"), "-w", str(ws.root), "--name", "x"]) == 2
    assert "nope.tif not found" in capsys.readouterr().err
    pd.DataFrame({"id": ws.cells["cell_id"], "v": 1.0}).to_csv(tmp_path / "t.csv", index=False)
    assert main(["attach", "table", str(tmp_path / "t.csv"), "-w", str(ws.root), "--column", "v=trees",
                 "--id-column", "id"]) == 0
    m = json.loads((ws.root / "manifest.json").read_text())
    assert m["extra"]["attached"]["trees"]["by"] == "id" and "trees" in m["indicators"]
    assert main(["attach", "table", str(tmp_path / "t.csv"), "-w", str(ws.root), "--column", "v=split"]) == 2
    assert "already uses for something else" in capsys.readouterr().err


def test_real_release_gdp_cap_is_flagged(release_dir, tmp_path):
    from urbanclip.data.importers.release import import_release

    ws, report = import_release(release_dir, tmp_path / "w", cities=["Beijing"])
    info = ws.suspect_values()["gdp"]
    assert info["value"] == 10000.0 and info["cells"] == 940
    assert ws.cells["flags"].str.contains("suspect_value:gdp").sum() == 940
    assert "population" not in ws.suspect_values() and "carbon" not in ws.suspect_values()


def test_a_coarse_mean_raster_repeats_values_without_being_called_capped(tmp_path):
    grid = square_grid("T", WEST, NORTH, 10, 10, 250.0)  # 250 m cells under 0.02 deg (~2 km) pixels
    with WorkspaceBuilder(tmp_path / "ws") as b:
        ws = b.finish(grid, Manifest(name="t", indicators={}, source="test"))
    arr = np.arange(9, dtype=np.float32).reshape(3, 3) + 1
    path = _raster(tmp_path / "dens.tif", arr, "EPSG:4326", from_origin(WEST - 0.01, NORTH + 0.01, 0.02, 0.02))
    rep = attach_raster(ws, "density", path, aggregation="mean")
    ws = Workspace.load(ws.root)
    assert ws.cells["density"].value_counts().iloc[0] >= 20  # many cells share one pixel's value
    assert "density" not in ws.suspect_values() and not ws.cells["flags"].str.contains("suspect").any()
    assert any("larger than the cells" in n for n in rep.notes)
