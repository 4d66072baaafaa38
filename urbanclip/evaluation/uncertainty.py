"""Prediction intervals per cell: split-conformal calibration of an ensemble's spread.

Why: a probe's point prediction says nothing about how far off it may be. An
ensemble of probe heads (bootstrap resamples of the train cells, different seeds)
disagrees more where the embedding says less; split-conformal calibration on
held-out cells turns that spread into intervals with a stated coverage.

Recipe (normalised split-conformal, Lei et al. 2018, JASA; Papadopoulos et al. 2002):
on the calibration (validation) cells, score s_i = |y_i - ŷ_i| / scale_i with
scale_i = ensemble std_i + floor, floor = median ensemble std on the calibration
cells (keeps cells where the heads happen to agree from getting zero width);
q = the ceil((n+1)·level)-th smallest score; interval = ŷ ± q·scale. With one head
(no spread) scale = 1: plain split-conformal on absolute residuals, constant width.
When calibration and test cells are exchangeable, coverage on test is >= level
(and < level + 1/(n+1)). Everything is on the model scale (log1p), so on the raw
scale the interval is multiplicative: [expm1(ŷ - w), expm1(ŷ + w)], clipped at 0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from urbanclip.errors import UserError

DEFAULT_LEVEL = 0.8

METHODS = ("scaled", "absolute")


def check_level(level: float) -> float:
    if not 0.0 < float(level) < 1.0:
        raise UserError(f"interval level (nominal coverage) must be between 0 and 1, e.g. 0.8, got {level!r}")
    return float(level)


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ceil((n+1)·level)-th smallest score (the finite-sample conformal quantile).

    With too few scores for the level (ceil((n+1)·level) > n) the largest score is used,
    and the guarantee no longer holds; `Calibration.n_cal` lets a report say so.
    """
    level = check_level(level)
    s = np.sort(np.asarray(scores, dtype=np.float64)[np.isfinite(scores)])
    if s.size == 0:
        raise UserError("conformal calibration needs at least one calibration cell with a known value")
    k = math.ceil((s.size + 1) * level)
    return float(s[min(k, s.size) - 1])


@dataclass
class Calibration:
    """How to turn a point prediction and an ensemble spread into an interval (log1p scale)."""

    level: float            # nominal coverage, e.g. 0.8
    q: float                # conformal quantile of the (scaled) calibration scores
    floor: float = 0.0      # added to the spread before scaling ("scaled" only)
    method: str = "scaled"  # "scaled" (by ensemble std + floor) or "absolute" (constant width)
    n_cal: int = 0          # calibration cells
    smearing: float = 0.0   # Duan's factor mean(exp(y - ŷ)) on the calibration cells; 0 = not measured

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"interval method must be one of {METHODS}, got {self.method!r}")

    def scale(self, spread: np.ndarray | None, n: int) -> np.ndarray:
        if self.method == "absolute" or spread is None:
            return np.ones(n)
        return np.asarray(spread, dtype=np.float64) + self.floor

    def half_width(self, spread: np.ndarray | None, n: int) -> np.ndarray:
        return self.q * self.scale(spread, n)

    def interval(self, center: np.ndarray, spread: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) around `center` (log1p scale)."""
        c = np.asarray(center, dtype=np.float64)
        w = self.half_width(spread, c.size).reshape(c.shape)
        return c - w, c + w

    def expected(self, center: np.ndarray) -> np.ndarray | None:
        """Raw-scale expected values of cells predicted `center` (log1p), None without a smearing factor.

        expm1(ŷ) is the median of a cell's value, and a sum of medians runs below the total
        (a log-normal's mean exceeds its median). With y = log1p(v) = ŷ + e and e independent
        of ŷ, E[v] = exp(ŷ)·E[exp e] - 1; Duan's smearing estimate (1983, JASA) takes E[exp e]
        from the calibration residuals, without assuming their distribution.
        """
        if not self.smearing > 0:
            return None
        return np.clip(np.exp(np.asarray(center, dtype=np.float64)) * self.smearing - 1.0, 0.0, None)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        return cls(level=float(d["level"]), q=float(d["q"]), floor=float(d.get("floor", 0.0)),
                   method=str(d.get("method", "scaled")), n_cal=int(d.get("n_cal", 0)),
                   smearing=float(d.get("smearing", 0.0)))


def calibrate(y_cal: np.ndarray, pred_cal: np.ndarray, spread_cal: np.ndarray | None = None,
              level: float = DEFAULT_LEVEL) -> Calibration:
    """Split-conformal calibration on held-out cells; spread None (or all zero) = absolute residuals."""
    y = np.asarray(y_cal, dtype=np.float64)
    p = np.asarray(pred_cal, dtype=np.float64)
    if y.shape != p.shape:
        raise ValueError(f"calibration targets and predictions differ in shape: {y.shape} vs {p.shape}")
    resid = np.abs(y - p)
    ok = np.isfinite(y - p)
    smearing = float(np.mean(np.exp(y[ok] - p[ok]))) if ok.any() else 0.0
    floor = float(np.median(spread_cal)) if spread_cal is not None and len(spread_cal) else 0.0
    if spread_cal is None or floor <= 0:
        return Calibration(level, conformal_quantile(resid, level), 0.0, "absolute", int(y.size), smearing)
    cal = Calibration(level, 1.0, floor, "scaled", int(y.size), smearing)
    cal.q = conformal_quantile(resid / cal.scale(spread_cal, y.size), level)
    return cal


def coverage(y: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of finite targets inside [lower, upper]."""
    y, lo, hi = (np.asarray(a, dtype=np.float64) for a in (y, lower, upper))
    ok = np.isfinite(y)
    if not ok.any():
        return float("nan")
    return float(np.mean((y[ok] >= lo[ok]) & (y[ok] <= hi[ok])))
