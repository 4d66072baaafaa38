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
from urbanclip.data.workspace import Workspace
from urbanclip.errors import UserError

WORKSPACE_ENV = "URBANCLIP_WORKSPACE"
MODEL_ENV = "URBANCLIP_MODEL"
ACTIVE_MODEL_FILE = "active_model.json"
SHIPPED_MODEL_DIR = paths.shipped_model_dir()

FALLBACK_ENCODER = "pca"  # training-free baseline used for look-alikes when no model is active
# a probe is fitted (and its predictions shown) only with this many labelled, imaged training cells:
# the release's 24 imaged cells give 15 train / 6 val / 3 test, and such a probe predicts a near-constant
MIN_PROBE_TRAIN = 200

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


def clear_active_model() -> None:
    """Go back to the shipped model (assets/model/): forget the one chosen on the Train page."""
    active_model_file().unlink(missing_ok=True)


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
    readings: Any = None                    # EmbeddingTable of the captioner's readings (look-alikes), or None
    index: Any = None                       # urbanclip.search.index.SimilarityIndex
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # raw scale, aligned with workspace.cells
    # indicator -> (lower, upper) of the prediction interval, raw scale, aligned with workspace.cells
    intervals: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    interval_level: float | None = None     # nominal coverage of `intervals`, e.g. 0.8
    # indicator -> expected (mean) value per cell, raw scale, aligned: what sums over cells add up
    # (`predictions` are medians; see uncertainty.Calibration.expected)
    expected: dict[str, np.ndarray] = field(default_factory=dict)
    # indicator -> cells with imagery and an observed value per split: what a probe could learn from
    probe_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    prediction_notes: dict[str, str] = field(default_factory=dict)  # indicator -> why it has no prediction
    model_note: str = ""                    # where the active model was trained, when not on this workspace
    notes: list[str] = field(default_factory=list)      # what is unavailable and why
    model_error: str | None = None          # why the active model did not load (None = loaded or none chosen)
    _row: dict[str, int] = field(default_factory=dict, repr=False)
    _generated: dict[str, str] = field(default_factory=dict, repr=False)
    _fingerprint: str | None = field(default=None, repr=False)
    memo: dict[str, Any] = field(default_factory=dict, repr=False)  # per-context caches of the services (map arrays)

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


INTERACTIVE_THREADS_ENV = "URBANCLIP_APP_THREADS"


def use_interactive_threads() -> int:
    """One torch thread for the app's per-click inference (generation, grounding, text search).

    A click runs one small forward pass; spreading it over several OpenMP threads on a
    shared machine made it 10-60x slower (measured on 2 busy cores: 1-10 s with 2 threads,
    0.1-0.2 s with 1), and concurrent sessions already run on their own threads.
    $URBANCLIP_APP_THREADS overrides it. Returns the number set (0 without torch).
    """
    try:
        import torch
    except ImportError:
        return 0
    n = max(1, int(os.environ.get(INTERACTIVE_THREADS_ENV, "1")))
    torch.set_num_threads(n)
    return n


def freeze_long_lived() -> None:
    """Move every object alive now (the loaded context, torch, geopandas, ...) out of the garbage
    collector's reach.

    Streamlit runs a full collection after every script run (`runner.postScriptGC`); with the
    context loaded that walked ~500,000 objects and held the GIL for 0.5-0.9 s on this
    machine, while the panel's last messages waited to be sent. Frozen objects are never
    collected, which is what a context that lives as long as the process needs; call it
    after loading one (`gc.unfreeze()` first when replacing one).
    """
    import gc

    gc.collect()
    gc.freeze()


