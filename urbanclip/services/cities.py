"""Cross-city comparison: city totals and distributions, best matches between two cities,
transfer reports.

Matching uses the cached image embeddings (cosine via the SimilarityIndex), so
comparing all cells of a city is one matrix product, not a re-embedding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from urbanclip import paths
from urbanclip.errors import UserError
from urbanclip.services.context import AppContext


def city_totals(ctx: AppContext, cities: list[str]) -> pd.DataFrame:
    """One row per indicator (its manifest aggregation: sum or mean over cells), one column per
    city, observed and (when a model predicts) predicted, in the indicator's own unit.

    Predicted aggregates are of per-cell expected values (uncertainty.Calibration.expected); with
    probe heads saved before those existed, of per-cell medians, which run low (demo: 62-95% of
    the observed city totals), and the row label says so."""
    from urbanclip.services.area import area_km2, indicator_totals
    from urbanclip.services.profile import format_value

    ws = ctx.workspace
    rows: dict[str, dict[str, str]] = {}
    for city in cities:
        ids = list(ws.city_cells(city)["cell_id"])
        rows.setdefault("Cells", {})[city] = f"{len(ids):,} ({area_km2(ws, ids):,.0f} km²)"
        for iv in indicator_totals(ctx, ids):
            label = f"{iv.label} ({iv.aggregation}), observed"
            rows.setdefault(label, {})[city] = (f"{format_value(iv.observed, iv.unit)}"
                                                + ("" if iv.observed_cells == len(ids) else
                                                   f" ({iv.observed_cells:,} cells known)"))
            if iv.predicted is not None:
                of = "" if iv.predicted_from == "expected" else " of per-cell medians"
                label = f"{iv.label} ({iv.aggregation}{of}), predicted"
                rows.setdefault(label, {})[city] = format_value(iv.predicted, iv.unit)
    return pd.DataFrame(rows).T[cities]


def distribution(ctx: AppContext, cities: list[str], indicator: str, bins: int = 12) -> pd.DataFrame:
    """Share of each city's cells per bin of `indicator` (observed), bins even on the log1p scale,
    labelled in the indicator's unit. Columns: bin (label), city, share (%), lower (raw lower edge)."""
    from urbanclip.data.indicators import to_model_scale
    from urbanclip.services.profile import format_value

    ws = ctx.workspace
    if indicator not in ws.manifest.indicators:
        raise UserError(f"indicator {indicator!r} is not in this workspace; it has {ws.indicator_names}")
    unit = ws.manifest.indicators[indicator].unit
    vals = {c: to_model_scale(ws.city_cells(c)[indicator].to_numpy(dtype=np.float64)) for c in cities}
    known = np.concatenate([v[np.isfinite(v)] for v in vals.values()]) if vals else np.array([])
    if known.size == 0:
        return pd.DataFrame(columns=["bin", "city", "share", "lower"])
    edges = np.linspace(float(known.min()), float(known.max()) + 1e-9, bins + 1)
    labels = [f"{format_value(np.expm1(a), unit, with_unit=False)}–{format_value(np.expm1(b), unit, with_unit=False)}"
              for a, b in zip(edges[:-1], edges[1:])]
    out = []
    for c, v in vals.items():
        v = v[np.isfinite(v)]
        counts, _ = np.histogram(v, bins=edges)
        share = 100.0 * counts / max(1, len(v))
        out += [{"bin": lab, "city": c, "share": float(s), "lower": float(np.expm1(a))}
                for lab, s, a in zip(labels, share, edges[:-1])]
    return pd.DataFrame(out)


def best_matches(ctx: AppContext, city_a: str, city_b: str) -> pd.DataFrame:
    """For every embedded cell of city_a, its most similar cell in city_b.

    Columns: cell_a, cell_b, score, <indicator>_a, <indicator>_b for each indicator.
    """
    if ctx.index is None:
        raise UserError("comparing cities needs image embeddings from a trained model; train one on the Train page")
    if city_a == city_b:
        raise UserError("pick two different cities to compare")
    ws = ctx.workspace
    ids = np.array(ctx.index.cell_ids)
    a, b, score = ctx.index.best_in_city(city_a, city_b)
    df = pd.DataFrame({"cell_a": ids[a], "cell_b": ids[b], "score": score})
    cells = ws.cells.set_index("cell_id")
    for k in ws.indicator_names:
        df[f"{k}_a"] = cells.loc[df["cell_a"], k].to_numpy()
        df[f"{k}_b"] = cells.loc[df["cell_b"], k].to_numpy()
    return df.sort_values("score", ascending=False).reset_index(drop=True)


@dataclass
class MatchedPairs:
    """One indicator of best-matched pairs on the log1p scale, with their correlation when it is defined."""

    frame: pd.DataFrame           # columns a, b (log1p values), a_raw, b_raw, score, cell_a, cell_b
    correlation: float | None     # Pearson r; None with < 3 known pairs or a constant side

    @property
    def correlation_text(self) -> str:
        return f"Pearson r = {self.correlation:.2f}" if self.correlation is not None else "correlation undefined"


def matched_pairs(df: pd.DataFrame, indicator: str) -> MatchedPairs:
    """The scatter of `best_matches` output for one indicator."""
    raw_a, raw_b = df[f"{indicator}_a"].astype(float), df[f"{indicator}_b"].astype(float)
    a, b = np.log1p(raw_a), np.log1p(raw_b)
    frame = pd.DataFrame({"a": a, "b": b, "a_raw": raw_a, "b_raw": raw_b, "score": df["score"],
                          "cell_a": df["cell_a"], "cell_b": df["cell_b"]})
    x, y = a.to_numpy(dtype=np.float64), b.to_numpy(dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    r = None
    if ok.sum() > 2 and _varies(x[ok]) and _varies(y[ok]):
        r = float(np.corrcoef(x[ok], y[ok])[0, 1])
    return MatchedPairs(frame, r)


def _varies(v: np.ndarray) -> bool:
    """Not constant, beyond floating-point noise (a constant column's std can come out as 1e-16)."""
    return float(np.ptp(v)) > 1e-9 * max(1.0, float(np.abs(v).max()))


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
