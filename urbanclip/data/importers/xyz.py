"""Import imagery from an XYZ tile provider: download (cached, polite), stitch, cut into cells.

Default provider: Esri World Imagery (`DEFAULT_TEMPLATE`; note `{y}` before
`{x}`). Its use is subject to Esri's terms; the attribution is written into the
manifest. Any `{z}/{x}/{y}` template works, e.g. a local tile server.

Politeness: one request at a time, at most `rate_limit_per_s` requests per
second, a User-Agent naming urbanclip, retries with exponential backoff on
5xx / 429 / timeouts / connection errors only, and a disk cache
(`urbanclip.paths.tile_cache_dir()`, keyed by a hash of the template) so a
tile is never fetched twice. Tiles the provider does not have (404, or a body
that is not an image) are left empty; cells over them are skipped by the
cutter and reported.

The stitched mosaic (EPSG:3857, cropped to the bbox) is an in-memory GeoTIFF
handed to `geotiff.cut_mosaic`: one cutting function for both importers.
"""

from __future__ import annotations

import hashlib
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from rasterio.io import MemoryFile
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_transform
from rasterio.windows import from_bounds as window_from_bounds
from tqdm import tqdm

from urbanclip import __version__
from urbanclip.errors import UserError
from urbanclip.data.importers import ImportReport
from urbanclip.data.importers.geotiff import CutConfig, aggregate_raster, cut_mosaic, indicator_specs
from urbanclip.paths import tile_cache_dir
from urbanclip.data.tiles import ground_resolution_m, tile_bounds_mercator, tiles_for_bbox
from urbanclip.data.workspace import Manifest, Workspace, WorkspaceBuilder

DEFAULT_TEMPLATE = "https://server.arcgisonline.com/ArcGIS/rest/services/World_Imagery/MapServer/tile/{z}/{y}/{x}"
ESRI_ATTRIBUTION = "Esri World Imagery: Source: Esri, Maxar, Earthstar Geographics, and the GIS User Community"
USER_AGENT = f"urbanclip/{__version__} (Urban Insights tile importer; python-requests)"
RETRY_STATUS = {429, 500, 502, 503, 504}


@dataclass
class FetchConfig:
    """How politely tiles are fetched."""

    user_agent: str = USER_AGENT
    rate_limit_per_s: float = 4.0
    retries: int = 3
    timeout: float = 20.0
    backoff_s: float = 0.5  # first retry waits this long, then doubles
    max_tiles: int = 4000


@dataclass
class FetchResult:
    """Tiles on disk (x, y) -> cached file, plus (url, reason) for tiles that could not be had."""

    zoom: int
    tiles: dict[tuple[int, int], Path]
    missing: list[tuple[str, str]]
    downloaded: int = 0
    from_cache: int = 0


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


def fetch_tiles(template: str, bbox: tuple[float, float, float, float], zoom: int, cache_dir: Path | None = None,
                user_agent: str = USER_AGENT, rate_limit_per_s: float = 4.0, retries: int = 3, timeout: float = 20.0,
                cfg: FetchConfig | None = None) -> FetchResult:
    """Make sure every tile covering `bbox` at `zoom` is in the disk cache; fetch those that are not."""
    import requests

    cfg = cfg or FetchConfig(user_agent=user_agent, rate_limit_per_s=rate_limit_per_s, retries=retries, timeout=timeout)
    check_template(template)
    bbox = check_bbox(bbox)
    if cfg.rate_limit_per_s <= 0:
        raise UserError(f"rate limit must be positive, got {cfg.rate_limit_per_s} requests/s")
    xs, ys = tiles_for_bbox(bbox, zoom)
    n = len(xs) * len(ys)
    if n > cfg.max_tiles:
        raise UserError(f"bbox {bbox} needs {n} tiles at zoom {zoom} (limit {cfg.max_tiles}); use a lower --zoom or a smaller bbox")
    folder = cache_folder(template, cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "template.txt").write_text(template + "\n", "utf-8")
    result = FetchResult(zoom=zoom, tiles={}, missing=[])
    session = requests.Session()
    session.headers["User-Agent"] = cfg.user_agent
    last = [0.0]
    todo = [(x, y) for y in ys for x in xs]
    for x, y in tqdm(todo, desc=f"tiles z{zoom}", unit="tile", leave=False):
        path = folder / str(zoom) / str(x) / f"{y}.tile"
        if path.is_file():
            result.tiles[(x, y)] = path
            result.from_cache += 1
            continue
        url = template.format(z=zoom, x=x, y=y)
        data, reason = _get(session, url, cfg, last)
        if data is None:
            result.missing.append((url, reason))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)
        result.tiles[(x, y)] = path
        result.downloaded += 1
    session.close()
    if not result.tiles:
        url, reason = result.missing[0] if result.missing else ("?", "no tiles")
        raise UserError(f"no tile could be fetched for bbox {bbox} at zoom {zoom}; first failure: {url}: {reason}")
    return result


