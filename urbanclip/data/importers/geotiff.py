"""Import an RGB GeoTIFF mosaic (any CRS) cut into square N-metre cells, plus indicator rasters.

The one cutting function, `cut_mosaic`, is shared with the XYZ importer (which
stitches downloaded tiles into an in-memory GeoTIFF first).

Grid. Cells are laid out by `urbanclip.data.grid.square_grid` in the UTM zone of the
mosaic's north-west corner, starting at that corner, so they are N metres
square on the ground whatever the mosaic's CRS. Cells not fully inside the
mosaic, or with less than `min_valid` of their pixels covered by imagery
(nodata / alpha), are skipped and reported. Each cell is warped from the mosaic
into a north-up `tile_px` x `tile_px` PNG (GDAL `average` when shrinking, so fine
imagery does not alias; `bilinear` when enlarging). Non-8-bit imagery is
stretched to 0..255 between its 2nd and 98th percentiles (one stretch for the
whole mosaic, so cells stay comparable).

Indicator rasters are aggregated per cell following `IndicatorSpec.aggregation`:

* ``sum`` (counts and totals: population, GDP, carbon): each source pixel is
  turned into a density per true m² (geodesic pixel area), resampled onto a fine
  sub-grid of every cell with GDAL `average`, and integrated over the cell. This
  conserves totals across CRSs and resolutions, including pixels that straddle a
  cell edge (split by area).
* ``mean`` (densities, rates): the area-weighted mean over the cell.

Nodata (the raster's nodata value, or NaN) is "unknown": a cell with no valid
pixel gets NaN; a partly covered cell is aggregated over its valid part (for
WorldPop-style rasters, nodata marks water, where the count is 0). Negative
values are refused, as they are in the workspace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from pyproj import Geod
from rasterio.enums import Resampling
from rasterio.transform import from_bounds, from_origin
from rasterio.warp import reproject, transform, transform_bounds
from rasterio.windows import Window, from_bounds as window_from_bounds
from shapely.geometry import box
from tqdm import tqdm

from urbanclip.errors import UserError
from urbanclip.data.grid import square_grid, utm_crs_for
from urbanclip.data.importers import ImportReport
from urbanclip.data.indicators import STANDARD, IndicatorSpec
from urbanclip.data.workspace import Manifest, Workspace, WorkspaceBuilder

_GEOD = Geod(ellps="WGS84")


@dataclass
class CutConfig:
    """How a mosaic is cut into cells."""

    cell_size_m: float = 1000.0
    tile_px: int = 256
    min_valid: float = 0.95  # fraction of a cell's pixels that must carry imagery
    max_subcells: int = 32  # sub-grid per cell side used to aggregate indicator rasters

    def check(self) -> None:
        if not self.cell_size_m > 0:
            raise UserError(f"cell size must be positive, got {self.cell_size_m} m")
        if not 8 <= self.tile_px <= 4096:
            raise UserError(f"tile size must be 8..4096 px, got {self.tile_px}")
        if not 0 < self.min_valid <= 1:
            raise UserError(f"min_valid must be in (0, 1], got {self.min_valid}")


@dataclass
class GridInfo:
    """The cells' common UTM grid: what indicator aggregation needs."""

    crs: object  # pyproj CRS
    west: float  # UTM x of the grid's north-west corner
    north: float  # UTM y of the grid's north-west corner
    n_rows: int
    n_cols: int
    cell_size_m: float


def import_geotiff(mosaic: Path | str, out: Path | str, cell_size_m: float, city: str, *,
                   indicator_rasters: dict[str, Path | str] | None = None,
                   aggregations: dict[str, str] | None = None, tile_px: int = 256, min_valid: float = 0.95,
                   overwrite: bool = False, split_seed: int = 0, name: str | None = None) -> tuple[Workspace, ImportReport]:
    """Cut `mosaic` into cells of `cell_size_m` for `city`; aggregate `indicator_rasters` ({name: path}).

    `aggregations` overrides "sum"/"mean" per indicator (default: the standard
    spec's rule for population/gdp/carbon, else "sum").
    """
    mosaic = Path(mosaic)
    cfg = CutConfig(cell_size_m=cell_size_m, tile_px=tile_px, min_valid=min_valid)
    cfg.check()
    specs = indicator_specs(indicator_rasters or {}, aggregations or {})
    report = ImportReport(source=str(mosaic))
    with open_raster(mosaic) as src, WorkspaceBuilder(out, overwrite=overwrite) as builder:
        cells, grid = cut_mosaic(src, builder, city, cfg, report, label=str(mosaic))
        prov = {"image": f"{mosaic} warped to {cfg.tile_px} px per {cfg.cell_size_m:g} m cell",
                "geometry": f"square {cfg.cell_size_m:g} m cells in {grid.crs.to_string()} over {mosaic}"}
        for ind, path in (indicator_rasters or {}).items():
            cells[ind] = aggregate_raster(Path(path), cells, grid, specs[ind].aggregation, cfg.max_subcells)
            prov[ind] = f"{path} aggregated per cell by area-weighted {specs[ind].aggregation}"
        manifest = Manifest(name=name or f"geotiff-{city}", indicators=specs, provenance=prov,
                            source=f"urbanclip.data.importers.geotiff: {mosaic}", split_seed=split_seed,
                            extra={"geotiff": {"mosaic": str(mosaic), "crs": str(src.crs), "cell_size_m": cfg.cell_size_m,
                                               "tile_px": cfg.tile_px, "indicator_rasters": {k: str(v) for k, v in (indicator_rasters or {}).items()}}})
        ws = builder.finish(cells, manifest, cell_size_m={city: cfg.cell_size_m})
    report.cells = len(ws.cells)
    return ws, report


