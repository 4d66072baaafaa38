"""Attach indicators to an existing workspace: from a raster or from a table, with provenance.

The imagery importers (`import geotiff`, `import xyz`) make workspaces without
indicators; the release ships its own. `attach` adds (or, with `replace`,
replaces) one indicator column per call, from

* a **raster** in any CRS, e.g. WorldPop or GHS-POP population (counts per
  pixel: ``sum``) or a density (``mean``): area-weighted zonal statistics per cell
  (`urbanclip.data.zonal.zonal_raster`), pixels larger than cells included;
* a **table**: rows matched **by cell id** (a CSV / Parquet / GeoJSON column,
  default `cell_id`), or **spatially** (polygons split by area, points counted
  in the cell they fall in; `zonal.zonal_vector`).

Values are validated like the release CSV (numeric, finite, >= 0; errors name the
file, the line or feature and the column). Ids that are not cells are reported,
cells without a value stay NaN (unknown). The manifest records the indicator
(unit, aggregation, label), the column's provenance and, under
`extra["attached"][name]`, the source and method. Values that look capped or
filled are flagged per cell (`workspace.flag_suspect_values`). The workspace is
rewritten atomically.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from urbanclip.data.importers import ImportReport
from urbanclip.data.indicators import STANDARD, IndicatorSpec
from urbanclip.data.workspace import REQUIRED_COLUMNS, Workspace, flag_suspect_values
from urbanclip.data.zonal import check_aggregation, pixel_area_m2, zonal_raster, zonal_vector
from urbanclip.errors import UserError

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,40}$")
RESERVED = set(REQUIRED_COLUMNS) | {"valid_fraction", "split_block", "text_origin"}
VECTOR_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp", ".fgb", ".gml", ".kml")
LONLAT_COLUMNS = (("lon", "lat"), ("longitude", "latitude"), ("x", "y"))


def _spec(ws: Workspace, name: str, aggregation: str | None, unit: str | None, label: str | None,
          replace: bool) -> IndicatorSpec:
    if not _NAME_RE.match(name or ""):
        raise UserError(f"indicator name {name!r}: use letters, digits and '_' (starting with a letter), e.g. population")
    if name in RESERVED or name.startswith("text_") or (name in ws.cells.columns and name not in ws.manifest.indicators):
        raise UserError(f"indicator name {name!r} is a column the workspace already uses for something else; pick another")
    if name in ws.manifest.indicators and not replace:
        raise UserError(f"workspace {ws.root} already has indicator {name!r}; pass --replace to overwrite it")
    base = STANDARD.get(name, IndicatorSpec(name, "", "sum", name))
    agg = check_aggregation(aggregation or base.aggregation, f"indicator {name!r}")
    return IndicatorSpec(name, unit if unit is not None else base.unit, agg, label or base.label)


def _store(ws: Workspace, spec: IndicatorSpec, values: np.ndarray, provenance: str, meta: dict,
           report: ImportReport, check_suspect: bool = True) -> None:
    values = np.asarray(values, dtype=np.float64)
    ws.cells[spec.name] = values
    ws.manifest.indicators[spec.name] = spec
    ws.manifest.provenance[spec.name] = provenance
    known = int(np.isfinite(values).sum())
    meta = {**meta, "aggregation": spec.aggregation, "unit": spec.unit, "cells_with_value": known,
            "attached_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    ws.manifest.extra.setdefault("attached", {})[spec.name] = meta
    flag_suspect_values(ws.cells, ws.manifest, [spec.name] if check_suspect else [], report)
    report.cells = known
    missing = len(values) - known
    report.notes.append(f"{spec.name}: {known} of {len(values)} cells have a value"
                        + (f"; {missing} stay unknown (NaN): the source does not cover them" if missing else ""))
    ws.save()


def attach_raster(ws: Workspace, name: str, path: Path | str, *, aggregation: str | None = None, band: int = 1,
                  unit: str | None = None, label: str | None = None, replace: bool = False) -> ImportReport:
    """Add indicator `name` = area-weighted sum/mean of `band` of the raster at `path` over each cell."""
    spec = _spec(ws, name, aggregation, unit, label, replace)
    path = Path(path)
    report = ImportReport(source=str(path))
    values, coverage = zonal_raster(path, ws.cells.geometry, spec.aggregation, band=band)
    partial = int(((coverage > 0) & (coverage < 0.999)).sum())
    if partial:
        report.notes.append(f"{partial} cells are only partly covered by valid pixels; their {spec.aggregation} is "
                            "over the covered part (nodata = unknown)")
    prov = (f"{path} band {band}: area-weighted {spec.aggregation} of the pixels over each cell "
            "(urbanclip attach, urbanclip.data.zonal)")
    meta = {"kind": "raster", "source": str(path.resolve()), "band": band,
            "method": f"area-weighted zonal {spec.aggregation}", "partly_covered_cells": partial}
    cell_m2 = float(np.median(ws.cells.geometry.to_crs("EPSG:6933").area))
    repeats = spec.aggregation == "mean" and pixel_area_m2(path) > cell_m2
    if repeats:  # every cell inside one coarse pixel gets its value: repeats are by design, not a cap
        report.notes.append(f"{spec.name}: the raster's pixels are larger than the cells, so cells inside one pixel "
                            "share its mean (repeated values are expected; no cap/fill check)")
    _store(ws, spec, values, prov, meta, report, check_suspect=not repeats)
    return report


# ---------------------------------------------------------------------------------
# tables


def read_table(path: Path, layer: str | None = None) -> tuple[pd.DataFrame, str]:
    """The table at `path` (CSV, Parquet, or any vector format GDAL reads) and how its rows are named in errors."""
    if not path.is_file():
        raise UserError(f"table {path} not found")
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv", ".txt"):
            return pd.read_csv(path, dtype=str, keep_default_na=False, sep="\t" if suffix == ".tsv" else ","), "line"
        if suffix in (".parquet", ".geoparquet"):
            try:
                return gpd.read_parquet(path), "row"
            except (ValueError, KeyError):
                return pd.read_parquet(path), "row"
        return gpd.read_file(path, layer=layer), "feature"
    except UserError:
        raise
    except Exception as e:  # pandas / pyogrio raise many kinds
        raise UserError(f"{path}: cannot be read as a table ({type(e).__name__}: {e}); CSV, Parquet, GeoJSON, "
                        "GeoPackage and Shapefile are supported") from None


def _row_name(kind: str, i: int) -> str:
    return f"line {i + 2}" if kind == "line" else f"{kind} {i + 1}"


def _numeric(table: pd.DataFrame, column: str, path: Path, kind: str) -> np.ndarray:
    """The column as float64, or UserError naming the first bad row."""
    raw = table[column]
    text = raw.astype(str).str.strip() if raw.dtype == object else raw
    vals = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    for bad, what in ((~np.isfinite(vals) & ~np.isinf(vals), "not a number (empty or NaN)"),
                      (np.isinf(vals), "infinite"),
                      (vals < 0, "negative; indicators are counts or totals and must be >= 0")):
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise UserError(f"{path}, {_row_name(kind, i)}, column {column!r}: {what} (value {raw.iloc[i]!r}); "
                            "fix or remove that row")
    return vals


def _as_points(table: pd.DataFrame) -> gpd.GeoDataFrame | None:
    for lon, lat in LONLAT_COLUMNS:
        if lon in table.columns and lat in table.columns:
            x = pd.to_numeric(table[lon], errors="coerce")
            y = pd.to_numeric(table[lat], errors="coerce")
            return gpd.GeoDataFrame(table, geometry=gpd.points_from_xy(x, y), crs="EPSG:4326")
    return None


def attach_table(ws: Workspace, path: Path | str, columns: dict[str, str], *, by: str = "auto",
                 id_column: str = "cell_id", aggregation: str | None = None, layer: str | None = None,
                 units: dict[str, str] | None = None, replace: bool = False) -> ImportReport:
    """Add one indicator per entry of `columns` ({table column: indicator name}) from the table at `path`.

    `by`: "id" (match `id_column` to cell ids), "spatial" (geometry, or lon/lat columns of a CSV, joined by
    area) or "auto" (id when the table has `id_column`, else spatial).
    """
    path = Path(path)
    if not columns:
        raise UserError("name at least one table column to attach (--column SOURCE[=NAME])")
    if by not in ("auto", "id", "spatial"):
        raise UserError(f"--by must be 'auto', 'id' or 'spatial', got {by!r}")
    table, kind = read_table(path, layer)
    absent = [c for c in columns if c not in table.columns]
    if absent:
        raise UserError(f"{path}: no column {absent[0]!r}; it has {[c for c in table.columns if c != 'geometry']}")
    specs = {src: _spec(ws, name, aggregation, (units or {}).get(name), None, replace) for src, name in columns.items()}
    if len({s.name for s in specs.values()}) != len(specs):
        raise UserError("two --column options give the same indicator name; name each once")
    if by == "auto":
        by = "id" if id_column in table.columns else "spatial"
    report = ImportReport(source=str(path))
    values = {src: _numeric(table, src, path, kind) for src in columns}
    if by == "id":
        per_cell = _join_by_id(ws, table, values, id_column, path, kind, report)
        method = f"matched by {id_column!r} to cell ids"
    else:
        per_cell = _join_spatial(ws, table, values, specs, path, report)
        method = f"spatial join, area-weighted {next(iter(specs.values())).aggregation}"
    meta = {"kind": "table", "source": str(path.resolve()), "by": by, "method": method}
    for src, spec in specs.items():
        prov = f"{path} column {src!r}: {method} (urbanclip attach)"
        _store(ws, spec, per_cell[src], prov, {**meta, "column": src}, report)
    return report


def _join_by_id(ws: Workspace, table: pd.DataFrame, values: dict[str, np.ndarray], id_column: str, path: Path,
                kind: str, report: ImportReport) -> dict[str, np.ndarray]:
    if id_column not in table.columns:
        raise UserError(f"{path}: no id column {id_column!r}; name it with --id-column, or join by location with --by spatial")
    ids = table[id_column].astype(str).str.strip()
    dup = ids.duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise UserError(f"{path}, {_row_name(kind, i)}, column {id_column!r}: duplicate cell id {ids.iloc[i]!r}; "
                        "keep one row per cell")
    pos = {c: i for i, c in enumerate(ws.cells["cell_id"])}
    rows = np.array([pos.get(c, -1) for c in ids], dtype=np.int64)
    for cid in ids[rows < 0]:
        report.skip(cid, f"{id_column} is not a cell of this workspace")
    if (rows < 0).all():
        raise UserError(f"{path}: none of the {len(ids)} ids in column {id_column!r} is a cell of workspace {ws.root} "
                        f"(e.g. {ids.iloc[0]!r} vs {ws.cells['cell_id'].iloc[0]!r})")
    out = {}
    for src, vals in values.items():
        col = np.full(len(ws.cells), np.nan)
        col[rows[rows >= 0]] = vals[rows >= 0]
        out[src] = col
    return out


def _join_spatial(ws: Workspace, table: pd.DataFrame, values: dict[str, np.ndarray], specs: dict[str, IndicatorSpec],
                  path: Path, report: ImportReport) -> dict[str, np.ndarray]:
    aggs = {s.aggregation for s in specs.values()}
    if len(aggs) != 1:
        raise UserError("a spatial join uses one aggregation for all columns; attach sums and means in separate calls")
    feats = table if isinstance(table, gpd.GeoDataFrame) and table.geometry.name in table else _as_points(table)
    if feats is None:
        raise UserError(f"{path}: has no geometry and no lon/lat columns to join by location, and no cell id column; "
                        "add one, or name the id column with --id-column")
    if feats.crs is None:
        raise UserError(f"{path}: its geometry has no CRS; set one (e.g. `ogr2ogr -a_srs EPSG:4326`)")
    empty = feats.geometry.isna() | feats.geometry.is_empty
    if empty.any():
        report.notes.append(f"{int(empty.sum())} rows without geometry were left out")
    feats = feats[~empty.to_numpy()].copy()
    keep = ~empty.to_numpy()
    for src, vals in values.items():
        feats[src] = vals[keep]
    per_cell, coverage = zonal_vector(feats, list(values), ws.cells.geometry, aggs.pop())
    report.notes.append(f"{int((coverage > 0).sum())} cells overlap the table's geometries")
    return {src: per_cell[src].to_numpy(dtype=np.float64) for src in values}
