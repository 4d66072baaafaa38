"""Pretraining: contrastive + captioning (or image-only SimCLR for UrbanViT) on a workspace.

The loop is plain PyTorch: AdamW, linear warm-up + cosine decay, gradient
clipping, a `DistributedSampler` whose order depends only on (seed, epoch) and a
per-step RNG that depends only on (seed, step, rank). Hence a run resumed from a
step-K checkpoint continues bit-for-bit like an uninterrupted one.

A run folder ends up with: metrics.jsonl (events), checkpoint.pt (full training
state), model.pt (fp16 weights for inference), tokenizer.json, config.json and
summary.json (measured val retrieval recall and land-use word hit rate vs chance).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DistributedSampler

from urbanclip import runlock
from urbanclip.data.topics import split_generated
from urbanclip.data.workspace import Workspace, atomic_write_json
from urbanclip.errors import UserError
from urbanclip.events import JsonlLogger, ProgressCallback, ProgressTracker
from urbanclip.model import checkpoint as ckptmod
from urbanclip.model.config import ModelConfig, TrainConfig, save_config
from urbanclip.model.losses import CoCaLoss, TwoViewLoss
from urbanclip.model.model import UrbanCLIP
from urbanclip.model.tokenizer import UrbanTokenizer
from urbanclip.model.transforms import augment, normalise
from urbanclip.training.dataset import (
    BalancedSampler,
    TileDataset,
    TileSet,
    concept_key,
    eval_texts,
    load_tiles,
    pick_texts,
    step_generator,
)
from urbanclip.training.distributed import DistEnv, autocast, barrier, init_distributed, shutdown

SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.json"
# train-config fields that may change on --resume without breaking the bit-for-bit continuation
RESUMABLE_CHANGES = {"max_steps", "checkpoint_every", "device", "log_every", "eval_cells", "eval_generate", "threads"}


def training_loss(cfg: TrainConfig, tokenizer: UrbanTokenizer | None) -> CoCaLoss | TwoViewLoss:
    """The objective of a run: CoCa's weighted pair of losses, or two-view InfoNCE for UrbanViT."""
    if cfg.image_only:
        return TwoViewLoss()
    return CoCaLoss(cfg.lambda_con, cfg.lambda_lm, tokenizer.pad_id)


def warmup_cosine(warmup: int, total: int, min_ratio: float):
    """LR multiplier: linear from ~0 to 1 over `warmup` steps, then cosine down to `min_ratio`."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(warmup, 1)
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def cpu_threads(requested: int = 0, world_size: int = 1) -> int:
    """Intra-op threads per training process on CPU: `requested`, or (0 = auto) half the usable cores,
    at most $URBANCLIP_MAX_THREADS when set (the app's cap for the runs it launches).

    Leaving headroom is deliberate. On a box shared with other jobs, an OpenMP thread
    that loses its core stalls every parallel op while its partner spins: the demo
    config measured 0.23 s/step with 2 threads on an idle 2-core machine but 1.7-10
    s/step as soon as another job held a core, against a steady 0.40 s/step with 1.
    """
    cap = int(os.environ.get("URBANCLIP_MAX_THREADS", "0") or 0)  # set for runs the app launches
    if requested > 0:
        return min(int(requested), cap) if cap > 0 else int(requested)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    auto = max(1, cores // (2 * max(world_size, 1)))
    return min(auto, cap) if cap > 0 else auto


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, norms, embeddings-as-vectors, queries and the temperature (CLIP practice)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim < 2 or any(k in name for k in ("pos_embed", "cls_token", "pos_emb", "queries", "logit_scale"))
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class StopRequest:
    """Set by SIGINT/SIGTERM; the loop finishes the current step, saves and exits."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __call__(self, signum: int, frame: Any = None) -> None:
        self.signal = signum

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals can only be handled on the main thread (e.g. not inside Streamlit)
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self)

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old.clear()


