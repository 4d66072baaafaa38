"""`pretrain`: train UrbanCLIP (or image-only UrbanViT) on a workspace into a run folder.

Single process by default; `torchrun --nproc_per_node N -m urbanclip pretrain ...`
runs the same code with DDP. Ctrl-C / SIGTERM saves a checkpoint and exits 130;
`--resume` continues it exactly.
"""

from __future__ import annotations

import argparse
import json

NAME = "pretrain"
HELP = "pretrain UrbanCLIP (contrastive + captioning) on a workspace"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", "-w", required=True, help="workspace folder")
    p.add_argument("--out", required=True, help="run folder (metrics.jsonl, checkpoints, summary.json)")
    p.add_argument("--config", default=None,
                   help="JSON config file ({'base':..., 'model': {...}, 'train': {...}}) or a built-in name: "
                        "demo (small CPU model; the default for new runs), tiny, default (paper-sized). "
                        "With --resume it defaults to RUN/config.json")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.pt")
    p.add_argument("--epochs", type=int, help="override train.epochs")
    p.add_argument("--max-steps", type=int, help="stop after this many steps")
    p.add_argument("--seed", type=int, help="override train.seed")
    p.add_argument("--image-only", action="store_true", help="train UrbanViT: no text, two-view image contrast")
    p.add_argument("--inference-only", action="store_true",
                   help="after a completed run keep only model.pt (drop checkpoint.pt with optimizer state)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from urbanclip.model.checkpoint import TRAIN_STATE_FILE
    from urbanclip.model.config import load_config
    from urbanclip.events import TqdmProgress
    from urbanclip.training.train import CONFIG_FILE, pretrain

    config = args.config
    if config is None:
        config = str(Path(args.out) / CONFIG_FILE) if args.resume else "demo"
    model_cfg, train_cfg = load_config(config)
    overrides = {k: v for k, v in {"epochs": args.epochs, "max_steps": args.max_steps, "seed": args.seed}.items()
                 if v is not None}
    if args.image_only:
        overrides["image_only"] = True
    train_cfg = dataclasses.replace(train_cfg, **overrides)
    callbacks = [] if args.quiet else [TqdmProgress()]
    summary = pretrain(args.workspace, args.out, model_cfg, train_cfg, resume=args.resume, callbacks=callbacks)
    print(json.dumps({k: summary[k] for k in ("status", "step", "total_steps", "train_seconds") if k in summary}))
    if "eval" in summary:
        ev = summary["eval"]
        print(f"val image->text recall@1 {ev['i2t_recall@1']:.3f} (chance {ev['chance_recall@1']:.3f}), "
              f"recall@5 {ev['i2t_recall@5']:.3f} (chance {ev['chance_recall@5']:.3f}) on {ev['n_val']} val cells")
        if "landuse_hit_rate" in ev:
            print(f"generated descriptions mention the true land-use words {ev['landuse_hit_rate']:.3f} of the time "
                  f"(chance {ev['landuse_hit_rate_chance']:.3f}) on {ev['n_generated']} val tiles")
        for ex in ev.get("examples", [])[:3]:
            print(f"  {ex['cell_id']}: {ex['generated']!r}  (source: {ex['source']!r})")
    if summary["status"] == "interrupted":
        print(f"interrupted; resume with: python -m urbanclip pretrain --workspace {args.workspace} "
              f"--out {args.out} --resume")
        return 130
    if args.inference_only and summary["status"] == "completed":
        (Path(args.out) / TRAIN_STATE_FILE).unlink(missing_ok=True)
    return 0
