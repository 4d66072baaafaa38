"""Tile math: web-mercator XYZ tiles and Baidu BD09 tiles, as plain functions.

Two tile schemes meet in this project:

* **XYZ / slippy-map tiles** (Esri World Imagery, OSM): EPSG:3857, 256 px,
  x grows east, y grows *south*, tile (0, 0) is the north-west corner.
* **Baidu tiles** (the UrbanCLIP release, `16_<x>_<y>_s.jpg`): BD09-Mercator
  ("BD09MC") plane, x grows east, y grows *north*, a tile at zoom z is
  256 * 2**(18 - z) BD09MC units wide (1024 at zoom 16). BD09MC -> BD09 lon/lat
  uses Baidu's published piecewise polynomials, BD09 -> GCJ-02 -> WGS84 the
  well-known public offset formulas (the GCJ-02 inverse is iterated to ~1e-9 deg).

All functions are vectorised over numpy arrays and have no I/O.
"""

from __future__ import annotations

import math

import numpy as np

EARTH_RADIUS_M = 6378137.0  # WGS84 / web mercator sphere
MERCATOR_MAX_LAT = 85.0511287798066
WEB_TILE_PX = 256


# ---------------------------------------------------------------------------------
# web-mercator XYZ tiles


def lonlat_to_tile(lon: float | np.ndarray, lat: float | np.ndarray, zoom: int) -> tuple[np.ndarray, np.ndarray]:
    """Fractional XYZ tile coordinates of a point (floor them for the tile index)."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.clip(np.asarray(lat, dtype=np.float64), -MERCATOR_MAX_LAT, MERCATOR_MAX_LAT)
    n = 2.0 ** zoom
    x = (lon + 180.0) / 360.0 * n
    lat_r = np.radians(lat)
    y = (1.0 - np.arcsinh(np.tan(lat_r)) / math.pi) / 2.0 * n
    return x, y


def tile_to_lonlat(x: float | np.ndarray, y: float | np.ndarray, zoom: int) -> tuple[np.ndarray, np.ndarray]:
    """Lon/lat of a (fractional) XYZ tile coordinate; integer input gives the tile's north-west corner."""
    n = 2.0 ** zoom
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    lon = x / n * 360.0 - 180.0
    lat = np.degrees(np.arctan(np.sinh(math.pi * (1.0 - 2.0 * y / n))))
    return lon, lat


def tile_bounds_lonlat(x: int, y: int, zoom: int) -> tuple[float, float, float, float]:
    """(west, south, east, north) of XYZ tile (x, y, zoom) in degrees."""
    west, north = tile_to_lonlat(x, y, zoom)
    east, south = tile_to_lonlat(x + 1, y + 1, zoom)
    return float(west), float(south), float(east), float(north)


def tile_bounds_mercator(x: int, y: int, zoom: int) -> tuple[float, float, float, float]:
    """(minx, miny, maxx, maxy) of XYZ tile (x, y, zoom) in EPSG:3857 metres."""
    size = 2 * math.pi * EARTH_RADIUS_M / 2 ** zoom
    origin = math.pi * EARTH_RADIUS_M
    minx = -origin + x * size
    maxy = origin - y * size
    return minx, maxy - size, minx + size, maxy


def tiles_for_bbox(bbox: tuple[float, float, float, float], zoom: int) -> tuple[range, range]:
    """XYZ tile index ranges (xs, ys) covering bbox = (west, south, east, north) in degrees."""
    west, south, east, north = bbox
    if not (east > west and north > south):
        raise ValueError(f"bbox {bbox} has zero or negative area")
    if not 0 <= zoom <= 24:
        raise ValueError(f"zoom must be in 0..24, got {zoom}")
    n = 2 ** zoom
    x0, y0 = lonlat_to_tile(west, north, zoom)
    x1, y1 = lonlat_to_tile(east, south, zoom)
    # a bbox edge exactly on a tile edge must not pull in the next tile
    xa, ya = int(math.floor(x0)), int(math.floor(y0))
    xb, yb = int(math.ceil(x1)) - 1, int(math.ceil(y1)) - 1
    xa, ya = max(xa, 0), max(ya, 0)
    xb, yb = min(max(xb, xa), n - 1), min(max(yb, ya), n - 1)
    return range(xa, xb + 1), range(ya, yb + 1)


def ground_resolution_m(lat: float, zoom: int, tile_px: int = WEB_TILE_PX) -> float:
    """Metres on the ground per pixel of an XYZ tile at latitude `lat`."""
    return math.cos(math.radians(lat)) * 2 * math.pi * EARTH_RADIUS_M / (tile_px * 2 ** zoom)


# ---------------------------------------------------------------------------------
# Baidu: BD09MC <-> BD09 lon/lat (Baidu map JS API polynomial bands)

