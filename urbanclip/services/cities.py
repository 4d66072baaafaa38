"""Cross-city comparison: best matches between two cities and transfer reports.

Matching uses the cached image embeddings (cosine via the SimilarityIndex), so
comparing all cells of a city is one matrix product, not a re-embedding.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from urbanclip import paths
from urbanclip.errors import UserError
from urbanclip.services.context import AppContext


def best_matches(ctx: AppContext, city_a: str, city_b: str) -> pd.DataFrame:
    """For every embedded cell of city_a, its most similar cell in city_b.

    Columns: cell_a, cell_b, score, <indicator>_a, <indicator>_b for each indicator.
    """
    if ctx.vectors is None:
        raise UserError("comparing cities needs image embeddings from a trained model; train one on the Train page")
    if city_a == city_b:
        raise UserError("pick two different cities to compare")
    ws = ctx.workspace
    city_of = dict(zip(ws.cells["cell_id"], ws.cells["city"]))
    ids = np.array(ctx.cell_ids)
    cities = np.array([city_of[c] for c in ids])
    a, b = np.where(cities == city_a)[0], np.where(cities == city_b)[0]
    if len(a) == 0 or len(b) == 0:
        missing = city_a if len(a) == 0 else city_b
        raise UserError(f"city {missing!r} has no embedded cells (no imagery?), so it cannot be matched")
    va = ctx.vectors[a] / np.linalg.norm(ctx.vectors[a], axis=1, keepdims=True).clip(1e-12)
    vb = ctx.vectors[b] / np.linalg.norm(ctx.vectors[b], axis=1, keepdims=True).clip(1e-12)
    sim = va @ vb.T
    best = sim.argmax(axis=1)
    df = pd.DataFrame({"cell_a": ids[a], "cell_b": ids[b][best], "score": sim[np.arange(len(a)), best]})
    cells = ws.cells.set_index("cell_id")
    for k in ws.indicator_names:
        df[f"{k}_a"] = cells.loc[df["cell_a"], k].to_numpy()
        df[f"{k}_b"] = cells.loc[df["cell_b"], k].to_numpy()
    return df.sort_values("score", ascending=False).reset_index(drop=True)


def find_transfer_reports(root: Path | None = None) -> list[Path]:
    """Transfer reports under the runs folder: files named transfer*.json or transfer*.csv."""
    root = Path(root) if root is not None else paths.runs_dir()
    if not root.is_dir():
        return []
    files = [p for p in root.rglob("transfer*") if p.suffix in (".json", ".csv") and p.is_file()]
    return sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)


def load_transfer(path: Path) -> dict[str, pd.DataFrame]:
    """indicator -> train-city x test-city R² matrix.

    Accepts JSON {indicator: {train_city: {test_city: r2}}} (optionally under a
    "transfer" key) or a long CSV with columns indicator, train_city, test_city, r2.
    """
    path = Path(path)
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text("utf-8"))
            data = data.get("transfer", data)
            return {ind: pd.DataFrame(m).T.sort_index().sort_index(axis=1) for ind, m in data.items() if isinstance(m, dict)}
        df = pd.read_csv(path)
    except (ValueError, OSError) as e:
        raise UserError(f"transfer report {path} cannot be read ({e})") from None
    need = {"indicator", "train_city", "test_city", "r2"}
    if not need <= set(df.columns):
        raise UserError(f"transfer report {path} needs columns {sorted(need)}, has {list(df.columns)}")
    return {ind: sub.pivot(index="train_city", columns="test_city", values="r2") for ind, sub in df.groupby("indicator")}