def _check_resume(ckpt: dict[str, Any], model_cfg: ModelConfig, train_cfg: TrainConfig, fingerprint: str) -> None:
    where = ckpt["_path"]
    ckptmod.check_compatible(ckpt, model_cfg)
    stored = ckpt.get("train_config") or {}
    wanted = dataclasses.asdict(train_cfg)
    stored = {**dataclasses.asdict(TrainConfig()), **stored}  # fields added since the checkpoint keep their defaults
    diff = [f"train.{k}={stored.get(k)!r} in the checkpoint but {wanted[k]!r} now"
            for k in wanted if k not in RESUMABLE_CHANGES and stored.get(k) != wanted[k]]
    if diff:
        raise UserError(f"cannot resume from {where}: " + "; ".join(diff)
                        + ". Resume with the run's own config (RUN/config.json) or start a new run folder")
    if ckpt.get("workspace_fingerprint") != fingerprint:
        raise UserError(f"cannot resume from {where}: it was trained on a workspace with fingerprint "
                        f"{ckpt.get('workspace_fingerprint')} but this workspace has {fingerprint} (its cells, "
                        "images or texts changed); start a new run folder")


def pretrain(workspace: Workspace | str | Path, out_dir: str | Path, model_cfg: ModelConfig, train_cfg: TrainConfig,
             resume: bool = False, callbacks: Iterable[ProgressCallback] = ()) -> dict[str, Any]:
    """Pretrain UrbanCLIP (or UrbanViT when train_cfg.image_only) and return the run summary.

    The run folder is held for the whole run (urbanclip.runlock): a second writer is refused,
    and temp files of a save that a kill interrupted are removed first."""
    with runlock.hold(out_dir, "pretrain"):
        return _pretrain(workspace, out_dir, model_cfg, train_cfg, resume, callbacks)


def _pretrain(workspace: Workspace | str | Path, out_dir: str | Path, model_cfg: ModelConfig, train_cfg: TrainConfig,
              resume: bool, callbacks: Iterable[ProgressCallback]) -> dict[str, Any]:
    model_cfg.validate()
    train_cfg.validate()
    ws = workspace if isinstance(workspace, Workspace) else Workspace.load(workspace)
    out = Path(out_dir).expanduser().resolve()
    state_path = out / ckptmod.TRAIN_STATE_FILE
    fingerprint = ws.fingerprint()
    resume_ckpt = None
    if resume:
        if not state_path.is_file():
            raise UserError(f"cannot resume: {state_path} does not exist; run without --resume to start training")
        resume_ckpt = ckptmod.read_checkpoint(state_path, prefer=(ckptmod.TRAIN_STATE_FILE,))
        _check_resume(resume_ckpt, model_cfg, train_cfg, fingerprint)
    elif state_path.exists() or (out / ckptmod.MODEL_FILE).exists():
        raise UserError(f"{out} already holds a trained run; pass --resume to continue it or choose a new --out folder")

    env = init_distributed(train_cfg.device)
    threads_before = torch.get_num_threads()
    if env.device.type == "cpu":
        torch.set_num_threads(cpu_threads(train_cfg.threads, env.world_size))
    try:
        return _run(ws, out, model_cfg, train_cfg, env, resume_ckpt, fingerprint, callbacks)
    finally:
        torch.set_num_threads(threads_before)
        shutdown(env)


