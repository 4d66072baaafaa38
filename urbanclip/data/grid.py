"""Square grids of cells: geography lives here, not in importers or the demo.

Cells are laid out in a metric CRS (the local UTM zone) so they are N metres
square on the ground, then stored as EPSG:4326 polygons. Row 0 is the northern
edge, column 0 the western edge, matching image row/column order.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
from pyproj import CRS
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_utm_crs_info
from shapely.geometry import box

from urbanclip.errors import UserError


def utm_crs_for(lon: float, lat: float) -> CRS:
    """The UTM CRS covering a point (metric, for laying out square cells)."""
    infos = query_utm_crs_info(datum_name="WGS 84", area_of_interest=AreaOfInterest(lon, lat, lon, lat))
    if not infos:
        raise UserError(f"no UTM zone covers lon={lon}, lat={lat}; check the coordinates")
    return CRS.from_epsg(infos[0].code)


def square_grid(city: str, west: float, north: float, n_rows: int, n_cols: int, cell_size_m: float,
                id_format: str = "{city}/r{row:03d}_c{col:03d}") -> gpd.GeoDataFrame:
    """A grid of n_rows x n_cols square cells whose north-west corner is (west, north) in lon/lat."""
    if n_rows <= 0 or n_cols <= 0:
        raise UserError(f"grid for {city!r} must have at least one row and column, got {n_rows}x{n_cols}")
    if cell_size_m <= 0:
        raise UserError(f"cell size must be positive, got {cell_size_m} m")
    utm = utm_crs_for(west, north)
    origin = gpd.GeoSeries.from_xy([west], [north], crs="EPSG:4326").to_crs(utm).iloc[0]
    rows, cols = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    x0 = origin.x + cols * cell_size_m
    y1 = origin.y - rows * cell_size_m
    polys = [box(a, b - cell_size_m, a + cell_size_m, b) for a, b in zip(x0, y1)]
    gdf = gpd.GeoDataFrame({
        "cell_id": [id_format.format(city=city, row=r, col=c) for r, c in zip(rows, cols)],
        "city": city, "row": rows.astype("int32"), "col": cols.astype("int32"),
    }, geometry=polys, crs=utm)
    return gdf.to_crs("EPSG:4326")


def grid_over_bounds(city: str, bounds_lonlat: tuple[float, float, float, float], cell_size_m: float,
                     id_format: str = "{city}/r{row:03d}_c{col:03d}") -> gpd.GeoDataFrame:
    """Cover (west, south, east, north) with whole square cells, starting at the north-west corner."""
    west, south, east, north = bounds_lonlat
    if not (east > west and north > south):
        raise UserError(f"bbox {bounds_lonlat} has zero or negative area; give west < east and south < north")
    utm = utm_crs_for((west + east) / 2, (south + north) / 2)
    corners = gpd.GeoSeries.from_xy([west, east], [north, south], crs="EPSG:4326").to_crs(utm)
    width = corners.iloc[1].x - corners.iloc[0].x
    height = corners.iloc[0].y - corners.iloc[1].y
    n_cols, n_rows = int(width // cell_size_m), int(height // cell_size_m)
    if n_rows < 1 or n_cols < 1:
        raise UserError(f"bbox {bounds_lonlat} is smaller than one {cell_size_m:g} m cell")
    return square_grid(city, west, north, n_rows, n_cols, cell_size_m, id_format)
