"""Helpers for the app/services tests: a tiny workspace and pixel-based embeddings.

`tiny_workspace(root)` uses `urbanclip.demo.build_demo` when it exists; otherwise
it builds a small stand-in with WorkspaceBuilder (3 cities x 6x6 cells, 32 px tiles
whose colour depends on a land-use class, one description per class) so the app
can be tested before the demo lands. `pixel_context` attaches embeddings computed
from downsampled pixels: a test scaffold for the similarity plumbing, not a model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from urbanclip.grid import square_grid
from urbanclip.indicators import STANDARD
from urbanclip.workspace import Manifest, Workspace, WorkspaceBuilder, join_sentences

CLASSES = {
    "water": ((40, 80, 160), "A wide river with dark blue water.", (0, 0, 0)),
    "park": ((50, 140, 60), "A green park with trees and lawns.", (50, 1, 5)),
    "dense_residential": ((150, 140, 130), "Dense residential blocks with narrow streets.", (20000, 300, 800)),
    "industrial": ((170, 160, 170), "Large industrial sheds and warehouses.", (2000, 500, 3000)),
}


def tiny_workspace(root: Path, n: int = 6, px: int = 32, cities=("Alphaville", "Betatown", "Gammaburg")) -> Workspace:
    try:
        from urbanclip.demo import build_demo
    except ImportError:
        build_demo = None
    if build_demo is not None:
        return build_demo(root, seed=0, n_cities=3, rows=n, cols=n, tile_px=px)
    rng = np.random.default_rng(0)
    names = list(CLASSES)
    frames = []
    with WorkspaceBuilder(root) as b:
        for ci, city in enumerate(cities):
            g = square_grid(city, 10.0 + ci, 50.0, n, n, 1000.0)
            cls = [names[(r + c + ci) % len(names)] for r, c in zip(g["row"], g["col"])]
            imgs = []
            for i, k in enumerate(cls):
                base = np.array(CLASSES[k][0], np.float64)
                arr = np.clip(base + rng.normal(0, 12, (px, px, 3)), 0, 255).astype(np.uint8)
                imgs.append(b.write_image(city, f"{i:03d}.png", arr))
            g["image"] = imgs
            g["text_raw"] = [join_sentences([CLASSES[k][1], "Roads cross the area."]) for k in cls]
            for j, ind in enumerate(("population", "gdp", "carbon")):
                g[ind] = [CLASSES[k][2][j] * float(rng.uniform(0.8, 1.2)) for k in cls]
            g["demo_landuse"] = cls
            frames.append(g)
        import pandas as pd

        cells = pd.concat(frames, ignore_index=True)
        return b.finish(cells, Manifest(name="tiny-app-test", indicators=dict(STANDARD), synthetic=True,
                                        source="tests/app_helpers.py", extra={"places": {"Old Harbour": [49.995, 10.002]}}))


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


class NumpyIndex:
    """Exact cosine top-k with the SimilarityIndex interface (used only when urbanclip.search is absent)."""

    def __init__(self, vectors, cell_ids, cities):
        from types import SimpleNamespace

        self._m = SimpleNamespace
        v = np.asarray(vectors, dtype=np.float32)
        self.v = v / np.linalg.norm(v, axis=1, keepdims=True).clip(1e-12)
        self.ids, self.cities = list(cell_ids), np.asarray(cities)

    def scores(self, q):
        q = np.asarray(q, dtype=np.float32)
        return self.v @ (q / max(np.linalg.norm(q), 1e-12))

    def top_k(self, q, k=5, exclude_city=None, only_city=None):
        s = self.scores(q)
        ok = np.ones(len(s), bool)
        if exclude_city is not None:
            ok &= self.cities != exclude_city
        if only_city is not None:
            ok &= self.cities == only_city
        order = [i for i in np.argsort(-s) if ok[i]][:k]
        return [self._m(cell_id=self.ids[i], city=str(self.cities[i]), score=float(s[i])) for i in order]


def pixel_context(ws: Workspace):
    """An AppContext with pixel embeddings + an index, no model, no predictions."""
    from urbanclip.services.context import AppContext

    ids, vecs = pixel_vectors(ws)
    city_of = dict(zip(ws.cells["cell_id"], ws.cells["city"]))
    try:
        from urbanclip.search import SimilarityIndex
    except ImportError:
        SimilarityIndex = NumpyIndex
    ctx = AppContext(workspace=ws, cell_ids=ids, vectors=vecs)
    ctx.index = SimilarityIndex(vecs, ids, [city_of[c] for c in ids])
    return ctx
