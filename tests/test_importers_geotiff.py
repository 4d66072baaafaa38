"""GeoTIFF importer: small mosaics and indicator rasters written with rasterio (UTM and web mercator)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin

from urbanclip.errors import UserError
from urbanclip.data.importers.geotiff import import_geotiff

LON, LAT = 116.4, 39.9


def _write(path, arr, crs, transform, nodata=None):
    arr = arr if arr.ndim == 3 else arr[None]
    with rasterio.open(path, "w", driver="GTiff", height=arr.shape[1], width=arr.shape[2], count=arr.shape[0],
                       dtype=arr.dtype, crs=crs, transform=transform, nodata=nodata) as d:
        d.write(arr)
    return path


def _origin(epsg: int) -> tuple[float, float]:
    x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(LON, LAT)
    return round(x, -1), round(y, -1)


@pytest.fixture
def utm_mosaic(tmp_path):
    """3.2 x 2.5 km at 10 m/px in UTM 50N; red encodes the column, green the row."""
    x0, y0 = _origin(32650)
    rgb = np.zeros((3, 250, 320), np.uint8)
    rgb[0] = (np.arange(320) // 100 * 80)[None, :]
    rgb[1] = (np.arange(250) // 100 * 80)[:, None]
    rgb[2] = 200
    return _write(tmp_path / "utm.tif", rgb, "EPSG:32650", from_origin(x0, y0, 10, 10)), (x0, y0)


def test_utm_mosaic_cells_images_and_population_sum(utm_mosaic, tmp_path):
    path, (x0, y0) = utm_mosaic
    pop = np.full((25, 32), 50.0, np.float32)  # 100 m pixels of 50 people -> 5000 per km2 cell
    pop[0, 0] = -9999  # nodata: unknown, not negative
    pop_path = _write(tmp_path / "pop.tif", pop, "EPSG:32650", from_origin(x0, y0, 100, 100), nodata=-9999)
    ws, report = import_geotiff(path, tmp_path / "w", 1000, "Testcity", indicator_rasters={"population": pop_path},
                                tile_px=32)
    assert len(ws.cells) == 6 and report.images == 6  # 3 x 2 whole km cells
    assert ws.manifest.cities["Testcity"].n_rows == 2 and ws.manifest.cities["Testcity"].n_cols == 3
    by_rc = ws.cells.set_index(["row", "col"])
    assert by_rc.loc[(0, 1), "population"] == pytest.approx(5000, rel=1e-3)
    assert by_rc.loc[(0, 0), "population"] == pytest.approx(4950, rel=1e-3)  # one nodata pixel left out
    # image of cell (row 1, col 2) comes from the matching part of the mosaic
    img = np.asarray(ws.load_image(by_rc.loc[(1, 2), "cell_id"]))
    assert img.shape == (32, 32, 3)
    assert img[..., 2].mean() == pytest.approx(200, abs=1)
    assert img[16, 16, 0] == 160 and img[16, 16, 1] == 80
    assert ws.cells["flags"].eq("missing_text").all()
    assert "sum" in ws.manifest.provenance["population"]
    # cell squares are cell_size on the ground
    areas = ws.cells.to_crs(32650).area
    assert np.allclose(areas, 1e6, rtol=1e-3)


def test_web_mercator_mosaic_with_density_and_count_rasters(tmp_path):
    x0, y0 = _origin(3857)
    rgb = (np.random.default_rng(0).random((3, 300, 400)) * 255).astype(np.uint8)
    path = _write(tmp_path / "merc.tif", rgb, "EPSG:3857", from_origin(x0, y0, 13, 13))
    grid = np.full((32, 42), 10.0, np.float32)  # 130 mercator-metre pixels of 10 units each
    ind = _write(tmp_path / "ind.tif", grid, "EPSG:3857", from_origin(x0 - 130, y0 + 130, 130, 130), nodata=-1)
    ws, report = import_geotiff(path, tmp_path / "w", 1000, "Merc", indicator_rasters={"population": ind, "carbon": ind},
                                aggregations={"carbon": "mean"}, tile_px=16)
    assert len(ws.cells) == 6  # 3 x 2 whole km cells inside a 3.99 x 2.99 km mosaic
    assert np.allclose(ws.cells["carbon"], 10.0)  # mean of a constant
    # count -> density per true m2 (mercator pixels shrink by cos^2(lat)) x cell area
    density = 10 / (130 ** 2 * math.cos(math.radians(LAT)) ** 2)
    assert np.allclose(ws.cells["population"], density * 1e6, rtol=0.01)
    assert ws.manifest.indicators["carbon"].aggregation == "mean"


def test_uint16_imagery_is_stretched(tmp_path):
    x0, y0 = _origin(32650)
    rgb = np.tile(np.linspace(0, 4000, 120, dtype=np.uint16)[None, None, :], (3, 120, 1))
    path = _write(tmp_path / "u16.tif", rgb, "EPSG:32650", from_origin(x0, y0, 10, 10))
    ws, _ = import_geotiff(path, tmp_path / "w", 1000, "C", tile_px=16)
    img = np.asarray(ws.load_image(ws.cells["cell_id"].iloc[0]))
    row = img[8, :, 0].astype(int)
    assert row[0] <= 5 and np.all(np.diff(row) > 0)  # one 2-98 % stretch over the whole mosaic, not clipped
    assert 195 <= row[-1] <= 225  # the cell ends at 1000 m of 1200: raw ~3300 of 0..4000


def test_nodata_cells_are_skipped_and_reported(tmp_path):
    x0, y0 = _origin(32650)
    rgb = np.full((3, 200, 300), 100, np.uint8)
    rgb[:, :, 200:] = 0  # the eastern km is nodata
    path = _write(tmp_path / "nd.tif", rgb, "EPSG:32650", from_origin(x0, y0, 10, 10), nodata=0)
    ws, report = import_geotiff(path, tmp_path / "w", 1000, "C", tile_px=16)
    assert len(ws.cells) == 4
    assert sum("nodata" in r for _, r in report.skipped) == 2


def test_two_band_mosaic_is_refused(tmp_path):
    x0, y0 = _origin(32650)
    path = _write(tmp_path / "two.tif", np.zeros((2, 120, 120), np.uint8), "EPSG:32650", from_origin(x0, y0, 10, 10))
    with pytest.raises(UserError, match=r"two.tif: has 2 band\(s\)"):
        import_geotiff(path, tmp_path / "w", 1000, "C")
    assert not (tmp_path / "w").exists()


def test_mosaic_without_crs_is_refused(tmp_path):
    path = tmp_path / "nocrs.tif"
    with rasterio.open(path, "w", driver="GTiff", height=50, width=50, count=3, dtype="uint8",
                       transform=from_origin(0, 50, 1, 1)) as d:
        d.write(np.zeros((3, 50, 50), np.uint8))
    with pytest.raises(UserError, match="nocrs.tif: has no CRS"):
        import_geotiff(path, tmp_path / "w", 10, "C")


def test_corrupt_file_and_too_small_mosaic(tmp_path, utm_mosaic):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00garbage")
    with pytest.raises(UserError, match="bad.tif cannot be read as a raster"):
        import_geotiff(bad, tmp_path / "w", 1000, "C")
    with pytest.raises(UserError, match="smaller than one 5000 m cell"):
        import_geotiff(utm_mosaic[0], tmp_path / "w", 5000, "C")


def test_negative_indicator_raster_is_refused(utm_mosaic, tmp_path):
    path, (x0, y0) = utm_mosaic
    pop = np.full((25, 32), 5.0, np.float32)
    pop[3, 4] = -2
    ind = _write(tmp_path / "neg.tif", pop, "EPSG:32650", from_origin(x0, y0, 100, 100))
    with pytest.raises(UserError, match=r"neg.tif: band 1 has negative values \(e.g. -2 at row 3, col 4\)"):
        import_geotiff(path, tmp_path / "w", 1000, "C", indicator_rasters={"population": ind})
    assert not (tmp_path / "w").exists()


def test_cli_import_geotiff(utm_mosaic, tmp_path, capsys):
    from urbanclip.cli import main

    path, (x0, y0) = utm_mosaic
    ind = _write(tmp_path / "pop.tif", np.full((25, 32), 1.0, np.float32), "EPSG:32650", from_origin(x0, y0, 100, 100))
    out = tmp_path / "w"
    assert main(["import", "geotiff", str(path), "--out", str(out), "--city", "T", "--tile-px", "16",
                 "--indicator", f"population={ind}:mean"]) == 0
    text = capsys.readouterr().out
    assert "6 cells, 6 images" in text and "population" in text
    assert main(["import", "geotiff", str(path), "--out", str(out), "--city", "T"]) == 2  # exists, no --overwrite
    assert "--overwrite" in capsys.readouterr().err