def _run(ws: Workspace, out: Path, model_cfg: ModelConfig, cfg: TrainConfig, env: DistEnv,
         resume_ckpt: dict[str, Any] | None, fingerprint: str, callbacks: Iterable[ProgressCallback]) -> dict[str, Any]:
    t_start = time.time()
    callbacks = list(callbacks)
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
        callbacks = [JsonlLogger(out), *callbacks]
    tracker = ProgressTracker(callbacks if env.is_main else ())
    text_column = cfg.text_column or ws.text_column()
    train = load_tiles(ws, "train", model_cfg.image_size, text_column, require_text=not cfg.image_only)
    if len(train) < 2 * env.world_size:
        msg = (f"workspace {ws.root} has {len(train)} training cells with an image"
               + ("" if cfg.image_only else f" and a description in {text_column!r}")
               + "; pretraining needs at least 2 per process")
        if not cfg.image_only and len(load_tiles(ws, "train", 8, require_text=False, max_cells=2)) >= 2 * env.world_size:
            msg += (". Its imaged cells have no descriptions: write them with `python -m urbanclip describe "
                    f"--workspace {ws.root} --model CAPTIONER --only-missing`, or pretrain the image encoder "
                    "alone (UrbanViT) with --image-only")
        raise UserError(msg)

    # tokenizer: learnt from the training descriptions, or the resumed run's own
    tokenizer = None
    if not cfg.image_only:
        if resume_ckpt is not None:
            tokenizer = UrbanTokenizer.from_str(resume_ckpt["tokenizer"])
        else:
            tokenizer = UrbanTokenizer.train((s for sents in train.sentences for s in sents), model_cfg.vocab_size)

    torch.manual_seed(cfg.seed)
    model = UrbanCLIP(model_cfg, tokenizer, with_text=not cfg.image_only)
    if resume_ckpt is not None:
        model.load_state_dict(resume_ckpt["state_dict"])
    elif model_cfg.init_checkpoint:
        report = model.init_visual_from(model_cfg.init_checkpoint)
        tracker.message(f"ViT initialised from {model_cfg.init_checkpoint}: {len(report['missing'])} missing keys "
                        f"{report['missing'][:5]}, {len(report['unexpected'])} unexpected {report['unexpected'][:5]}")
    model.to(env.device)
    loss_fn = training_loss(cfg, tokenizer)
    forward: nn.Module = model
    if env.distributed:  # the loss gathers the embeddings of all ranks; an ablation leaves some weights unused
        forward = nn.parallel.DistributedDataParallel(
            model, device_ids=[env.device.index] if env.device.type == "cuda" else None,
            find_unused_parameters=cfg.lambda_con == 0 or cfg.lambda_lm == 0)

    batch_size = min(cfg.batch_size, len(train) // env.world_size)
    if cfg.balance > 0 and not cfg.image_only:
        sampler = BalancedSampler([concept_key(s) for s in train.sentences], cfg.balance, env.world_size,
                                  env.rank, cfg.seed)
    else:
        sampler = DistributedSampler(TileDataset(train), num_replicas=env.world_size, rank=env.rank, shuffle=True,
                                     seed=cfg.seed, drop_last=True)
    steps_per_epoch = max(len(sampler) // batch_size, 1)
    schedule_steps = cfg.epochs * steps_per_epoch
    total_steps = min(schedule_steps, cfg.max_steps or schedule_steps)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(cfg.warmup, schedule_steps, cfg.min_lr_ratio))
    step = 0
    if resume_ckpt is not None:
        optimizer.load_state_dict(resume_ckpt["optimizer"])
        scheduler.load_state_dict(resume_ckpt["scheduler"])
        step = int(resume_ckpt["step"])
    val = load_tiles(ws, "val", model_cfg.image_size, text_column, require_text=not cfg.image_only,
                     max_cells=cfg.eval_cells, seed=cfg.seed)

    def save(half: bool = False, path: Path = out / ckptmod.TRAIN_STATE_FILE, **extra: Any) -> None:
        if env.is_main:
            ckptmod.save_checkpoint(path, model, step=step, epoch=step // steps_per_epoch, train_cfg=cfg,
                                    workspace_fingerprint=fingerprint, optimizer=None if half else optimizer,
                                    scheduler=None if half else scheduler, half=half,
                                    extra={"workspace": str(ws.root), "text_column": text_column,
                                           "workspace_name": ws.name, "synthetic": bool(ws.manifest.synthetic),
                                           "workspace_source": ws.manifest.source, "cities": ws.cities, **extra})

    if env.is_main:
        save_config(out / CONFIG_FILE, model_cfg, cfg)
        if tokenizer is not None:
            tokenizer.save(out)
    tracker.start("pretrain", total_steps, start_step=step, kind=model.kind, device=str(env.device),
                  threads=torch.get_num_threads(), world_size=env.world_size, train_cells=len(train),
                  val_cells=len(val), batch_size=batch_size, workspace=str(ws.root), resumed=resume_ckpt is not None)
    stop = StopRequest()
    stop.install()
    status = "completed"
    last: dict[str, float] = {}
    try:
        model.train()
        while step < total_steps and not stop.requested:
            epoch = step // steps_per_epoch
            sampler.set_epoch(epoch)
            order = list(sampler)
            for b in range(step % steps_per_epoch, steps_per_epoch):
                idx = order[b * batch_size:(b + 1) * batch_size]
                gen = step_generator(cfg.seed, step, env.rank)
                images = train.images[idx].float().div(255)
                with autocast(env.device):
                    if cfg.image_only:
                        view_a = normalise(augment(images, gen))
                        view_b = normalise(augment(images, gen))
                        losses = loss_fn(forward(torch.cat([view_a, view_b]).to(env.device)))
                    else:
                        x = normalise(augment(images, gen)).to(env.device)
                        texts = pick_texts([train.sentences[i] for i in idx], cfg.text_sampling, gen)
                        ids, mask = tokenizer.encode_batch(texts, model_cfg.context_length)
                        losses = loss_fn(forward(x, ids.to(env.device), mask.to(env.device), **loss_fn.needs))
                optimizer.zero_grad(set_to_none=True)
                losses.total.backward()
                grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip) if cfg.grad_clip > 0 else None
                optimizer.step()
                scheduler.step()
                step += 1
                last = {"loss": float(losses.total.detach()), "con": float(losses.con.detach()),
                        "lm": float(losses.lm.detach())}
                metrics = {**last, "lr": scheduler.get_last_lr()[0],
                           "logit_scale": float(model.logit_scale.detach().exp())}
                if grad_norm is not None:
                    metrics["grad_norm"] = float(grad_norm)
                end_of_epoch = step % steps_per_epoch == 0
                if end_of_epoch and len(val) >= 2:
                    metrics.update(_val_losses(model, val, cfg, tokenizer, env))
                if step % cfg.log_every == 0 or end_of_epoch or step == total_steps or stop.requested:
                    tracker.step(step, epoch, len(idx) * env.world_size, **metrics)
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    save()
                if step >= total_steps or stop.requested:
                    break
        if stop.requested:
            status = "interrupted"
            tracker.message(f"stopping on signal {stop.signal} after step {step}; checkpoint saved")
        save()
        barrier(env)
    except BaseException as e:
        stop.restore()
        if env.is_main:
            tracker.end("failed", {"error": f"{type(e).__name__}: {e}", "step": step})
        raise
    stop.restore()

    summary: dict[str, Any] = {
        "status": status, "kind": model.kind, "step": step, "total_steps": total_steps,
        "epochs": cfg.epochs, "steps_per_epoch": steps_per_epoch, "batch_size": batch_size,
        "train_cells": len(train), "val_cells": len(val), "text_column": None if cfg.image_only else text_column,
        "device": str(env.device), "world_size": env.world_size, "final_losses": last,
        "workspace": str(ws.root), "workspace_fingerprint": fingerprint, "run_dir": str(out),
    }
    if env.is_main:
        if status == "completed":
            grounding = {}
            if not cfg.image_only and len(val) >= 2:
                tracker.message("evaluating on the val split (retrieval, generated descriptions)...")
                summary["eval"] = evaluate(model, val, cfg, seed=cfg.seed)
                # the grounding badge's references (text.faithfulness.DescriptionGrounding)
                grounding = {"grounding": {k: summary["eval"][k] for k in ("lead_support_quantiles", "lead_sentences")
                                           if k in summary["eval"]}}
            save(half=True, path=out / ckptmod.MODEL_FILE, **grounding)
        summary["train_seconds"] = round(time.time() - t_start, 1)
        atomic_write_json(out / SUMMARY_FILE, summary)
        tracker.end(status, summary)
    return summary


