"""Similarity search over cell embeddings, across cities: the ONE similarity policy.

The policy: centred cosine. Every cell vector is L2-normalised, the mean unit vector
of the indexed cells is subtracted, and the result normalised again. A small model's
embeddings sit in a narrow cone where every pair scores ~1.0; centring compares what
is particular to each tile instead of what all tiles share. Image queries (a cell's
own embedding) are centred the same way. Text queries (`text_scores`) are not: the
text tower's embedding is compared with the centred cell vectors, which ranks cells
by <text, cell - mean cell>, i.e. how much more than the average cell they match.

With `readings` (what the captioner reads in each tile, model.inference.read_images),
each cell's vector is its centred image embedding and its centred reading side by side,
each half of unit length: the cosine of two cells is the mean of the two halves' cosines.
Why: on the demo (bench/bench_descriptions.py) the captioner names a tile's land use more
reliably than the contrastive embedding places it; look-alikes by both agree with the
query's land use more often than by either. Text queries still score the image half only.

Last, the vectors are partly whitened (`whiten`, default 0.5): coordinates on the indexed
cells' principal axes, each divided by the square root of its singular value, then
normalised. A few land-use directions hold most of the variance of a city's tiles, and
plain cosine ranks look-alikes almost by them alone; the square root evens them out without
letting noise directions take over (full whitening does: on the demo agreement fell from
0.87 to 0.69). Power-law PCA whitening as in image retrieval (Jegou & Chum, ECCV 2012).

Who uses it: the Map page's look-alikes and text search, the Compare page
(`best_in_city`), areas (windows of `vectors`, see `grid_windows`) and the `similar`
command, all through `SimilarityIndex.for_table` or the app's one cached index.

One interface, two engines: exact numpy (a matrix-vector product; fine up to
~100k cells) and FAISS (`IndexFlatIP`, still exact) when `faiss` is importable.
Filters by city are handled by keeping one sub-index per city, so `exclude_city` /
`only_city` never need over-fetching and both engines return the same top-k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from urbanclip.errors import UserError

WHITEN_POWER = 0.5  # the policy's partial whitening (module doc); 0 = plain centred cosine


@dataclass(frozen=True)
class Match:
    """One search hit."""

    cell_id: str
    city: str
    score: float  # cosine similarity in [-1, 1]


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float32)
    return v / np.clip(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12, None)


class SimilarityIndex:
    """Exact cosine top-k over `vectors` (rows = `cell_ids`, each in `cities`).

    backend: "auto" (FAISS if installed, else numpy), "numpy" or "faiss".
    """

    def __init__(self, vectors: np.ndarray, cell_ids: Sequence[str], cities: Sequence[str], backend: str = "auto",
                 center: bool = True, readings: np.ndarray | None = None, whiten: float = WHITEN_POWER):
        v = np.asarray(vectors)
        if v.ndim != 2 or v.shape[0] == 0:
            raise UserError(f"similarity index needs a non-empty 2-D array of embeddings, got shape {v.shape}")
        if not (len(cell_ids) == len(cities) == v.shape[0]):
            raise UserError(f"similarity index: {v.shape[0]} vectors but {len(cell_ids)} cell ids and {len(cities)} cities")
        if not np.isfinite(v).all():
            raise UserError("similarity index: embeddings contain NaN or infinite values; recompute them")
        if backend == "auto":
            backend = "faiss" if faiss_available() else "numpy"
        if backend not in ("numpy", "faiss"):
            raise UserError(f"unknown search backend {backend!r}; use 'auto', 'numpy' or 'faiss'")
        if backend == "faiss" and not faiss_available():
            raise UserError("backend 'faiss' requested but faiss is not installed (`pip install faiss-cpu`)")
        self.backend = backend
        # the policy (module doc); center=False gives plain cosine, for tests of the engines only
        self.offset = normalise_rows(v).mean(axis=0).astype(np.float32) if center else None
        self.image_dim = int(v.shape[1])
        self.reading_offset = None
        r = None
        if readings is not None:
            r = np.asarray(readings, dtype=np.float32)
            if r.ndim != 2 or r.shape[0] != v.shape[0]:
                raise UserError(f"similarity index: {v.shape[0]} embeddings but readings of shape {r.shape}")
            if not np.isfinite(r).all():
                raise UserError("similarity index: readings contain NaN or infinite values; recompute them")
            self.reading_offset = normalise_rows(r).mean(axis=0).astype(np.float32)
        self._whitening = None
        self.vectors = self._policy(v, r)
        # text queries read the image half before whitening (with readings it holds 1/sqrt(2) of each row)
        self._image_half = np.ascontiguousarray(self.vectors[:, :self.image_dim])
        if center and whiten and v.shape[0] > 1:
            if not 0 < whiten <= 1:
                raise UserError(f"similarity index: whiten is a power in (0, 1], got {whiten}")
            mean = self.vectors.mean(axis=0)
            _, sv, axes = np.linalg.svd(self.vectors - mean, full_matrices=False)
            keep = sv > max(sv[0], 1e-12) * 1e-6  # axes with no variance carry nothing to even out
            self._whitening = (mean.astype(np.float32), (axes[keep].T / sv[keep] ** whiten).astype(np.float32))
            self.vectors = self._whiten(self.vectors)
        self.cell_ids = [str(c) for c in cell_ids]
        self.cities = np.asarray([str(c) for c in cities])
        self.dim = int(self.vectors.shape[1])
        self._rows_of_city = {c: np.flatnonzero(self.cities == c) for c in sorted(set(self.cities.tolist()))}
        self._faiss: dict[str, object] = {}
        if backend == "faiss":
            import faiss

            for c, rows in self._rows_of_city.items():
                idx = faiss.IndexFlatIP(self.dim)
                idx.add(np.ascontiguousarray(self.vectors[rows]))
                self._faiss[c] = idx

    @classmethod
    def for_table(cls, table, workspace, backend: str = "auto", readings=None,
                  whiten: float = WHITEN_POWER) -> "SimilarityIndex":
        """The index of an EmbeddingTable's cells (their cities read from the workspace), with the policy;
        `readings`: an EmbeddingTable of the same cells' readings (any order), or None."""
        city_of = dict(zip(workspace.cells["cell_id"].astype(str), workspace.cells["city"].astype(str)))
        r = None
        if readings is not None:
            pos = {str(c): i for i, c in enumerate(readings.cell_ids)}
            missing = [c for c in table.cell_ids if str(c) not in pos]
            if missing:
                raise UserError(f"similarity index: {len(missing)} embedded cells have no reading (e.g. {missing[0]!r}); "
                                "recompute the readings")
            r = np.asarray(readings.vectors)[[pos[str(c)] for c in table.cell_ids]]
        return cls(table.vectors, table.cell_ids, [city_of[c] for c in table.cell_ids], backend=backend, readings=r,
                   whiten=whiten)

    def __len__(self) -> int:
        return len(self.cell_ids)

    def row_of(self, cell_id: str) -> int | None:
        """Row of a cell in `vectors` (None when it is not indexed)."""
        if not hasattr(self, "_rows"):
            self._rows = {c: i for i, c in enumerate(self.cell_ids)}
        return self._rows.get(str(cell_id))

    def rows_of_city(self, city: str) -> np.ndarray:
        return self._rows_of_city.get(city, np.zeros(0, dtype=np.int64))

    @property
    def city_names(self) -> list[str]:
        return list(self._rows_of_city)

    def _query(self, q: np.ndarray | str) -> np.ndarray:
        """An indexed cell's id (its own vector) or a raw vector (embedding, then reading when the
        index has readings), turned into the index's space by the policy."""
        if isinstance(q, str):
            row = self.row_of(q)
            if row is None:
                raise UserError(f"cell {q!r} is not in the similarity index (no image embedding)")
            return self.vectors[row]
        q = np.asarray(q, dtype=np.float32).ravel()
        want = self.image_dim + (len(self.reading_offset) if self.reading_offset is not None else 0)
        if q.shape[0] != want:
            raise UserError(f"query vector has {q.shape[0]} dimensions, the index has {want}; "
                            "was it embedded by the same model?")
        if not np.isfinite(q).all():
            raise UserError("query vector contains NaN or infinite values")
        reading = q[None, self.image_dim:] if self.reading_offset is not None else None
        q = self._policy(q[None, :self.image_dim], reading)
        return self._whiten(q)[0] if self._whitening is not None else q[0]

    def _policy(self, images: np.ndarray, readings: np.ndarray | None) -> np.ndarray:
        """Rows of raw embeddings (and readings) -> the index's space before whitening: each part
        L2-normalised, centred by the indexed cells' mean, normalised again; the parts side by side."""
        def centred(x: np.ndarray, offset: np.ndarray | None) -> np.ndarray:
            unit = normalise_rows(x)
            return normalise_rows(unit - offset) if offset is not None else unit

        out = centred(images, self.offset)
        if readings is not None:
            out = normalise_rows(np.hstack([out, centred(readings, self.reading_offset)]))
        return out

    def _whiten(self, x: np.ndarray) -> np.ndarray:
        mean, projection = self._whitening
        return normalise_rows((x - mean) @ projection)

    def scores(self, query_vector: np.ndarray | str) -> np.ndarray:
        """Cosine similarity of every indexed cell to the query, in index order (a heat layer)."""
        return self.vectors @ self._query(query_vector)

    def text_scores(self, text_vector: np.ndarray) -> np.ndarray:
        """Similarity of every indexed cell's image half to a text-tower embedding (not centred; see module doc)."""
        q = np.asarray(text_vector, dtype=np.float32).ravel()
        if q.shape[0] != self.image_dim:
            raise UserError(f"text vector has {q.shape[0]} dimensions, the index's image embeddings {self.image_dim}; "
                            "was it encoded by the same model?")
        scale = math.sqrt(2.0) if self.reading_offset is not None else 1.0  # back to a cosine (see _image_half)
        return scale * (self._image_half @ normalise_rows(q[None])[0])

    def best_in_city(self, city_a: str, city_b: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For every indexed cell of city_a, its most similar cell of city_b: (rows_a, rows_b, scores)."""
        a, b = self.rows_of_city(city_a), self.rows_of_city(city_b)
        if len(a) == 0 or len(b) == 0:
            missing = city_a if len(a) == 0 else city_b
            raise UserError(f"city {missing!r} has no embedded cells (no imagery?), so it cannot be matched")
        sim = self.vectors[a] @ self.vectors[b].T
        best = sim.argmax(axis=1)
        return a, b[best], sim[np.arange(len(a)), best]

    def _city_top(self, q: np.ndarray, city: str, k: int) -> list[tuple[float, int]]:
        rows = self._rows_of_city[city]
        k = min(k, len(rows))
        if self.backend == "faiss":
            d, i = self._faiss[city].search(q[None], k)
            return [(float(s), int(rows[j])) for s, j in zip(d[0], i[0]) if j >= 0]
        s = self.vectors[rows] @ q
        part = np.argpartition(-s, k - 1)[:k] if k < len(rows) else np.arange(len(rows))
        return [(float(s[j]), int(rows[j])) for j in part]

    def top_k(self, query_vector: np.ndarray | str, k: int = 5, exclude_city: str | None = None,
              only_city: str | None = None) -> list[Match]:
        """The k most similar cells (highest cosine first), optionally without / only one city."""
        if k < 1:
            raise UserError(f"k must be at least 1, got {k}")
        for c in (exclude_city, only_city):
            if c is not None and c not in self._rows_of_city:
                raise UserError(f"city {c!r} has no indexed cells; indexed cities: {self.city_names}")
        q = self._query(query_vector)
        cities = [only_city] if only_city is not None else [c for c in self._rows_of_city if c != exclude_city]
        hits: list[tuple[float, int]] = []
        for c in cities:
            hits.extend(self._city_top(q, c, k))
        # ties broken by row index so both engines agree
        hits.sort(key=lambda t: (-t[0], t[1]))
        return [Match(self.cell_ids[i], str(self.cities[i]), s) for s, i in hits[:k]]

    def top_k_per_city(self, query_vector: np.ndarray | str, k: int = 3, exclude_city: str | None = None) -> dict[str, list[Match]]:
        """The paper's Figure: for a tile, its top matches in each other city."""
        return {c: self.top_k(query_vector, k, only_city=c) for c in self.city_names if c != exclude_city}


def describe_matches(workspace, matches: Sequence[Match], text_column: str | None = None) -> pd.DataFrame:
    """Matches with the neighbours' indicators (raw) and descriptions, for tables and the CLI."""
    col = text_column or workspace.text_column()
    rows = []
    for m in matches:
        c = workspace.cell(m.cell_id)
        row = {"cell_id": m.cell_id, "city": m.city, "score": round(float(m.score), 4)}
        for k in workspace.indicator_names:
            row[k] = float(c[k])
        row["description"] = " ".join(str(c[col]).split("\n")) if isinstance(c[col], str) else ""
        rows.append(row)
    return pd.DataFrame(rows)


def grid_windows(rows: np.ndarray, cols: np.ndarray, vectors: np.ndarray, height: int, width: int,
                 min_coverage: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Mean embedding of every height x width window of cells on one city's grid (area search).

    rows/cols: grid position of each vector's cell; vectors are L2-normalised first, so a
    window's vector is the mean direction of its cells. Windows whose cells carry embeddings
    for less than `min_coverage` of the window are skipped. A 2-D prefix sum makes every
    window O(D) (Viola-Jones integral image). Returns (anchors [n, 2] = north-west
    (row, col), means [n, D]); windows larger than the grid are clipped to it.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    v = normalise_rows(vectors)
    if len(rows) == 0:
        return np.zeros((0, 2), np.int64), np.zeros((0, v.shape[1] if v.ndim == 2 else 0), np.float32)
    n_r, n_c = int(rows.max()) + 1, int(cols.max()) + 1
    h, w = max(1, min(int(height), n_r)), max(1, min(int(width), n_c))
    grid = np.zeros((n_r + 1, n_c + 1, v.shape[1]), dtype=np.float64)
    count = np.zeros((n_r + 1, n_c + 1), dtype=np.float64)
    grid[rows + 1, cols + 1] = v
    count[rows + 1, cols + 1] = 1.0
    grid = grid.cumsum(0).cumsum(1)
    count = count.cumsum(0).cumsum(1)
    r0, c0 = np.meshgrid(np.arange(n_r - h + 1), np.arange(n_c - w + 1), indexing="ij")
    r0, c0 = r0.ravel(), c0.ravel()
    r1, c1 = r0 + h, c0 + w

    def window_sum(a: np.ndarray) -> np.ndarray:
        return a[r1, c1] - a[r0, c1] - a[r1, c0] + a[r0, c0]

    n = window_sum(count)
    keep = n >= max(1.0, min_coverage * h * w)
    sums = window_sum(grid)[keep]
    means = (sums / n[keep][:, None]).astype(np.float32)
    return np.stack([r0[keep], c0[keep]], axis=1), means
