"""`transfer`: train the probe on city A, test on city B, for all ordered pairs."""

from __future__ import annotations

import argparse

from urbanclip.commands._options import add_probe_options, probe_config

NAME = "transfer"
HELP = "cross-city transfer of indicator probes (R² matrix per indicator, CSV + heatmap)"
RUN_FOLDER = "out"  # held (urbanclip.runlock) while the command writes to it


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", "-w", required=True, help="workspace folder")
    p.add_argument("--encoder", "-e", required=True, help="encoder spec, e.g. urbanclip:RUN or pca")
    p.add_argument("--out", "-o", required=True, help="report folder (transfer.json, transfer.csv, transfer_<ind>.html)")
    p.add_argument("--cities", default=None, help="comma-separated cities (default: all with embeddings)")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="baseline option")
    add_probe_options(p)


def run(args: argparse.Namespace) -> int:
    from urbanclip.paths import check_out_folder

    check_out_folder(args.out)  # before any work: a bad --out is an error, not a traceback at the end
    from urbanclip.data.workspace import Workspace
    from urbanclip.evaluation.encoders import parse_opts
    from urbanclip.evaluation.transfer import run_transfer

    cities = [c.strip() for c in args.cities.split(",")] if args.cities else None
    res, paths = run_transfer(Workspace.load(args.workspace), args.encoder, args.out, probe_config(args),
                              indicators=args.indicators, cities=cities, baseline_opts=parse_opts(args.opt))
    for ind, m in res.matrices.items():
        print(f"\n{ind}: R² (rows = train city, columns = test city); mean off-diagonal {res.mean_offdiagonal[ind]:.3f}")
        print(m.round(3).to_string())
    print("\nwrote " + ", ".join(str(p) for p in paths.values()))
    return 0
