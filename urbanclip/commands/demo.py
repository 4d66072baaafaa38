"""`demo`: build the embedded synthetic demo workspace (fictional cities, generated imagery)."""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = "build the synthetic demo workspace (procedural, clearly labelled synthetic)"
DESCRIPTION = ("Build the procedural synthetic demo workspace: fictional cities rendered from a hidden land-use "
               "field, with generated descriptions and indicators. Not real imagery. By default it goes to the "
               "urbanclip home (URBANCLIP_HOME or ~/.cache/urbanclip) and is left alone if it already exists.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", "-o", default=None, help="workspace folder (default: <urbanclip home>/workspaces/demo)")
    p.add_argument("--seed", type=int, default=0, help="generator seed; the same seed gives identical files (default 0)")
    p.add_argument("--size", choices=("default", "small", "tiny"), default="default",
                   help="default: 3 cities x 20x20 cells, 128 px tiles; small: 10x10, 64 px; tiny: 4x4, 32 px")
    p.add_argument("--cities", type=int, default=3, help="number of fictional cities, 1-6 (default 3)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing workspace at --out")


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from urbanclip import paths
    from urbanclip.data.demo import SIZES, build_demo

    out = Path(args.out).expanduser() if args.out else paths.demo_workspace_dir()
    if out.exists() and not args.overwrite:
        print(f"demo workspace already exists at {out}; nothing to do (pass --overwrite to rebuild it)")
        return 0
    size = SIZES[args.size]
    t0 = time.perf_counter()
    ws = build_demo(out, seed=args.seed, n_cities=args.cities, rows=size.rows, cols=size.cols,
                    tile_px=size.tile_px, overwrite=args.overwrite)
    print(ws.summary())
    print(f"built in {time.perf_counter() - t0:.1f} s; {ws.manifest.source}")
    return 0
