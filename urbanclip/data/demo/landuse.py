"""The hidden land-use field of a synthetic city: the ground truth the demo is generated from.

A city is a grid of *blocks* (`BLOCKS_PER_CELL` x `BLOCKS_PER_CELL` per ~1 km cell,
so a block is ~125 m, the size of a real city block). Each block gets one land-use
class from smooth seeded noise plus a centre-to-edge density gradient, so
neighbouring cells correlate the way real urban form does; water (a river, a
coast or a lake) is a continuous shape evaluated at any point, so the renderer
can draw smooth shorelines and the captions can say "river" exactly where one is.
Cities differ in character through their `CityProfile` (compact river town,
dense coastal port, sprawling arid town).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from urbanclip.errors import UserError

BLOCKS_PER_CELL = 8
PAD_BLOCKS = 3  # the field extends beyond the city so warped roads near the edge still find a block

# Land-use classes. Order matters only for the integer codes of the class map.
WATER = "water"
COMMERCIAL = "commercial"
DENSE_RESIDENTIAL = "dense_residential"
SUBURBAN = "suburban_residential"
INDUSTRIAL = "industrial"
PARK = "park"
FARMLAND = "farmland"
CLASSES: tuple[str, ...] = (WATER, COMMERCIAL, DENSE_RESIDENTIAL, SUBURBAN, INDUSTRIAL, PARK, FARMLAND)
CODE = {c: i for i, c in enumerate(CLASSES)}


@dataclass(frozen=True)
class CityProfile:
    """What makes one fictional city look different from another."""

    name: str
    west: float  # lon of the north-west corner (clearly fictional: open ocean)
    north: float  # lat of the north-west corner
    water: str  # "river", "coast" or "lake"
    sprawl: float  # width of the density gradient relative to the city's half-size
    industry: float  # share of the mid-density ring that is industrial (0..1)
    parks: float  # share of the urban area that is park (0..1)
    arid: bool  # dry palette: ochre soil, sparse trees
    density: float  # multiplies population / GDP (bigger cities are denser)
    peak: float = 1.0  # intensity at the centre: below ~0.9 there is hardly any high-rise core


PROFILES: tuple[CityProfile, ...] = (
    CityProfile("Riverton", -32.00, 44.00, "river", 0.75, 0.22, 0.12, False, 1.0),
    CityProfile("Harbor Bay", -29.00, 41.50, "coast", 0.70, 0.30, 0.08, False, 1.35),
    CityProfile("Mesa Verde", -35.50, 38.50, "lake", 1.05, 0.12, 0.06, True, 0.7, peak=0.86),
    CityProfile("Pine Hollow", -38.00, 46.50, "river", 0.65, 0.10, 0.20, False, 0.6, peak=0.9),
    CityProfile("Saltmarsh", -26.50, 39.00, "coast", 0.85, 0.25, 0.10, False, 0.9),
    CityProfile("Dry Creek", -40.50, 41.00, "lake", 0.90, 0.18, 0.05, True, 0.8),
)


@dataclass
class CityField:
    """The land use of one city, in block units (row 0 = north, like image rows)."""

    profile: CityProfile
    n_rows: int  # cells
    n_cols: int
    classes: np.ndarray  # int8 [(n_rows*B + 2*PAD), (n_cols*B + 2*PAD)] class code per block (never water)
    river: tuple[float, ...]  # parameters of the water shape, see water_distance

    @property
    def block_shape(self) -> tuple[int, int]:
        return self.n_rows * BLOCKS_PER_CELL, self.n_cols * BLOCKS_PER_CELL

    def water_distance(self, yb: np.ndarray, xb: np.ndarray) -> np.ndarray:
        """Signed distance to the shore in blocks (negative = in the water) at block coordinates."""
        return _water_distance(self.profile.water, self.river, yb, xb)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise, rescaled to unit standard deviation."""
    n = gaussian_filter(rng.standard_normal(shape), sigma=sigma, mode="reflect")
    return (n - n.mean()) / (n.std() + 1e-9)


