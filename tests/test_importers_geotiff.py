"""GeoTIFF importer: small mosaics and indicator rasters written with rasterio (UTM and web mercator)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin

from urbanclip.data.importers.geotiff import import_geotiff
from urbanclip.errors import UserError

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


# ---------------------------------------------------------------------------------
# real-scene problems (issue 14): untagged fill, band order, per-band stretch, truncated files


def _scene(tmp_path, n_bands=5, fill_cols=None, name="scene.tif"):
    """A 4 x 3 km uint16 'Landsat' crop at 20 m/px, no nodata tag, no colour tags.

    Band b holds noise in its own range (band 1: 7000-8000, band 2: 6000-9000, ...);
    `fill_cols(row) -> n` zero-fills the first n columns of each row (a scene corner).
    """
    x0, y0 = _origin(32650)
    rng = np.random.default_rng(1)
    h, w = 150, 200
    lows = [7000, 6000, 8000, 5000, 3000, 1000, 500][:n_bands]
    data = np.stack([rng.integers(lo, lo + 1000 * (1 + b % 3), (h, w)) for b, lo in enumerate(lows)]).astype(np.uint16)
    if fill_cols is not None:
        for r in range(h):
            data[:, r, :fill_cols(r)] = 0
    return _write(tmp_path / name, data, "EPSG:32650", from_origin(x0, y0, 20, 20))


def _corner(r):  # zero triangle over the north-west: row 0 fills 110 columns (2.2 km), row 109 none
    return max(0, 110 - r)


def test_untagged_zero_fill_is_detected_excluded_from_the_stretch_and_reported(tmp_path):
    path = _scene(tmp_path, fill_cols=_corner)
    ws, report = import_geotiff(path, tmp_path / "w", 1000, "Scene", tile_px=16)
    notes = "\n".join(report.notes)
    assert "no nodata tag; the constant value 0 fills" in notes and "--nodata" in notes
    assert "has 5 bands and no red/green/blue colour tags" in notes and "--bands" in notes
    # cells wholly under the fill are skipped with one grouped reason, not kept black
    too_little = [r for _, r in report.skipped if "is imagery" in r]
    assert len(too_little) >= 2 and len(set(too_little)) == 1
    assert "(r000_c000)" not in report.summary() and "Scene/r000_c000" not in set(ws.cells["cell_id"])
    # partly covered cells are kept, flagged, and carry their valid fraction
    by_id = ws.cells.set_index("cell_id")
    partial = by_id[by_id["flags"].str.contains("partial_imagery")]
    assert len(partial) >= 1
    assert ((partial["valid_fraction"] > 0.95) & (partial["valid_fraction"] < 1)).all()
    whole = by_id[~by_id["flags"].str.contains("partial_imagery")]
    assert (whole["valid_fraction"] == 1.0).all()
    assert "valid_fraction" in ws.manifest.provenance
    assert any("partial imagery" in r for _, r in report.flagged)
    # the stretch ignores the zeros: a land tile spans the range instead of being washed out near white
    img = np.asarray(ws.load_image(by_id.index[-1])).astype(float)
    for c in range(3):
        assert 90 < img[..., c].mean() < 165  # zeros in the stretch put band 1 (7000-8000 of 0..8400) near 230
    stretch = ws.manifest.extra["geotiff"]["stretch"]
    assert stretch["lo"][0] > 6000  # 2nd percentile of band 1 over valid pixels, not 0
    assert ws.manifest.extra["geotiff"]["nodata"] == [0.0, 0.0, 0.0]


def test_nodata_none_keeps_the_fill_and_an_explicit_value_is_used(tmp_path):
    path = _scene(tmp_path, n_bands=3, fill_cols=_corner)
    ws, report = import_geotiff(path, tmp_path / "w", 1000, "S", tile_px=16, nodata=None)
    assert len(ws.cells) == 12 and not report.skipped  # every 1 km cell of 4 x 3 km kept, as asked
    assert "--nodata none" in "\n".join(report.notes)
    assert not any(n.startswith("warning") for n in report.notes)  # 3 bands: no band warning
    ws2, report2 = import_geotiff(path, tmp_path / "w2", 1000, "S", tile_px=16, nodata=0)
    assert "nodata value 0 (--nodata)" in "\n".join(report2.notes)
    assert len(ws2.cells) < 12


def test_bgr_ordered_mosaic_is_read_by_its_colour_tags(tmp_path):
    from rasterio.enums import ColorInterp

    x0, y0 = _origin(32650)
    bgr = np.stack([np.full((100, 100), v, np.uint8) for v in (30, 90, 200)])  # blue, green, red
    path = tmp_path / "bgr.tif"
    with rasterio.open(path, "w", driver="GTiff", height=100, width=100, count=3, dtype="uint8", crs="EPSG:32650",
                       transform=from_origin(x0, y0, 10, 10)) as d:
        d.write(bgr)
        d.colorinterp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red]
    ws, report = import_geotiff(path, tmp_path / "w", 1000, "C", tile_px=16)
    img = np.asarray(ws.load_image(ws.cells["cell_id"].iloc[0]))
    assert tuple(img[8, 8]) == (200, 90, 30)  # a red field stays red
    assert "bands 3,2,1 read as R,G,B (the file's colour-interpretation tags)" in report.notes
    assert ws.manifest.extra["geotiff"]["bands_rgb"] == [3, 2, 1]


def test_bands_option_picks_true_colour_from_a_multiband_scene(tmp_path):
    x0, y0 = _origin(32650)
    data = np.full((5, 100, 100), 1000, np.uint16)
    data[3] = np.linspace(1000, 5000, 100, dtype=np.uint16)[None, :]  # band 4 grows east
    data[1] = np.linspace(1000, 5000, 100, dtype=np.uint16)[:, None]  # band 2 grows south
    path = _write(tmp_path / "ms.tif", data, "EPSG:32650", from_origin(x0, y0, 10, 10))
    ws, report = import_geotiff(path, tmp_path / "w", 1000, "C", tile_px=16, bands=(4, 3, 2))
    img = np.asarray(ws.load_image(ws.cells["cell_id"].iloc[0])).astype(int)
    assert np.all(np.diff(img[8, :, 0]) >= 0) and img[8, -1, 0] > img[8, 0, 0] + 100  # R = band 4
    assert np.all(np.diff(img[:, 8, 2]) >= 0) and img[-1, 8, 2] > img[0, 8, 2] + 100  # B = band 2
    assert not any(n.startswith("warning") for n in report.notes)


def test_each_band_gets_its_own_stretch_so_there_is_no_colour_cast(tmp_path):
    x0, y0 = _origin(32650)
    rng = np.random.default_rng(0)
    data = np.stack([rng.integers(lo, hi, (100, 100)) for lo, hi in ((0, 1000), (1000, 5000), (100, 200))]).astype(np.uint16)
    path = _write(tmp_path / "cast.tif", data, "EPSG:32650", from_origin(x0, y0, 10, 10))
    ws, _ = import_geotiff(path, tmp_path / "w", 1000, "C", tile_px=64)
    img = np.asarray(ws.load_image(ws.cells["cell_id"].iloc[0])).astype(float)
    means = img.reshape(-1, 3).mean(axis=0)
    assert means.max() - means.min() < 15  # a grey-ish average, not a green cast


def test_truncated_geotiff_is_a_user_error(tmp_path, capsys):
    from urbanclip.cli import main

    full = _scene(tmp_path, n_bands=3, name="full.tif")
    cut = tmp_path / "truncated.tif"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(UserError, match=r"truncated.tif: pixels cannot be read.*truncated or corrupt"):
        import_geotiff(cut, tmp_path / "w", 1000, "C", tile_px=16)
    assert main(["import", "geotiff", str(cut), "--out", str(tmp_path / "w"), "--city", "C"]) == 2
    assert "error: " in capsys.readouterr().err
    assert not (tmp_path / "w").exists() and not list(tmp_path.glob(".w.*"))


def test_whole_cells_forgives_floating_point_dust():
    from urbanclip.data.grid import whole_cells

    assert whole_cells(11999.9999999994, 1000) == 12  # a 12 km mosaic measured through a reprojection
    assert whole_cells(12000.0, 1000) == 12
    assert whole_cells(11999.9, 1000) == 11  # a real 10 cm short is short
    assert whole_cells(999.0, 1000) == 0


def test_exactly_12_km_mosaic_gives_12_columns(tmp_path):
    x0, y0 = _origin(32650)
    rgb = np.random.default_rng(0).integers(20, 200, (3, 50, 1200)).astype(np.uint8)
    path = _write(tmp_path / "12k.tif", rgb, "EPSG:32650", from_origin(x0, y0, 10, 10))
    ws, _ = import_geotiff(path, tmp_path / "w", 500, "C", tile_px=8)
    assert ws.manifest.cities["C"].n_cols == 24


def test_too_few_kept_cells_is_an_error_unless_accepted(tmp_path):
    path = _scene(tmp_path, n_bands=3, fill_cols=lambda r: 160)  # only the eastern 0.8 km column strip is imagery
    with pytest.raises(UserError, match=r"only 0 of 12 cells inside the mosaic kept.*--min-kept 0"):
        import_geotiff(path, tmp_path / "w", 1000, "C", tile_px=16)
    path = _scene(tmp_path, n_bands=3, fill_cols=lambda r: 120, name="most.tif")  # 2.4 of 4 km filled
    with pytest.raises(UserError, match=r"only 3 of 12 cells"):
        import_geotiff(path, tmp_path / "w", 1000, "C", tile_px=16)
    ws, report = import_geotiff(path, tmp_path / "w", 1000, "C", tile_px=16, min_kept=0)
    assert len(ws.cells) == 3 and len(report.skipped) == 9


@pytest.mark.parametrize("args,msg", [(["--bands", "4,3"], "--bands '4,3': expected three band numbers"),
                                      (["--bands", "9,3,2"], "asks for band 9 but the file has 3 band"),
                                      (["--nodata", "black"], "--nodata 'black': expected a number"),
                                      (["--min-kept", "2"], "--min-kept must be in")])
def test_cli_refuses_bad_band_and_nodata_options(utm_mosaic, tmp_path, capsys, args, msg):
    from urbanclip.cli import main

    assert main(["import", "geotiff", str(utm_mosaic[0]), "--out", str(tmp_path / "w"), "--city", "T", *args]) == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
