"""UrbanCLIP release importer: the real release copy (skips when absent) and small crafted releases."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from urbanclip.errors import UserError
from urbanclip.data.importers.release import import_release
from urbanclip.data.tiles import bd09_to_gcj02, bd09mc_to_bd09, gcj02_to_wgs84
from urbanclip.data.workspace import Workspace

HEADER = ["satellite_img_name", "BD09 coordinate", "WGS84 coordinate", "carbon_emissions (ton)",
          "population (unit)", "gdp (million yuan)"]


# ---------------------------------------------------------------------------------
# the real release


@pytest.fixture(scope="module")
def real(release_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "ws"
    t0 = time.perf_counter()
    ws, report = import_release(release_dir, out)
    return ws, report, time.perf_counter() - t0


def test_real_release_counts(real):
    ws, report, seconds = real
    assert seconds < 30
    assert len(ws.cells) == 16526
    assert ws.cities == ["Beijing", "Guangzhou", "Shanghai", "Shenzhen"]
    with_text = ws.cells[ws.cells["text_raw"] != ""].groupby("city").size().to_dict()
    assert set(with_text) == {"Beijing", "Guangzhou"}
    assert report.images == 24 and int(ws.cells["image"].notna().sum()) == 24
    # cells without image or text are kept and flagged, never dropped
    assert (ws.cells["flags"].str.contains("missing_image")).sum() == 16526 - 24
    assert ws.cells.loc[ws.cells["city"] == "Shanghai", "flags"].str.contains("missing_text").all()
    # 20 caption groups name images absent from the CSV: reported, not silently lost
    assert len(report.skipped) == 20 and all("not in the indicators CSV" in r for _, r in report.skipped)
    assert "10000.0" in ws.manifest.provenance["gdp"]
    assert "gdp (million yuan)" in ws.manifest.provenance["gdp"]


def test_real_release_cell_content(real, release_dir):
    ws, _, _ = real
    cell = ws.cell("Beijing/16_12614_4690_s")
    assert cell["image"] == "images/Beijing/16_12614_4690_s.jpg"
    img = ws.load_image("Beijing/16_12614_4690_s")
    assert img.size == (256, 256) and img.mode == "RGB"
    captions = json.loads((release_dir / "captions" / "Beijing_captions.json").read_text())[0]
    first = captions[0]["image"].removesuffix(".jpg")
    expected = [c["caption"] for c in captions if c["image"] == captions[0]["image"]]
    assert ws.sentences(first) == [s.strip() for s in expected]
    csv = pd.read_csv(release_dir / "indicators.csv").set_index("satellite_img_name")
    row = csv.loc["Beijing/16_12614_4690_s.jpg"]
    assert cell["population"] == row["population (unit)"] and cell["carbon"] == row["carbon_emissions (ton)"]
    # row 0 is north: y = max y of the city
    bj = ws.city_cells("Beijing")
    ys = bj["cell_id"].str.split("_").str[2].astype(int)
    assert (bj["row"] == ys.max() - ys).all()


def test_real_release_geometry_matches_neighbouring_rows(real, release_dir):
    """Each tile's polygon must end exactly where its neighbours in the CSV begin."""
    ws, report, _ = real
    assert any("BD09" in n for n in report.notes)
    bj = ws.city_cells("Beijing").set_index("cell_id")
    csv = pd.read_csv(release_dir / "indicators.csv")
    csv = csv[csv["satellite_img_name"].str.startswith("Beijing/")]
    ll = csv["WGS84 coordinate"].str.extract(r"\(([-\d.]+),\s*([-\d.]+)\)").astype(float)
    corner = dict(zip(csv["satellite_img_name"].str.removesuffix(".jpg"), zip(ll[1], ll[0])))
    checked = 0
    for cid in list(bj.index[:400]):
        ring = np.asarray(bj.geometry[cid].exterior.coords)  # lower-left, lower-right, upper-right, upper-left
        _, x, y, _ = cid.split("/")[1].split("_")
        up, right = f"Beijing/16_{x}_{int(y) + 1}_s", f"Beijing/16_{int(x) + 1}_{y}_s"
        if up in corner:  # upper-left corner = converted lower-left corner of the tile above
            assert np.allclose(ring[3], np.ravel(gcj02_to_wgs84(*bd09_to_gcj02(*corner[up]))), atol=1e-8)
            checked += 1
        if right in corner:  # lower-right corner = lower-left corner of the tile to the east
            assert np.allclose(ring[1], np.ravel(gcj02_to_wgs84(*bd09_to_gcj02(*corner[right]))), atol=1e-8)
        lon, lat = corner[cid]
        assert 0.005 < lon - ring[0][0] < 0.02 and 0.002 < lat - ring[0][1] < 0.01  # BD09 is ~1 km NE of WGS84
    assert checked > 100
    # tiles are ~0.78 km wide at Beijing's latitude (1024 BD09MC units x cos(lat))
    assert 750 < ws.manifest.cities["Beijing"].cell_size_m < 820


