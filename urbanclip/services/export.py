"""Downloads: cells with predictions, intervals, observed values and descriptions; comparison reports.

Cell exports are one row per cell, EPSG:4326 (lon/lat) polygons, columns:
  cell_id, city, row, col, lat, lon, split[, split_block], flags,
  description (the workspace's refined text when present, else its raw text; sentences joined by spaces),
  description_column (which column that was),
  <indicator>_observed, <indicator>_predicted (the median), <indicator>_expected (the mean: sum this column
  for totals), <indicator>_lower, <indicator>_upper (raw units; NaN = unknown),
  interval_level (nominal coverage of [lower, upper], e.g. 0.8; NaN without intervals).

Formats (all open with geopandas):
  geojson     RFC 7946 FeatureCollection            gpd.read_file(path)
  geoparquet  GeoParquet (CRS in the metadata)      gpd.read_parquet(path)
  csv         geometry as WKT in a `WKT` column     gpd.read_file(path, AUTODETECT_TYPE="YES")
              (GDAL's CSV driver reads a `WKT` column as the geometry; the CRS is EPSG:4326 but a CSV
              cannot say so), or pandas.read_csv + geopandas.GeoSeries.from_wkt

Reports (`report.json` written by `probe` / `compare`) export as Markdown or CSV, regenerated
from the JSON so an older report gets the current layout.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Sequence

import geopandas as gpd
import numpy as np
import pandas as pd

from urbanclip.data.workspace import CRS, atomic_write_bytes, split_sentences
from urbanclip.errors import UserError
from urbanclip.services.context import AppContext

# format -> (file suffix, MIME type)
FORMATS: dict[str, tuple[str, str]] = {
    "geojson": (".geojson", "application/geo+json"),
    "geoparquet": (".parquet", "application/vnd.apache.parquet"),
    "csv": (".csv", "text/csv"),
}
REPORT_FORMATS: dict[str, tuple[str, str]] = {"md": (".md", "text/markdown"), "csv": (".csv", "text/csv")}
SUFFIXES = {".geojson": "geojson", ".json": "geojson", ".parquet": "geoparquet", ".geoparquet": "geoparquet",
            ".csv": "csv", ".md": "md"}


def check_format(fmt: str, allowed: dict[str, tuple[str, str]] = FORMATS) -> str:
    """Lower-cased format name, or a UserError listing the choices."""
    f = str(fmt or "").strip().lower().lstrip(".")
    if f not in allowed:
        raise UserError(f"export format {fmt!r} is not supported; choose one of {', '.join(allowed)}")
    return f


def format_from_path(path: Path | str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise UserError(f"cannot tell the export format from {str(path)!r}; give --format "
                        f"({', '.join(FORMATS)} for cells, {', '.join(REPORT_FORMATS)} for reports) "
                        f"or end the file name in one of {', '.join(SUFFIXES)}")
    return SUFFIXES[suffix]


# ---------------------------------------------------------------------------------
# cells


def selected_rows(ctx: AppContext, city: str | None = None, cell_ids: Sequence[str] | None = None) -> np.ndarray:
    """Row numbers in workspace.cells: the given cells, else the city's cells, else all cells."""
    ws = ctx.workspace
    if cell_ids is not None:
        ids = list(dict.fromkeys(str(c) for c in cell_ids))
        if not ids:
            raise UserError("no cells selected: click a cell or draw an area on the map, or export the whole city")
        rows = np.array([ws.index_of(c) for c in ids])  # UserError names an unknown cell
        if city is not None:
            other = [c for c, r in zip(ids, rows) if ws.cells["city"].iloc[r] != city]
            if other:
                raise UserError(f"cell {other[0]!r} is not in city {city!r}; export its own city or leave --city out")
        return rows
    if city is not None:
        ws.city_cells(city)  # UserError naming the cities
        return np.flatnonzero((ws.cells["city"] == city).to_numpy())
    return np.arange(len(ws.cells))


