"""XYZ importer: fetch from a local tile server (never the internet), retry, cache, stitch, cut."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from urbanclip.errors import UserError
from urbanclip.data.importers.xyz import FetchConfig, cache_folder, fetch_tiles, import_xyz
from urbanclip.data.tiles import tiles_for_bbox

ZOOM = 14
BBOX = (116.40, 39.90, 116.43, 39.92)  # ~2.5 x 2.2 km, 6 tiles at zoom 14
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


class _Server:
    """A tile server on 127.0.0.1 in a thread; optionally fails each path's first request with 500."""

    def __init__(self, root: Path, fail_first: bool = False):
        self.requests: list[tuple[str, str]] = []
        seen: set[str] = set()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                outer.requests.append((self.path, self.headers.get("User-Agent", "")))
                if fail_first and self.path not in seen:
                    seen.add(self.path)
                    self.send_error(500)
                    return
                f = root / self.path.lstrip("/")
                if not f.is_file():
                    self.send_error(404)
                    return
                body = f.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.template = f"http://127.0.0.1:{self.httpd.server_address[1]}/{{z}}/{{y}}/{{x}}.png"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


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
