"""`embed`: fill a workspace's embedding cache with a frozen image encoder, in resumable chunks.

`torchrun --nproc_per_node N -m urbanclip embed -w W -e urbanclip:RUN` splits
the chunks over N processes (each on its own GPU, or its share of the CPU
cores); an interrupted run resumes from the chunks it saved. Probes, search and
the app then read the cache as usual. For an UrbanCLIP run whose checkpoint stores its
lead sentences, a second pass fills the captioner's readings the look-alikes use
(model.inference.ModelReadingEncoder), sharded the same way.
"""

from __future__ import annotations

import argparse

NAME = "embed"
HELP = "embed every imaged cell with a frozen encoder into the workspace cache (resumable; shards under torchrun)"
FROZEN = ("urbanclip", "urbanvit", "imagenet-cnn")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", "-w", required=True, help="workspace folder")
    p.add_argument("--encoder", "-e", required=True,
                   help="a frozen encoder: urbanclip:RUN, urbanvit:RUN or imagenet-cnn (baselines fit on all cells "
                        "at once and are embedded by `probe`)")
    p.add_argument("--chunk-size", type=int, default=1024, help="cells per saved chunk (resume granularity)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--refresh", action="store_true", help="recompute even when the cache is complete")


def run(args: argparse.Namespace) -> int:
    import os

    from urbanclip.data.embeddings import embed_sharded
    from urbanclip.data.shards import Shard
    from urbanclip.data.workspace import Workspace
    from urbanclip.errors import UserError
    from urbanclip.evaluation.encoders import make_encoder

    name = args.encoder.split(":", 1)[0].lower()
    if name not in FROZEN:
        raise UserError(f"--encoder {args.encoder!r}: `embed` takes a frozen encoder ({', '.join(FROZEN)}); baselines "
                        "are fitted on all cells at once, so `probe` embeds them")
    shard = Shard.from_env()
    if shard.sharded:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // shard.world))
    ws = Workspace.load(args.workspace)
    enc = make_encoder(args.encoder, ws, batch_size=args.batch_size)

    def progress(done: int, total: int) -> None:
        print(f"rank {shard.rank}: chunk {done}/{total}", flush=True)

    table = embed_sharded(ws, enc, shard, chunk_size=args.chunk_size, refresh=args.refresh, on_chunk=progress)
    _readings(ws, enc, shard, args, progress)
    if table is None:
        print(f"rank {shard.rank} of {shard.world}: its chunks are written; rank 0 writes the cache")
        return 0
    print(f"{len(table)} cells embedded ({table.dim}-d) by {enc.label} into {ws.cache_dir / 'embeddings'}")
    return 0


def _readings(ws, enc, shard, args, progress) -> None:
    """The look-alikes' second half (search.index), when the model can read tiles."""
    from urbanclip.data.embeddings import embed_sharded
    from urbanclip.evaluation.encoders import reading_encoder

    reader = reading_encoder(enc)
    if reader is None:
        return
    table = embed_sharded(ws, reader, shard, chunk_size=args.chunk_size, refresh=args.refresh, on_chunk=progress)
    if table is not None:
        print(f"{len(table)} cells read ({table.dim} lead sentences) by {reader.label} into {ws.cache_dir / 'embeddings'}")