def load_context(root: Path | None = None, model_path: Path | None | str = "active",
                 fit_missing_probes: bool = True, progress: Progress = _quiet,
                 min_probe_train: int = MIN_PROBE_TRAIN) -> AppContext:
    """Load workspace, model, embeddings, index and probe heads once.

    model_path="active" resolves the active model; None means "no model".
    Missing pieces become notes, never exceptions (except a missing workspace).
    Probes are fitted only for indicators with `min_probe_train` labelled imaged
    training cells; the others get a note saying why they have no prediction.
    """
    ws = ensure_workspace(root, progress)
    ctx = AppContext(workspace=ws)
    if not ws.indicator_names:
        ctx.notes.append("This workspace has no indicators (imagery imports make none): the map, descriptions, "
                         "look-alikes and search work; add population, GDP, ... with `python -m urbanclip attach "
                         f"raster|table ... --workspace {ws.root}`.")
    progress("Checking the workspace's tile images (cached after the first start)...")
    bad = ws.unreadable_images()
    if bad:
        ctx.notes.append(unreadable_note(ws, bad))
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
        ctx.model_note = model_domain_note(ws, ctx.model, Path(path))
        if ctx.model_note:
            ctx.notes.append(ctx.model_note)
    except (UserError, ImportError) as e:
        ctx.model_error = str(e)
        ctx.notes.append(f"Model not loaded: {e}" if isinstance(e, UserError) else
                         f"Model code is not available in this installation ({e}); showing observed indicators only.")
        _attach_embeddings(ctx, progress, spec=FALLBACK_ENCODER)
        if ctx.vectors is not None:
            _attach_index(ctx)
            ctx.notes.append(f"Similar cells use the '{FALLBACK_ENCODER}' baseline image embedding until a model "
                             "loads.")
        return ctx
    _attach_embeddings(ctx, progress)
    if ctx.vectors is not None:
        _attach_index(ctx)
        _attach_predictions(ctx, fit_missing_probes, progress, min_probe_train)
    return ctx


def model_domain_note(ws: Workspace, model: Any, path: Path) -> str:
    """A note when the model was trained on another workspace or another domain ('' when not).

    Read from the checkpoint's provenance (`extra`: the workspace it was trained
    on, its name, whether it was synthetic); the shipped model is the synthetic demo's.
    """
    prov = dict(getattr(model, "train_provenance", None) or {})
    try:
        shipped = Path(path).resolve().is_relative_to(SHIPPED_MODEL_DIR.resolve())
    except OSError:
        shipped = False
    if shipped:
        prov.setdefault("synthetic", True)
        prov.setdefault("workspace_name", "the synthetic demo")
    trained_on = prov.get("workspace")
    same = trained_on is not None and Path(trained_on).expanduser().resolve() == ws.root.resolve()
    if same:
        return ""
    where = prov.get("workspace_name") or trained_on or "an unknown workspace (the checkpoint does not say)"
    synthetic = prov.get("synthetic")
    if synthetic and not ws.manifest.synthetic:
        return (f"The active model ({path}) was trained on {where}, which is SYNTHETIC, not on this real workspace: "
                "its descriptions, look-alikes and any predictions reflect generated tiles, not this city. Train "
                "one here (Train page, or `python -m urbanclip pretrain --workspace "
                f"{ws.root} --out RUN`) before reading them.")
    return (f"The active model ({path}) was trained on another workspace ({where}), not on this one: its "
            "embeddings and descriptions carry that data's domain.")


def unreadable_note(ws: Workspace, bad: dict[str, str], show: int = 5) -> str:
    """The note naming tiles that cannot be read (they are drawn as missing and have no embedding)."""
    names = [f"{ws.cell(c)['image']} ({err})" for c, err in list(bad.items())[:show]]
    more = f" and {len(bad) - show} more" if len(bad) > show else ""
    return (f"{len(bad)} tile image(s) cannot be read, so they are shown as missing, without embedding, prediction or "
            f"look-alikes: {'; '.join(names)}{more}. Replace or remove these files in {ws.root}; the rest of the "
            "workspace is unaffected.")


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
    try:
        from urbanclip.evaluation.encoders import reading_table

        progress("Reading the tiles with the captioner, for look-alikes (cached after the first start)...")
        ctx.readings = reading_table(ctx.workspace, enc, model=ctx.model if spec is None else None)
    except UserError as e:
        ctx.notes.append(f"Captioner readings unavailable ({e}): look-alikes compare image embeddings only.")


def _attach_index(ctx: AppContext) -> None:
    try:
        from urbanclip.search.index import SimilarityIndex
    except ImportError as e:
        ctx.notes.append(f"Similarity search unavailable ({e}).")
        return
    from urbanclip.data.embeddings import EmbeddingTable

    ctx.index = SimilarityIndex.for_table(EmbeddingTable(ctx.cell_ids, ctx.vectors), ctx.workspace,
                                          readings=ctx.readings)


def probe_dir(ctx: AppContext) -> Path:
    """Where the app keeps probe heads for this model + workspace (the workspace cache)."""
    key = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in (ctx.encoder_key or "none"))[-80:]
    return ctx.workspace.cache_dir / "app-probes" / f"{key}-{ctx.fingerprint}"