@torch.no_grad()
def _val_losses(model: UrbanCLIP, val: TileSet, cfg: TrainConfig, tokenizer: UrbanTokenizer | None,
                env: DistEnv) -> dict[str, float]:
    """Mean losses on the val tiles (no augmentation; `eval_texts`), batch by batch."""
    was_training = model.training
    model.eval()
    totals = {"val_loss": 0.0, "val_con": 0.0, "val_lm": 0.0}
    n = 0
    bs = max(min(cfg.batch_size, len(val)), 2)
    gen = torch.Generator().manual_seed(cfg.seed)
    for i in range(0, len(val) - 1, bs):
        sl = slice(i, min(i + bs, len(val)))
        images = val.images[sl].float().div(255)
        loss_fn = training_loss(cfg, tokenizer)
        if cfg.image_only:
            views = torch.cat([normalise(augment(images, gen)), normalise(augment(images, gen))])
            out = loss_fn(model(views.to(env.device)))
        else:
            texts = eval_texts(val.sentences[sl], cfg.text_sampling)
            ids, mask = tokenizer.encode_batch(texts, model.config.context_length)
            out = loss_fn(model(normalise(images).to(env.device), ids.to(env.device), mask.to(env.device),
                                **loss_fn.needs))
        k = images.shape[0]
        for name, v in zip(("val_loss", "val_con", "val_lm"), out):
            totals[name] += float(v) * k
        n += k
    model.train(was_training)
    return {k: v / n for k, v in totals.items()}