def test_real_release_city_filter(release_dir, tmp_path):
    ws, report = import_release(release_dir, tmp_path / "w", cities=["Guangzhou"])
    assert ws.cities == ["Guangzhou"] and len(ws.cells) == 3387
    assert len(report.skipped) == 15  # Guangzhou captions without a CSV row; Beijing's are not reported
    with pytest.raises(UserError, match="Atlantis"):
        import_release(release_dir, tmp_path / "w2", cities=["Atlantis"])


# ---------------------------------------------------------------------------------
# crafted releases


def _corner(x: int, y: int) -> str:
    lon, lat = bd09mc_to_bd09(x * 1024.0, y * 1024.0)
    return f"({float(lat)!r}, {float(lon)!r})"


def _release(root: Path, rows: list[list[str]] | None = None, captions=None, images=("16_12600_4700_s",)) -> Path:
    """A 2x2-tile release for 'Testcity' with captions for two tiles and the given images."""
    root.mkdir(parents=True, exist_ok=True)
    if rows is None:
        rows = []
        for x in (12600, 12601):
            for y in (4700, 4701):
                rows.append([f"Testcity/16_{x}_{y}_s.jpg", f"({x},{y})", _corner(x, y), "10.5", "200", "10000.0"])
    pd.DataFrame(rows, columns=HEADER[:len(rows[0])] if rows else HEADER).to_csv(root / "indicators.csv", index=False)
    (root / "captions").mkdir(exist_ok=True)
    if captions is None:
        captions = [[{"caption": "There are roads", "image": "Testcity/16_12600_4700_s.jpg"},
                     {"caption": "A park lies to the east", "image": "Testcity/16_12600_4700_s.jpg"},
                     {"caption": "Dense housing", "image": "Testcity/16_12601_4701_s.jpg"}]]
    (root / "captions" / "Testcity_captions.json").write_text(captions if isinstance(captions, str) else json.dumps(captions))
    (root / "images" / "Testcity").mkdir(parents=True, exist_ok=True)
    for name in images:
        Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(root / "images" / "Testcity" / f"{name}.jpg")
    return root


def test_crafted_release_imports_and_flags(tmp_path):
    src = _release(tmp_path / "rel")
    ws, report = import_release(src, tmp_path / "w")
    assert len(ws.cells) == 4 and report.images == 1 and report.texts == 2
    assert ws.sentences("Testcity/16_12600_4700_s") == ["There are roads", "A park lies to the east"]
    assert ws.cell("Testcity/16_12601_4701_s")["row"] == 0  # y=4701 is the northern row
    assert ws.cell("Testcity/16_12601_4700_s")["flags"] == "missing_image;missing_text"
    assert sorted(r for _, r in report.flagged).count("no image file") == 3
    again = Workspace.load(tmp_path / "w")
    assert again.manifest.extra["release"]["corner_datum"].startswith("BD09")


