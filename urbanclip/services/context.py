"""AppContext: everything a page needs, loaded once per process.

Pages wrap `load_context` in `st.cache_resource`; this module never imports
streamlit so it is testable on its own. Each piece (model, embeddings, probe
heads, similarity index) is optional: when one is missing the context records a
friendly note saying what is unavailable and how to get it, and the pages show
observed data only instead of failing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from urbanclip import paths
from urbanclip.errors import UserError
from urbanclip.data.workspace import Workspace

WORKSPACE_ENV = "URBANCLIP_WORKSPACE"
MODEL_ENV = "URBANCLIP_MODEL"
ACTIVE_MODEL_FILE = "active_model.json"
SHIPPED_MODEL_DIR = paths.shipped_model_dir()

FALLBACK_ENCODER = "pca"  # training-free baseline used for look-alikes when no model is active

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# ---------------------------------------------------------------------------------
# where things are


def workspace_dir() -> Path:
    """The workspace the app opens: $URBANCLIP_WORKSPACE, else the demo workspace."""
    env = os.environ.get(WORKSPACE_ENV)
    return Path(env).expanduser() if env else paths.demo_workspace_dir()


def active_model_file() -> Path:
    return paths.home() / ACTIVE_MODEL_FILE


def active_model_path() -> Path | None:
    """The checkpoint the Map page uses: $URBANCLIP_MODEL, the one chosen on the Train
    page (`active_model.json`), else the shipped `assets/model/`, else None."""
    env = os.environ.get(MODEL_ENV)
    if env:
        return Path(env).expanduser()
    f = active_model_file()
    if f.is_file():
        try:
            p = Path(json.loads(f.read_text("utf-8"))["path"])
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{f} is not valid (expected {{\"path\": ...}}); delete it to use the shipped model") from None
        return p
    if SHIPPED_MODEL_DIR.is_dir() and any(SHIPPED_MODEL_DIR.iterdir()):
        return SHIPPED_MODEL_DIR
    return None


def ensure_workspace(root: Path | None = None, progress: Progress = _quiet) -> Workspace:
    """Load the workspace; build the synthetic demo first when the default one is absent."""
    root = Path(root) if root is not None else workspace_dir()
    if not root.exists() and root.resolve() == paths.demo_workspace_dir().resolve():
        try:
            from urbanclip.data.demo import build_demo
        except ImportError:
            raise UserError(f"no workspace at {root} and the demo builder is not available; "
                            "import data with `python -m urbanclip import ...` and set URBANCLIP_WORKSPACE") from None
        progress(f"Building the synthetic demo workspace at {root} (first start only)...")
        build_demo(root)
    return Workspace.load(root)


# ---------------------------------------------------------------------------------
# the context


@dataclass
class AppContext:
    """A workspace plus whatever model-derived pieces could be loaded for it."""

    workspace: Workspace
    model: Any = None                       # urbanclip.model.model.UrbanCLIP, eval mode
    model_path: Path | None = None
    encoder_key: str | None = None
    cell_ids: list[str] = field(default_factory=list)   # rows of `vectors`
    vectors: np.ndarray | None = None       # image embeddings, float32 [N, D]
    index: Any = None                       # urbanclip.search.index.SimilarityIndex
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # raw scale, aligned with workspace.cells
    # indicator -> (lower, upper) of the prediction interval, raw scale, aligned with workspace.cells
    intervals: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    interval_level: float | None = None     # nominal coverage of `intervals`, e.g. 0.8
    notes: list[str] = field(default_factory=list)      # what is unavailable and why
    _row: dict[str, int] = field(default_factory=dict, repr=False)
    _generated: dict[str, str] = field(default_factory=dict, repr=False)
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def fingerprint(self) -> str:
        """workspace.fingerprint(), computed once (it stats every image file)."""
        if self._fingerprint is None:
            self._fingerprint = self.workspace.fingerprint()
        return self._fingerprint

    def vector_of(self, cell_id: str) -> np.ndarray | None:
        """The cached embedding of one cell (never re-embeds)."""
        if self.vectors is None:
            return None
        if not self._row:
            self._row = {c: i for i, c in enumerate(self.cell_ids)}
        i = self._row.get(cell_id)
        return None if i is None else self.vectors[i]

    @property
    def has_model(self) -> bool:
        return self.model is not None

    @property
    def has_predictions(self) -> bool:
        return bool(self.predictions)

    @property
    def has_intervals(self) -> bool:
        return bool(self.intervals)


def load_context(root: Path | None = None, model_path: Path | None | str = "active",
                 fit_missing_probes: bool = True, progress: Progress = _quiet) -> AppContext:
    """Load workspace, model, embeddings, index and probe heads once.

    model_path="active" resolves the active model; None means "no model".
    Missing pieces become notes, never exceptions (except a missing workspace).
    """
    ws = ensure_workspace(root, progress)
    ctx = AppContext(workspace=ws)
    path = active_model_path() if model_path == "active" else (Path(model_path) if model_path else None)
    if path is None:
        ctx.notes.append("No trained model yet: showing observed indicators only. Train one on the Train page "
                         "(or `python -m urbanclip pretrain --workspace W --out RUN`) and make it active.")
        _attach_embeddings(ctx, progress, spec=FALLBACK_ENCODER)
        if ctx.vectors is not None:
            _attach_index(ctx)
            ctx.notes.append(f"Similar cells use the '{FALLBACK_ENCODER}' baseline image embedding until a model is active.")
        return ctx
    try:
        from urbanclip.model.checkpoint import load_model

        progress(f"Loading model {path}...")
        ctx.model = load_model(path)
        ctx.model_path = Path(path)
    except UserError as e:
        ctx.notes.append(f"Model not loaded: {e}")
        return ctx
    except ImportError as e:
        ctx.notes.append(f"Model code is not available in this installation ({e}); showing observed indicators only.")
        return ctx
    _attach_embeddings(ctx, progress)
    if ctx.vectors is not None:
        _attach_index(ctx)
        _attach_predictions(ctx, fit_missing_probes, progress)
    return ctx


def _attach_embeddings(ctx: AppContext, progress: Progress, spec: str | None = None) -> None:
    try:
        from urbanclip.data.embeddings import cached_embeddings
        from urbanclip.evaluation.encoders import make_encoder

        enc = make_encoder(spec or f"urbanclip:{ctx.model_path}", ctx.workspace)
        progress("Embedding the workspace's tiles (cached after the first start)...")
        table = cached_embeddings(ctx.workspace, enc)
    except (UserError, ImportError) as e:
        ctx.notes.append(f"Image embeddings unavailable ({e}): no similar cells or predictions.")
        return
    ctx.encoder_key = enc.key
    ctx.cell_ids = list(table.cell_ids)
    ctx.vectors = np.asarray(table.vectors, dtype=np.float32)


def _attach_index(ctx: AppContext) -> None:
    try:
        from urbanclip.search.index import SimilarityIndex
    except ImportError as e:
        ctx.notes.append(f"Similarity search unavailable ({e}).")
        return
    city_of = dict(zip(ctx.workspace.cells["cell_id"], ctx.workspace.cells["city"]))
    ctx.index = SimilarityIndex(ctx.vectors, ctx.cell_ids, [city_of[c] for c in ctx.cell_ids], center=True)


def probe_dir(ctx: AppContext) -> Path:
    """Where the app keeps probe heads for this model + workspace (the workspace cache)."""
    key = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in (ctx.encoder_key or "none"))[-80:]
    return ctx.workspace.cache_dir / "app-probes" / f"{key}-{ctx.fingerprint}"


def _attach_predictions(ctx: AppContext, fit_missing: bool, progress: Progress) -> None:
    ws = ctx.workspace
    known = [k for k in ws.indicator_names if ws.cells[k].notna().sum() >= 10]
    if not known:
        ctx.notes.append("The workspace has too few observed indicator values to train probes: no predictions.")
        return
    try:
        from urbanclip.evaluation.probe import ProbeConfig, ProbeHeads, fit_probes
    except ImportError as e:
        ctx.notes.append(f"Indicator probes unavailable ({e}): showing observed values only.")
        return
    d = probe_dir(ctx)
    try:
        heads = ProbeHeads.load(d) if (d / "DONE").is_file() else None
        if heads is not None and not heads.has_intervals and fit_missing:
            # cached before prediction intervals existed: refit once (the cache is ours to redo)
            ctx.notes.append("The cached probe heads predate prediction intervals; they were refitted with intervals.")
            heads = None
        if heads is None and fit_missing:
            progress("Fitting indicator probes on the frozen embeddings (first start only)...")
            from urbanclip.data.embeddings import EmbeddingTable

            result = fit_probes(ws, EmbeddingTable(cell_ids=ctx.cell_ids, vectors=ctx.vectors), known, ProbeConfig())
            heads = result.heads
            heads.save(d)
            (d / "DONE").write_text("ok\n")
        elif heads is None:
            ctx.notes.append("Probe heads are not trained for this model: showing observed values only.")
            return
        if heads.has_intervals:
            with_iv = heads.predict_interval(ctx.vectors)
            pred = {k: iv.pred for k, iv in with_iv.items()}
        else:
            with_iv = {}
            pred = heads.predict(ctx.vectors)
            ctx.notes.append("These probe heads have no prediction intervals: showing point predictions only.")
    except UserError as e:
        ctx.notes.append(f"Predictions unavailable: {e}")
        return
    pos = {c: i for i, c in enumerate(ctx.cell_ids)}
    idx = np.array([pos.get(c, -1) for c in ws.cells["cell_id"]])

    def aligned(values: np.ndarray) -> np.ndarray:
        """Per embedded cell -> per workspace cell (NaN where a cell has no embedding)."""
        out = np.full(len(idx), np.nan)
        out[idx >= 0] = np.asarray(values, dtype=np.float64)[idx[idx >= 0]]
        return out

    for name, values in pred.items():
        ctx.predictions[name] = aligned(values)
    for name, iv in with_iv.items():
        ctx.intervals[name] = (aligned(iv.lower), aligned(iv.upper))
        ctx.interval_level = iv.level
