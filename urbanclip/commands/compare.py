"""`compare`: every baseline, UrbanViT, the UrbanCLIP ablations and UrbanCLIP, one Table-2 report."""

from __future__ import annotations

import argparse

from urbanclip.commands.probe import add_probe_options, add_split_options, probe_config

NAME = "compare"
HELP = "full comparison: baselines + ablations + UrbanCLIP with the same probe (Table 2)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from urbanclip.evaluation.comparison import ALL_METHODS

    p.add_argument("--workspace", "-w", required=True, help="workspace folder")
    p.add_argument("--out", "-o", required=True, help="report folder (report.*, metrics.jsonl, runs/<method>/)")
    p.add_argument("--methods", default=",".join(ALL_METHODS), help=f"comma-separated subset of: {', '.join(ALL_METHODS)}")
    p.add_argument("--config", default="demo", help="pretraining config for the model methods: demo | tiny | default | FILE.json")
    p.add_argument("--epochs", type=int, default=None, help="pretraining epochs for every model method (default: the config's)")
    p.add_argument("--max-steps", type=int, default=None, help="cap every pretraining run at this many steps")
    p.add_argument("--run", action="append", default=[], metavar="METHOD=RUN",
                   help="reuse a trained run instead of pretraining, e.g. --run urbanclip=assets/model")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="baseline budget, e.g. --opt epochs=8 --opt image_size=64")
    add_probe_options(p)
    add_split_options(p)
    p.set_defaults(seeds=3)


def run(args: argparse.Namespace) -> int:
    from urbanclip.evaluation.comparison import CompareConfig, beats, run_comparison
    from urbanclip.evaluation.encoders import parse_opts
    from urbanclip.errors import UserError
    from urbanclip.data.workspace import Workspace

    ws = Workspace.load(args.workspace)
    runs = {}
    for r in args.run:
        m, sep, path = r.partition("=")
        if not sep:
            raise UserError(f"--run {r!r} must look like METHOD=RUN_FOLDER")
        runs[m.strip()] = path.strip()
    cfg = CompareConfig(methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
                        indicators=args.indicators, probe=probe_config(args), baseline_opts=parse_opts(args.opt),
                        model_config=args.config, runs=runs, splits=args.splits, block_size=args.block_size,
                        train_overrides={k: v for k, v in (("max_steps", args.max_steps), ("epochs", args.epochs)) if v})
    rows, paths = run_comparison(ws, args.out, cfg, bar=True)
    print(paths["md"].read_text("utf-8"))
    for split in cfg.splits:
        for loser, res in beats(rows, "urbanclip", ["urbanvit", "pca"], split=split).items():
            print(f"UrbanCLIP > {loser} (mean R², {split} split): "
                  + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in res.items()))
    print(f"wrote {paths['json']}, {paths['csv']}, {paths['md']}")
    return 0