def cells_frame(ctx: AppContext, city: str | None = None, cell_ids: Sequence[str] | None = None) -> gpd.GeoDataFrame:
    """The export table (see the module docstring) for the selected cells, in workspace order."""
    ws = ctx.workspace
    rows = selected_rows(ctx, city, cell_ids)
    cells = ws.cells.iloc[rows]
    text_col = ws.text_column()
    out = pd.DataFrame({c: cells[c].to_numpy() for c in ("cell_id", "city", "row", "col", "lat", "lon", "split")})
    if "split_block" in cells.columns:
        out["split_block"] = cells["split_block"].astype(str).to_numpy()
    out["flags"] = cells["flags"].to_numpy()
    out["description"] = [" ".join(split_sentences(t)) for t in cells[text_col]]
    out["description_column"] = text_col
    nan = np.full(len(rows), np.nan)
    for name in ws.indicator_names:
        out[f"{name}_observed"] = cells[name].to_numpy(dtype=np.float64)
        pred = ctx.predictions.get(name)
        out[f"{name}_predicted"] = pred[rows] if pred is not None else nan
        mean = ctx.expected.get(name)
        out[f"{name}_expected"] = mean[rows] if mean is not None else nan
        lo, hi = ctx.intervals.get(name, (None, None))
        out[f"{name}_lower"] = lo[rows] if lo is not None else nan
        out[f"{name}_upper"] = hi[rows] if hi is not None else nan
    out["interval_level"] = float(ctx.interval_level) if ctx.has_intervals and ctx.interval_level else math.nan
    return gpd.GeoDataFrame(out, geometry=cells.geometry.to_numpy(), crs=CRS)


def encode_cells(frame: gpd.GeoDataFrame, fmt: str) -> bytes:
    """The file contents of `frame` in `fmt`."""
    fmt = check_format(fmt)
    if fmt == "geojson":
        return frame.to_json(na="null", drop_id=True, ensure_ascii=False).encode("utf-8")
    if fmt == "geoparquet":
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        return buf.getvalue()
    table = pd.DataFrame(frame.drop(columns="geometry"))
    table.insert(0, "WKT", frame.geometry.to_wkt(rounding_precision=-1))  # full precision, like the other formats
    return table.to_csv(index=False).encode("utf-8")


def export_cells(ctx: AppContext, fmt: str, city: str | None = None, cell_ids: Sequence[str] | None = None) -> bytes:
    """Selected cells (or a city, or everything) as GeoJSON / GeoParquet / CSV bytes, for a download button."""
    fmt = check_format(fmt)
    return encode_cells(cells_frame(ctx, city, cell_ids), fmt)


def write_cells(ctx: AppContext, path: Path | str, fmt: str | None = None, city: str | None = None,
                cell_ids: Sequence[str] | None = None) -> Path:
    """Write the export to `path` (format from `fmt`, else from the file suffix); return the path."""
    path = Path(path)
    fmt = check_format(fmt or format_from_path(path))
    atomic_write_bytes(path, export_cells(ctx, fmt, city, cell_ids))
    return path


def file_name(ctx: AppContext, fmt: str, city: str | None = None, what: str = "") -> str:
    """A download file name: '<workspace>-<city>[-<what>].<suffix>'."""
    safe = lambda s: "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in s)  # noqa: E731
    parts = [safe(ctx.workspace.name), safe(city) if city else "all", safe(what) if what else ""]
    return "-".join(p for p in parts if p) + FORMATS[check_format(fmt)][0]


# ---------------------------------------------------------------------------------
# comparison / probe reports


def report_json_path(path: Path | str) -> Path:
    """`report.json` itself, or the report folder holding it."""
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    if not p.is_file():
        raise UserError(f"no report at {p}; give the report.json written by `python -m urbanclip probe` or `compare` "
                        "(or its folder)")
    return p


def export_report(path: Path | str, fmt: str) -> bytes:
    """A probe / comparison report as Markdown or CSV (the Table-2 layout with splits and interval coverage)."""
    from urbanclip.evaluation.reports import read_table2, table2_frame, table2_markdown

    fmt = check_format(fmt, REPORT_FORMATS)
    p = report_json_path(path)
    try:
        data = json.loads(p.read_text("utf-8"))
        rows = read_table2(p)
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{p} is not a readable probe/compare report ({e}); rerun the probe or comparison") from None
    indicators = data.get("indicators") or sorted({k for r in rows for k in r.results})
    if fmt == "csv":
        return table2_frame(rows, indicators).to_csv(index=False).encode("utf-8")
    return table2_markdown(rows, indicators, data.get("title", ""), meta=data.get("meta") or {}).encode("utf-8")
