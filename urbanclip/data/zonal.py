"""Zonal statistics: a raster or a vector table reduced to one value per cell polygon, by area.

One method for every importer and for `attach`, whatever the cells (a square UTM
grid, Baidu tiles, any polygons) and whatever the source CRS and resolution.

Rasters (`zonal_raster`). Each valid pixel contributes by the share of its area
that lies inside the cell (exact polygon intersection, in the raster's CRS):

* ``sum`` (counts and totals: population, GDP, carbon): sum of value x share,
  so totals are conserved, a pixel straddling two cells is split between them,
  and a pixel larger than the cell gives the cell its area share.
* ``mean`` (densities, rates): the mean of the values weighted by share.

Nodata (the raster's nodata value, its mask, or NaN) is "unknown": a cell with
no valid pixel gets NaN, a partly covered cell is aggregated over its valid part
(WorldPop-style rasters mark water as nodata, where the count is 0), and the
covered share of each cell is returned next to the values. Negative values are
refused, as they are in the workspace.

Vector tables (`zonal_vector`). Polygons are split by area (computed in an
equal-area CRS, EPSG:6933): ``sum`` gives each cell value x (area of the polygon
inside the cell / polygon area), ``mean`` the area-weighted mean of the polygons
overlapping the cell. Points are summed or averaged per cell they fall in.

Work is done in blocks of nearby cells (`BLOCK_PX` pixels on a side), so a
national raster is never read whole.
"""

from __future__ import annotations

import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from rasterio.windows import Window

from urbanclip.errors import UserError

AGGREGATIONS = ("sum", "mean")
EQUAL_AREA_CRS = "EPSG:6933"  # WGS 84 / NSIDC EASE-Grid 2.0 Global: areas are true everywhere
BLOCK_PX = 2048


def check_aggregation(aggregation: str, what: str) -> str:
    if aggregation not in AGGREGATIONS:
        raise UserError(f"{what}: aggregation must be 'sum' or 'mean', got {aggregation!r}")
    return aggregation


