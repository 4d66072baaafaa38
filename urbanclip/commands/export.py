"""`export`: cells (with predictions, intervals, observed values, descriptions) or a report, to a file."""

from __future__ import annotations

import argparse

NAME = "export"
HELP = "export cells as GeoJSON / GeoParquet / CSV, or a probe/compare report as Markdown / CSV"
DESCRIPTION = (HELP + ". Cells: --workspace W --out FILE [--city C | --cells ID,ID,...]; predictions and 80% "
               "intervals come from the active model (as on the Map page) unless --model none. "
               "Report: --report OUT/report.json --out FILE.md|FILE.csv. The format follows the file suffix "
               "unless --format is given.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", "-o", required=True, help="file to write (.geojson, .parquet, .csv, or .md for reports)")
    p.add_argument("--format", "-f", default=None,
                   help="geojson | geoparquet | csv for cells; md | csv for a report (default: from --out's suffix)")
    p.add_argument("--workspace", "-w", help="workspace folder (cell exports)")
    p.add_argument("--city", help="only this city's cells (default: every city)")
    p.add_argument("--cells", help="comma-separated cell ids to export (default: the whole city / workspace)")
    p.add_argument("--model", default="active",
                   help="checkpoint for predictions: 'active' (the Map page's model), a run folder, or 'none' "
                        "for observed values only (default active)")
    p.add_argument("--report", help="a report.json (or its folder) written by `probe` or `compare`, to export instead of cells")


def run(args: argparse.Namespace) -> int:
    from urbanclip.errors import UserError
    from urbanclip.services.export import REPORT_FORMATS, check_format, export_report, format_from_path, write_cells
    from urbanclip.data.workspace import atomic_write_bytes

    if args.report:
        if args.workspace or args.city or args.cells:
            raise UserError("--report exports a report; leave out --workspace / --city / --cells (or export cells without --report)")
        fmt = check_format(args.format or format_from_path(args.out), REPORT_FORMATS)
        from pathlib import Path

        atomic_write_bytes(Path(args.out), export_report(args.report, fmt))
        print(f"wrote {args.out}")
        return 0
    if not args.workspace:
        raise UserError("--workspace is required to export cells (or pass --report to export a report)")
    fmt = check_format(args.format or format_from_path(args.out))  # fail fast, before loading a model
    from urbanclip.services.context import load_context

    model = None if args.model.lower() == "none" else args.model
    ctx = load_context(args.workspace, model_path=model, progress=lambda m: print(m, flush=True))
    for note in ctx.notes:
        print(f"note: {note}")
    cells = [c.strip() for c in args.cells.split(",") if c.strip()] if args.cells is not None else None
    path = write_cells(ctx, args.out, fmt, city=args.city, cell_ids=cells)
    n = len(cells) if cells is not None else (len(ctx.workspace.city_cells(args.city)) if args.city else len(ctx.workspace.cells))
    what = "with predictions and intervals" if ctx.has_intervals else ("with predictions" if ctx.has_predictions else "observed values only")
    print(f"wrote {path} ({n} cells, {fmt}, {what})")
    return 0
