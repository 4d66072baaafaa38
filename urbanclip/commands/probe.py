"""`probe`: freeze an encoder, fit an MLP per indicator, write a Table-2 style report."""

from __future__ import annotations

import argparse

NAME = "probe"
HELP = "indicator prediction with a frozen encoder (R², RMSE, MAE on the test split)"
DESCRIPTION = (HELP + ". Encoders: urbanclip:RUN, urbanvit:RUN, pca, autoencoder, resnet18[:WEIGHTS] (random init "
               "unless weights are given), imagenet-cnn (EfficientNet-Lite0, ImageNet weights), tile2vec, "
               "simclr-geo, text-simclr. Writes OUT/report.{json,csv,md}, OUT/metrics.jsonl and OUT/heads/<encoder>/.")


def add_probe_options(p: argparse.ArgumentParser) -> None:
    """Probe-head options shared by probe / compare / transfer."""
    p.add_argument("--indicators", default=None, help="comma-separated indicators (default: all of the workspace's)")
    p.add_argument("--seeds", type=int, default=1, help="probe seeds (mean ± std over them; paper tables: 3)")
    p.add_argument("--hidden", default="128,64", help="MLP hidden sizes, comma-separated (default 128,64)")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=1e-3)
    p.add_argument("--max-epochs", type=int, default=300)
    p.add_argument("--patience", type=int, default=25, help="early stopping patience on the val split (epochs)")


def probe_config(args: argparse.Namespace):
    from urbanclip.errors import UserError
    from urbanclip.probe import ProbeConfig

    if args.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {args.seeds}")
    try:
        hidden = tuple(int(h) for h in str(args.hidden).split(",") if h.strip())
    except ValueError:
        raise UserError(f"--hidden must be comma-separated integers like 128,64, got {args.hidden!r}") from None
    return ProbeConfig(hidden=hidden, dropout=args.dropout, weight_decay=args.weight_decay,
                       max_epochs=args.max_epochs, patience=args.patience, seeds=tuple(range(args.seeds)))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", "-w", required=True, help="workspace folder")
    p.add_argument("--encoder", "-e", action="append", required=True,
                   help="encoder spec; repeat for several rows of one table")
    p.add_argument("--out", "-o", required=True, help="report folder")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="baseline option, e.g. --opt epochs=4 --opt image_size=64")
    add_probe_options(p)


def run(args: argparse.Namespace) -> int:
    import time

    from urbanclip.embeddings import cached_embeddings, safe_key
    from urbanclip.encoders import make_encoder, parse_opts
    from urbanclip.probe import fit_probes, parse_indicators
    from urbanclip.reports import MethodRow, RunLog, write_table2
    from urbanclip.workspace import Workspace

    ws = Workspace.load(args.workspace)
    cfg = probe_config(args)
    names = parse_indicators(ws, args.indicators)
    opts = parse_opts(args.opt)
    log = RunLog(args.out)
    log.start(f"probe {' '.join(args.encoder)}", len(args.encoder))
    rows = []
    try:
        for i, spec in enumerate(args.encoder, 1):
            t0 = time.time()
            name = spec.partition(":")[0].lower()
            enc = make_encoder(spec, ws, **(opts if name not in ("urbanclip", "urbanvit") else {}))
            log.message(f"embedding with {enc.label}")
            table = cached_embeddings(ws, enc)
            res = fit_probes(ws, table, names, cfg, encoder_key=enc.key)
            res.heads.save(f"{args.out}/heads/{safe_key(enc.key)}")
            summ = res.summary()
            rows.append(MethodRow(name, enc.label, summ, encoder_key=enc.key, seconds=time.time() - t0, counts=res.counts))
            log.step(i, len(args.encoder), **{f"{k}_R2": v["R2"]["mean"] for k, v in summ.items()})
    except BaseException as e:
        log.end("interrupted" if isinstance(e, KeyboardInterrupt) else "failed", {"error": str(e)})
        raise
    paths = write_table2(rows, names, args.out, title=f"Indicator prediction on {ws.name}",
                         meta={"workspace": str(ws.root), "fingerprint": ws.fingerprint(), "seeds": list(cfg.seeds),
                               "synthetic": ws.manifest.synthetic})
    log.end("completed", {"report": str(paths["json"])})
    print(paths["md"].read_text("utf-8"))
    print(f"wrote {paths['json']}, {paths['csv']}, {paths['md']}")
    return 0
