"""The urban indicators: names, units, aggregation rule and the one log transform.

Indicators are stored raw in a workspace; models see `to_model_scale(raw)` =
log1p(raw) (the paper reports indicators on a log scale). Keeping the transform
here, and recording its name in the manifest, means no module invents its own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

TARGET_TRANSFORM = "log1p"


@dataclass(frozen=True)
class IndicatorSpec:
    """One indicator column of a workspace."""

    name: str
    unit: str
    aggregation: str  # how a raster is reduced to a cell: "sum" (counts) or "mean" (densities)
    label: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "IndicatorSpec":
        return cls(name=d["name"], unit=d["unit"], aggregation=d.get("aggregation", "sum"),
                   label=d.get("label", d["name"]))


# The paper's three indicators (UrbanCLIP release units).
POPULATION = IndicatorSpec("population", "persons", "sum", "Population")
GDP = IndicatorSpec("gdp", "million yuan", "sum", "GDP")
CARBON = IndicatorSpec("carbon", "ton CO2", "sum", "Carbon emission")
STANDARD = {s.name: s for s in (POPULATION, GDP, CARBON)}


def to_model_scale(raw: np.ndarray) -> np.ndarray:
    """Raw indicator values -> log1p scale used by every model and metric."""
    raw = np.asarray(raw, dtype=np.float64)
    return np.log1p(raw)


def from_model_scale(logged: np.ndarray) -> np.ndarray:
    """Inverse of `to_model_scale`."""
    return np.expm1(np.asarray(logged, dtype=np.float64))


# ---------------------------------------------------------------------------------
# values that look like a cap or a fill, not a measurement

SUSPECT_SHARE = 0.05  # one exact non-zero value in at least this share of the known values...
SUSPECT_MIN_CELLS = 20  # ...and at least this many cells
SUSPECT_FLAG = "suspect_value:{name}"


def suspect_fill_value(raw: np.ndarray) -> tuple[float, int, float] | None:
    """(value, cells, share) when one exact non-zero value is shared by a large part of the known values.

    Measured quantities almost never repeat exactly; a value carried by many cells
    is a cap or a fill of the source (the UrbanCLIP release has GDP exactly 10000.0
    in 2,684 of 16,526 cells). Zero is not suspect: no people, no emissions. The
    values stay in the workspace; they are flagged so sums and probes can say so.
    """
    v = np.asarray(raw, dtype=np.float64)
    v = v[np.isfinite(v) & (v != 0)]
    if v.size < SUSPECT_MIN_CELLS:
        return None
    uniq, counts = np.unique(v, return_counts=True)
    k = int(np.argmax(counts))
    share = float(counts[k] / v.size)
    if counts[k] >= SUSPECT_MIN_CELLS and share >= SUSPECT_SHARE:
        return float(uniq[k]), int(counts[k]), share
    return None
