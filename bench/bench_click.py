"""Server time of a Map page click, without and with generation (no browser: see bench_browser.py
for what a planner waits for, click to painted panel).

What a click costs on the server: the map component's arguments for the city (file names
of the grid and the layer, written once; the selected cell's outline) and the profile of
the clicked cell (cached embedding lookup, top-k, predictions; optionally one `generate`).

    python bench/bench_click.py [--workspace W] [--model RUN] [--clicks 20]

Defaults: the demo workspace (built if absent) and the active model.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path


def _stats(ms: list[float]) -> str:
    ms = sorted(ms)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return f"median {statistics.median(ms):7.1f} ms   p95 {p95:7.1f} ms   max {ms[-1]:7.1f} ms   (n={len(ms)})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workspace", type=Path, default=None)
    ap.add_argument("--model", default="active", help="run folder / checkpoint, 'active' (default) or 'none'")
    ap.add_argument("--clicks", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(2)
    from urbanclip.services.context import load_context
    from urbanclip.services.mapview import city_view, layer_data, map_args
    from urbanclip.services.profile import profile_cell

    t0 = time.perf_counter()
    ctx = load_context(args.workspace, model_path=None if args.model == "none" else args.model, progress=print)
    print(f"context loaded in {time.perf_counter() - t0:.1f} s (once per process, cached by the app)")
    for n in ctx.notes:
        print("  note:", n)
    ws = ctx.workspace
    print(f"workspace {ws.root}: {len(ws.cells)} cells, cities {ws.cities}; model: {ctx.model_path or 'none'}")
    rng = np.random.default_rng(args.seed)
    picks = list(rng.choice(ws.cells["cell_id"].to_numpy(), size=min(args.clicks, len(ws.cells)), replace=False))

    # warm-up: the map's files (grid, layer, mosaic) are written once per city and cached on disk
    for city in ws.cities:
        map_args(ctx, city, layer_data(ctx, city, "observed", ws.indicator_names[0]), "/", city_view(ctx, city))

    panel, rerun = [], []
    for cid in picks:
        city = ws.cell(cid)["city"]
        t = time.perf_counter()
        map_args(ctx, city, layer_data(ctx, city, "observed", ws.indicator_names[0]), "/", city_view(ctx, city),
                 selected=cid)
        t_map = time.perf_counter()
        profile_cell(ctx, cid, generate=False)
        t_end = time.perf_counter()
        panel.append((t_end - t_map) * 1e3)
        rerun.append((t_end - t) * 1e3)
    print(f"panel only, no generation        : {_stats(panel)}")
    print(f"map arguments + panel, no generation: {_stats(rerun)}")
    if ctx.has_model:
        gen = []
        for cid in picks:
            if ws.image_path(cid) is None:
                continue
            ctx._generated.pop(cid, None)  # measure a fresh generation, not the memo
            t = time.perf_counter()
            profile_cell(ctx, cid, generate=True)
            gen.append((time.perf_counter() - t) * 1e3)
        print(f"panel with generation (1 tile)   : {_stats(gen)}")
    else:
        print("panel with generation            : n/a (no model loaded; train one and make it active)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