def indicator_specs(rasters: dict[str, Path | str], aggregations: dict[str, str]) -> dict[str, IndicatorSpec]:
    specs = {}
    for ind in rasters:
        base = STANDARD.get(ind, IndicatorSpec(ind, "", "sum", ind))
        agg = aggregations.get(ind, base.aggregation)
        if agg not in ("sum", "mean"):
            raise UserError(f"indicator {ind!r}: aggregation must be 'sum' or 'mean', got {agg!r}")
        specs[ind] = IndicatorSpec(base.name, base.unit, agg, base.label)
    return specs


def open_raster(path: Path) -> rasterio.io.DatasetReader:
    """Open a raster with an error naming the file when it is missing or unreadable."""
    if not Path(path).is_file():
        raise UserError(f"raster {path} not found")
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as e:
        raise UserError(f"{path} cannot be read as a raster ({e}); is it a valid GeoTIFF?") from None


def check_mosaic(src: rasterio.io.DatasetReader, label: str) -> None:
    if src.crs is None:
        raise UserError(f"{label}: has no CRS; georeference it (e.g. `gdal_edit.py -a_srs EPSG:XXXX`) before importing")
    if src.count < 3:
        raise UserError(f"{label}: has {src.count} band(s); an RGB mosaic needs at least 3 (bands 1-3 are read as R, G, B)")
    if src.transform.b != 0 or src.transform.d != 0:
        raise UserError(f"{label}: is rotated; warp it to a north-up grid first (gdalwarp)")


# ---------------------------------------------------------------------------------
# cutting


def cut_mosaic(src: rasterio.io.DatasetReader, builder: WorkspaceBuilder, city: str, cfg: CutConfig,
               report: ImportReport, label: str) -> tuple[gpd.GeoDataFrame, GridInfo]:
    """Lay a square grid over `src`, write one PNG per complete cell; return the cells and the grid."""
    check_mosaic(src, label)
    cfg.check()
    grid, cells = _lay_grid(src, city, cfg.cell_size_m, label)
    footprint = box(*src.bounds).buffer(0.5 * min(abs(src.res[0]), abs(src.res[1])), join_style=2)
    inside = cells.to_crs(src.crs).within(footprint).to_numpy()
    for cid in cells["cell_id"][~inside]:
        report.skip(cid, "extends beyond the mosaic")
    cells = cells[inside].reset_index(drop=True)
    if len(cells) == 0:
        raise UserError(f"{label}: no whole {cfg.cell_size_m:g} m cell fits inside the mosaic; use a smaller --cell-size")
    stretch = _stretch_for(src)
    src_res_m = _source_resolution_m(src)
    resampling = Resampling.average if src_res_m < cfg.cell_size_m / cfg.tile_px else Resampling.bilinear
    images = []
    keep = np.ones(len(cells), dtype=bool)
    for i, (cid, row, col) in enumerate(tqdm(list(zip(cells["cell_id"], cells["row"], cells["col"])),
                                            desc=f"cutting {city}", unit="cell", leave=False)):
        # exact grid bounds (the polygons went through EPSG:4326)
        west = grid.west + col * cfg.cell_size_m
        north = grid.north - row * cfg.cell_size_m
        rgb, valid = _warp_cell(src, grid.crs, (west, north - cfg.cell_size_m, west + cfg.cell_size_m, north),
                                cfg.tile_px, resampling)
        if valid < cfg.min_valid:
            report.skip(cid, f"only {valid:.0%} of the cell has imagery (nodata), below {cfg.min_valid:.0%}")
            keep[i] = False
            images.append(None)
            continue
        images.append(builder.write_image(city, f"r{row:03d}_c{col:03d}.png", stretch(rgb)))
        report.images += 1
    cells["image"] = images
    cells = cells[keep].reset_index(drop=True)
    if len(cells) == 0:
        raise UserError(f"{label}: every cell is mostly nodata; check the mosaic's nodata value / alpha band")
    return cells, grid


