"""Import imagery from an XYZ tile provider: download (cached, polite), stitch, cut into cells.

Default provider: Esri World Imagery (`DEFAULT_TEMPLATE`; note `{y}` before
`{x}`). Its use is subject to Esri's terms; the attribution is written into the
manifest. Any `{z}/{x}/{y}` template works, e.g. a local tile server.

Fetching (`TileFetcher`, also used by the release importer): one request at a
time, at most `rate_limit_per_s` requests per second, a User-Agent naming
urbanclip, retries with exponential backoff on 5xx / 429 / timeouts / connection
errors only, and a disk cache (`urbanclip.paths.tile_cache_dir()`, keyed by a
hash of the template) so a tile is never fetched twice. Tiles the provider does
not have (404 / 410) are cached as absent too, so a rerun asks again only with
`recheck_absent`. A circuit breaker stops the run with an error naming the
provider and its last answer after `max_consecutive_failures` failures in a row
(after one tile has used up its retries, the next ones get a single attempt
until one succeeds), so a provider that is down costs seconds, not an hour.
Failures are reported grouped by reason.

The stitched mosaic (EPSG:3857, every tile of the bbox, transparent where a tile
is missing, cropped to the bbox) is an in-memory GeoTIFF handed to
`geotiff.cut_mosaic` with the grid anchored on the bbox's north-west corner:
cell ids depend only on the bbox and cell size, never on which tiles arrived.
"""

from __future__ import annotations

import hashlib
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from PIL import Image
from rasterio.io import MemoryFile
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_transform
from rasterio.windows import from_bounds as window_from_bounds
from tqdm import tqdm

from urbanclip import __version__
from urbanclip.data.importers import ImportReport
from urbanclip.data.importers.geotiff import (
    VALID_COLUMN,
    VALID_PROVENANCE,
    CutConfig,
    add_indicator_rasters,
    cut_mosaic,
    indicator_specs,
)
from urbanclip.data.tiles import ground_resolution_m, tile_bounds_mercator, tiles_for_bbox
from urbanclip.data.workspace import (
    Manifest,
    Workspace,
    WorkspaceBuilder,
    atomic_write_bytes,
    check_out_dir,
    flag_suspect_values,
)
from urbanclip.errors import UserError
from urbanclip.paths import tile_cache_dir

DEFAULT_TEMPLATE = "https://server.arcgisonline.com/ArcGIS/rest/services/World_Imagery/MapServer/tile/{z}/{y}/{x}"
ESRI_ATTRIBUTION = "Esri World Imagery: Source: Esri, Maxar, Earthstar Geographics, and the GIS User Community"
USER_AGENT = f"urbanclip/{__version__} (Urban Insights tile importer; python-requests)"
RETRY_STATUS = {429, 500, 502, 503, 504}
ABSENT_STATUS = {404, 410}
MAX_ZOOM = 24


@dataclass
class FetchConfig:
    """How politely tiles are fetched, and when to give up on a provider."""

    user_agent: str = USER_AGENT
    rate_limit_per_s: float = 4.0
    retries: int = 3
    timeout: float = 20.0
    backoff_s: float = 0.5  # first retry waits this long, then doubles
    max_tiles: int = 4000
    max_consecutive_failures: int = 5  # circuit breaker
    recheck_absent: bool = False  # ask again for tiles cached as absent (404)

    def check(self) -> None:
        if not isinstance(self.retries, int) or self.retries < 0:
            raise UserError(f"--retries must be a whole number >= 0, got {self.retries}")
        if not self.rate_limit_per_s > 0:
            raise UserError(f"--rate-limit must be positive, got {self.rate_limit_per_s} requests/s")
        if not self.timeout > 0:
            raise UserError(f"--timeout must be positive, got {self.timeout} s")
        if not self.backoff_s >= 0:
            raise UserError(f"backoff must be >= 0, got {self.backoff_s} s")
        if not isinstance(self.max_consecutive_failures, int) or self.max_consecutive_failures < 1:
            raise UserError(f"--max-failures must be a whole number >= 1, got {self.max_consecutive_failures}")


