"""Frozen embeddings of every cell, computed once per (encoder, workspace content).

Probes, transfer, search and the app all read embeddings through
`cached_embeddings`. The cache lives in the workspace::

    W/cache/embeddings/<encoder key>-<workspace fingerprint>.npy        float32 [N, D]
    W/cache/embeddings/<encoder key>-<workspace fingerprint>.ids.json   cell ids (rows) + metadata

so changing an image or a description (new fingerprint) or the checkpoint /
baseline config (new key) recomputes, and anything else is a file read.
"""

from __future__ import annotations

import io
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from urbanclip.errors import UserError
from urbanclip.data.workspace import Workspace, atomic_write_bytes, atomic_write_json

CACHE_SUBDIR = "embeddings"


@dataclass
class EmbeddingTable:
    """Embeddings (rows) of the cells in `cell_ids`."""

    cell_ids: list[str]
    vectors: np.ndarray  # float32 [N, D]

    def __post_init__(self) -> None:
        self.cell_ids = [str(c) for c in self.cell_ids]
        self.vectors = np.asarray(self.vectors, dtype=np.float32)
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.cell_ids):
            raise UserError(f"embedding table: {len(self.cell_ids)} cell ids but vectors of shape {self.vectors.shape}")

    def __len__(self) -> int:
        return len(self.cell_ids)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def rows(self, cell_ids: Sequence[str]) -> np.ndarray:
        """Row numbers of `cell_ids` (UserError for ids that were not embedded)."""
        pos = {c: i for i, c in enumerate(self.cell_ids)}
        missing = [c for c in cell_ids if c not in pos]
        if missing:
            raise UserError(f"cell {missing[0]!r} has no embedding ({len(missing)} cells missing); "
                            "cells without an image cannot be embedded by an image encoder")
        return np.array([pos[c] for c in cell_ids], dtype=np.int64)

    def subset(self, cell_ids: Sequence[str]) -> "EmbeddingTable":
        return EmbeddingTable(list(cell_ids), self.vectors[self.rows(cell_ids)])


def safe_key(key: str) -> str:
    """An encoder key made safe for a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_")[-100:] or "encoder"


def cache_paths(workspace: Workspace, encoder, fingerprint: str | None = None) -> tuple[Path, Path]:
    fp = fingerprint or workspace.fingerprint()
    stem = f"{safe_key(encoder.key)}-{fp}"
    d = workspace.cache_dir / CACHE_SUBDIR
    return d / f"{stem}.npy", d / f"{stem}.ids.json"


def embeddable_cells(workspace: Workspace, encoder=None) -> list[str]:
    """Cells an encoder can embed: its own `eligible(workspace)` if it has one, else cells with an image."""
    if encoder is not None and hasattr(encoder, "eligible"):
        return list(encoder.eligible(workspace))
    cells = workspace.cells
    return [str(c) for c, img in zip(cells["cell_id"], cells["image"]) if isinstance(img, str) and img]


def cached_embeddings(workspace: Workspace, encoder, refresh: bool = False) -> EmbeddingTable:
    """Embeddings of every embeddable cell; read from the cache or computed and stored."""
    fp = workspace.fingerprint()
    vec_path, ids_path = cache_paths(workspace, encoder, fp)
    if not refresh and vec_path.is_file() and ids_path.is_file():
        try:
            meta = json.loads(ids_path.read_text("utf-8"))
            vectors = np.load(vec_path, allow_pickle=False)
            if meta.get("key") == encoder.key and meta.get("fingerprint") == fp and len(meta["cell_ids"]) == len(vectors):
                return EmbeddingTable(meta["cell_ids"], vectors)
        except (OSError, ValueError, KeyError):
            pass  # a broken cache entry is recomputed below
    ids = embeddable_cells(workspace, encoder)
    if not ids:
        raise UserError(f"workspace {workspace.root} has no cells with images to embed; import imagery first")
    t0 = time.time()
    vectors = np.asarray(encoder.embed(workspace, ids), dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise RuntimeError(f"encoder {encoder.key} returned shape {vectors.shape} for {len(ids)} cells")
    if not np.isfinite(vectors).all():
        raise UserError(f"encoder {encoder.key} produced NaN/inf embeddings; the model or baseline diverged, retrain it")
    buf = io.BytesIO()
    np.save(buf, vectors, allow_pickle=False)
    atomic_write_bytes(vec_path, buf.getvalue())
    atomic_write_json(ids_path, {"key": encoder.key, "fingerprint": fp, "label": getattr(encoder, "label", encoder.key),
                                 "dim": int(vectors.shape[1]), "seconds": round(time.time() - t0, 2), "cell_ids": ids})
    return EmbeddingTable(ids, vectors)
