"""`import`: build a workspace from real data (UrbanCLIP release, GeoTIFF mosaic, XYZ tiles)."""

from __future__ import annotations

import argparse

NAME = "import"
HELP = "import real data into a new workspace (release | geotiff | xyz)"
DESCRIPTION = ("Build a workspace from real data. Sources: `release` (the UrbanCLIP dataset release folder), "
               "`geotiff` (an RGB mosaic + optional indicator rasters), `xyz` (tiles from a provider such as "
               "Esri World Imagery). The import is atomic: on error nothing is written.")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", "-o", required=True, help="workspace folder to create")
    p.add_argument("--overwrite", action="store_true", help="replace an existing workspace at --out")
    p.add_argument("--name", help="workspace name (default: derived from the source)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the random 60/20/20 train/val/test split")


def _grid(p: argparse.ArgumentParser) -> None:
    p.add_argument("--city", required=True, help="city name for the cells")
    p.add_argument("--cell-size", type=float, default=1000.0, help="cell side in metres (default 1000)")
    p.add_argument("--tile-px", type=int, default=256, help="image size per cell in pixels (default 256)")
    p.add_argument("--min-valid", type=float, default=0.95, help="skip cells with less imagery than this fraction")
    p.add_argument("--indicator", action="append", default=[], metavar="NAME=PATH[:sum|mean]",
                   help="indicator raster aggregated per cell, e.g. population=worldpop.tif (repeatable); "
                        "default aggregation: sum for population/gdp/carbon and unknown names")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="source", metavar="<source>", required=True)

    r = sub.add_parser("release", help="UrbanCLIP release: indicators CSV + captions JSON + Baidu tiles",
                       description="Import the UrbanCLIP dataset release (indicators.csv, captions/*.json, images/<City>/).")
    r.add_argument("release_dir", help="release folder (holding indicators.csv, captions/, images/)")
    r.add_argument("--cities", help="comma-separated cities to keep, e.g. Beijing,Guangzhou")
    r.add_argument("--csv", help="indicators CSV (default RELEASE_DIR/indicators.csv)")
    r.add_argument("--captions", nargs="*", help="captions JSON files (default RELEASE_DIR/captions/*.json)")
    r.add_argument("--images", help="images folder (default RELEASE_DIR/images)")
    r.add_argument("--datum", choices=("auto", "bd09", "wgs84"), default="auto",
                   help="how to read the 'WGS84 coordinate' column (default auto: detects BD09 values)")
    _common(r)

    g = sub.add_parser("geotiff", help="RGB GeoTIFF mosaic cut into square cells",
                       description="Cut an RGB GeoTIFF (any CRS, >= 3 bands) into square cells; aggregate indicator rasters.")
    g.add_argument("mosaic", help="RGB GeoTIFF")
    _grid(g)
    _common(g)

    x = sub.add_parser("xyz", help="tiles from an XYZ provider (default Esri World Imagery), stitched and cut",
                       description="Download tiles for a bbox (cached, rate-limited), stitch them and cut them into cells.")
    x.add_argument("--bbox", required=True, help="west,south,east,north in degrees")
    x.add_argument("--zoom", type=int, help="tile zoom (default: fine enough for --tile-px per cell)")
    x.add_argument("--template", help="tile URL template with {z} {x} {y} (default Esri World Imagery)")
    x.add_argument("--cache-dir", help="tile cache folder (default $URBANCLIP_HOME/tile-cache)")
    x.add_argument("--rate-limit", type=float, default=4.0, help="max requests per second (default 4)")
    x.add_argument("--retries", type=int, default=3, help="retries per tile on 5xx/timeouts (default 3)")
    x.add_argument("--timeout", type=float, default=20.0, help="seconds per request (default 20)")
    _grid(x)
    _common(x)


def _indicators(items: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    from urbanclip.errors import UserError

    paths, aggs = {}, {}
    for item in items:
        name, sep, rest = item.partition("=")
        if not sep or not name or not rest:
            raise UserError(f"--indicator {item!r}: expected NAME=PATH[:sum|mean]")
        if rest.endswith((":sum", ":mean")):
            rest, agg = rest.rsplit(":", 1)
            aggs[name] = agg
        paths[name] = rest
    return paths, aggs


def run(args: argparse.Namespace) -> int:
    from urbanclip.errors import UserError

    common = dict(out=args.out, overwrite=args.overwrite, split_seed=args.split_seed, name=args.name)
    if args.source == "release":
        from urbanclip.data.importers.release import import_release

        cities = [c.strip() for c in args.cities.split(",") if c.strip()] if args.cities else None
        ws, report = import_release(args.release_dir, cities=cities, csv=args.csv, captions=args.captions,
                                    images_dir=args.images, datum=args.datum, **common)
    elif args.source == "geotiff":
        from urbanclip.data.importers.geotiff import import_geotiff

        paths, aggs = _indicators(args.indicator)
        ws, report = import_geotiff(args.mosaic, cell_size_m=args.cell_size, city=args.city, indicator_rasters=paths,
                                    aggregations=aggs, tile_px=args.tile_px, min_valid=args.min_valid, **common)
    else:
        from urbanclip.data.importers.xyz import DEFAULT_TEMPLATE, FetchConfig, import_xyz

        try:
            bbox = tuple(float(v) for v in args.bbox.split(","))
        except ValueError:
            raise UserError(f"--bbox {args.bbox!r}: expected four numbers west,south,east,north") from None
        paths, aggs = _indicators(args.indicator)
        fetch = FetchConfig(rate_limit_per_s=args.rate_limit, retries=args.retries, timeout=args.timeout)
        ws, report = import_xyz(bbox, city=args.city, cell_size_m=args.cell_size, zoom=args.zoom,
                                template=args.template or DEFAULT_TEMPLATE, tile_px=args.tile_px,
                                cache_dir=args.cache_dir, fetch=fetch, indicator_rasters=paths, aggregations=aggs,
                                min_valid=args.min_valid, **common)
    print(report.summary())
    print(ws.summary())
    return 0