@dataclass
class FetchResult:
    """Tiles on disk (x, y) -> cached file for the tile ranges `xs` x `ys`, plus (url, reason) for tiles not had."""

    zoom: int
    tiles: dict[tuple[int, int], Path]
    missing: list[tuple[str, str]]
    downloaded: int = 0
    from_cache: int = 0
    xs: range = field(default_factory=lambda: range(0))
    ys: range = field(default_factory=lambda: range(0))


def cache_folder(template: str, cache_dir: Path | None = None) -> Path:
    """Cache folder of one provider: the template is part of the key."""
    key = hashlib.sha256(template.encode("utf-8")).hexdigest()[:16]
    return Path(cache_dir or tile_cache_dir()) / key


def check_template(template: str) -> None:
    missing = [k for k in ("{z}", "{x}", "{y}") if k not in template]
    if missing:
        raise UserError(f"tile URL template {template!r} lacks {', '.join(missing)}; e.g. {DEFAULT_TEMPLATE}")
    if not template.startswith(("http://", "https://")):
        raise UserError(f"tile URL template {template!r} must start with http:// or https://")


def check_zoom(zoom: int) -> int:
    if isinstance(zoom, bool) or not isinstance(zoom, (int, np.integer)) or not 0 <= int(zoom) <= MAX_ZOOM:
        raise UserError(f"--zoom must be a whole number 0..{MAX_ZOOM} (web-map tiles; imagery usually ends at 18-19), got {zoom}")
    return int(zoom)


def check_bbox(bbox: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    if len(bbox) != 4:
        raise UserError(f"bbox must be west,south,east,north; got {bbox}")
    west, south, east, north = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise UserError(f"bbox {bbox} has a non-finite coordinate")
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -85 <= south <= 85 and -85 <= north <= 85):
        raise UserError(f"bbox {bbox} is outside lon -180..180 / lat -85..85; give west,south,east,north in degrees")
    if not (east > west and north > south):
        raise UserError(f"bbox {bbox} has zero or negative area; give west < east and south < north")
    return west, south, east, north


def provider_name(template: str) -> str:
    """The provider as a person would name it: scheme://host[:port]."""
    parts = urlsplit(template)
    return f"{parts.scheme}://{parts.netloc}"