_MC_BANDS = (12890594.86, 8362377.87, 5591021.0, 3481989.83, 1678043.12, 0.0)
_MC2LL = (
    (1.410526172116255e-08, 8.98305509648872e-06, -1.9939833816331, 200.9824383106796, -187.2403703815547,
     91.6087516669843, -23.38765649603339, 2.57121317296198, -0.03801003308653, 17337981.2),
    (-7.435856389565537e-09, 8.983055097726239e-06, -0.78625201886289, 96.32687599759846, -1.85204757529826,
     -59.36935905485877, 47.40033549296737, -16.50741931063887, 2.28786674699375, 10260144.86),
    (-3.030883460898826e-08, 8.98305509983578e-06, 0.30071316287616, 59.74293618442277, 7.357984074871,
     -25.38371002664745, 13.45380521110908, -3.29883767235584, 0.32710905363475, 6856817.37),
    (-1.981981304930552e-08, 8.983055099779535e-06, 0.03278182852591, 40.31678527705744, 0.65659298677277,
     -4.44255534477492, 0.85341911805263, 0.12923347998204, -0.04625736007561, 4482777.06),
    (3.09191371068437e-09, 8.983055096812155e-06, 6.995724062e-05, 23.10934304144901, -0.00023663490511,
     -0.6321817810242, -0.00663494467273, 0.03430082397953, -0.00466043876332, 2555164.4),
    (2.890871144776878e-09, 8.983055095805407e-06, -3.068298e-07, 7.47137025468032, -3.53937994e-06,
     -0.02145144861037, -1.234426596e-05, 0.00010322952773, -3.23890364e-06, 826088.5),
)


def bd09mc_to_bd09(x: float | np.ndarray, y: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Baidu Mercator metres -> BD09 lon/lat (degrees)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ay = np.abs(y)
    band = np.full(y.shape, len(_MC_BANDS) - 1)
    for i in range(len(_MC_BANDS) - 1, -1, -1):  # first band whose threshold |y| reaches
        band = np.where(ay >= _MC_BANDS[i], i, band)
    c = np.asarray(_MC2LL)[band]  # (..., 10)
    lon = c[..., 0] + c[..., 1] * np.abs(x)
    t = ay / c[..., 9]
    lat = c[..., 2] + c[..., 3] * t + c[..., 4] * t ** 2 + c[..., 5] * t ** 3 + c[..., 6] * t ** 4 + c[..., 7] * t ** 5 + c[..., 8] * t ** 6
    return np.copysign(lon, x), np.copysign(lat, y)


# ---------------------------------------------------------------------------------
# BD09 <-> GCJ-02 <-> WGS84 (public offset formulas)

_X_PI = math.pi * 3000.0 / 180.0
_GCJ_A = 6378245.0
_GCJ_EE = 0.00669342162296594323


def bd09_to_gcj02(lon: float | np.ndarray, lat: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(lon, dtype=np.float64) - 0.0065
    y = np.asarray(lat, dtype=np.float64) - 0.006
    z = np.hypot(x, y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta), z * np.sin(theta)


def _gcj_offset(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GCJ-02 minus WGS84 at a WGS84 point, in degrees."""
    x, y = lon - 105.0, lat - 35.0
    sx = np.sqrt(np.abs(x))
    common = (20.0 * np.sin(6.0 * x * math.pi) + 20.0 * np.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    dlat = (-100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sx + common
            + (20.0 * np.sin(y * math.pi) + 40.0 * np.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
            + (160.0 * np.sin(y / 12.0 * math.pi) + 320 * np.sin(y * math.pi / 30.0)) * 2.0 / 3.0)
    dlon = (300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sx + common
            + (20.0 * np.sin(x * math.pi) + 40.0 * np.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
            + (150.0 * np.sin(x / 12.0 * math.pi) + 300.0 * np.sin(x / 30.0 * math.pi)) * 2.0 / 3.0)
    rad = np.radians(lat)
    magic = 1 - _GCJ_EE * np.sin(rad) ** 2
    sqm = np.sqrt(magic)
    dlat = dlat * 180.0 / ((_GCJ_A * (1 - _GCJ_EE)) / (magic * sqm) * math.pi)
    dlon = dlon * 180.0 / (_GCJ_A / sqm * np.cos(rad) * math.pi)
    return dlon, dlat


def wgs84_to_gcj02(lon: float | np.ndarray, lat: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    dlon, dlat = _gcj_offset(lon, lat)
    return lon + dlon, lat + dlat


def gcj02_to_wgs84(lon: float | np.ndarray, lat: float | np.ndarray, iterations: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `wgs84_to_gcj02` by fixed-point iteration (the offset is smooth and small)."""
    glon = np.asarray(lon, dtype=np.float64)
    glat = np.asarray(lat, dtype=np.float64)
    wlon, wlat = glon.copy(), glat.copy()
    for _ in range(iterations):
        dlon, dlat = _gcj_offset(wlon, wlat)
        wlon, wlat = glon - dlon, glat - dlat
    return wlon, wlat


def bd09mc_to_wgs84(x: float | np.ndarray, y: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Baidu Mercator metres -> WGS84 lon/lat, chaining BD09MC -> BD09 -> GCJ-02 -> WGS84."""
    return gcj02_to_wgs84(*bd09_to_gcj02(*bd09mc_to_bd09(x, y)))


def baidu_tile_size_mc(zoom: int) -> float:
    """Width of one Baidu tile in BD09MC units (1024 at zoom 16)."""
    return 256.0 * 2.0 ** (18 - zoom)


def baidu_tile_corners_wgs84(x: np.ndarray, y: np.ndarray, zoom: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(west, south, east, north) in WGS84 of Baidu tiles (x, y) at `zoom` (y grows north)."""
    s = baidu_tile_size_mc(zoom)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    west, south = bd09mc_to_wgs84(x * s, y * s)
    east, north = bd09mc_to_wgs84((x + 1) * s, (y + 1) * s)
    return west, south, east, north
