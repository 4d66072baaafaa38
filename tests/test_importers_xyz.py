"""XYZ importer: fetch from a local tile server (never the internet), retry, cache, stitch, cut."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tile_server import TileServer

from urbanclip.data.importers.xyz import FetchConfig, cache_folder, fetch_tiles, import_xyz
from urbanclip.data.tiles import tiles_for_bbox
from urbanclip.errors import UserError

ZOOM = 14
BBOX = (116.40, 39.90, 116.43, 39.92)  # ~2.5 x 2.2 km, 2 x 2 tiles at zoom 14
FAST = FetchConfig(rate_limit_per_s=1000.0, retries=2, timeout=5.0, backoff_s=0.01)


def _make_tiles(root: Path) -> None:
    xs, ys = tiles_for_bbox(BBOX, ZOOM)
    for x in xs:
        for y in ys:
            arr = np.zeros((256, 256, 3), np.uint8)
            arr[..., 0], arr[..., 1], arr[..., 2] = x % 256, y % 256, 120
            p = root / str(ZOOM) / str(y) / f"{x}.png"  # served as {z}/{y}/{x}, like Esri
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(p)


def _Server(root: Path, **kw) -> TileServer:
    return TileServer(root, **kw)


@pytest.fixture
def tile_root(tmp_path):
    root = tmp_path / "tiles"
    _make_tiles(root)
    return root


def test_import_retries_then_second_run_uses_only_the_cache(tile_root, tmp_path):
    cache = tmp_path / "cache"
    n_tiles = len(tiles_for_bbox(BBOX, ZOOM)[0]) * len(tiles_for_bbox(BBOX, ZOOM)[1])
    with _Server(tile_root, fail_first=True) as srv:
        ws, rep = import_xyz(BBOX, tmp_path / "w", "Beijing", cell_size_m=500, zoom=ZOOM, template=srv.template,
                             tile_px=32, cache_dir=cache, fetch=FAST)
        template = srv.template
    assert len(srv.requests) == 2 * n_tiles  # each tile: one 500, one success
    assert all(ua.startswith("urbanclip/") for _, ua in srv.requests)
    assert not rep.skipped or all("beyond" in r for _, r in rep.skipped)
    assert len(ws.cells) >= 16 and rep.images == len(ws.cells)
    west, south, east, north = ws.manifest.cities["Beijing"].bounds
    assert BBOX[0] <= west and east <= BBOX[2] and BBOX[1] <= south and north <= BBOX[3]
    img = ws.load_image(ws.cells["cell_id"].iloc[0])
    assert img.size == (32, 32) and np.asarray(img)[..., 2].mean() == pytest.approx(120, abs=2)
    assert ws.manifest.extra["xyz"]["zoom"] == ZOOM

    # server is gone: a second import must come entirely from the disk cache
    ws2, rep2 = import_xyz(BBOX, tmp_path / "w2", "Beijing", cell_size_m=500, zoom=ZOOM, template=template,
                           tile_px=32, cache_dir=cache, fetch=FAST)
    assert f"0 tiles downloaded, {n_tiles} from the cache" in rep2.notes[0]
    assert list(ws2.cells["cell_id"]) == list(ws.cells["cell_id"])


def test_cache_key_depends_on_template(tmp_path):
    assert cache_folder("http://a/{z}/{x}/{y}", tmp_path) != cache_folder("http://b/{z}/{x}/{y}", tmp_path)


def test_missing_tiles_are_reported_and_cells_over_them_skipped(tile_root, tmp_path):
    xs, ys = tiles_for_bbox(BBOX, ZOOM)
    (tile_root / str(ZOOM) / str(ys[0]) / f"{xs[0]}.png").unlink()  # north-west tile: 404
    with _Server(tile_root) as srv:
        ws, rep = import_xyz(BBOX, tmp_path / "w", "Beijing", cell_size_m=500, zoom=ZOOM, template=srv.template,
                             tile_px=32, cache_dir=tmp_path / "c", fetch=FAST)
    reasons = [r for _, r in rep.skipped]
    assert any("HTTP 404" in r for r in reasons)
    assert any("nodata" in r or "beyond" in r for r in reasons)
    assert len(ws.cells) > 0


def test_server_down_gives_clear_error(tmp_path):
    with pytest.raises(UserError, match="no tile could be fetched"):
        fetch_tiles("http://127.0.0.1:9/{z}/{y}/{x}.png", BBOX, ZOOM, tmp_path,
                    cfg=FetchConfig(rate_limit_per_s=1000, retries=0, timeout=1, backoff_s=0))


@pytest.mark.parametrize("bbox,msg", [((116.4, 39.9, 116.4, 39.95), "zero or negative area"),
                                      ((116.4, 39.9, 116.3, 39.95), "zero or negative area"),
                                      ((116.4, 95.0, 116.5, 96.0), "outside")])
def test_bad_bbox(bbox, msg, tmp_path):
    with pytest.raises(UserError, match=msg):
        import_xyz(bbox, tmp_path / "w", "X", template="http://127.0.0.1:9/{z}/{y}/{x}")


def test_bad_template(tmp_path):
    with pytest.raises(UserError, match="lacks"):
        import_xyz(BBOX, tmp_path / "w", "X", template="http://127.0.0.1:9/{z}/{x}")


# ---------------------------------------------------------------------------------
# a real provider's bad days (issue 14): outages, holes, reruns, partial cells


def _tile_file(root: Path, i: int) -> Path:
    xs, ys = tiles_for_bbox(BBOX, ZOOM)
    order = [(x, y) for y in ys for x in xs]
    x, y = order[i]
    return root / str(ZOOM) / str(y) / f"{x}.png"


def test_provider_outage_trips_the_circuit_breaker_and_writes_nothing(tile_root, tmp_path):
    cfg = FetchConfig(rate_limit_per_s=1000.0, retries=2, timeout=5.0, backoff_s=0.0, max_consecutive_failures=3)
    with _Server(tile_root, outage_after=1) as srv:
        with pytest.raises(UserError, match=r"tile provider http://127\.0\.0\.1:\d+ failed 3 tiles in a row; "
                                            r"its last answer: HTTP 503 Service Unavailable"):
            import_xyz(BBOX, tmp_path / "w", "B", cell_size_m=500, zoom=ZOOM, template=srv.template, tile_px=16,
                       cache_dir=tmp_path / "c", fetch=cfg)
    # 1 good tile, then one tile with all its 3 attempts, then single attempts until the breaker opens
    assert len(srv.requests) == 1 + 3 + 1 + 1
    assert not (tmp_path / "w").exists()


def test_provider_down_from_the_start_fails_fast_with_exit_2(tmp_path, capsys):
    from urbanclip.cli import main

    rc = main(["import", "xyz", "--bbox", ",".join(map(str, BBOX)), "--zoom", str(ZOOM), "--city", "B",
               "--template", "http://127.0.0.1:9/{z}/{y}/{x}.png", "--out", str(tmp_path / "w"),
               "--cache-dir", str(tmp_path / "c"), "--rate-limit", "1000", "--retries", "0", "--max-failures", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "error: tile provider http://127.0.0.1:9 failed 2 tiles in a row" in err
    assert "connection failed" in err


def test_absent_tiles_are_cached_grouped_and_not_asked_again(tile_root, tmp_path):
    for i in (0, 1):
        _tile_file(tile_root, i).unlink()
    cache = tmp_path / "c"
    with _Server(tile_root) as srv:
        ws, rep = import_xyz(BBOX, tmp_path / "w", "B", cell_size_m=500, zoom=ZOOM, template=srv.template, tile_px=16,
                             cache_dir=cache, fetch=FAST, min_kept=0)
        template = srv.template
    assert len(srv.requests) == 4
    summary = rep.summary()
    assert "2 x tile not available: absent at the provider (HTTP 404)" in summary
    assert len(summary.splitlines()) < 12  # grouped by reason with a few examples, not one line per URL
    # the provider is gone now: a rerun needs no request at all, holes included
    ws2, rep2 = import_xyz(BBOX, tmp_path / "w2", "B", cell_size_m=500, zoom=ZOOM, template=template, tile_px=16,
                           cache_dir=cache, fetch=FAST, min_kept=0)
    assert "0 tiles downloaded, 4 from the cache" in rep2.notes[0]
    assert "2 x tile not available: absent at the provider (HTTP 404, cached)" in rep2.summary()
    assert list(ws2.cells["cell_id"]) == list(ws.cells["cell_id"])
    # recheck_absent asks again for the holes only
    _make_tiles(tile_root)
    recheck = FetchConfig(rate_limit_per_s=1000.0, retries=0, timeout=5.0, backoff_s=0.0, recheck_absent=True)
    with _Server(tile_root, port=int(template.split(":")[2].split("/")[0])) as srv:  # same provider again
        fetched = fetch_tiles(srv.template, BBOX, ZOOM, cache, cfg=recheck)
    assert len(srv.requests) == 2 and len(fetched.tiles) == 4


def test_cell_ids_and_places_do_not_depend_on_which_tiles_arrived(tile_root, tmp_path):
    with _Server(tile_root) as srv:
        full, _ = import_xyz(BBOX, tmp_path / "w", "B", cell_size_m=500, zoom=ZOOM, template=srv.template,
                             tile_px=16, cache_dir=tmp_path / "c1", fetch=FAST)
    _tile_file(tile_root, 0).unlink()  # the north-west tile is missing this time
    with _Server(tile_root) as srv:
        holed, _ = import_xyz(BBOX, tmp_path / "w2", "B", cell_size_m=500, zoom=ZOOM, template=srv.template,
                              tile_px=16, cache_dir=tmp_path / "c2", fetch=FAST, min_kept=0)
    a = full.cells.set_index("cell_id")
    b = holed.cells.set_index("cell_id")
    assert len(b) < len(a) and set(b.index) <= set(a.index)
    assert np.allclose(a.loc[b.index, "lat"], b["lat"], atol=1e-9) and np.allclose(a.loc[b.index, "lon"], b["lon"], atol=1e-9)


def test_cells_over_a_hole_are_flagged_partial_with_their_valid_fraction(tile_root, tmp_path):
    _tile_file(tile_root, 1).unlink()
    with _Server(tile_root) as srv:
        ws, rep = import_xyz(BBOX, tmp_path / "w", "B", cell_size_m=500, zoom=ZOOM, template=srv.template, tile_px=16,
                             cache_dir=tmp_path / "c", fetch=FAST, min_valid=0.5, min_kept=0)
    cells = ws.cells
    partial = cells[cells["flags"].str.contains("partial_imagery")]
    assert len(partial) >= 1
    assert ((partial["valid_fraction"] >= 0.5) & (partial["valid_fraction"] < 1)).all()
    assert (cells.loc[~cells.index.isin(partial.index), "valid_fraction"] == 1).all()
    assert "valid_fraction" in ws.manifest.provenance


def test_too_few_cells_kept_exits_2(tile_root, tmp_path, capsys):
    from urbanclip.cli import main

    for i in range(1, 4):
        _tile_file(tile_root, i).unlink()
    with _Server(tile_root) as srv:
        rc = main(["import", "xyz", "--bbox", ",".join(map(str, BBOX)), "--zoom", str(ZOOM), "--city", "B",
                   "--template", srv.template, "--out", str(tmp_path / "w"), "--cache-dir", str(tmp_path / "c"),
                   "--rate-limit", "1000", "--cell-size", "500", "--tile-px", "16"])
    err = capsys.readouterr().err
    assert rc == 2 and "cells inside the mosaic kept" in err and "--min-kept 0" in err
    assert not (tmp_path / "w").exists()


def test_out_is_checked_before_any_download(tile_root, tmp_path):
    (tmp_path / "afile").write_text("x")
    with _Server(tile_root) as srv:
        for out, msg in ((tmp_path / "afile", "is a file, not a folder"),
                         (tmp_path / "afile" / "w", "is a file, so no folder can be created under it")):
            with pytest.raises(UserError, match=msg):
                import_xyz(BBOX, out, "B", zoom=ZOOM, template=srv.template, cache_dir=tmp_path / "c", fetch=FAST)
    assert srv.requests == []


@pytest.mark.parametrize("args,msg", [(["--zoom", "30"], "--zoom must be a whole number 0..24"),
                                      (["--zoom", "-1"], "--zoom must be a whole number 0..24"),
                                      (["--retries", "-1"], "--retries must be a whole number >= 0"),
                                      (["--timeout", "0"], "--timeout must be positive"),
                                      (["--max-failures", "0"], "--max-failures must be a whole number >= 1")])
def test_bad_fetch_options_are_refused_before_any_request(args, msg, tmp_path, capsys):
    from urbanclip.cli import main

    rc = main(["import", "xyz", "--bbox", ",".join(map(str, BBOX)), "--city", "B", "--template",
               "http://127.0.0.1:9/{z}/{y}/{x}.png", "--out", str(tmp_path / "w"), "--cache-dir", str(tmp_path / "c"),
               *args])
    assert rc == 2 and msg in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
