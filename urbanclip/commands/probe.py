"""`probe`: freeze an encoder, fit an MLP per indicator, write a Table-2 style report."""

from __future__ import annotations

import argparse

NAME = "probe"
HELP = "indicator prediction with a frozen encoder (R², RMSE, MAE on the test split)"
DESCRIPTION = (HELP + ". Encoders: urbanclip:RUN, urbanvit:RUN, pca, autoencoder, resnet18[:WEIGHTS] (random init "
               "unless weights are given), imagenet-cnn (EfficientNet-Lite0, ImageNet weights), tile2vec, "
               "simclr-geo, text-simclr. Scores each encoder on the random and the spatial-block split "
               "(--splits), with 80% prediction intervals and their test coverage. Writes OUT/report.{json,csv,md}, "
               "OUT/metrics.jsonl, OUT/heads/<encoder>/ (random split) and OUT/heads-block/<encoder>/.")


def add_probe_options(p: argparse.ArgumentParser) -> None:
    """Probe-head options shared by probe / compare / transfer."""
    p.add_argument("--indicators", default=None, help="comma-separated indicators (default: all of the workspace's)")
    p.add_argument("--seeds", type=int, default=1, help="probe seeds (mean ± std over them; paper tables: 3)")
    p.add_argument("--hidden", default="128,64", help="MLP hidden sizes, comma-separated (default 128,64)")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=1e-3)
    p.add_argument("--max-epochs", type=int, default=300)
    p.add_argument("--patience", type=int, default=25, help="early stopping patience on the val split (epochs)")
    p.add_argument("--drop-zero-targets", action="store_true",
                   help="leave out cells whose indicator is 0 (as the official UrbanCLIP code does); recorded in the report")


def add_split_options(p: argparse.ArgumentParser, default: str = "random,block") -> None:
    """Which stored splits to score on, and the spatial blocks' size (probe / compare)."""
    from urbanclip.data.splits import DEFAULT_BLOCK_SIZE

    p.add_argument("--splits", default=default,
                   help=f"comma-separated splits to report side by side: random (the paper's 60/20/20 of cells) and/or "
                        f"block (whole k x k blocks of cells per city; stored in the workspace column split_block) "
                        f"(default {default})")
    p.add_argument("--block-size", type=int, default=DEFAULT_BLOCK_SIZE,
                   help=f"block side in cells for the block split (default {DEFAULT_BLOCK_SIZE})")
    p.add_argument("--ensemble", type=int, default=5,
                   help="probe heads per indicator behind the prediction intervals (bootstrap; 1 = constant width; default 5)")
    p.add_argument("--interval", type=float, default=0.8, help="nominal coverage of the prediction intervals (default 0.8)")


def probe_config(args: argparse.Namespace):
    from urbanclip.errors import UserError
    from urbanclip.evaluation.probe import ProbeConfig

    if args.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {args.seeds}")
    try:
        hidden = tuple(int(h) for h in str(args.hidden).split(",") if h.strip())
    except ValueError:
        raise UserError(f"--hidden must be comma-separated integers like 128,64, got {args.hidden!r}") from None
    return ProbeConfig(hidden=hidden, dropout=args.dropout, weight_decay=args.weight_decay,
                       max_epochs=args.max_epochs, patience=args.patience, seeds=tuple(range(args.seeds)),
                       drop_zero_targets=getattr(args, "drop_zero_targets", False),
                       ensemble=getattr(args, "ensemble", 5), interval=getattr(args, "interval", 0.8))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", "-w", required=True, help="workspace folder")
    p.add_argument("--encoder", "-e", action="append", required=True,
                   help="encoder spec; repeat for several rows of one table")
    p.add_argument("--out", "-o", required=True, help="report folder")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="baseline option, e.g. --opt epochs=4 --opt image_size=64")
    add_probe_options(p)
    add_split_options(p)


def run(args: argparse.Namespace) -> int:
    import time

    from urbanclip.evaluation.comparison import split_meta, split_suffix
    from urbanclip.data.embeddings import cached_embeddings, safe_key
    from urbanclip.evaluation.encoders import make_encoder, parse_opts
    from urbanclip.evaluation.probe import fit_probes, parse_indicators
    from urbanclip.evaluation.reports import MethodRow, RunLog, write_table2
    from urbanclip.data.splits import check_block_size, parse_splits, store_block_split
    from urbanclip.data.workspace import Workspace

    ws = Workspace.load(args.workspace)
    cfg = probe_config(args)
    names = parse_indicators(ws, args.indicators)
    splits = parse_splits(args.splits)
    block_size = check_block_size(args.block_size)
    if "block" in splits:
        store_block_split(ws, block_size)
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
            values = {}
            for split in splits:
                res = fit_probes(ws, table, names, cfg, encoder_key=enc.key, split=split)
                res.heads.save(f"{args.out}/{'heads' if split == 'random' else 'heads-' + split}/{safe_key(enc.key)}")
                summ = res.summary()
                rows.append(MethodRow(name, enc.label, summ, encoder_key=enc.key, seconds=time.time() - t0,
                                      counts=res.counts, split=split))
                values.update({f"{k}_R2{split_suffix(split)}": v["R2"]["mean"] for k, v in summ.items()})
            log.step(i, len(args.encoder), **values)
    except BaseException as e:
        log.end("interrupted" if isinstance(e, KeyboardInterrupt) else "failed", {"error": str(e)})
        raise
    paths = write_table2(rows, names, args.out, title=f"Indicator prediction on {ws.name}",
                         meta={"workspace": str(ws.root), "fingerprint": ws.fingerprint(), "seeds": list(cfg.seeds),
                               "synthetic": ws.manifest.synthetic, "splits": split_meta(ws, splits, block_size),
                               "drop_zero_targets": cfg.drop_zero_targets,
                               "intervals": {"level": cfg.interval, "ensemble": cfg.ensemble,
                                             "calibration": "split-conformal on the val split"}})
    log.end("completed", {"report": str(paths["json"])})
    print(paths["md"].read_text("utf-8"))
    print(f"wrote {paths['json']}, {paths['csv']}, {paths['md']}")
    return 0
