"""Synthetic indicators (population, GDP, carbon) that follow the hidden land use.

Each class has a typical per-km² level; a cell's expected value is the
class mix of its pixels times those levels, scaled by the city's density and
by how built-up the tile is, then multiplied by log-normal noise. That gives
the right-skewed distributions of real indicator tables (a few dense cells,
many modest ones), exact zeros on open water, and a signal a model can only
partly recover from the image: the log-normal noise and a smooth hidden
"prosperity" field (spatially correlated, invisible in the pixels, like income
or energy mix in real data) cap the achievable R² well below 1.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from urbanclip.data.demo.landuse import COMMERCIAL, DENSE_RESIDENTIAL, FARMLAND, INDUSTRIAL, PARK, SUBURBAN, WATER, CityProfile
from urbanclip.data.demo.render import CellStats

# typical level per fully covered ~1 km² cell: (persons, million yuan, ton CO2)
_LEVELS = {
    COMMERCIAL: (9000.0, 2600.0, 30000.0),
    DENSE_RESIDENTIAL: (22000.0, 700.0, 16000.0),
    SUBURBAN: (5000.0, 220.0, 6000.0),
    INDUSTRIAL: (700.0, 1300.0, 45000.0),
    PARK: (150.0, 15.0, 400.0),
    FARMLAND: (120.0, 8.0, 900.0),
    WATER: (0.0, 0.0, 0.0),
}
NOISE_SIGMA = {"population": 0.5, "gdp": 0.7, "carbon": 0.55}  # log-normal spread per indicator
HIDDEN_SIGMA = {"population": 0.25, "gdp": 0.45, "carbon": 0.3}  # weight of the hidden smooth field (log scale)


def indicators_for(stats: list[CellStats], positions: list[tuple[int, int]], profile: CityProfile,
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Raw population (persons), GDP (million yuan) and carbon (ton CO2) per cell, in `stats` order.

    `positions` are the cells' (row, col), used to lay out the hidden smooth field.
    """
    n = len(stats)
    rows = np.asarray([p[0] for p in positions])
    cols = np.asarray([p[1] for p in positions])
    field = gaussian_filter(rng.standard_normal((rows.max() + 1, cols.max() + 1)), sigma=2.0, mode="reflect")
    hidden = ((field - field.mean()) / (field.std() + 1e-9))[rows, cols]
    base = np.zeros((n, 3))
    for i, st in enumerate(stats):
        for cls, frac in st.fractions.items():
            base[i] += frac * np.asarray(_LEVELS[cls])
        # more roof area means more floor space, for the same land use
        base[i] *= 0.7 + 1.2 * min(st.building_cover, 0.5)
    base[:, :2] *= profile.density
    out = {}
    for j, name in enumerate(("population", "gdp", "carbon")):
        sd = NOISE_SIGMA[name]
        noise = np.exp(rng.normal(-sd ** 2 / 2, sd, n) + HIDDEN_SIGMA[name] * hidden)
        vals = base[:, j] * noise
        out[name] = np.round(vals) if name == "population" else np.round(vals, 3)
    return out