def _store_heads(heads: Any, d: Path, replace: bool = False) -> None:
    """Save probe heads into the cache folder `d` as a whole: written into a unique staging folder, then
    renamed into place. When another process or session got there first, its heads are kept, unless
    `replace` (the cached heads are outdated): then they are moved aside first."""
    import shutil
    import tempfile

    d.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{d.name}.", suffix=".tmp", dir=d.parent))
    old = None
    try:
        heads.save(staging)
        (staging / "DONE").write_text("ok\n")
        if (d / "DONE").is_file() and not replace:
            return
        if d.exists():  # outdated, or a folder without DONE (an interrupted write)
            old = Path(tempfile.mkdtemp(prefix=f".{d.name}.", suffix=".old", dir=d.parent))
            try:
                os.replace(d, old / d.name)
            except OSError:
                pass
        try:
            os.rename(staging, d)
        except OSError:  # a concurrent writer renamed its own copy first
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def probe_cell_counts(ctx: AppContext, indicator: str) -> dict[str, int]:
    """Cells a probe of `indicator` could use, per split: embedded (imaged) and with an observed value."""
    ws = ctx.workspace
    embedded = ws.cells["cell_id"].isin(set(ctx.cell_ids)).to_numpy()
    known = np.isfinite(ws.cells[indicator].to_numpy(dtype=np.float64))
    split = ws.cells["split"].astype(str).to_numpy()
    return {s: int((embedded & known & (split == s)).sum()) for s in ("train", "val", "test")}


def _attach_predictions(ctx: AppContext, fit_missing: bool, progress: Progress,
                        min_train: int = MIN_PROBE_TRAIN) -> None:
    ws = ctx.workspace
    if not ws.indicator_names:
        return
    known = []
    for k in ws.indicator_names:
        n = ctx.probe_counts[k] = probe_cell_counts(ctx, k)
        if n["train"] >= min_train and n["val"] >= 3 and n["test"] >= 3:
            known.append(k)
        else:
            ctx.prediction_notes[k] = (
                f"no prediction: only {n['train']} train / {n['val']} val / {n['test']} test cells have both "
                f"imagery and an observed value, and a probe needs at least {min_train} training cells to be "
                "worth showing")
    if ctx.prediction_notes:
        missing = sorted(ctx.prediction_notes)
        n = ctx.probe_counts[missing[0]]
        ctx.notes.append(f"No predictions for {', '.join(missing)}: a probe needs at least {min_train} labelled "
                         f"training cells with imagery, this workspace has {n['train']} (train) / {n['val']} (val) / "
                         f"{n['test']} (test) for {missing[0]}. Fetch imagery for more cells (`import release "
                         "--tiles-template`, `import xyz`) or attach indicators (`attach`).")
    if not known:
        return
    try:
        from urbanclip.evaluation.probe import ProbeConfig, ProbeHeads, fit_probes
    except ImportError as e:
        ctx.notes.append(f"Indicator probes unavailable ({e}): showing observed values only.")
        return
    d = probe_dir(ctx)
    try:
        heads = ProbeHeads.load(d) if (d / "DONE").is_file() else None
        outdated = heads is not None and not heads.has_expected and fit_missing
        if outdated:
            # cached before prediction intervals or expected values existed: refit once (the cache is ours to redo)
            ctx.notes.append("The cached probe heads predate prediction intervals or expected values; they were "
                             "refitted.")
            heads = None
        if heads is not None and fit_missing and not set(known) <= set(heads.predict(ctx.vectors[:1])):
            heads = None  # cached for fewer indicators (an indicator was attached since): refit
        if heads is None and fit_missing:
            progress("Fitting indicator probes on the frozen embeddings (first start only)...")
            from urbanclip.data.embeddings import EmbeddingTable

            result = fit_probes(ws, EmbeddingTable(cell_ids=ctx.cell_ids, vectors=ctx.vectors), known, ProbeConfig())
            heads = result.heads
            _store_heads(heads, d, replace=outdated)
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
        if name in known:  # heads cached by an older version may cover indicators now below the minimum
            ctx.predictions[name] = aligned(values)
    for name, iv in with_iv.items():
        if name in known:
            ctx.intervals[name] = (aligned(iv.lower), aligned(iv.upper))
            ctx.interval_level = iv.level
            if iv.expected is not None:
                ctx.expected[name] = aligned(iv.expected)
