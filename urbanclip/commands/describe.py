"""`describe`: write descriptions for tiles with an image-to-text model (see urbanclip.text.describe:
where the text goes, sharding under torchrun, resuming)."""

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
    from urbanclip.paths import check_out_folder

    if args.out:
        check_out_folder(args.out)  # before any work: a bad --out is an error, not a traceback at the end
    from urbanclip.data.workspace import Workspace
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
    from urbanclip.data.shards import Shard

    if Shard.from_env().sharded:  # torchrun: each process gets its share of the CPU cores
        import os

        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // Shard.from_env().world))
    captioner = make_captioner(args.backend, args.model, **opts)
    from urbanclip.events import JsonlLogger

    callbacks = [JsonlLogger(args.out)] if args.out else []
    stats = describe_workspace(ws, captioner, args.only_missing, args.chunk_size, args.limit, args.retry_failed,
                               callbacks=callbacks)
    if stats.get("world", 1) > 1 and stats.get("rank", 0) != 0:
        print(f"rank {stats['rank']} of {stats['world']}: its chunks are written; rank 0 merges them")
        return 0
    print(f"described {stats['described']} of {stats['pending']} pending cells into {stats['target']} "
          f"({stats['empty']} empty, {stats['unreadable']} unreadable images, {stats['missing']} image files missing, "
          f"{stats['no_image']} cells without image)")
    print(f"provenance: {stats['provenance']}")
    return 0