def _mentions(text: str, words: list[str]) -> bool:
    low = text.lower()
    return any(re.search(rf"\b{re.escape(w.lower())}", low) for w in words)


@torch.no_grad()
def evaluate(model: UrbanCLIP, val: TileSet, cfg: TrainConfig, seed: int = 0, batch_size: int = 64) -> dict[str, Any]:
    """Measured, not assumed: image->text recall@1/@5 against chance, and land-use word hits of captions.

    Retrieval: every val tile against every val tile's description as training
    saw it (`eval_texts`; chance recall@k = k/N; ties count as misses). Captions: descriptions (`generate`) of up to
    `cfg.eval_generate` val tiles; a hit = it mentions a keyword of the tile's true
    land-use class (demo workspaces only); chance = the same rate against the
    keywords of a random other tile.
    """
    was_training = model.training
    model.eval()
    device = model.device
    x = normalise(val.images)
    img = torch.cat([model.encode_image(x[i:i + batch_size].to(device)) for i in range(0, len(val), batch_size)])
    texts = eval_texts(val.sentences, cfg.text_sampling)
    txt = torch.cat([model.encode_text(texts[i:i + batch_size]) for i in range(0, len(val), batch_size)])
    sims = (img @ txt.t()).float().cpu()
    n = len(val)
    # rank = how many other candidates score at least as high as the true one (ties count against us,
    # so cells sharing an identical sentence cannot inflate recall)
    ranks = (sims >= sims.diag()[:, None]).sum(1) - 1
    ranks_t = (sims.t() >= sims.diag()[:, None]).sum(1) - 1
    result: dict[str, Any] = {
        "n_val": n, "n_unique_texts": len(set(texts)),
        "i2t_recall@1": float((ranks < 1).float().mean()), "i2t_recall@5": float((ranks < 5).float().mean()),
        "t2i_recall@1": float((ranks_t < 1).float().mean()), "t2i_recall@5": float((ranks_t < 5).float().mean()),
        "chance_recall@1": 1.0 / n, "chance_recall@5": min(5.0 / n, 1.0),
    }
    m = min(cfg.eval_generate, n)
    if m > 0:
        captions: list[str] = []
        for i in range(0, m, batch_size):
            captions += model.generate(x[i:min(i + batch_size, m)].to(device))
        result["n_generated"] = m
        # how sure the captioner is of the first sentence it writes for held-out tiles: the reference the
        # grounding badge ranks a tile's first sentence against (text.faithfulness.DescriptionGrounding)
        firsts = [split_generated(c)[:1] for c in captions]
        lead_lp = [lp[0] for i in range(0, m, batch_size)
                   for lp in model.sentence_logprobs(x[i:min(i + batch_size, m)].to(device), firsts[i:i + batch_size])
                   if lp]
        if lead_lp:
            result["lead_support_quantiles"] = [float(v) for v in np.exp(np.quantile(lead_lp, np.linspace(0, 1, 21)))]
        # the first sentences it writes: what the badge weighs a first sentence against (faithfulness.meaning_share)
        result["lead_sentences"] = sorted({f[0] for f in firsts if f})
        result["examples"] = [{"cell_id": c, "generated": g, "source": s}
                              for c, g, s in zip(val.cell_ids[:5], captions[:5], texts[:5])]
        if val.landuse is not None:
            try:
                from urbanclip.data.demo import LANDUSE_KEYWORDS
            except ImportError:
                LANDUSE_KEYWORDS = None
            if LANDUSE_KEYWORDS:
                rng = np.random.default_rng(seed)
                true = [LANDUSE_KEYWORDS.get(val.landuse[i], []) for i in range(m)]
                other_idx = [(i + int(rng.integers(1, m))) % m if m > 1 else i for i in range(m)]
                hit = np.mean([_mentions(c, w) for c, w in zip(captions, true)])
                chance = np.mean([_mentions(c, true[j]) for c, j in zip(captions, other_idx)])
                result["landuse_hit_rate"] = float(hit)
                result["landuse_hit_rate_chance"] = float(chance)
    model.train(was_training)
    return result
