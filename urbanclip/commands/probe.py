"""`probe`: freeze an encoder, fit an MLP per indicator, write a Table-2 style report."""

from __future__ import annotations

import argparse

from urbanclip.commands._options import add_probe_options, add_split_options, probe_config

NAME = "probe"
HELP = "indicator prediction with a frozen encoder (R², RMSE, MAE on the test split)"
RUN_FOLDER = "out"  # held (urbanclip.runlock) while the command writes to it
DESCRIPTION = (HELP + ". Encoders: urbanclip:RUN, urbanvit:RUN, pca, autoencoder, resnet18[:WEIGHTS] (random init "
               "unless weights are given), imagenet-cnn (EfficientNet-Lite0, ImageNet weights), tile2vec, "
               "simclr-geo, text-simclr. Scores each encoder on the random and the spatial-block split "
               "(--splits), with 80% prediction intervals and their test coverage. Writes OUT/report.{json,csv,md}, "
               "OUT/metrics.jsonl, OUT/heads/<encoder>/ (random split) and OUT/heads-block/<encoder>/.")


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
    from urbanclip.paths import check_out_folder

    check_out_folder(args.out)  # before any work: a bad --out is an error, not a traceback at the end
    from urbanclip.data.workspace import Workspace
    from urbanclip.evaluation.comparison import run_probes
    from urbanclip.evaluation.encoders import parse_opts

    paths = run_probes(Workspace.load(args.workspace), args.encoder, args.out, probe_config(args),
                       indicators=args.indicators, splits=args.splits, block_size=args.block_size,
                       baseline_opts=parse_opts(args.opt))
    print(paths["md"].read_text("utf-8"))
    print(f"wrote {paths['json']}, {paths['csv']}, {paths['md']}")
    return 0
