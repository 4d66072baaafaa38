"""Options shared by `probe`, `compare` and `transfer`: the probe heads and the splits scored."""

from __future__ import annotations

import argparse


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
