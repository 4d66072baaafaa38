"""Helpers for the app/services tests: a tiny workspace and pixel-based embeddings.

`tiny_workspace(root)` is the demo generator at a tiny size. `pixel_context` attaches embeddings computed
from downsampled pixels: a test scaffold for the similarity plumbing, not a model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from urbanclip.data.demo import build_demo
from urbanclip.data.workspace import Workspace
from urbanclip.search.index import SimilarityIndex


def tiny_workspace(root: Path, n: int = 6, px: int = 32) -> Workspace:
    """The demo generator at a tiny size: 3 synthetic cities of n x n cells, px-pixel tiles."""
    return build_demo(root, seed=0, n_cities=3, rows=n, cols=n, tile_px=px)


def pixel_vectors(ws: Workspace, size: int = 4) -> tuple[list[str], np.ndarray]:
    ids, vecs = [], []
    for cid in ws.cells["cell_id"]:
        img = ws.load_image(cid, size=size)
        if img is None:
            continue
        v = np.asarray(img, dtype=np.float32).ravel() / 255.0
        ids.append(cid)
        vecs.append(v)
    vecs = np.stack(vecs)
    return ids, vecs - vecs.mean(axis=0)  # centred, so cosine compares colours, not brightness


def pixel_context(ws: Workspace):
    """An AppContext with pixel embeddings + an index, no model, no predictions."""
    from urbanclip.services.context import AppContext

    ids, vecs = pixel_vectors(ws)
    city_of = dict(zip(ws.cells["cell_id"], ws.cells["city"]))
    ctx = AppContext(workspace=ws, cell_ids=ids, vectors=vecs)
    ctx.index = SimilarityIndex(vecs, ids, [city_of[c] for c in ids])
    return ctx


def tiny_checkpoint(ws: Workspace, path: Path, seed: int = 0, lead_sentences: list[str] | None = None) -> Path:
    """An untrained tiny UrbanCLIP (tiny_config, tokenizer trained on the workspace's texts) saved as a
    checkpoint file: a real model for grounding/generation plumbing, with no training cost.
    `lead_sentences`: stored as training's evaluation stores them (the badge's and look-alikes' references)."""
    import torch

    from urbanclip.data.workspace import split_sentences
    from urbanclip.model.checkpoint import save_checkpoint
    from urbanclip.model.config import tiny_config
    from urbanclip.model.model import UrbanCLIP
    from urbanclip.model.tokenizer import UrbanTokenizer

    texts = [s for t in ws.cells["text_raw"] for s in split_sentences(t)]
    torch.manual_seed(seed)
    model = UrbanCLIP(tiny_config()[0], UrbanTokenizer.train(texts, vocab_size=300)).eval()
    extra = {"grounding": {"lead_sentences": sorted(lead_sentences)}} if lead_sentences else None
    return save_checkpoint(path, model, extra=extra)


def map_page_with(ctx, workspace_path: Path, monkeypatch):
    """An AppTest of app.py (not yet run) whose pages get `ctx` instead of loading one."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    import urbanclip.ui as shared

    repo = Path(__file__).resolve().parents[1]

    monkeypatch.setenv("URBANCLIP_WORKSPACE", str(workspace_path))
    monkeypatch.setattr(shared, "load_context", lambda root, progress=None: ctx)
    st.cache_resource.clear()
    return AppTest.from_file(str(repo / "app.py"), default_timeout=60)
