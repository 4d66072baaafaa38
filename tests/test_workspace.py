"""Workspace data model: round-trip, validation, atomic writes, fingerprint."""

from __future__ import annotations

import json

import numpy as np
import pytest

from urbanclip.errors import UserError, ValidationError
from urbanclip.data.grid import grid_over_bounds, square_grid
from urbanclip.data.indicators import STANDARD, from_model_scale, to_model_scale
from urbanclip.data.workspace import Manifest, Workspace, WorkspaceBuilder, join_sentences


def _build(root, n=4, overwrite=False, **cells_kw):
    grid = square_grid("Testville", 116.3, 39.9, n, n, 1000.0)
    rng = np.random.default_rng(0)
    grid["population"] = rng.integers(0, 1000, len(grid)).astype(float)
    grid["gdp"] = rng.random(len(grid)) * 100
    grid["carbon"] = rng.random(len(grid)) * 10
    grid["text_raw"] = [join_sentences([f"Cell {i} has roads.", "There are parks."]) for i in range(len(grid))]
    for k, v in cells_kw.items():
        grid[k] = v
    with WorkspaceBuilder(root, overwrite=overwrite) as b:
        grid["image"] = [b.write_image("Testville", f"{i}.png", np.full((8, 8, 3), i, np.uint8)) for i in range(len(grid))]
        return b.finish(grid, Manifest(name="t", indicators=dict(STANDARD), source="test"))


def test_round_trip(tmp_path):
    ws = _build(tmp_path / "w")
    again = Workspace.load(tmp_path / "w")
    assert list(again.cells["cell_id"]) == list(ws.cells["cell_id"])
    assert again.cells.crs.to_epsg() == 4326
    assert again.manifest.cities["Testville"].n_rows == 4
    assert set(again.cells["split"]) == {"train", "val", "test"}
    assert again.sentences(again.cells["cell_id"][0]) == ["Cell 0 has roads.", "There are parks."]
    img = again.load_image(again.cells["cell_id"][3])
    assert img.size == (8, 8) and img.mode == "RGB"
    assert again.fingerprint() == ws.fingerprint()
    meta = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert meta["indicators"]["population"]["unit"] == "persons"
    assert meta["target_transform"] == "log1p"


def test_grid_cells_are_square_and_ordered():
    g = square_grid("X", 116.3, 39.9, 3, 2, 500.0)
    areas = g.to_crs(g.estimate_utm_crs()).area
    assert np.allclose(areas, 250000.0, rtol=1e-3)
    r0 = g[(g.row == 0) & (g.col == 0)].geometry.iloc[0].centroid
    r1 = g[(g.row == 1) & (g.col == 0)].geometry.iloc[0].centroid
    c1 = g[(g.row == 0) & (g.col == 1)].geometry.iloc[0].centroid
    assert r1.y < r0.y and c1.x > r0.x  # row 0 north, col 0 west


def test_zero_area_bbox_is_refused():
    with pytest.raises(UserError, match="zero or negative area"):
        grid_over_bounds("X", (116.0, 39.0, 116.0, 39.5), 1000)


def test_negative_indicator_fails_and_writes_nothing(tmp_path):
    root = tmp_path / "w"
    bad = np.zeros(16)
    bad[5] = -1
    with pytest.raises(ValidationError, match="negative"):
        _build(root, population=bad)
    assert not root.exists()
    assert list(tmp_path.iterdir()) == []  # staging folder cleaned up


def test_failed_overwrite_keeps_old_workspace(tmp_path):
    root = tmp_path / "w"
    ws = _build(root)
    fp = ws.fingerprint()
    bad = np.zeros(16)
    bad[0] = -3
    with pytest.raises(ValidationError):
        _build(root, overwrite=True, population=bad)
    assert Workspace.load(root).fingerprint() == fp


def test_existing_folder_needs_overwrite(tmp_path):
    _build(tmp_path / "w")
    with pytest.raises(UserError, match="already exists"):
        _build(tmp_path / "w")


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        Workspace.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="manifest.json is missing"):
        Workspace.load(tmp_path / "empty")
    ws = _build(tmp_path / "w")
    (ws.root / "manifest.json").write_text("{not json")
    with pytest.raises(ValidationError, match="not valid JSON"):
        Workspace.load(ws.root)


def test_set_column_save_records_provenance_and_changes_fingerprint(tmp_path):
    ws = _build(tmp_path / "w")
    fp = ws.fingerprint()
    ws.set_column("text_refined", ["x"] * len(ws.cells), "test refine")
    ws.save()
    again = Workspace.load(ws.root)
    assert again.manifest.provenance["text_refined"] == "test refine"
    assert again.text_column() == "text_refined"
    assert again.fingerprint() != fp
    assert not [p for p in ws.root.iterdir() if p.name.endswith(".tmp")]


def test_missing_image_and_text_are_flagged(tmp_path):
    grid = square_grid("T", 10.0, 50.0, 2, 2, 1000.0)
    grid["text_raw"] = ["a", "", "b", "c"]
    with WorkspaceBuilder(tmp_path / "w") as b:
        ws = b.finish(grid, Manifest(name="t", indicators={}))
    assert all("missing_image" in f for f in ws.cells["flags"])
    assert sum("missing_text" in f for f in ws.cells["flags"]) == 1
    assert ws.load_image(ws.cells["cell_id"][0]) is None


def test_log_transform_is_invertible():
    x = np.array([0.0, 1.0, 1e6])
    assert np.allclose(from_model_scale(to_model_scale(x)), x)
