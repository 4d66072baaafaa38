"""`transfer`: train the probe on city A, test on city B, for all ordered pairs."""

from __future__ import annotations

import argparse

from urbanclip.commands.probe import add_probe_options, probe_config

NAME = "transfer"
HELP = "cross-city transfer of indicator probes (R² matrix per indicator, CSV + heatmap)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", "-w", required=True, help="workspace folder")
    p.add_argument("--encoder", "-e", required=True, help="encoder spec, e.g. urbanclip:RUN or pca")
    p.add_argument("--out", "-o", required=True, help="report folder (transfer.json, transfer.csv, transfer_<ind>.html)")
    p.add_argument("--cities", default=None, help="comma-separated cities (default: all with embeddings)")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="baseline option")
    add_probe_options(p)


def run(args: argparse.Namespace) -> int:
    from urbanclip.data.embeddings import cached_embeddings
    from urbanclip.evaluation.encoders import make_encoder, parse_opts
    from urbanclip.evaluation.reports import RunLog, mean_offdiagonal, write_transfer
    from urbanclip.evaluation.transfer import transfer_matrix
    from urbanclip.data.workspace import Workspace

    ws = Workspace.load(args.workspace)
    cfg = probe_config(args)
    opts = parse_opts(args.opt)
    log = RunLog(args.out)
    log.start(f"transfer {args.encoder}", 2)
    try:
        enc = make_encoder(args.encoder, ws, **opts)
        table = cached_embeddings(ws, enc)
        log.step(1, 2)
        cities = [c.strip() for c in args.cities.split(",")] if args.cities else None
        res = transfer_matrix(ws, table, args.indicators, cfg, cities)
    except BaseException as e:
        log.end("interrupted" if isinstance(e, KeyboardInterrupt) else "failed", {"error": str(e)})
        raise
    paths = write_transfer(res.matrices, res.long_table(), args.out, method=enc.label,
                           meta={"workspace": str(ws.root), "encoder_key": enc.key, "seeds": list(cfg.seeds)})
    log.step(2, 2)
    summary = {ind: mean_offdiagonal(m) for ind, m in res.matrices.items()}
    log.end("completed", {"mean_offdiagonal_r2": summary, "report": str(paths["json"])})
    for ind, m in res.matrices.items():
        print(f"\n{ind}: R² (rows = train city, columns = test city); mean off-diagonal {summary[ind]:.3f}")
        print(m.round(3).to_string())
    print("\nwrote " + ", ".join(str(p) for p in paths.values()))
    return 0
