"""Indicator probes (paper §4.2): a small MLP per indicator on frozen embeddings.

Protocol: target = log1p(indicator) (`workspace.log_targets`), standardised on
the training cells; inputs standardised on the training cells; a stored split of
the workspace so every method is scored on the same cells (`split`: the paper's
random 60/20/20; `split_block`: whole k x k blocks, see urbanclip.data.splits); early
stopping on the validation split; R² / RMSE / MAE on the test split (log scale).
Several seeds (MLP init + batch order) give mean ± std. Optionally cells whose
indicator is 0 are left out (`drop_zero_targets`, as the official UrbanCLIP code does).

Prediction intervals (urbanclip.evaluation.uncertainty): for the first seed, `ensemble - 1`
more heads are fitted on bootstrap resamples of the train cells; their spread,
calibrated split-conformally on the validation cells, gives a per-cell interval of
nominal coverage `interval` (80 %), and its coverage on the test cells is reported.

`ProbeHeads` keeps the fitted heads (first seed, plus the ensemble and its
calibration) with their standardisation statistics, the encoder key and the
workspace fingerprint, so the app can predict raw-scale indicators, with
intervals, for any embedded cell. Heads saved before intervals existed load
and predict as before (`has_intervals` is False).
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from urbanclip.data.indicators import from_model_scale
from urbanclip.data.workspace import Workspace, atomic_write_bytes
from urbanclip.errors import UserError
from urbanclip.evaluation.metrics import METRICS, mean_std, regression_metrics
from urbanclip.evaluation.uncertainty import DEFAULT_LEVEL, Calibration, calibrate, check_level, coverage

HEADS_FILE = "probe_heads.pt"
META_FILE = "probe_heads.json"


@dataclass
class ProbeConfig:
    """MLP head and training budget, shared by every method in a comparison."""

    hidden: tuple[int, ...] = (128, 64)
    dropout: float = 0.1
    weight_decay: float = 1e-3
    lr: float = 3e-3
    batch_size: int = 128
    max_epochs: int = 300
    patience: int = 25          # epochs without val improvement before stopping
    seeds: tuple[int, ...] = (0,)
    min_train: int = 10         # fewer known cells than this in a split -> clear error
    min_val: int = 3
    min_test: int = 3
    drop_zero_targets: bool = False  # leave out cells whose indicator is 0 (the official UrbanCLIP code does)
    ensemble: int = 5           # heads per indicator behind the prediction intervals (1 = constant-width intervals)
    interval: float = DEFAULT_LEVEL  # nominal coverage of the prediction intervals

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        self.seeds = tuple(int(s) for s in self.seeds)
        if int(self.ensemble) < 1:
            raise UserError(f"probe ensemble must be at least 1 head, got {self.ensemble}")
        self.ensemble = int(self.ensemble)
        self.interval = check_level(self.interval)
        self.drop_zero_targets = bool(self.drop_zero_targets)
        if not self.seeds:
            raise UserError("probe needs at least one seed")
        if any(h < 1 for h in self.hidden):
            raise UserError(f"probe hidden sizes must be positive, got {self.hidden}")
        if not 0 <= self.dropout < 1:
            raise UserError(f"probe dropout must be in [0, 1), got {self.dropout}")


# ---------------------------------------------------------------------------------
# one head


@dataclass
class Head:
    """A fitted MLP with the standardisation it was trained with (all on the log1p scale)."""

    state: dict
    hidden: tuple[int, ...]
    dropout: float
    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: float
    y_std: float
    epochs: int = 0

    def module(self):
        net = build_mlp(len(self.x_mean), self.hidden, self.dropout)
        net.load_state_dict(self.state)
        return net.eval()

    def predict_log(self, x: np.ndarray) -> np.ndarray:
        import torch

        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.x_mean):
            raise UserError(f"probe head expects vectors of {len(self.x_mean)} dimensions, got shape {x.shape}; "
                            "were they embedded by the same encoder?")
        z = torch.from_numpy((x - self.x_mean) / self.x_std)
        with torch.no_grad():
            out = self.module()(z).squeeze(1).double().numpy()
        return out * self.y_std + self.y_mean

    def to_blob(self) -> dict:
        import torch

        return {"state": self.state, "x_mean": torch.from_numpy(np.asarray(self.x_mean, np.float32)),
                "x_std": torch.from_numpy(np.asarray(self.x_std, np.float32)), "y_mean": self.y_mean,
                "y_std": self.y_std, "hidden": list(self.hidden), "dropout": self.dropout, "epochs": self.epochs}

    @classmethod
    def from_blob(cls, b: dict) -> "Head":
        return cls(state=b["state"], hidden=tuple(b["hidden"]), dropout=float(b["dropout"]), x_mean=b["x_mean"].numpy(),
                   x_std=b["x_std"].numpy(), y_mean=float(b["y_mean"]), y_std=float(b["y_std"]),
                   epochs=int(b.get("epochs", 0)))


def build_mlp(d_in: int, hidden: Sequence[int], dropout: float):
    from torch import nn

    layers: list = []
    for h in hidden:
        layers += [nn.Linear(d_in, h), nn.ReLU(), nn.Dropout(dropout)]
        d_in = h
    layers.append(nn.Linear(d_in, 1))
    return nn.Sequential(*layers)


@contextmanager
def single_thread():
    """Small models train 10-30x faster on one thread than with OpenMP threads fighting over a
    busy box's cores (measured on the 2-core dev machine). URBANCLIP_PROBE_THREADS overrides."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(os.environ.get("URBANCLIP_PROBE_THREADS", "1"))))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_head(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
             cfg: ProbeConfig, seed: int) -> Head:
    """Train one MLP (log-scale targets) with early stopping on the validation cells."""
    with single_thread():
        return _fit_head(x_train, y_train, x_val, y_val, cfg, seed)


