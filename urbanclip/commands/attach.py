"""`attach`: add indicators to a workspace from a raster (zonal sum/mean) or a table (by cell id or by location)."""

from __future__ import annotations

import argparse

NAME = "attach"
HELP = "add an indicator to a workspace from a raster (e.g. WorldPop) or a table (by cell id or location)"
DESCRIPTION = ("Add indicators to any workspace. `raster`: area-weighted sum (counts) or mean (densities) of a "
               "raster in any CRS over each cell. `table`: a CSV / Parquet / GeoJSON / GeoPackage matched by cell id, "
               "or joined by location (polygons split by area, points counted per cell). Validated like the release "
               "CSV; provenance goes into the manifest; values that look capped or filled are flagged per cell.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="source", metavar="<source>", required=True)
    r = sub.add_parser("raster", help="zonal sum or mean of a raster per cell",
                       description="Area-weighted zonal statistics of one raster band per cell (any CRS; pixels "
                                   "larger than cells are split by area).")
    r.add_argument("raster", help="GeoTIFF (or any raster GDAL reads), e.g. a WorldPop or GHS-POP population grid")
    r.add_argument("--name", required=True, help="indicator name, e.g. population")
    r.add_argument("--band", type=int, default=1, help="band number (default 1)")
    r.add_argument("--aggregation", choices=("sum", "mean"),
                   help="sum for counts/totals, mean for densities/rates (default: sum, or the standard rule)")
    r.add_argument("--unit", help="unit written to the manifest (default: the standard one for population/gdp/carbon)")
    r.add_argument("--label", help="label shown in the app")

    t = sub.add_parser("table", help="columns of a table, by cell id or by location",
                       description="Attach numeric columns of a table: by cell id (default when it has the id "
                                   "column) or by location (its geometry, or lon/lat columns).")
    t.add_argument("table", help="CSV, Parquet/GeoParquet, GeoJSON, GeoPackage or Shapefile")
    t.add_argument("--column", action="append", required=True, metavar="SOURCE[=NAME]",
                   help="table column to attach, optionally under another indicator name (repeatable)")
    t.add_argument("--by", choices=("auto", "id", "spatial"), default="auto",
                   help="match rows by cell id or join by location (default auto: id when --id-column exists)")
    t.add_argument("--id-column", default="cell_id", help="column holding cell ids (default cell_id)")
    t.add_argument("--aggregation", choices=("sum", "mean"), help="for spatial joins: sum (split by area) or mean")
    t.add_argument("--layer", help="layer of a multi-layer file (GeoPackage)")
    t.add_argument("--unit", action="append", default=[], metavar="NAME=UNIT", help="unit of an attached indicator")
    for q in (r, t):
        q.add_argument("--workspace", "-w", required=True, help="workspace folder")
        q.add_argument("--replace", action="store_true", help="overwrite an indicator of the same name")


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    from urbanclip.errors import UserError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key.strip() or (sep and not value.strip()) or (flag == "--unit" and not sep):
            raise UserError(f"{flag} {item!r}: expected {'SOURCE[=NAME]' if flag == '--column' else 'NAME=UNIT'}")
        out[key.strip()] = value.strip() if sep else key.strip()
    return out


def run(args: argparse.Namespace) -> int:
    from urbanclip.data.attach import attach_raster, attach_table
    from urbanclip.data.workspace import Workspace

    ws = Workspace.load(args.workspace)
    if args.source == "raster":
        report = attach_raster(ws, args.name, args.raster, aggregation=args.aggregation, band=args.band,
                               unit=args.unit, label=args.label, replace=args.replace)
    else:
        report = attach_table(ws, args.table, _pairs(args.column, "--column"), by=args.by, id_column=args.id_column,
                              aggregation=args.aggregation, layer=args.layer, units=_pairs(args.unit, "--unit"),
                              replace=args.replace)
    print(report.summary())
    print(ws.summary())
    return 0