def test_corrupt_and_grey_images_are_flagged_not_fatal(tmp_path):
    src = _release(tmp_path / "rel", images=("16_12600_4700_s",))
    (src / "images" / "Testcity" / "16_12601_4700_s.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(src / "images" / "Testcity" / "16_12600_4701_s.jpg")
    ws, report = import_release(src, tmp_path / "w")
    reasons = {i: r for i, r in report.flagged if r.startswith("unreadable")}
    assert "cannot be decoded" in reasons["Testcity/16_12601_4700_s"]
    assert "16_12601_4700_s.jpg" in reasons["Testcity/16_12601_4700_s"]
    assert "mode L" in reasons["Testcity/16_12600_4701_s"]
    assert "unreadable_image" in ws.cell("Testcity/16_12601_4700_s")["flags"]
    assert not isinstance(ws.cell("Testcity/16_12601_4700_s")["image"], str)
    assert report.images == 1


def _bad_rows(col: int, value: str) -> list[list[str]]:
    rows = [["Testcity/16_12600_4700_s.jpg", "(12600,4700)", _corner(12600, 4700), "1", "2", "3"],
            ["Testcity/16_12601_4700_s.jpg", "(12601,4700)", _corner(12601, 4700), "1", "2", "3"]]
    rows[1][col] = value
    return rows


@pytest.mark.parametrize("col,value,match", [
    (2, "(not, a number)", r"line 3, column 'WGS84 coordinate'"),
    (2, "(139.9, 40.1)", "latitude outside"),
    (3, "", r"line 3, column 'carbon_emissions \(ton\)': not a number"),
    (4, "NaN", r"line 3, column 'population \(unit\)': not a number"),
    (5, "-4.5", r"line 3, column 'gdp \(million yuan\)': negative"),
    (1, "(1,2)", "does not match the tile indices"),
    (0, "Testcity/tile.jpg", "expected '<City>/<z>_<x>_<y>_s.jpg'"),
])
def test_bad_csv_values_name_file_line_and_column(tmp_path, col, value, match):
    src = _release(tmp_path / "rel", rows=_bad_rows(col, value))
    with pytest.raises(UserError, match=match) as e:
        import_release(src, tmp_path / "w")
    assert "indicators.csv" in str(e.value)
    assert not (tmp_path / "w").exists()


def test_missing_column(tmp_path):
    src = _release(tmp_path / "rel")
    df = pd.read_csv(src / "indicators.csv").drop(columns=["population (unit)"])
    df.to_csv(src / "indicators.csv", index=False)
    with pytest.raises(UserError, match=r"indicators.csv: missing column\(s\) \['population \(unit\)'\]"):
        import_release(src, tmp_path / "w")


@pytest.mark.parametrize("captions,match", [
    ("[[{\"caption\": \"x\", ", "Testcity_captions.json is not valid JSON"),
    ({"caption": "x"}, "expected a JSON list"),
    ([[{"caption": "x"}]], "entry 0 must be an object with string fields"),
])
def test_malformed_captions_name_the_file(tmp_path, captions, match):
    src = _release(tmp_path / "rel", captions=captions)
    with pytest.raises(UserError, match=match):
        import_release(src, tmp_path / "w")
    assert not (tmp_path / "w").exists()


def test_wgs84_corner_column_is_kept_when_it_is_not_bd09(tmp_path):
    """A CSV whose corners are true WGS84 keeps them; the tile extent still comes from the BD09MC size."""
    rows = [["Testcity/16_12600_4700_s.jpg", "(12600,4700)", "(39.5, 116.0)", "1", "2", "3"],
            ["Testcity/16_12601_4700_s.jpg", "(12601,4700)", "(39.5, 116.0092)", "1", "2", "3"],
            ["Testcity/16_12600_4701_s.jpg", "(12600,4701)", "(39.507, 116.0)", "1", "2", "3"]]
    ws, report = import_release(_release(tmp_path / "rel", rows=rows), tmp_path / "w")
    ring = np.asarray(ws.cell("Testcity/16_12600_4700_s").geometry.exterior.coords)
    assert ring[0] == pytest.approx([116.0, 39.5], abs=1e-9)
    assert 0.008 < ring[1][0] - ring[0][0] < 0.010 and 0.006 < ring[3][1] - ring[0][1] < 0.008
    assert any("WGS84" in n for n in report.notes)


def test_cli_import_release(tmp_path, capsys):
    from urbanclip.cli import main

    src = _release(tmp_path / "rel")
    assert main(["import", "release", str(src), "--out", str(tmp_path / "w")]) == 0
    out = capsys.readouterr().out
    assert "4 cells, 1 images, 2 descriptions" in out and "no image file" in out
    assert main(["import", "release", str(src), "--out", str(tmp_path / "w2"), "--cities", "Nowhere"]) == 2
    assert "'Nowhere'" in capsys.readouterr().err
