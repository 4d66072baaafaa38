"""The full comparison (paper Table 2 + ablations): every method, the same probe, one report.

Baselines are trained on the workspace's own tiles (urbanclip.evaluation.baselines); the
UrbanCLIP family is pretrained with `urbanclip.training.train.pretrain` under
OUT/runs/<method>/ (reused when that run already finished, so a rerun only
re-probes), with the paper's ablations as TrainConfig switches:

    urbanvit             image_only=True (same ViT, no text)
    urbanclip-raw-text   text_column="text_raw" (w/o refined text)
    urbanclip-no-lm      lambda_lm=0            (w/o L_LM)
    urbanclip-no-con     lambda_con=0           (w/o L_Con)

All methods share the workspace's stored splits and the probe config; results
are mean ± std over the probe seeds. With splits=("random", "block") every method
is embedded once and probed on both the paper's random split and the spatial-block
split (urbanclip.data.splits), one report row per method and split.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from urbanclip.errors import UserError
from urbanclip.evaluation.probe import ProbeConfig, fit_probes, parse_indicators, single_thread
from urbanclip.evaluation.reports import MethodRow, RunLog, write_table2
from urbanclip.data.splits import DEFAULT_BLOCK_SIZE, check_block_size, parse_splits, store_block_split
from urbanclip.data.workspace import Workspace

# imagenet-cnn: frozen ImageNet EfficientNet-Lite0, our stand-in for the paper's ImageNet ResNet-18
# (the resnet18 row is randomly initialised and labelled so)
BASELINES = ("autoencoder", "pca", "resnet18", "imagenet-cnn", "tile2vec", "simclr-geo", "text-simclr")
# method -> (table label, TrainConfig overrides)
MODEL_METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "urbanvit": ("UrbanViT", {"image_only": True}),
    "urbanclip-raw-text": ("UrbanCLIP w/o refined text", {"text_column": "text_raw"}),
    "urbanclip-no-lm": ("UrbanCLIP w/o L_LM", {"lambda_lm": 0.0}),
    "urbanclip-no-con": ("UrbanCLIP w/o L_Con", {"lambda_con": 0.0}),
    "urbanclip": ("UrbanCLIP", {}),
}
ALL_METHODS = BASELINES + tuple(MODEL_METHODS)


@dataclass
class CompareConfig:
    """What to compare and with which budgets."""

    methods: tuple[str, ...] = ALL_METHODS
    indicators: str | Sequence[str] | None = None
    probe: ProbeConfig = field(default_factory=lambda: ProbeConfig(seeds=(0, 1, 2)))
    baseline_opts: dict[str, Any] = field(default_factory=dict)   # e.g. {"epochs": 8, "image_size": 64}
    model_config: str = "demo"          # config name (demo/tiny/default) or JSON file for pretraining
    train_overrides: dict[str, Any] = field(default_factory=dict)  # applied to every pretraining, e.g. max_steps
    runs: dict[str, str] = field(default_factory=dict)             # method -> existing run folder to reuse
    splits: tuple[str, ...] = ("random",)  # stored splits to score on: "random" and/or "block"
    block_size: int = DEFAULT_BLOCK_SIZE   # block side in cells for the "block" split

    def __post_init__(self) -> None:
        self.splits = parse_splits(self.splits)
        self.block_size = check_block_size(self.block_size)
        bad = [m for m in self.methods if m not in ALL_METHODS]
        if bad:
            raise UserError(f"unknown method {bad[0]!r}; choose from {', '.join(ALL_METHODS)}")
        bad = [m for m in self.runs if m not in MODEL_METHODS]
        if bad:
            raise UserError(f"--run is only for model methods ({', '.join(MODEL_METHODS)}), got {bad[0]!r}")


def _model_run(ws: Workspace, method: str, out: Path, cfg: CompareConfig, log: RunLog,
               same_config: dict[str, tuple[str, Path]] | None = None) -> tuple[Path, str]:
    """The run folder of a model method: given, already trained under OUT/runs, trained earlier in
    this comparison with an identical effective config (`same_config`), or trained now."""
    if method in cfg.runs:
        return Path(cfg.runs[method]), "given run"
    import json

    from urbanclip.model.checkpoint import MODEL_FILE
    from urbanclip.model.config import load_config

    model_cfg, train_cfg = load_config(cfg.model_config)
    overrides = {**cfg.train_overrides, **MODEL_METHODS[method][1]}
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(train_cfg)})
    if unknown:
        raise UserError(f"unknown training option {unknown[0]!r} for the comparison's pretraining runs")
    train_cfg = dataclasses.replace(train_cfg, **overrides)
    # e.g. "w/o refined text" on a workspace without text_refined trains exactly what UrbanCLIP
    # trains (training is deterministic per seed), so the second one reuses the first one's run
    effective = dataclasses.replace(train_cfg, text_column=train_cfg.text_column or ws.text_column())
    signature = json.dumps([dataclasses.asdict(model_cfg), dataclasses.asdict(effective)], sort_keys=True)
    same_config = {} if same_config is None else same_config
    run = out / "runs" / method
    if (run / MODEL_FILE).is_file():
        log.message(f"{method}: reusing the finished run {run}")
        same_config.setdefault(signature, (method, run))
        return run, "reused run"
    if signature in same_config:
        other, other_run = same_config[signature]
        log.message(f"{method}: same training config as {other}, reusing {other_run}")
        return other_run, f"same training config as {other}, reused run"
    if run.exists():
        import shutil

        shutil.rmtree(run)  # an unfinished run from an interrupted comparison: start it again
    from urbanclip.training.train import pretrain

    log.message(f"{method}: pretraining ({cfg.model_config} config) into {run}")
    summary = pretrain(ws, run, model_cfg, train_cfg)
    if summary.get("status") != "completed":  # stopped by a signal (the app's Cancel): stop the comparison too
        raise KeyboardInterrupt(f"{method} pretraining {summary.get('status')}")
    same_config[signature] = (method, run)
    return run, "trained"


def run_comparison(workspace: Workspace, out_dir: Path | str, cfg: CompareConfig | None = None,
                   bar: bool = False) -> tuple[list[MethodRow], dict[str, Path]]:
    """Train/embed every method, probe it, and write OUT/report.{json,csv,md}."""
    from urbanclip.data.embeddings import cached_embeddings
    from urbanclip.evaluation.encoders import make_encoder

    cfg = cfg or CompareConfig()
    ws = workspace
    out = Path(out_dir)
    names = parse_indicators(ws, cfg.indicators)
    if "block" in cfg.splits:
        store_block_split(ws, cfg.block_size)
    has_refined = "text_refined" in ws.cells.columns
    log = RunLog(out, bar=bar, keys=[f"{n}_R2{split_suffix(s)}" for s in cfg.splits for n in names])
    log.start(f"compare {','.join(cfg.methods)}", len(cfg.methods))
    rows: list[MethodRow] = []
    same_config: dict[str, tuple[str, Path]] = {}  # training-config signature -> (method, run folder)
    try:
        for i, method in enumerate(cfg.methods, 1):
            t0 = time.time()
            notes = ""
            if method in MODEL_METHODS:
                if method == "urbanclip-raw-text" and not has_refined:
                    notes = ("the workspace has no text_refined column, so this run trains on the same raw text as UrbanCLIP "
                             "(run `python -m urbanclip refine -w W` before the comparison)")
                run, how = _model_run(ws, method, out, cfg, log, same_config)
                enc = make_encoder(f"{'urbanvit' if method == 'urbanvit' else 'urbanclip'}:{run}", ws)
                label = MODEL_METHODS[method][0]
                notes = "; ".join(x for x in (notes, f"{how}: {run}") if x)
            else:
                log.message(f"{method}: training on the workspace's tiles")
                enc = make_encoder(method, ws, **_opts_for(method, cfg.baseline_opts))
                label = enc.label
            with single_thread():  # our models' inference too, like the baselines (see probe.single_thread)
                table = cached_embeddings(ws, enc)
            values = {}
            for split in cfg.splits:
                t1 = time.time()
                res = fit_probes(ws, table, names, cfg.probe, encoder_key=enc.key, split=split)
                summ = res.summary()
                rows.append(MethodRow(method, label, summ, notes=notes, encoder_key=enc.key,
                                      seconds=time.time() - (t0 if split == cfg.splits[0] else t1),
                                      counts=res.counts, split=split))
                values.update({f"{n}_R2{split_suffix(split)}": summ[n]["R2"]["mean"] for n in names})
            log.step(i, len(cfg.methods), **values)
    except BaseException as e:
        log.end("interrupted" if isinstance(e, KeyboardInterrupt) else "failed", {"error": str(e), "done": len(rows)})
        if rows:  # keep what finished
            write_table2(rows, names, out, title=f"Indicator prediction on {ws.name} (partial)", meta=_meta(ws, cfg))
        raise
    paths = write_table2(rows, names, out, title=f"Indicator prediction on {ws.name}", meta=_meta(ws, cfg))
    log.end("completed", {"report": str(paths["json"]), "methods": len(rows)})
    return rows, paths


def _opts_for(method: str, opts: dict[str, Any]) -> dict[str, Any]:
    """Budget options apply to every trainable baseline; PCA keeps its own size (10 comps on 32 px)."""
    if method == "pca":
        return {k: v for k, v in opts.items() if k in ("seed", "fit_on")}
    if method == "resnet18":
        return {k: v for k, v in opts.items() if k not in ("dim", "width", "epochs", "lr", "batch_size")}
    if method == "imagenet-cnn":  # frozen, nothing trained: only the input size applies
        return {k: v for k, v in opts.items() if k == "image_size"}
    return dict(opts)


def split_suffix(split: str) -> str:
    """Progress-event key suffix: '' for the random split (the keys earlier runs used), else '_<split>'."""
    return "" if split == "random" else f"_{split}"


def split_meta(ws: Workspace, splits: Sequence[str], block_size: int) -> dict[str, dict[str, Any]]:
    """What the report says about each split it scored (column, seed, block size)."""
    out: dict[str, dict[str, Any]] = {}
    for s in splits:
        if s == "random":
            out[s] = {"column": "split", "seed": ws.manifest.split_seed}
        else:
            out[s] = {"column": "split_block", **ws.manifest.extra.get("split_block", {"block_size": block_size})}
    return out


def _meta(ws: Workspace, cfg: CompareConfig) -> dict[str, Any]:
    return {"workspace": str(ws.root), "fingerprint": ws.fingerprint(), "synthetic": ws.manifest.synthetic,
            "probe": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg.probe).items()},
            "splits": split_meta(ws, cfg.splits, cfg.block_size), "drop_zero_targets": cfg.probe.drop_zero_targets,
            "baseline_opts": cfg.baseline_opts, "model_config": cfg.model_config,
            "train_overrides": cfg.train_overrides}


def beats(rows: Sequence[MethodRow], winner: str, losers: Sequence[str], metric: str = "R2",
          split: str = "random") -> dict[str, dict[str, bool]]:
    """{loser: {indicator: winner's mean R² > loser's}} on one split, for the acceptance check."""
    by = {r.method: r for r in rows if r.split == split}
    if winner not in by:
        return {}
    out = {}
    for l in losers:
        if l in by:
            out[l] = {ind: by[winner].results[ind][metric]["mean"] > by[l].results[ind][metric]["mean"]
                      for ind in by[winner].results}
    return out
