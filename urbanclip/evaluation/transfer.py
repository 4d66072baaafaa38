"""Cross-city transfer (paper §4.4): fit the probe on city A, test it on city B.

For every indicator and ordered pair (A, B): the MLP head is trained on A's
train-split cells with early stopping on A's val split, and scored on B's
test-split cells, so each column is evaluated on the same cells and the
diagonal is the ordinary within-city probe. R² is averaged over the probe seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from urbanclip.errors import UserError
from urbanclip.evaluation.metrics import regression_metrics
from urbanclip.evaluation.probe import ProbeConfig, fit_head, known_targets, parse_indicators, split_indices
from urbanclip.data.workspace import Workspace


@dataclass
class TransferResult:
    matrices: dict[str, pd.DataFrame]   # indicator -> train city x test city mean R²
    records: pd.DataFrame               # long, per seed: indicator, train_city, test_city, seed, r2, rmse, mae, n_train, n_test

    def long_table(self) -> pd.DataFrame:
        """One row per (indicator, train city, test city): mean over seeds (r2, rmse, mae) and r2_std."""
        g = self.records.groupby(["indicator", "train_city", "test_city"], sort=False)
        out = g[["r2", "rmse", "mae"]].mean()
        out["r2_std"] = g["r2"].std(ddof=1).fillna(0.0)
        out["n_seeds"] = g["seed"].count()
        out[["n_train", "n_test"]] = g[["n_train", "n_test"]].first()
        return out.reset_index()


def transfer_matrix(workspace: Workspace, table, indicators: str | Sequence[str] | None = None,
                    cfg: ProbeConfig | None = None, cities: Sequence[str] | None = None) -> TransferResult:
    """R² of probes trained on one city and tested on another, all ordered pairs."""
    cfg = cfg or ProbeConfig()
    names = parse_indicators(workspace, indicators)
    rows = np.array([workspace.index_of(c) for c in table.cell_ids])
    cell_city = workspace.cells["city"].to_numpy().astype(str)[rows]
    split = workspace.cells["split"].to_numpy().astype(str)[rows]
    all_cities = sorted(set(cell_city.tolist()))
    cities = list(cities) if cities else all_cities
    for c in cities:
        if c not in all_cities:
            raise UserError(f"city {c!r} has no embedded cells; cities with embeddings: {all_cities}")
    if len(cities) < 2:
        raise UserError(f"transfer needs at least two cities with embedded cells, found {cities}")
    x = np.asarray(table.vectors, dtype=np.float32)
    recs = []
    for name in names:
        y = workspace.log_targets(name)[rows]
        known = known_targets(y, cfg)
        per_city = {c: split_indices(np.where(cell_city == c, split, ""), known, cfg, f"indicator {name!r} in city {c!r}")
                    for c in cities}
        for a in cities:
            tr, va = per_city[a]["train"], per_city[a]["val"]
            for seed in cfg.seeds:
                head = fit_head(x[tr], y[tr], x[va], y[va], cfg, seed)
                for b in cities:
                    te = per_city[b]["test"]
                    m = regression_metrics(y[te], head.predict_log(x[te]))
                    recs.append({"indicator": name, "train_city": a, "test_city": b, "seed": seed,
                                 "r2": m["R2"], "rmse": m["RMSE"], "mae": m["MAE"], "n_train": len(tr), "n_test": len(te)})
    records = pd.DataFrame(recs)
    mean = records.groupby(["indicator", "train_city", "test_city"], sort=False)["r2"].mean().reset_index()
    matrices = {ind: sub.pivot(index="train_city", columns="test_city", values="r2").loc[cities, cities]
                for ind, sub in mean.groupby("indicator", sort=False)}
    return TransferResult({n: matrices[n] for n in names}, records)
