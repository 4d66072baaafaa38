"""`describe`: write descriptions for tiles with an image-to-text model (see urbanclip.text.describe)."""

from __future__ import annotations

import argparse

NAME = "describe"
HELP = "describe tiles with an image-to-text model (Hugging Face folder or an UrbanCLIP run)"
WRITES_WORKSPACE = True  # held (urbanclip.runlock) while it rewrites the workspace
RUN_FOLDER = "out"  # held (urbanclip.runlock) while the command writes to it


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", "-w", required=True, help="workspace folder")
    p.add_argument("--backend", choices=("hf", "urbanclip"), default="hf",
                   help="hf: a local transformers image-to-text model; urbanclip: a pretrained UrbanCLIP run")
    p.add_argument("--model", required=True, help="local model folder (hf) or run folder / checkpoint (urbanclip)")
    p.add_argument("--only-missing", action="store_true",
                   help="describe only cells without text_raw and write into text_raw")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--chunk-size", type=int, default=64, help="cells per saved chunk (resume granularity)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="length limit of each description")
    p.add_argument("--limit", type=int, default=None, help="describe at most this many cells in this run")
    p.add_argument("--out", default=None, metavar="RUN",
                   help="also log progress events to RUN/metrics.jsonl (for the app's runs page)")
    p.add_argument("--retry-failed", action="store_true", help="retry cells flagged image_unreadable/describe_empty")


def run(args: argparse.Namespace) -> int:
    from urbanclip.data.workspace import Workspace
    from urbanclip.events import JsonlLogger
    from urbanclip.text.captioners import make_captioner
    from urbanclip.text.describe import describe_workspace, pending_cells

    ws = Workspace.load(args.workspace)
    opts = {"batch_size": args.batch_size}
    if args.max_new_tokens is not None:
        opts["max_new_tokens"] = args.max_new_tokens
    target = "text_raw" if args.only_missing else "text_generated"
    if not pending_cells(ws, target, args.only_missing, args.retry_failed):
        print(f"nothing to describe: every cell with an image already has {target}")
        return 0
    captioner = make_captioner(args.backend, args.model, **opts)
    callbacks = [JsonlLogger(args.out)] if args.out else []
    stats = describe_workspace(ws, captioner, args.only_missing, args.chunk_size, args.limit, args.retry_failed,
                               callbacks=callbacks)
    print(f"described {stats['described']} of {stats['pending']} pending cells into {stats['target']} "
          f"({stats['empty']} empty, {stats['unreadable']} unreadable images, {stats['missing']} image files missing, "
          f"{stats['no_image']} cells without image)")
    print(f"provenance: {stats['provenance']}")
    return 0