def zonal_raster(path: Path | str, polygons: gpd.GeoSeries, aggregation: str,
                 band: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Per-polygon area-weighted sum or mean of `band` of the raster at `path`, and the covered share.

    Returns (values, coverage): float64 arrays aligned with `polygons`; values are
    NaN where no valid pixel overlaps, coverage is the share of each polygon's area
    under valid pixels (0..1).
    """
    path = Path(path)
    check_aggregation(aggregation, str(path))
    if not path.is_file():
        raise UserError(f"raster {path} not found")
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as e:
        raise UserError(f"{path} cannot be read as a raster ({e}); is it a valid GeoTIFF?") from None
    with src:
        if src.crs is None:
            raise UserError(f"{path}: raster has no CRS; georeference it (e.g. `gdal_edit.py -a_srs EPSG:4326`) first")
        if not 1 <= band <= src.count:
            raise UserError(f"{path}: has {src.count} band(s); --band {band} does not exist")
        if src.transform.b != 0 or src.transform.d != 0:
            raise UserError(f"{path}: is rotated; warp it to a north-up grid first (gdalwarp)")
        polys = _in_raster_crs(polygons, src.crs)
        values = np.full(len(polys), np.nan)
        coverage = np.zeros(len(polys))
        for idx, window in _blocks(polys, src):
            _zonal_block(src, band, window, polys[idx], idx, aggregation, values, coverage, path)
    if not np.isfinite(values).any():
        raise UserError(f"{path}: the raster does not overlap the cells (or is all nodata there); check its extent "
                        "and CRS (`gdalinfo`)")
    return values, coverage


def pixel_area_m2(path: Path | str) -> float:
    """Ground area of the raster's centre pixel (equal-area CRS), m²: to tell coarse rasters from fine ones."""
    from shapely.geometry import box

    with rasterio.open(path) as src:
        tf = src.transform
        c, r = src.width // 2, src.height // 2
        x0, y0 = tf.c + c * tf.a, tf.f + r * tf.e
        pixel = gpd.GeoSeries([box(min(x0, x0 + tf.a), min(y0, y0 + tf.e), max(x0, x0 + tf.a), max(y0, y0 + tf.e))],
                              crs=src.crs)
    return float(pixel.to_crs(EQUAL_AREA_CRS).area.iloc[0])


def _in_raster_crs(polygons: gpd.GeoSeries, crs) -> np.ndarray:
    """Polygons as a shapely array in the raster's CRS; edges longer than ~1 km get extra vertices
    so they bend with the projection (shorter ones bend by millimetres)."""
    geo = gpd.GeoSeries(polygons).reset_index(drop=True)
    if geo.crs is None:
        raise UserError("cell polygons have no CRS")
    step = 0.01 if geo.crs.is_geographic else 1000.0
    dense = gpd.GeoSeries(shapely.segmentize(geo.to_numpy(), step), crs=geo.crs)
    return dense.to_crs(crs).to_numpy()


def _blocks(polys: np.ndarray, src) -> list[tuple[np.ndarray, Window]]:
    """Groups of nearby polygons (by the block of BLOCK_PX pixels their centre falls in) and the window they need."""
    colrow = _pixel_of(src.transform)
    b = shapely.bounds(polys)  # minx, miny, maxx, maxy
    col, row = colrow((b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2)
    key = np.floor(row / BLOCK_PX).astype(np.int64) * 1_000_003 + np.floor(col / BLOCK_PX).astype(np.int64)
    out = []
    for k in np.unique(key):
        idx = np.flatnonzero(key == k)
        c0, r0 = colrow(b[idx, 0].min(), b[idx, 3].max())
        c1, r1 = colrow(b[idx, 2].max(), b[idx, 1].min())
        cols = sorted((c0, c1))
        rows = sorted((r0, r1))
        col0, row0 = max(int(math.floor(cols[0])) - 1, 0), max(int(math.floor(rows[0])) - 1, 0)
        col1, row1 = min(int(math.ceil(cols[1])) + 1, src.width), min(int(math.ceil(rows[1])) + 1, src.height)
        if col1 <= col0 or row1 <= row0:
            continue  # these polygons lie outside the raster: NaN, coverage 0
        out.append((idx, Window(col0, row0, col1 - col0, row1 - row0)))
    return out


def _pixel_of(tf):
    """(x, y) -> fractional (col, row) of a north-up transform, written out (vectorised)."""
    return lambda x, y: ((np.asarray(x, dtype=np.float64) - tf.c) / tf.a, (np.asarray(y, dtype=np.float64) - tf.f) / tf.e)


def _zonal_block(src, band: int, window: Window, polys: np.ndarray, idx: np.ndarray, aggregation: str,
                 values: np.ndarray, coverage: np.ndarray, path: Path) -> None:
    try:
        data = src.read(band, window=window, masked=True)
    except rasterio.errors.RasterioError as e:
        cause = f" ({e.__cause__})" if e.__cause__ else ""
        raise UserError(f"{path}: pixels cannot be read: {e}{cause}; the file is truncated or corrupt. "
                        "Re-download or re-export it (`gdalinfo -checksum FILE` reads every block)") from None
    vals = np.ma.filled(data.astype(np.float64), np.nan)
    vals[~np.isfinite(vals)] = np.nan
    neg = vals < 0
    if neg.any():
        rr, cc = np.argwhere(neg)[0]
        raise UserError(f"{path}: band {band} has negative values (e.g. {vals[rr, cc]:g} at row "
                        f"{rr + int(window.row_off)}, col {cc + int(window.col_off)}); set the raster's nodata value "
                        "or fix the data")
    tf = src.window_transform(window)
    a, e, x0, y0 = tf.a, tf.e, tf.c, tf.f
    h, w = vals.shape
    pix_area = abs(a * e)
    colrow = _pixel_of(tf)
    cell_i, rows, cols = [], [], []
    for i, poly in enumerate(polys):
        minx, miny, maxx, maxy = poly.bounds
        ca, ra = colrow(minx, maxy)
        cb, rb = colrow(maxx, miny)
        c0, c1 = max(int(math.floor(min(ca, cb))), 0), min(int(math.ceil(max(ca, cb))), w)
        r0, r1 = max(int(math.floor(min(ra, rb))), 0), min(int(math.ceil(max(ra, rb))), h)
        if c1 <= c0 or r1 <= r0:
            continue
        rr, cc = np.meshgrid(np.arange(r0, r1), np.arange(c0, c1), indexing="ij")
        cell_i.append(np.full(rr.size, i))
        rows.append(rr.ravel())
        cols.append(cc.ravel())
    if not cell_i:
        return
    cell_i, rows, cols = np.concatenate(cell_i), np.concatenate(rows), np.concatenate(cols)
    share = _pixel_shares(polys, cell_i, rows, cols, a, e, x0, y0) / pix_area
    v = vals[rows, cols]
    ok = np.isfinite(v) & (share > 0)
    n = len(polys)
    weight = np.bincount(cell_i[ok], weights=share[ok], minlength=n)
    total = np.bincount(cell_i[ok], weights=(v * share)[ok], minlength=n)
    poly_area = shapely.area(polys) / pix_area
    got = weight > 0
    result = np.where(got, total if aggregation == "sum" else total / np.where(got, weight, 1.0), np.nan)
    values[idx] = result
    coverage[idx] = np.clip(np.where(poly_area > 0, weight / poly_area, 0.0), 0.0, 1.0)


def _pixel_shares(polys: np.ndarray, cell_i: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                  a: float, e: float, x0: float, y0: float) -> np.ndarray:
    """Area of each candidate pixel (row, col) inside polygon `polys[cell_i]` (raster CRS units).

    Pixels whose four corners are inside a convex polygon count whole; only the
    pixels on a polygon's edge are intersected exactly (a 1 km cell over 30 m
    pixels needs ~130 intersections, not ~1,100).
    """
    xl, xr = x0 + cols * a, x0 + (cols + 1) * a
    yt, yb = y0 + rows * e, y0 + (rows + 1) * e
    shapely.prepare(polys)
    target = polys[cell_i]
    inside = np.ones(len(cell_i), dtype=bool)
    anywhere = np.zeros(len(cell_i), dtype=bool)
    for x, y in ((xl, yt), (xr, yt), (xl, yb), (xr, yb)):
        c = shapely.contains_xy(target, x, y)
        inside &= c
        anywhere |= c
    # convex up to projection dust (reprojected edges bend by centimetres: 1e-5 of the area)
    convex = np.isclose(shapely.area(polys), shapely.area(shapely.convex_hull(polys)), rtol=1e-4)[cell_i]
    whole = inside & convex
    # a pixel with no corner inside can still hold a polygon vertex (near the polygon's corners)
    exact = ~whole & (anywhere | ~convex | _holds_vertex(polys, cell_i, rows, cols, a, e, x0, y0))
    area = np.zeros(len(cell_i))
    area[whole] = abs(a * e)
    if exact.any():
        boxes = shapely.box(np.minimum(xl, xr)[exact], np.minimum(yt, yb)[exact],
                            np.maximum(xl, xr)[exact], np.maximum(yt, yb)[exact])
        area[exact] = shapely.area(shapely.intersection(boxes, target[exact]))
    return area


def _holds_vertex(polys: np.ndarray, cell_i: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                  a: float, e: float, x0: float, y0: float) -> np.ndarray:
    coords, which = shapely.get_coordinates(shapely.get_exterior_ring(polys), return_index=True)
    vc = np.floor((coords[:, 0] - x0) / a).astype(np.int64)
    vr = np.floor((coords[:, 1] - y0) / e).astype(np.int64)
    holders = set(zip(which.tolist(), vr.tolist(), vc.tolist()))
    return np.fromiter(((i, r, c) in holders for i, r, c in zip(cell_i.tolist(), rows.tolist(), cols.tolist())),
                       dtype=bool, count=len(cell_i))


# ---------------------------------------------------------------------------------
# vector tables


def zonal_vector(features: gpd.GeoDataFrame, columns: list[str], polygons: gpd.GeoSeries,
                 aggregation: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Per-polygon area-weighted sum or mean of `columns` of `features` (polygons or points).

    Returns (values, coverage): a frame aligned with `polygons` (NaN where nothing
    overlaps) and, for polygon features, the share of each cell covered by them.
    """
    check_aggregation(aggregation, "table")
    cells = gpd.GeoDataFrame({"_cell": np.arange(len(polygons))}, geometry=gpd.GeoSeries(polygons).reset_index(drop=True).to_numpy(),
                             crs=polygons.crs).to_crs(EQUAL_AREA_CRS)
    feats = features[columns + [features.geometry.name]].to_crs(EQUAL_AREA_CRS).reset_index(drop=True)
    feats["_feat"] = np.arange(len(feats))
    kinds = set(feats.geom_type.dropna())
    out = pd.DataFrame(np.nan, index=np.arange(len(cells)), columns=columns)
    coverage = np.zeros(len(cells))
    if kinds <= {"Point", "MultiPoint"}:
        hit = gpd.sjoin(feats, cells, predicate="within", how="inner")
        grouped = hit.groupby("_cell")[columns]
        agg = grouped.sum(min_count=1) if aggregation == "sum" else grouped.mean()
        out.loc[agg.index, columns] = agg.to_numpy()
        coverage[agg.index.to_numpy()] = 1.0
        return out, coverage
    if not kinds <= {"Polygon", "MultiPolygon"}:
        raise UserError(f"table geometries must be polygons or points, found {sorted(kinds)}")
    feats["_area"] = feats.area
    pieces = gpd.overlay(cells, feats, how="intersection", keep_geom_type=True)
    if pieces.empty:
        return out, coverage
    pieces["_inter"] = pieces.area
    w = pieces["_inter"] / pieces["_area"].where(pieces["_area"] > 0) if aggregation == "sum" else pieces["_inter"]
    for c in columns:
        v = pieces[c].astype(float)
        ok = v.notna() & w.notna()
        num = (v[ok] * w[ok]).groupby(pieces.loc[ok, "_cell"]).sum()
        if aggregation == "sum":
            out.loc[num.index, c] = num.to_numpy()
        else:
            den = w[ok].groupby(pieces.loc[ok, "_cell"]).sum()
            out.loc[num.index, c] = (num / den.where(den > 0)).to_numpy()
    covered = pieces.groupby("_cell")["_inter"].sum()
    coverage[covered.index.to_numpy()] = np.clip(covered.to_numpy() / cells.area.to_numpy()[covered.index.to_numpy()], 0, 1)
    return out, coverage