def _fit_head(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
              cfg: ProbeConfig, seed: int) -> Head:
    import torch

    x_train = np.asarray(x_train, dtype=np.float32)
    x_val = np.asarray(x_val, dtype=np.float32)
    x_mean = x_train.mean(axis=0)
    x_std = np.clip(x_train.std(axis=0), 1e-6, None)
    y_mean, y_std = float(np.mean(y_train)), float(np.std(y_train)) or 1.0
    xt = torch.from_numpy((x_train - x_mean) / x_std)
    xv = torch.from_numpy((x_val - x_mean) / x_std)
    yt = torch.from_numpy(((np.asarray(y_train) - y_mean) / y_std).astype(np.float32))
    yv = torch.from_numpy(((np.asarray(y_val) - y_mean) / y_std).astype(np.float32))
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = build_mlp(xt.shape[1], cfg.hidden, cfg.dropout)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best, best_state, best_epoch, bad = float("inf"), None, 0, 0
    n = len(xt)
    for epoch in range(cfg.max_epochs):
        net.train()
        perm = torch.randperm(n, generator=gen)
        for b in range(0, n, cfg.batch_size):
            i = perm[b:b + cfg.batch_size]
            if len(i) < 2 and n >= 2:
                continue
            loss = torch.nn.functional.mse_loss(net(xt[i]).squeeze(1), yt[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            val = float(torch.nn.functional.mse_loss(net(xv).squeeze(1), yv))
        if val < best - 1e-6:
            best, best_epoch, bad = val, epoch + 1, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    return Head(state=best_state or net.state_dict(), hidden=cfg.hidden, dropout=cfg.dropout,
                x_mean=x_mean, x_std=x_std, y_mean=y_mean, y_std=y_std, epochs=best_epoch)


def fit_members(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                cfg: ProbeConfig, seed: int) -> list[Head]:
    """`cfg.ensemble - 1` extra heads, each on a bootstrap resample of the train cells (own seed)."""
    rng = np.random.default_rng([seed, 7919])
    members = []
    for m in range(1, cfg.ensemble):
        boot = rng.integers(0, len(x_train), len(x_train))
        members.append(fit_head(x_train[boot], y_train[boot], x_val, y_val, cfg, seed=10_000 * m + seed))
    return members


def ensemble_predict(head: Head, members: Sequence[Head], x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(point prediction of `head`, std over head + members, or None without members), log1p scale."""
    pred = head.predict_log(x)
    if not members:
        return pred, None
    allp = np.stack([pred] + [m.predict_log(x) for m in members])
    return pred, allp.std(axis=0, ddof=1)


@dataclass
class Interval:
    """Prediction with its interval, per cell, on the raw scale (clipped at 0)."""

    pred: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float
    expected: np.ndarray | None = None  # mean value (Calibration.expected): what sums of cells should add up


# ---------------------------------------------------------------------------------
# saved heads for the app


class ProbeHeads:
    """Fitted heads per indicator, loadable by the app to predict a clicked cell."""

    def __init__(self, heads: dict[str, Head], encoder_key: str = "", fingerprint: str = "", config: ProbeConfig | None = None,
                 members: dict[str, list[Head]] | None = None, calibration: dict[str, Calibration] | None = None,
                 split: str = "random"):
        self.heads = heads
        self.encoder_key = encoder_key
        self.fingerprint = fingerprint
        self.config = config or ProbeConfig()
        self.members = members or {}          # indicator -> extra ensemble heads
        self.calibration = calibration or {}  # indicator -> conformal calibration (empty: heads predate intervals)
        self.split = split

    @property
    def has_intervals(self) -> bool:
        return bool(self.heads) and all(k in self.calibration for k in self.heads)

    @property
    def has_expected(self) -> bool:
        """Whether every head can give expected values (calibrations saved before smearing cannot)."""
        return self.has_intervals and all(self.calibration[k].smearing > 0 for k in self.heads)

    @property
    def indicators(self) -> list[str]:
        return list(self.heads)

    def predict_log(self, vectors: np.ndarray) -> dict[str, np.ndarray]:
        """Predictions on the model scale (log1p)."""
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim == 1:
            v = v[None]
        return {k: h.predict_log(v) for k, h in self.heads.items()}

    def predict(self, vectors: np.ndarray) -> dict[str, np.ndarray]:
        """Raw-scale predictions (expm1 of the log prediction, clipped at 0) per indicator."""
        return {k: np.clip(from_model_scale(p), 0.0, None) for k, p in self.predict_log(vectors).items()}

    def predict_interval_log(self, vectors: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """{indicator: (prediction, lower, upper)} on the model scale (log1p)."""
        if not self.has_intervals:
            raise UserError("these probe heads were saved without prediction intervals; refit them "
                            "(`python -m urbanclip probe ...`, or delete the app's probe cache to refit on start)")
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim == 1:
            v = v[None]
        out = {}
        for k, h in self.heads.items():
            pred, spread = ensemble_predict(h, self.members.get(k, []), v)
            lo, hi = self.calibration[k].interval(pred, spread)
            out[k] = (pred, lo, hi)
        return out

    def predict_interval(self, vectors: np.ndarray) -> dict[str, Interval]:
        """Raw-scale predictions with their intervals per indicator (expm1 of the log values, clipped at 0)."""
        raw = lambda a: np.clip(from_model_scale(a), 0.0, None)  # noqa: E731
        return {k: Interval(raw(p), raw(lo), raw(hi), self.calibration[k].level, self.calibration[k].expected(p))
                for k, (p, lo, hi) in self.predict_interval_log(vectors).items()}

    def save(self, directory: Path | str) -> Path:
        """Write the heads (torch) and their metadata (JSON) into `directory`, each by unique temp file +
        rename, so a concurrent writer or reader never sees a torn file."""
        import io

        import torch

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        blob = {k: {**h.to_blob(), "members": [m.to_blob() for m in self.members.get(k, [])]}
                for k, h in self.heads.items()}
        buf = io.BytesIO()
        torch.save(blob, buf)
        atomic_write_bytes(d / HEADS_FILE, buf.getvalue())
        cfg = asdict(self.config)
        meta = {"encoder_key": self.encoder_key, "fingerprint": self.fingerprint, "indicators": self.indicators,
                "config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}, "target": "log1p",
                "split": self.split, "intervals": {k: c.to_dict() for k, c in self.calibration.items()}}
        atomic_write_bytes(d / META_FILE, (json.dumps(meta, indent=2) + "\n").encode("utf-8"))
        return d

    @classmethod
    def load(cls, directory: Path | str) -> "ProbeHeads":
        import torch

        d = Path(directory)
        if not (d / HEADS_FILE).is_file() or not (d / META_FILE).is_file():
            raise UserError(f"{d} holds no saved probe heads ({HEADS_FILE} + {META_FILE}); run `python -m urbanclip probe ... --out {d}`")
        try:
            meta = json.loads((d / META_FILE).read_text("utf-8"))
            blob = torch.load(d / HEADS_FILE, map_location="cpu", weights_only=True)
        except Exception as e:
            raise UserError(f"probe heads in {d} cannot be read ({e}); refit them") from None
        heads = {k: Head.from_blob(b) for k, b in blob.items()}
        members = {k: [Head.from_blob(m) for m in b.get("members", [])] for k, b in blob.items()}
        calibration = {k: Calibration.from_dict(c) for k, c in meta.get("intervals", {}).items()}
        cfg_d = meta.get("config", {})
        cfg = ProbeConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg_d.items()
                             if k in ProbeConfig.__dataclass_fields__})
        return cls(heads, meta.get("encoder_key", ""), meta.get("fingerprint", ""), cfg, members, calibration,
                   meta.get("split", "random"))


# ---------------------------------------------------------------------------------
# the probe


INTERVAL_KEYS = ("coverage", "width")  # extra entries of ProbeResult.summary() per indicator


@dataclass
class ProbeResult:
    """Test metrics per indicator and seed, the split sizes, and the first seed's heads."""

    encoder_key: str
    indicators: list[str]
    per_seed: dict[str, list[dict[str, float]]]
    counts: dict[str, dict[str, int]]
    heads: ProbeHeads
    # ind -> cell_id / y_true / y_pred / lower / upper on the test split (seed 0, log1p scale)
    test_predictions: dict[str, dict[str, list]] = field(default_factory=dict)
    # ind -> {"coverage", "width" (mean, log1p), "level", "q", "method", "n_cal", "n_test"} (seed 0, test split)
    intervals: dict[str, dict[str, float]] = field(default_factory=dict)
    split: str = "random"

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """{indicator: {metric: {"mean": .., "std": .., "n_seeds": ..}}}; plus "coverage" and "width"
        of the prediction intervals on the test split (first seed, with the nominal "level")."""
        out: dict = {}
        for ind, runs in self.per_seed.items():
            out[ind] = {}
            for m in METRICS:
                mu, sd = mean_std([r[m] for r in runs])
                out[ind][m] = {"mean": mu, "std": sd, "n_seeds": len(runs)}
            iv = self.intervals.get(ind)
            if iv:
                for key in INTERVAL_KEYS:
                    out[ind][key] = {"mean": iv[key], "std": 0.0, "n_seeds": 1, "level": iv["level"]}
        return out


def parse_indicators(workspace: Workspace, indicators: str | Sequence[str] | None) -> list[str]:
    """Comma string / list / None (= all of the workspace's) -> validated list."""
    if indicators is None or indicators == "" or indicators == "all":
        names = workspace.indicator_names
    elif isinstance(indicators, str):
        names = [s.strip() for s in indicators.split(",") if s.strip()]
    else:
        names = [str(s) for s in indicators]
    if not names:
        raise UserError(f"no indicators given; workspace {workspace.root} has {workspace.indicator_names}")
    for n in names:
        if n not in workspace.indicator_names:
            raise UserError(f"indicator {n!r} is not in workspace {workspace.root}; it has {workspace.indicator_names}")
        if workspace.cells[n].notna().sum() == 0:
            raise UserError(f"indicator {n!r} has no known values (all NaN) in workspace {workspace.root}; "
                            "import observed values for it or leave it out of --indicators")
    return names


def known_targets(y: np.ndarray, cfg: ProbeConfig) -> np.ndarray:
    """Rows a probe may use: a known target, and non-zero when cfg.drop_zero_targets (y is log1p, so 0 = raw 0)."""
    known = np.isfinite(y)
    return known & (y > 0) if cfg.drop_zero_targets else known


def split_indices(split: np.ndarray, known: np.ndarray, cfg: ProbeConfig, what: str) -> dict[str, np.ndarray]:
    """Row indices of train/val/test among rows with a known target; clear error if a split is too small."""
    out = {s: np.flatnonzero((split == s) & known) for s in ("train", "val", "test")}
    need = {"train": cfg.min_train, "val": cfg.min_val, "test": cfg.min_test}
    for s, n in need.items():
        if len(out[s]) < n:
            raise UserError(f"{what}: only {len(out[s])} {s} cells with a known value (need at least {n}); "
                            f"the workspace has too few cells with imagery and observed values for a probe")
    return out


def fit_probes(workspace: Workspace, table, indicators: str | Sequence[str] | None = None,
               cfg: ProbeConfig | None = None, encoder_key: str = "", split: str = "random") -> ProbeResult:
    """Fit one MLP per indicator on the embeddings in `table`; score on the test split.

    split: "random" (the workspace's `split` column) or "block" (`split_block`, stored
    beforehand by Workspace.store_block_split).
    """
    cfg = cfg or ProbeConfig()
    names = parse_indicators(workspace, indicators)
    if len(table) == 0:
        raise UserError("the embedding table is empty: no cells could be embedded")
    column = workspace.split_column(split)
    rows = np.array([workspace.index_of(c) for c in table.cell_ids])
    labels = workspace.cells[column].to_numpy().astype(str)[rows]
    x = np.asarray(table.vectors, dtype=np.float32)
    per_seed: dict[str, list[dict[str, float]]] = {}
    counts: dict[str, dict[str, int]] = {}
    heads: dict[str, Head] = {}
    members: dict[str, list[Head]] = {}
    calib: dict[str, Calibration] = {}
    preds: dict[str, dict[str, list]] = {}
    intervals: dict[str, dict[str, float]] = {}
    for name in names:
        y = workspace.log_targets(name)[rows]
        idx = split_indices(labels, known_targets(y, cfg), cfg, f"indicator {name!r} ({split} split)")
        tr, va, te = idx["train"], idx["val"], idx["test"]
        counts[name] = {s: int(len(v)) for s, v in idx.items()}
        per_seed[name] = []
        for k, seed in enumerate(cfg.seeds):
            head = fit_head(x[tr], y[tr], x[va], y[va], cfg, seed)
            pred = head.predict_log(x[te])
            per_seed[name].append(regression_metrics(y[te], pred))
            if k == 0:  # the saved heads: add the ensemble and calibrate its intervals on val
                heads[name] = head
                members[name] = fit_members(x[tr], y[tr], x[va], y[va], cfg, seed)
                val_pred, val_spread = ensemble_predict(head, members[name], x[va])
                calib[name] = calibrate(y[va], val_pred, val_spread, cfg.interval)
                _, test_spread = ensemble_predict(head, members[name], x[te])
                lo, hi = calib[name].interval(pred, test_spread)
                intervals[name] = {"coverage": coverage(y[te], lo, hi), "width": float(np.mean(hi - lo)),
                                   "level": cfg.interval, "q": calib[name].q, "method": calib[name].method,
                                   "n_cal": len(va), "n_test": len(te)}
                preds[name] = {"cell_id": [table.cell_ids[i] for i in te], "y_true": y[te].tolist(),
                               "y_pred": pred.tolist(), "lower": lo.tolist(), "upper": hi.tolist()}
    key = encoder_key or getattr(table, "encoder_key", "")
    heads_obj = ProbeHeads(heads, key, workspace.fingerprint(), cfg, members, calib, split)
    return ProbeResult(key, names, per_seed, counts, heads_obj, preds, intervals, split)