class TileFetcher:
    """GET tiles of one URL template through the disk cache, politely, with a circuit breaker.

    `get(z, x, y)` returns (cached file, "") or (None, reason); `reason` is a
    short category ("absent at the provider (HTTP 404)", "HTTP 503 after 4
    attempts", ...) so reports can group failures. It raises UserError when the
    provider failed `max_consecutive_failures` times in a row.
    """

    def __init__(self, template: str, cache_dir: Path | None = None, cfg: FetchConfig | None = None):
        import requests

        check_template(template)
        self.template = template
        self.cfg = cfg or FetchConfig()
        self.cfg.check()
        self.folder = cache_folder(template, cache_dir)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.folder / "template.txt", (template + "\n").encode("utf-8"))
        except OSError as e:
            raise UserError(f"tile cache {self.folder} cannot be written ({e.strerror or e}); pass --cache-dir "
                            "with a folder you can write to") from None
        self.session = requests.Session()
        self.session.headers["User-Agent"] = self.cfg.user_agent
        self._last = 0.0
        self.failures_in_a_row = 0
        self.last_failure = ""
        self.downloaded = self.from_cache = 0

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "TileFetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def url(self, z: int, x: int, y: int) -> str:
        return self.template.format(z=z, x=x, y=y)

    def cache_path(self, z: int, x: int, y: int) -> Path:
        return self.folder / str(z) / str(x) / f"{y}.tile"

    def get(self, z: int, x: int, y: int) -> tuple[Path | None, str]:
        path = self.cache_path(z, x, y)
        absent = path.with_suffix(".absent")
        if path.is_file():
            self.from_cache += 1
            return path, ""
        if absent.is_file() and not self.cfg.recheck_absent:
            self.from_cache += 1
            return None, f"absent at the provider (HTTP {absent.read_text('utf-8').strip() or '404'}, cached)"
        url = self.url(z, x, y)
        data, status, reason = self._get(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        if data is not None:
            atomic_write_bytes(path, data)  # unique temp + rename: concurrent imports share the cache safely
            absent.unlink(missing_ok=True)
            self.downloaded += 1
            self.failures_in_a_row = 0
            return path, ""
        if status in ABSENT_STATUS:
            atomic_write_bytes(absent, f"{status}\n".encode("utf-8"))
            self.failures_in_a_row = 0
            return None, f"absent at the provider (HTTP {status})"
        self.failures_in_a_row += 1
        if self.failures_in_a_row >= self.cfg.max_consecutive_failures:
            raise UserError(
                f"tile provider {provider_name(self.template)} failed {self.failures_in_a_row} tiles in a row; "
                f"its last answer: {self.last_failure} (for {url}). Stopped; nothing was written. "
                f"The {self.downloaded + self.from_cache} tiles this run got are in the cache ({self.folder}) and "
                "will not be fetched again: rerun when the provider is back, or check --template")
        return None, reason

    def _get(self, url: str) -> tuple[bytes | None, int | None, str]:
        """GET one tile with rate limit and retries: (bytes, 200, "") or (None, status or None, reason)."""
        import requests

        cfg = self.cfg
        # after a tile used up its retries, single attempts until the provider answers again
        attempts = 1 if self.failures_in_a_row else cfg.retries + 1
        reason, status = "", None
        for attempt in range(attempts):
            wait = 1.0 / cfg.rate_limit_per_s - (time.monotonic() - self._last)
            if wait > 0:
                time.sleep(wait)
            self._last = time.monotonic()
            try:
                r = self.session.get(url, timeout=cfg.timeout)
            except requests.Timeout as e:
                reason, status, self.last_failure = "timed out", None, f"no answer within {cfg.timeout:g} s ({type(e).__name__})"
            except requests.ConnectionError as e:
                reason, status, self.last_failure = "connection failed", None, f"connection failed ({_short(e)})"
            else:
                status = r.status_code
                if status == 200:
                    try:
                        with Image.open(io.BytesIO(r.content)) as im:
                            im.verify()
                    except Exception:
                        ctype = r.headers.get("content-type", "?")
                        self.last_failure = f"HTTP 200 with a body that is not an image ({ctype}): {r.text[:120]!r}"
                        return None, status, f"HTTP 200 but the body is not an image ({ctype})"
                    return r.content, status, ""
                if status in ABSENT_STATUS:
                    return None, status, f"absent at the provider (HTTP {status})"
                reason, self.last_failure = f"HTTP {status}", f"HTTP {status} {r.reason or ''}".strip()
                if status not in RETRY_STATUS:
                    return None, status, reason
            if attempt < attempts - 1:
                time.sleep(cfg.backoff_s * 2 ** attempt)
        return None, status, f"{reason} after {attempts} attempt{'s' if attempts > 1 else ''}"


def _short(e: Exception) -> str:
    """The innermost cause of a requests error, without the URL (e.g. 'Connection refused')."""
    text = str(e)
    for marker in ("] ", "Errno"):
        if marker in text:
            text = text.rsplit(marker, 1)[-1]
    return text.strip(" ')\"")[:160] or type(e).__name__


def fetch_tiles(template: str, bbox: tuple[float, float, float, float], zoom: int, cache_dir: Path | None = None,
                user_agent: str = USER_AGENT, rate_limit_per_s: float = 4.0, retries: int = 3, timeout: float = 20.0,
                cfg: FetchConfig | None = None) -> FetchResult:
    """Make sure every tile covering `bbox` at `zoom` is in the disk cache; fetch those that are not."""
    cfg = cfg or FetchConfig(user_agent=user_agent, rate_limit_per_s=rate_limit_per_s, retries=retries, timeout=timeout)
    check_template(template)
    bbox = check_bbox(bbox)
    zoom = check_zoom(zoom)
    cfg.check()
    xs, ys = tiles_for_bbox(bbox, zoom)
    n = len(xs) * len(ys)
    if n > cfg.max_tiles:
        raise UserError(f"bbox {bbox} needs {n} tiles at zoom {zoom} (limit {cfg.max_tiles}); use a lower --zoom or a smaller bbox")
    result = FetchResult(zoom=zoom, tiles={}, missing=[], xs=xs, ys=ys)
    with TileFetcher(template, cache_dir, cfg) as fetcher:
        for x, y in tqdm([(x, y) for y in ys for x in xs], desc=f"tiles z{zoom}", unit="tile", leave=False):
            path, reason = fetcher.get(zoom, x, y)
            if path is None:
                result.missing.append((fetcher.url(zoom, x, y), reason))
            else:
                result.tiles[(x, y)] = path
        result.downloaded, result.from_cache = fetcher.downloaded, fetcher.from_cache
    if not result.tiles:
        url, reason = result.missing[0] if result.missing else ("?", "no tiles")
        raise UserError(f"no tile could be fetched for bbox {bbox} at zoom {zoom} from {provider_name(template)}; "
                        f"first failure: {url}: {reason}")
    return result


def stitch(result: FetchResult, bbox: tuple[float, float, float, float]) -> MemoryFile:
    """Paste cached tiles into one EPSG:3857 RGBA GeoTIFF (alpha 0 where a tile is missing), cropped to bbox.

    The canvas spans every tile of the bbox (`result.xs` x `result.ys`), fetched or not,
    so its extent never depends on which tiles arrived.
    """
    xs = list(result.xs) or sorted({x for x, _ in result.tiles})
    ys = list(result.ys) or sorted({y for _, y in result.tiles})
    x0, y0 = xs[0], ys[0]
    first = _decode(next(iter(result.tiles.values())))
    px = first.shape[0]
    width, height = (xs[-1] - x0 + 1) * px, (ys[-1] - y0 + 1) * px
    canvas = np.zeros((4, height, width), dtype=np.uint8)
    for (x, y), path in result.tiles.items():
        img = _decode(path)
        if img.shape[:2] != (px, px):
            raise UserError(f"tile {path} is {img.shape[1]}x{img.shape[0]} px; all tiles must be {px}x{px}")
        r, c = (y - y0) * px, (x - x0) * px
        canvas[:3, r:r + px, c:c + px] = np.moveaxis(img, -1, 0)
        canvas[3, r:r + px, c:c + px] = 255
    minx, _, _, maxy = tile_bounds_mercator(x0, y0, result.zoom)
    res = (tile_bounds_mercator(x0, y0, result.zoom)[2] - minx) / px
    tf = from_origin(minx, maxy, res, res)
    (bx0, bx1), (by0, by1) = warp_transform("EPSG:4326", "EPSG:3857", [bbox[0], bbox[2]], [bbox[1], bbox[3]])
    win = window_from_bounds(bx0, by0, bx1, by1, transform=tf)  # crop inward to whole pixels
    r0, c0 = max(math.ceil(win.row_off - 1e-6), 0), max(math.ceil(win.col_off - 1e-6), 0)
    r1 = min(math.floor(win.row_off + win.height + 1e-6), height)
    c1 = min(math.floor(win.col_off + win.width + 1e-6), width)
    if r1 <= r0 or c1 <= c0:
        raise UserError(f"bbox {bbox} is smaller than one pixel at zoom {result.zoom}; use a larger bbox or zoom")
    canvas = canvas[:, r0:r1, c0:c1]
    mem = MemoryFile()
    with mem.open(driver="GTiff", height=canvas.shape[1], width=canvas.shape[2], count=4, dtype="uint8",
                  crs="EPSG:3857", transform=tf @ tf.translation(c0, r0), photometric="RGB", alpha="YES") as dst:
        dst.write(canvas)
    return mem


def _decode(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as e:
        raise UserError(f"cached tile {path} cannot be decoded ({e}); delete it and re-run") from None


def zoom_for(cell_size_m: float, tile_px: int, lat: float) -> int:
    """Smallest zoom whose imagery is at least as fine as the output tiles (cell_size_m / tile_px per pixel)."""
    target = cell_size_m / tile_px
    for z in range(0, 20):
        if ground_resolution_m(lat, z) <= target:
            return z
    return 19


def import_xyz(bbox: tuple[float, float, float, float], out: Path | str, city: str, *, cell_size_m: float = 1000.0,
               zoom: int | None = None, template: str = DEFAULT_TEMPLATE, tile_px: int = 256,
               cache_dir: Path | None = None, fetch: FetchConfig | None = None,
               indicator_rasters: dict[str, Path | str] | None = None, aggregations: dict[str, str] | None = None,
               min_valid: float = 0.95, min_kept: float = 0.5, overwrite: bool = False, split_seed: int = 0,
               name: str | None = None) -> tuple[Workspace, ImportReport]:
    """Fetch tiles for `bbox` (west, south, east, north), stitch them and cut them into cells.

    Everything that can be checked is checked before the first download: the
    bbox, template, zoom, fetch options, cell options and `out`.
    """
    bbox = check_bbox(bbox)
    check_template(template)
    cfg = CutConfig(cell_size_m=cell_size_m, tile_px=tile_px, min_valid=min_valid, min_kept=min_kept)
    cfg.check()
    fetch = fetch or FetchConfig()
    fetch.check()
    zoom = check_zoom(zoom) if zoom is not None else zoom_for(cell_size_m, tile_px, (bbox[1] + bbox[3]) / 2)
    check_out_dir(out, overwrite)
    specs = indicator_specs(indicator_rasters or {}, aggregations or {})
    report = ImportReport(source=template.format(z="{z}", x="{x}", y="{y}"))
    fetched = fetch_tiles(template, bbox, zoom, cache_dir, cfg=fetch)
    report.notes.append(f"zoom {zoom}: {fetched.downloaded} tiles downloaded, {fetched.from_cache} from the cache")
    for url, reason in fetched.missing:
        report.skip(url, f"tile not available: {reason}")
    with stitch(fetched, bbox) as mem, mem.open() as src, WorkspaceBuilder(out, overwrite=overwrite) as builder:
        cut = cut_mosaic(src, builder, city, cfg, report, label=f"tiles of {template} at zoom {zoom}", anchor=bbox)
        cells, grid = cut.cells, cut.grid
        prov = {"image": f"XYZ tiles {template} at zoom {zoom}, stitched and warped to {tile_px} px per {cell_size_m:g} m cell",
                "geometry": f"square {cell_size_m:g} m cells in {grid.crs.to_string()} anchored on the north-west "
                            f"corner of bbox {list(bbox)}",
                VALID_COLUMN: VALID_PROVENANCE + " (missing tiles count as not imagery)"}
        prov.update(add_indicator_rasters(cells, indicator_rasters or {}, specs))
        attribution = ESRI_ATTRIBUTION if template == DEFAULT_TEMPLATE else f"tiles from {template}; check the provider's terms"
        manifest = Manifest(name=name or f"xyz-{city}", indicators=specs, provenance=prov,
                            source=f"urbanclip.data.importers.xyz: {template} z{zoom} bbox {list(bbox)}", split_seed=split_seed,
                            extra={"xyz": {"template": template, "zoom": zoom, "bbox": list(bbox), "attribution": attribution,
                                           "tiles_missing": len(fetched.missing)}})
        flag_suspect_values(cells, manifest, list(specs), report)
        ws = builder.finish(cells, manifest, cell_size_m={city: cell_size_m})
    report.cells = len(ws.cells)
    return ws, report