def _lay_grid(src: rasterio.io.DatasetReader, city: str, cell_size_m: float, label: str) -> tuple[GridInfo, gpd.GeoDataFrame]:
    west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
    if not (east > west and north > south):
        raise UserError(f"{label}: has zero area in EPSG:4326 (bounds {src.bounds})")
    utm = utm_crs_for(west, north)
    minx, miny, maxx, maxy = _inner_bounds(src, utm)
    n_cols, n_rows = int((maxx - minx) // cell_size_m), int((maxy - miny) // cell_size_m)
    if n_rows < 1 or n_cols < 1:
        raise UserError(f"{label}: the mosaic ({maxx - minx:.0f} x {maxy - miny:.0f} m) is smaller than one {cell_size_m:g} m cell")
    (lon,), (lat,) = transform(utm, "EPSG:4326", [minx], [maxy])
    cells = square_grid(city, lon, lat, n_rows, n_cols, cell_size_m)
    grid_utm = utm_crs_for(lon, lat)  # the zone square_grid used
    (gx,), (gy,) = transform("EPSG:4326", grid_utm, [lon], [lat])
    return GridInfo(grid_utm, gx, gy, n_rows, n_cols, cell_size_m), cells


def _inner_bounds(src: rasterio.io.DatasetReader, crs, n: int = 21) -> tuple[float, float, float, float]:
    """An axis-aligned box in `crs` inside the mosaic's footprint (which may be slightly rotated there)."""
    l, b, r, t = src.bounds
    xs, ys = np.linspace(l, r, n), np.linspace(b, t, n)
    edges = {"west": ([l] * n, ys), "east": ([r] * n, ys), "south": (xs, [b] * n), "north": (xs, [t] * n)}
    ex = {k: transform(src.crs, crs, list(v[0]), list(v[1])) for k, v in edges.items()}
    return (max(ex["west"][0]), max(ex["south"][1]), min(ex["east"][0]), min(ex["north"][1]))


def _warp_cell(src: rasterio.io.DatasetReader, dst_crs, bounds: tuple[float, float, float, float], px: int,
               resampling: Resampling) -> tuple[np.ndarray, float]:
    """The cell as a (px, px, 3) array in the source dtype and the fraction of it covered by imagery."""
    window = _window_for(src, dst_crs, bounds, pad=2)
    data = src.read((1, 2, 3), window=window)
    mask = src.dataset_mask(window=window)
    win_transform = src.window_transform(window)
    dst_transform = from_bounds(*bounds, px, px)
    out = np.zeros((3, px, px), dtype=np.float32)
    reproject(data.astype(np.float32), out, src_transform=win_transform, src_crs=src.crs, dst_transform=dst_transform,
              dst_crs=dst_crs, resampling=resampling)
    valid = np.zeros((px, px), dtype=np.uint8)
    reproject(mask, valid, src_transform=win_transform, src_crs=src.crs, dst_transform=dst_transform,
              dst_crs=dst_crs, resampling=Resampling.nearest, dst_nodata=0)
    return np.moveaxis(out, 0, -1), float((valid > 0).mean())


def _window_for(src: rasterio.io.DatasetReader, crs, bounds, pad: int) -> Window:
    b = transform_bounds(crs, src.crs, *bounds, densify_pts=5)
    w = window_from_bounds(*b, transform=src.transform)
    col0 = max(int(math.floor(w.col_off)) - pad, 0)
    row0 = max(int(math.floor(w.row_off)) - pad, 0)
    col1 = min(int(math.ceil(w.col_off + w.width)) + pad, src.width)
    row1 = min(int(math.ceil(w.row_off + w.height)) + pad, src.height)
    if col1 <= col0 or row1 <= row0:
        return Window(0, 0, 1, 1)
    return Window(col0, row0, col1 - col0, row1 - row0)


def _source_resolution_m(src: rasterio.io.DatasetReader) -> float:
    """Ground size of one mosaic pixel near its centre (metres)."""
    cx, cy = src.xy(src.height // 2, src.width // 2)
    lons, lats = transform(src.crs, "EPSG:4326", [cx, cx + src.res[0]], [cy, cy])
    _, _, dist = _GEOD.inv(lons[0], lats[0], lons[1], lats[1])
    return float(dist)


def _stretch_for(src: rasterio.io.DatasetReader):
    """uint8 conversion: identity for 8-bit imagery, else a global 2-98 percentile stretch."""
    if src.dtypes[0] == "uint8":
        return lambda a: np.clip(np.round(a), 0, 255).astype(np.uint8)
    scale = max(1, max(src.width, src.height) // 1024)
    sample = src.read((1, 2, 3), out_shape=(3, max(1, src.height // scale), max(1, src.width // scale)), masked=True)
    vals = sample.compressed().astype(np.float64)
    lo, hi = (np.percentile(vals, [2, 98]) if vals.size else (0.0, 1.0))
    hi = hi if hi > lo else lo + 1.0
    return lambda a: np.clip((a - lo) / (hi - lo) * 255.0, 0, 255).round().astype(np.uint8)


# ---------------------------------------------------------------------------------
# indicator rasters


def aggregate_raster(path: Path, cells: gpd.GeoDataFrame, grid: GridInfo, aggregation: str,
                     max_subcells: int = 32) -> np.ndarray:
    """Per-cell area-weighted sum or mean of band 1 of `path` (NaN where no valid pixel)."""
    with open_raster(path) as src:
        if src.crs is None:
            raise UserError(f"{path}: indicator raster has no CRS; georeference it before importing")
        k = _subcells(src, grid.cell_size_m, max_subcells)
        r = grid.cell_size_m / k  # sub-cell side in UTM metres
        grid_bounds = (grid.west, grid.north - grid.n_rows * grid.cell_size_m,
                       grid.west + grid.n_cols * grid.cell_size_m, grid.north)
        window = _window_for(src, grid.crs, grid_bounds, pad=2)
        data = src.read(1, window=window, masked=True).astype(np.float64)
        vals = data.filled(np.nan)
        vals[~np.isfinite(vals)] = np.nan
        neg = vals < 0
        if neg.any():
            rr, cc = np.argwhere(neg)[0]
            raise UserError(f"{path}: band 1 has negative values (e.g. {vals[rr, cc]:g} at row {rr + int(window.row_off)}, "
                            f"col {cc + int(window.col_off)}); set the raster's nodata value or fix the data")
        win_transform = src.window_transform(window)
        if aggregation == "sum":
            vals = vals / _pixel_areas_m2(src.crs, win_transform, vals.shape)
        fine = np.full((grid.n_rows * k, grid.n_cols * k), np.nan, dtype=np.float64)
        reproject(vals, fine, src_transform=win_transform, src_crs=src.crs, src_nodata=np.nan,
                  dst_transform=from_origin(grid.west, grid.north, r, r), dst_crs=grid.crs, dst_nodata=np.nan,
                  resampling=Resampling.average)
    blocks = fine.reshape(grid.n_rows, k, grid.n_cols, k)
    n_valid = np.isfinite(blocks).sum(axis=(1, 3))
    total = np.nansum(blocks, axis=(1, 3))
    per_cell = np.where(n_valid > 0, total if aggregation == "sum" else total / np.maximum(n_valid, 1), np.nan)
    per_cell = per_cell[cells["row"].to_numpy(), cells["col"].to_numpy()]
    if not np.isfinite(per_cell).any():
        raise UserError(f"{path}: indicator raster does not overlap the mosaic's cells (or is all nodata)")
    if aggregation == "sum":  # sum of densities x true area of one sub-cell (UTM is not exactly area-true)
        true_area = np.array([abs(_GEOD.geometry_area_perimeter(g)[0]) for g in cells.geometry])
        per_cell = per_cell * true_area / (k * k)
    return per_cell


def _subcells(src: rasterio.io.DatasetReader, cell_size_m: float, max_subcells: int) -> int:
    """Sub-grid per cell side: about two sub-cells per source pixel, at least 4."""
    res = _source_resolution_m(src)
    return int(min(max(4, math.ceil(2 * cell_size_m / max(res, 1e-9))), max_subcells))


def _pixel_areas_m2(crs, tf, shape: tuple[int, int]) -> np.ndarray:
    """True (geodesic) area of each pixel, computed per row at the middle column, as an (H, 1) array."""
    h, w = shape
    c = w // 2
    rows = np.arange(h)
    corners = [(c, rows), (c + 1, rows), (c + 1, rows + 1), (c, rows + 1)]
    lons, lats = [], []
    for cc, rr in corners:
        col, row = np.full(h, cc, dtype=np.float64), rr.astype(np.float64)
        xs, ys = tf.a * col + tf.b * row + tf.c, tf.d * col + tf.e * row + tf.f  # the affine map, written out
        lo, la = transform(crs, "EPSG:4326", list(xs), list(ys))
        lons.append(lo)
        lats.append(la)
    lons, lats = np.array(lons).T, np.array(lats).T
    areas = np.array([abs(_GEOD.polygon_area_perimeter(lo, la)[0]) for lo, la in zip(lons, lats)])
    return np.maximum(areas, 1e-9)[:, None]
