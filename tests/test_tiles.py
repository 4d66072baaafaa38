"""Tile math: XYZ web-mercator tiles and Baidu BD09 / GCJ-02 / WGS84 conversions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pyproj import Geod, Transformer

from urbanclip.data.tiles import (
    baidu_tile_corners_wgs84,
    bd09_to_gcj02,
    bd09mc_to_bd09,
    gcj02_to_wgs84,
    ground_resolution_m,
    lonlat_to_tile,
    tile_bounds_lonlat,
    tile_bounds_mercator,
    tile_to_lonlat,
    tiles_for_bbox,
    wgs84_to_gcj02,
)


def test_xyz_tile_of_known_points():
    x, y = lonlat_to_tile(0.0, 0.0, 1)
    assert (float(x), float(y)) == (1.0, 1.0)
    x, y = lonlat_to_tile(116.39, 39.91, 10)
    assert (int(x), int(y)) == (843, 387)  # Beijing at zoom 10
    lon, lat = tile_to_lonlat(0, 0, 0)
    assert float(lon) == -180 and float(lat) == pytest.approx(85.0511287798, abs=1e-9)


def test_tile_bounds_agree_with_pyproj_mercator():
    west, south, east, north = tile_bounds_lonlat(843, 387, 10)
    to_merc = Transformer.from_crs(4326, 3857, always_xy=True)
    minx, miny = to_merc.transform(west, south)
    maxx, maxy = to_merc.transform(east, north)
    assert np.allclose((minx, miny, maxx, maxy), tile_bounds_mercator(843, 387, 10), atol=1e-6)


def test_tiles_for_bbox_covers_and_does_not_overshoot():
    xs, ys = tiles_for_bbox((116.40, 39.90, 116.43, 39.92), 14)
    assert len(xs) >= 1 and len(ys) >= 1
    w, s, e, n = tile_bounds_lonlat(xs[0], ys[0], 14)
    assert w <= 116.40 < e and s < 39.92 <= n
    # a bbox ending exactly on a tile edge does not pull in the next tile
    w, s, e, n = tile_bounds_lonlat(100, 200, 9)
    assert tiles_for_bbox((w, s, e, n), 9) == (range(100, 101), range(200, 201))
    with pytest.raises(ValueError, match="zero"):
        tiles_for_bbox((1, 1, 1, 2), 3)


def test_ground_resolution():
    assert ground_resolution_m(0, 0) == pytest.approx(156543.034, rel=1e-6)
    assert ground_resolution_m(60, 1) == pytest.approx(156543.034 / 2 / 2, rel=1e-6)


def test_bd09mc_matches_the_release_csv_corner():
    # indicators.csv of the UrbanCLIP release: Beijing/16_12659_4738_s.jpg, "(40.09315850201147, 116.44569035648394)"
    lon, lat = bd09mc_to_bd09(12659 * 1024.0, 4738 * 1024.0)
    assert float(lon) == pytest.approx(116.44569035648394, abs=1e-12)
    assert float(lat) == pytest.approx(40.09315850201147, abs=1e-12)


def test_gcj02_round_trip_and_offset_size():
    lon, lat = np.array([116.4, 113.3, 121.5]), np.array([39.9, 23.1, 31.2])
    glon, glat = wgs84_to_gcj02(lon, lat)
    back = gcj02_to_wgs84(glon, glat)
    assert np.allclose(back, (lon, lat), atol=1e-9)
    _, _, dist = Geod(ellps="WGS84").inv(lon, lat, glon, glat)
    assert np.all((dist > 100) & (dist < 700))  # the GCJ-02 shift in mainland China is a few hundred metres


def test_bd09_to_gcj02_shift():
    glon, glat = bd09_to_gcj02(116.4, 39.9)
    assert 0.005 < 116.4 - float(glon) < 0.008 and 0.005 < 39.9 - float(glat) < 0.008


def test_baidu_tile_is_about_784_m_at_beijing():
    west, south, east, north = baidu_tile_corners_wgs84(np.array([12659]), np.array([4738]), 16)
    geod = Geod(ellps="WGS84")
    _, _, width = geod.inv(west, south, east, south)
    _, _, height = geod.inv(west, south, west, north)
    expected = 1024 * math.cos(math.radians(40.1))
    # BD09MC is not exactly conformal: Baidu tiles come out ~2 % taller than wide (782 x 800 m here)
    assert width[0] == pytest.approx(expected, rel=0.01) and height[0] == pytest.approx(expected, rel=0.03)