def _get(session, url: str, cfg: FetchConfig, last: list[float]) -> tuple[bytes | None, str]:
    """GET one tile with rate limit and retries; (bytes, "") or (None, reason)."""
    import requests

    reason = ""
    for attempt in range(cfg.retries + 1):
        wait = 1.0 / cfg.rate_limit_per_s - (time.monotonic() - last[0])
        if wait > 0:
            time.sleep(wait)
        last[0] = time.monotonic()
        try:
            r = session.get(url, timeout=cfg.timeout)
        except (requests.Timeout, requests.ConnectionError) as e:
            reason = f"{type(e).__name__}: {e}"
        else:
            if r.status_code == 200:
                try:
                    with Image.open(io.BytesIO(r.content)) as im:
                        im.verify()
                except Exception:
                    return None, f"HTTP 200 but the body is not an image ({r.headers.get('content-type', '?')})"
                return r.content, ""
            reason = f"HTTP {r.status_code}"
            if r.status_code not in RETRY_STATUS:
                return None, reason
        if attempt < cfg.retries:
            time.sleep(cfg.backoff_s * 2 ** attempt)
    return None, f"{reason} after {cfg.retries + 1} attempts"


def stitch(result: FetchResult, bbox: tuple[float, float, float, float]) -> MemoryFile:
    """Paste cached tiles into one EPSG:3857 RGBA GeoTIFF (alpha 0 where a tile is missing), cropped to bbox."""
    xs = sorted({x for x, _ in result.tiles})  # missing tiles inside this span stay transparent
    ys = sorted({y for _, y in result.tiles})
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
               min_valid: float = 0.95, overwrite: bool = False, split_seed: int = 0,
               name: str | None = None) -> tuple[Workspace, ImportReport]:
    """Fetch tiles for `bbox` (west, south, east, north), stitch them and cut them into cells."""
    bbox = check_bbox(bbox)
    check_template(template)
    cfg = CutConfig(cell_size_m=cell_size_m, tile_px=tile_px, min_valid=min_valid)
    cfg.check()
    zoom = zoom if zoom is not None else zoom_for(cell_size_m, tile_px, (bbox[1] + bbox[3]) / 2)
    specs = indicator_specs(indicator_rasters or {}, aggregations or {})
    report = ImportReport(source=template.format(z="{z}", x="{x}", y="{y}"))
    fetched = fetch_tiles(template, bbox, zoom, cache_dir, cfg=fetch or FetchConfig())
    report.notes.append(f"zoom {zoom}: {fetched.downloaded} tiles downloaded, {fetched.from_cache} from the cache")
    for url, reason in fetched.missing:
        report.skip(url, f"tile not available: {reason}")
    with stitch(fetched, bbox) as mem, mem.open() as src, WorkspaceBuilder(out, overwrite=overwrite) as builder:
        cells, grid = cut_mosaic(src, builder, city, cfg, report, label=f"tiles of {template} at zoom {zoom}")
        prov = {"image": f"XYZ tiles {template} at zoom {zoom}, stitched and warped to {tile_px} px per {cell_size_m:g} m cell",
                "geometry": f"square {cell_size_m:g} m cells in {grid.crs.to_string()} over bbox {list(bbox)}"}
        for ind, path in (indicator_rasters or {}).items():
            cells[ind] = aggregate_raster(Path(path), cells, grid, specs[ind].aggregation, cfg.max_subcells)
            prov[ind] = f"{path} aggregated per cell by area-weighted {specs[ind].aggregation}"
        attribution = ESRI_ATTRIBUTION if template == DEFAULT_TEMPLATE else f"tiles from {template}; check the provider's terms"
        manifest = Manifest(name=name or f"xyz-{city}", indicators=specs, provenance=prov,
                            source=f"urbanclip.data.importers.xyz: {template} z{zoom} bbox {list(bbox)}", split_seed=split_seed,
                            extra={"xyz": {"template": template, "zoom": zoom, "bbox": list(bbox), "attribution": attribution}})
        ws = builder.finish(cells, manifest, cell_size_m={city: cell_size_m})
    report.cells = len(ws.cells)
    return ws, report
