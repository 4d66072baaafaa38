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
