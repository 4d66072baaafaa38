"""The synthetic demo: deterministic, labelled synthetic, and faithful to its hidden land use."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from urbanclip.cli import main
from urbanclip.data.demo import LANDUSE_CLASSES, LANDUSE_KEYWORDS, build_demo
from urbanclip.data.demo.build import file_digest
from urbanclip.data.demo.captions import is_noise_sentence
from urbanclip.data.demo.landuse import PROFILES, make_field
from urbanclip.data.demo.render import cell_stats, render_city
from urbanclip.errors import UserError
from urbanclip.data.workspace import Workspace, split_sentences


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    """A small demo, big enough that every class appears: 3 cities x 10x10 cells, 64 px."""
    return build_demo(tmp_path_factory.mktemp("demo") / "ws", seed=0, n_cities=3, rows=10, cols=10, tile_px=64)


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    a = build_demo(tmp_path / "a", seed=3, n_cities=2, rows=4, cols=4, tile_px=32)
    b = build_demo(tmp_path / "b", seed=3, n_cities=2, rows=4, cols=4, tile_px=32)
    c = build_demo(tmp_path / "c", seed=4, n_cities=2, rows=4, cols=4, tile_px=32)
    for name in ("cells.parquet", "manifest.json"):
        assert (a.root / name).read_bytes() == (b.root / name).read_bytes(), name
    imgs = sorted(p.relative_to(a.root) for p in (a.root / "images").rglob("*.png"))
    assert len(imgs) == 32
    assert all((a.root / p).read_bytes() == (b.root / p).read_bytes() for p in imgs)
    assert file_digest(a.root) == file_digest(b.root) != file_digest(c.root)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_sizes_counts_and_labelled_synthetic(ws):
    assert ws.cities == sorted(p.name for p in PROFILES[:3])
    assert len(ws.cells) == 300
    for city in ws.cities:
        info = ws.manifest.cities[city]
        assert (info.n_rows, info.n_cols, info.cell_size_m) == (10, 10, 1000.0)
    assert ws.manifest.synthetic is True
    assert "synthetic" in ws.manifest.source and "not real imagery" in ws.manifest.source
    assert "SYNTHETIC" in ws.summary()
    meta = json.loads((ws.root / "manifest.json").read_text())
    assert meta["synthetic"] is True
    for col in ("image", "text_raw", "population", "gdp", "carbon", "demo_landuse"):
        assert "synthetic" in ws.manifest.provenance[col]
    assert set(ws.indicator_names) == {"population", "gdp", "carbon"}
    cid = ws.cells["cell_id"].iloc[0]
    assert ws.load_image(cid).size == (64, 64)
    assert ws.cells["flags"].eq("").all()  # every cell has an image and a description
    assert set(ws.cells["split"]) == {"train", "val", "test"}


def test_every_class_appears_and_fractions_sum_to_one(ws):
    assert set(ws.cells["demo_landuse"]) == set(LANDUSE_CLASSES)
    fr = ws.cells[[f"demo_frac_{c}" for c in LANDUSE_CLASSES]].to_numpy()
    assert np.allclose(fr.sum(axis=1), 1.0, atol=2e-3)
    assert set(LANDUSE_KEYWORDS) == set(LANDUSE_CLASSES)


def test_indicators_non_negative_skewed_and_follow_land_use(ws):
    c = ws.cells
    for name in ("population", "gdp", "carbon"):
        v = c[name].to_numpy()
        assert np.isfinite(v).all() and (v >= 0).all()
        assert v.mean() > np.median(v), f"{name} should be right-skewed"
    med = c.groupby("demo_landuse")[["population", "gdp", "carbon"]].median()
    assert med.loc["dense_residential", "population"] > 5 * med.loc["farmland", "population"]
    assert med.loc["commercial", "gdp"] > med.loc["suburban_residential", "gdp"] > med.loc["farmland", "gdp"]
    assert med.loc["industrial", "carbon"] > med.loc["park", "carbon"]
    full_water = c["demo_frac_water"] > 0.999
    if full_water.any():
        assert (c.loc[full_water, "population"] == 0).all()


def test_descriptions_have_several_sentences_some_noisy_and_match_content(ws):
    sents = [split_sentences(t) for t in ws.cells["text_raw"]]
    assert min(len(s) for s in sents) >= 3
    flat = [x for s in sents for x in s]
    noisy = sum(is_noise_sentence(x) for x in flat) / len(flat)
    assert 0.1 < noisy < 0.3
    assert any(x.startswith("The image shows") for x in flat)
    assert len(set(flat)) > 60  # varied wording
    for text, cls, water in zip(ws.cells["text_raw"], ws.cells["demo_landuse"], ws.cells["demo_frac_water"]):
        low = text.lower()
        assert any(k in low for k in LANDUSE_KEYWORDS[cls]), (cls, text)
        mentions_water = any(w in low for w in ("river", "lake", "sea ", "coast", "water", "shore"))
        if water == 0:
            assert not mentions_water, text
        if water >= 0.05:
            assert mentions_water, text


def _mean_rgb(ws: Workspace, cls: str) -> np.ndarray:
    ids = ws.cells.loc[ws.cells[f"demo_frac_{cls}"] > 0.5, "cell_id"]
    assert len(ids), f"no tile is mostly {cls}"
    return np.mean([np.asarray(ws.load_image(i), float).reshape(-1, 3).mean(0) for i in ids], axis=0)


def test_tiles_are_textured_and_look_like_their_class(ws):
    arr = np.asarray(ws.load_image(ws.cells["cell_id"].iloc[5]), float)
    assert arr.std() > 5
    water, farm = _mean_rgb(ws, "water"), _mean_rgb(ws, "farmland")
    assert water[2] - water[0] > farm[2] - farm[0] + 20  # water is bluer than fields
    assert water.sum() < farm.sum()  # and darker
    park, commercial = _mean_rgb(ws, "park"), _mean_rgb(ws, "commercial")
    assert park[1] - park[2] > commercial[1] - commercial[2] + 10  # parks are greener than downtown


def test_roads_and_rivers_continue_across_tile_borders(ws):
    c = ws.cells.set_index("cell_id")
    city = ws.cities[0]
    diffs_adjacent, diffs_random = [], []
    for r in range(9):
        for col in range(10):
            a = np.asarray(Image.open(ws.root / c.loc[f"{city}/r{r:03d}_c{col:03d}", "image"]), float)
            b = np.asarray(Image.open(ws.root / c.loc[f"{city}/r{r + 1:03d}_c{col:03d}", "image"]), float)
            other = np.asarray(Image.open(ws.root / c.loc[f"{city}/r{(r + 5) % 10:03d}_c{(col + 3) % 10:03d}", "image"]), float)
            diffs_adjacent.append(np.abs(a[-1] - b[0]).mean())
            diffs_random.append(np.abs(a[-1] - other[0]).mean())
    # the last row of a tile and the first row of the tile below come from one raster
    assert np.mean(diffs_adjacent) < 0.5 * np.mean(diffs_random)


def test_render_layers_are_consistent():
    field = make_field(PROFILES[0], 3, 3, np.random.default_rng(0))
    raster = render_city(field, 64, np.random.default_rng(1))
    assert raster.image.shape == (192, 192, 3) and raster.image.dtype == np.uint8
    stats = cell_stats(raster)
    assert len(stats) == 9
    for st in stats.values():
        assert abs(sum(st.fractions.values()) - 1) < 1e-6
        assert 0 <= st.building_cover <= 1 and 0 <= st.tree_cover <= 1
        assert (st.n_buildings > 0) == (st.building_cover > 0)


def test_bad_arguments_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="n_cities"):
        build_demo(tmp_path / "x", n_cities=0)
    with pytest.raises(UserError, match="tile_px"):
        build_demo(tmp_path / "x", tile_px=100)
    with pytest.raises(UserError, match="rows and cols"):
        build_demo(tmp_path / "x", rows=1)
    build_demo(tmp_path / "y", rows=2, cols=2, tile_px=16, n_cities=1)
    with pytest.raises(UserError, match="already exists"):
        build_demo(tmp_path / "y", rows=2, cols=2, tile_px=16, n_cities=1)


def test_cli_demo_builds_then_skips(tmp_path, capsys):
    out = tmp_path / "cli-demo"
    assert main(["demo", "--out", str(out), "--size", "tiny", "--seed", "1"]) == 0
    first = capsys.readouterr().out
    assert "SYNTHETIC" in first and Workspace.load(out).manifest.synthetic
    digest = file_digest(out)
    assert main(["demo", "--out", str(out), "--size", "tiny"]) == 0
    assert "already exists" in capsys.readouterr().out
    assert file_digest(out) == digest
    assert main(["demo", "--out", str(out), "--size", "tiny", "--seed", "2", "--overwrite"]) == 0
    assert file_digest(out) != digest