def _water_distance(kind: str, p: tuple[float, ...], yb: np.ndarray, xb: np.ndarray) -> np.ndarray:
    if kind == "river":  # a meander crossing west -> east: y = c + a*sin(2*pi*x/period + phase) + b*sin(...)
        c, a, period, phase, b, half_width = p
        k = 2 * np.pi / period
        yc = c + a * np.sin(k * xb + phase) + b * np.sin(2.3 * k * xb + 1.7 * phase)
        slope = a * k * np.cos(k * xb + phase) + b * 2.3 * k * np.cos(2.3 * k * xb + 1.7 * phase)
        return np.abs(yb - yc) / np.sqrt(1 + slope ** 2) - half_width
    if kind == "coast":  # sea along the east edge with a wavy shoreline
        c, a, period, phase, b, _ = p
        k = 2 * np.pi / period
        xc = c + a * np.sin(k * yb + phase) + b * np.sin(2.7 * k * yb + 0.5 * phase)
        return xc - xb
    if kind == "lake":  # an elliptical reservoir with a wobbly shore
        cy, cx, ry, rx, wob, phase = p
        ang = np.arctan2((yb - cy) / ry, (xb - cx) / rx)
        r = np.sqrt(((yb - cy) / ry) ** 2 + ((xb - cx) / rx) ** 2)
        edge = 1 + wob * np.sin(3 * ang + phase)
        return (r - edge) * min(ry, rx)
    raise ValueError(f"unknown water kind {kind!r}")


def make_field(profile: CityProfile, n_rows: int, n_cols: int, rng: np.random.Generator) -> CityField:
    """Draw the hidden land-use field of one city (deterministic for a given rng state)."""
    if n_rows < 2 or n_cols < 2:
        raise UserError(f"a demo city needs at least 2x2 cells, got {n_rows}x{n_cols}")
    B = BLOCKS_PER_CELL
    hb, wb = n_rows * B, n_cols * B
    shape = (hb + 2 * PAD_BLOCKS, wb + 2 * PAD_BLOCKS)
    yb, xb = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64) + 0.5 - PAD_BLOCKS

    # water shape, in block units
    if profile.water == "river":
        river = (hb * rng.uniform(0.35, 0.6), hb * rng.uniform(0.06, 0.12), wb * rng.uniform(0.7, 1.3),
                 rng.uniform(0, 2 * np.pi), hb * rng.uniform(0.01, 0.04), rng.uniform(0.7, 1.3) * max(B / 8, 0.6))
    elif profile.water == "coast":
        river = (wb * rng.uniform(0.8, 0.88), wb * rng.uniform(0.03, 0.06), hb * rng.uniform(0.6, 1.1),
                 rng.uniform(0, 2 * np.pi), wb * rng.uniform(0.01, 0.025), 0.0)
    else:
        river = (hb * rng.uniform(0.15, 0.3), wb * rng.uniform(0.65, 0.8), hb * rng.uniform(0.07, 0.1),
                 wb * rng.uniform(0.1, 0.15), rng.uniform(0.1, 0.2), rng.uniform(0, 2 * np.pi))
    wd = _water_distance(profile.water, river, yb + 0.0, xb + 0.0)

    # density gradient: 1 at the centre, falling off towards the edges, roughened by noise
    cy = hb * rng.uniform(0.4, 0.6)
    cx = wb * (rng.uniform(0.35, 0.5) if profile.water == "coast" else rng.uniform(0.4, 0.6))
    r = np.sqrt(((yb - cy) / (hb / 2)) ** 2 + ((xb - cx) / (wb / 2)) ** 2)
    intensity = profile.peak * np.exp(-(r / profile.sprawl) ** 2) + 0.2 * _smooth_noise(rng, shape, 3.0) \
        + 0.08 * _smooth_noise(rng, shape, 1.0)
    industry = _smooth_noise(rng, shape, 4.0)
    parks = _smooth_noise(rng, shape, 3.0)

    cls = np.full(shape, CODE[FARMLAND], dtype=np.int8)
    cls[intensity > 0.28] = CODE[SUBURBAN]
    cls[intensity > 0.55] = CODE[DENSE_RESIDENTIAL]
    cls[intensity > 0.8] = CODE[COMMERCIAL]
    ring = (intensity > 0.22) & (intensity < 0.75)
    if profile.water == "coast":  # the port: industry crowds the shore
        industry = industry + 1.2 * np.exp(-np.clip(wd, 0, None) / 3.0)
    cls[ring & (industry > _quantile_threshold(industry[ring], profile.industry))] = CODE[INDUSTRIAL]
    urban = intensity > 0.25
    riverside = (wd > 0) & (wd < 1.2) & urban & (parks > -0.3)
    cls[urban & (parks > _quantile_threshold(parks[urban], profile.parks))] = CODE[PARK]
    cls[riverside] = CODE[PARK]
    return CityField(profile, n_rows, n_cols, cls, tuple(float(v) for v in river))


def _quantile_threshold(values: np.ndarray, share: float) -> float:
    """The value above which `share` of `values` lie (inf when there is nothing to pick from)."""
    if values.size == 0 or share <= 0:
        return float("inf")
    return float(np.quantile(values, 1 - share))
