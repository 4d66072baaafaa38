"""Import an RGB GeoTIFF mosaic (any CRS) cut into square N-metre cells, plus indicator rasters.

The one cutting function, `cut_mosaic`, is shared with the XYZ importer (which
stitches downloaded tiles into an in-memory GeoTIFF first).

Bands. R, G, B are the bands tagged red/green/blue (GDAL colour interpretation),
so a BGR-ordered file keeps its colours; without those tags bands 1, 2, 3 are
read, with a warning when the file has more than three (e.g. a Landsat-8 scene,
whose true colour is `--bands 4,3,2`).

Nodata. A pixel is not imagery when its R, G and B all equal the nodata value:
the `nodata` option, else the file's nodata tag, else (no tag, no alpha or mask
band) a constant fill detected along the mosaic's edges (a zero-filled scene
corner) and reported as a warning. Alpha / mask bands are honoured as well.

Grid. Cells are laid out by `urbanclip.data.grid.square_grid` in the UTM zone of the
mosaic's north-west corner (or of `anchor`, a lon/lat box, so a grid depends only
on it), starting at that corner, so they are N metres square on the ground
whatever the mosaic's CRS. Cells not fully inside the mosaic are skipped; each
cell's `valid_fraction` (share of its pixels that are imagery) is recorded, cells
below `min_valid` are skipped and cells with any hole are kept but flagged
`partial_imagery`. Too few kept cells (`min_kept`) is an error, not a silent
near-empty workspace. Each cell is warped from the mosaic into a north-up
`tile_px` x `tile_px` PNG (GDAL `average` when shrinking, so fine imagery does not
alias; `bilinear` when enlarging), nodata excluded from the averages.

Colour. 8-bit imagery is display-ready and kept as is. Other imagery (e.g. 16-bit
reflectance) is stretched to 0..255 per band between that band's 2nd and 98th
percentiles over the *valid* pixels of the whole mosaic, computed once: fill does
not wash the image out, bands do not cast a colour, and the tiles of one city
stay comparable. The stretch is written to the manifest.

Indicator rasters are aggregated per cell following `IndicatorSpec.aggregation`
(``sum`` for counts and totals, ``mean`` for densities) by `urbanclip.data.zonal`,
the one area-weighted zonal method (the same one `attach` uses); values that look
capped or filled are flagged per cell (`workspace.flag_suspect_values`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from pyproj import Geod
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.transform import from_bounds
from rasterio.warp import reproject, transform, transform_bounds
from rasterio.windows import Window
from rasterio.windows import from_bounds as window_from_bounds
from shapely.geometry import box
from tqdm import tqdm

from urbanclip.data.grid import square_grid, utm_crs_for, whole_cells
from urbanclip.data.importers import ImportReport
from urbanclip.data.indicators import STANDARD, IndicatorSpec
from urbanclip.data.workspace import Manifest, Workspace, WorkspaceBuilder, check_out_dir, flag_suspect_values
from urbanclip.data.zonal import check_aggregation, zonal_raster
from urbanclip.errors import UserError

_GEOD = Geod(ellps="WGS84")
AUTO = "auto"  # CutConfig.nodata: the file's tag, else a detected edge fill
PARTIAL_FLAG = "partial_imagery"
VALID_COLUMN = "valid_fraction"
VALID_PROVENANCE = ("share of the cell's pixels that are imagery (not nodata, fill or transparent), "
                    "measured on its warped tile; cells below it are flagged " + PARTIAL_FLAG)
# edge-fill detection: the value must cover this share of the edge pixels and of the whole mosaic
FILL_EDGE_SHARE = 0.02
FILL_AREA_SHARE = 0.01
FILL_EDGE_SHARE_UNUSUAL = 0.2  # for values other than 0 / the dtype's min / max
SAMPLE_PX = 1024  # side of the decimated read used for the stretch and the fill detection


@dataclass
class CutConfig:
    """How a mosaic is cut into cells."""

    cell_size_m: float = 1000.0
    tile_px: int = 256
    min_valid: float = 0.95  # fraction of a cell's pixels that must carry imagery
    bands: tuple[int, ...] | None = None  # 1-based band numbers read as R, G, B; None: from the colour tags
    nodata: float | str | None = AUTO  # a value, None (every pixel is imagery) or AUTO
    min_kept: float = 0.5  # fraction of the cells inside the mosaic that must be kept

    def check(self) -> None:
        if not self.cell_size_m > 0:
            raise UserError(f"cell size must be positive, got {self.cell_size_m} m")
        if not 8 <= self.tile_px <= 4096:
            raise UserError(f"tile size must be 8..4096 px, got {self.tile_px}")
        if not 0 < self.min_valid <= 1:
            raise UserError(f"--min-valid must be in (0, 1], got {self.min_valid}")
        if not 0 <= self.min_kept <= 1:
            raise UserError(f"--min-kept must be in [0, 1], got {self.min_kept}")
        if self.bands is not None and (len(self.bands) != 3 or any(int(b) < 1 for b in self.bands)):
            raise UserError(f"--bands must be three 1-based band numbers read as R,G,B (e.g. 4,3,2), got {self.bands}")
        if self.nodata not in (AUTO, None) and not (isinstance(self.nodata, (int, float)) and not math.isinf(self.nodata)):
            raise UserError(f"--nodata must be a number, 'none' or 'auto', got {self.nodata!r}")


@dataclass
class GridInfo:
    """The cells' common UTM grid: what indicator aggregation needs."""

    crs: object  # pyproj CRS
    west: float  # UTM x of the grid's north-west corner
    north: float  # UTM y of the grid's north-west corner
    n_rows: int
    n_cols: int
    cell_size_m: float


def import_geotiff(mosaic: Path | str, out: Path | str, cell_size_m: float, city: str, *,
                   indicator_rasters: dict[str, Path | str] | None = None,
                   aggregations: dict[str, str] | None = None, tile_px: int = 256, min_valid: float = 0.95,
                   bands: tuple[int, ...] | None = None, nodata: float | str | None = AUTO, min_kept: float = 0.5,
                   overwrite: bool = False, split_seed: int = 0, name: str | None = None) -> tuple[Workspace, ImportReport]:
    """Cut `mosaic` into cells of `cell_size_m` for `city`; aggregate `indicator_rasters` ({name: path}).

    `aggregations` overrides "sum"/"mean" per indicator (default: the standard
    spec's rule for population/gdp/carbon, else "sum"). `bands`, `nodata`,
    `min_valid` and `min_kept`: see `CutConfig` and the module doc.
    """
    mosaic = Path(mosaic)
    cfg = CutConfig(cell_size_m=cell_size_m, tile_px=tile_px, min_valid=min_valid, bands=bands, nodata=nodata,
                    min_kept=min_kept)
    cfg.check()
    check_out_dir(out, overwrite)
    specs = indicator_specs(indicator_rasters or {}, aggregations or {})
    report = ImportReport(source=str(mosaic))
    with open_raster(mosaic) as src, WorkspaceBuilder(out, overwrite=overwrite) as builder:
        cut = cut_mosaic(src, builder, city, cfg, report, label=str(mosaic))
        cells, grid = cut.cells, cut.grid
        prov = {"image": f"{mosaic} bands {list(cut.bands)} as R,G,B, {cut.stretch.describe()}, warped to "
                         f"{cfg.tile_px} px per {cfg.cell_size_m:g} m cell",
                "geometry": f"square {cfg.cell_size_m:g} m cells in {grid.crs.to_string()} over {mosaic}",
                VALID_COLUMN: VALID_PROVENANCE}
        prov.update(add_indicator_rasters(cells, indicator_rasters or {}, specs))
        manifest = Manifest(name=name or f"geotiff-{city}", indicators=specs, provenance=prov,
                            source=f"urbanclip.data.importers.geotiff: {mosaic}", split_seed=split_seed,
                            extra={"geotiff": {"mosaic": str(mosaic), "crs": str(src.crs), "cell_size_m": cfg.cell_size_m,
                                               "tile_px": cfg.tile_px, **cut.imagery_meta(),
                                               "indicator_rasters": {k: str(v) for k, v in (indicator_rasters or {}).items()}}})
        flag_suspect_values(cells, manifest, list(specs), report)
        ws = builder.finish(cells, manifest, cell_size_m={city: cfg.cell_size_m})
    report.cells = len(ws.cells)
    return ws, report


def add_indicator_rasters(cells: gpd.GeoDataFrame, rasters: dict[str, Path | str],
                          specs: dict[str, IndicatorSpec]) -> dict[str, str]:
    """Aggregate each indicator raster over the cells (in place); return the provenance of each column."""
    prov = {}
    for ind, path in rasters.items():
        cells[ind], _ = zonal_raster(Path(path), cells.geometry, specs[ind].aggregation)
        prov[ind] = f"{path} band 1, area-weighted {specs[ind].aggregation} per cell (urbanclip.data.zonal)"
    return prov


def indicator_specs(rasters: dict[str, Path | str], aggregations: dict[str, str]) -> dict[str, IndicatorSpec]:
    specs = {}
    for ind in rasters:
        base = STANDARD.get(ind, IndicatorSpec(ind, "", "sum", ind))
        agg = check_aggregation(aggregations.get(ind, base.aggregation), f"indicator {ind!r}")
        specs[ind] = IndicatorSpec(base.name, base.unit, agg, base.label)
    return specs


def open_raster(path: Path) -> rasterio.io.DatasetReader:
    """Open a raster with an error naming the file when it is missing or unreadable."""
    if not Path(path).is_file():
        raise UserError(f"raster {path} not found")
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as e:
        raise UserError(f"{path} cannot be read as a raster ({e}); is it a valid GeoTIFF?") from None


def read_error(label: str, e: Exception) -> UserError:
    """A pixel read failed (GDAL found the header but not the data): a truncated or corrupt file."""
    cause = f" ({e.__cause__})" if e.__cause__ else ""
    return UserError(f"{label}: pixels cannot be read: {e}{cause}; the file is truncated or corrupt. "
                     "Re-download or re-export it (`gdalinfo -checksum FILE` reads every block)")


def check_mosaic(src: rasterio.io.DatasetReader, label: str, bands: tuple[int, ...] | None = None) -> None:
    if src.crs is None:
        raise UserError(f"{label}: has no CRS; georeference it (e.g. `gdal_edit.py -a_srs EPSG:XXXX`) before importing")
    if bands is None and src.count < 3:
        raise UserError(f"{label}: has {src.count} band(s); an RGB mosaic needs at least 3 "
                        "(for a single-band image pass --bands 1,1,1)")
    if bands is not None and max(bands) > src.count:
        raise UserError(f"{label}: --bands {','.join(map(str, bands))} asks for band {max(bands)} but the file has "
                        f"{src.count} band(s)")
    if src.transform.b != 0 or src.transform.d != 0:
        raise UserError(f"{label}: is rotated; warp it to a north-up grid first (gdalwarp)")


def choose_bands(src: rasterio.io.DatasetReader, bands: tuple[int, ...] | None, label: str,
                 report: ImportReport) -> tuple[int, int, int]:
    """R, G, B band numbers: as given, else from the colour-interpretation tags, else 1, 2, 3."""
    if bands is not None:
        report.notes.append(f"bands {','.join(map(str, bands))} read as R,G,B (--bands)")
        return tuple(int(b) for b in bands)
    tags = list(src.colorinterp)
    wanted = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    if all(tags.count(c) == 1 for c in wanted):
        picked = tuple(tags.index(c) + 1 for c in wanted)
        if picked != (1, 2, 3):
            report.notes.append(f"bands {','.join(map(str, picked))} read as R,G,B (the file's colour-interpretation tags)")
        return picked
    if src.count > 3:
        report.warn(f"{label} has {src.count} bands and no red/green/blue colour tags: bands 1,2,3 are read as R,G,B; "
                    "pass --bands R,G,B if that is wrong (Landsat 8/9: --bands 4,3,2; Sentinel-2: --bands 4,3,2)")
    return 1, 2, 3


@dataclass
class Stretch:
    """uint8 conversion of R, G, B: identity for 8-bit imagery, else per-band lo..hi -> 0..255."""

    lo: np.ndarray | None = None  # per band, None = identity
    hi: np.ndarray | None = None

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) float with NaN for nodata -> (H, W, 3) uint8 (nodata black)."""
        a = np.nan_to_num(rgb, nan=0.0) if self.lo is None else (rgb - self.lo) / (self.hi - self.lo) * 255.0
        return np.clip(np.nan_to_num(a, nan=0.0), 0, 255).round().astype(np.uint8)

    def describe(self) -> str:
        if self.lo is None:
            return "8-bit values kept"
        return "per-band 2-98% stretch over valid pixels " + ", ".join(
            f"{c} {lo:g}..{hi:g}" for c, lo, hi in zip("RGB", self.lo, self.hi))

    def to_dict(self) -> dict:
        if self.lo is None:
            return {"kind": "identity (8-bit)"}
        return {"kind": "per-band percentile 2-98 over valid pixels", "lo": [float(v) for v in self.lo],
                "hi": [float(v) for v in self.hi]}


class MosaicReader:
    """The R, G, B bands of a mosaic as float32, and which pixels are imagery."""

    def __init__(self, src: rasterio.io.DatasetReader, bands: tuple[int, int, int], label: str):
        self.src, self.bands, self.label = src, list(bands), label
        self.nodata: np.ndarray | None = None  # per band
        flags = [src.mask_flag_enums[b - 1] for b in self.bands]
        self.has_mask = any(MaskFlags.alpha in f or MaskFlags.per_dataset in f for f in flags)

    def read(self, window: Window | None = None, out_shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(3, h, w) float32 and the (h, w) bool mask of imagery pixels."""
        try:
            data = self.src.read(self.bands, window=window, out_shape=(3, *out_shape) if out_shape else None)
            mask = self.src.dataset_mask(window=window, out_shape=out_shape) if self.has_mask else None
        except rasterio.errors.RasterioError as e:
            raise read_error(self.label, e) from None
        data = data.astype(np.float32)
        valid = np.isfinite(data).all(axis=0)
        if mask is not None:
            valid &= mask > 0
        if self.nodata is not None:
            valid &= ~(data == self.nodata[:, None, None]).all(axis=0)
        return data, valid

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """A decimated read of the whole mosaic (at most SAMPLE_PX on a side)."""
        scale = max(1, math.ceil(max(self.src.width, self.src.height) / SAMPLE_PX))
        return self.read(out_shape=(max(1, self.src.height // scale), max(1, self.src.width // scale)))


def resolve_nodata(reader: MosaicReader, option: float | str | None, report: ImportReport) -> None:
    """Set `reader.nodata` from the option, the file's tag or a detected edge fill; say which."""
    src = reader.src
    if option is None:
        report.notes.append("nodata: none (every pixel is imagery, --nodata none)")
        return
    if option != AUTO:
        reader.nodata = np.full(3, float(option), dtype=np.float32)
        report.notes.append(f"nodata value {float(option):g} (--nodata)")
        return
    tagged = [src.nodatavals[b - 1] for b in reader.bands]
    if any(v is not None for v in tagged):
        reader.nodata = np.array([np.nan if v is None else v for v in tagged], dtype=np.float32)
        report.notes.append(f"nodata value {', '.join(f'{v:g}' for v in dict.fromkeys(v for v in tagged if v is not None))} "
                            "(the file's nodata tag)")
        return
    if reader.has_mask:
        return  # an alpha or mask band says where the imagery is
    data, valid = reader.sample()
    found = detect_edge_fill(data, valid, np.dtype(src.dtypes[reader.bands[0] - 1]))
    if found is not None:
        value, share = found
        reader.nodata = np.full(3, value, dtype=np.float32)
        report.warn(f"{reader.label} has no nodata tag; the constant value {value:g} fills {share:.0%} of its edge "
                    f"pixels and is treated as nodata (pass --nodata VALUE for another value, --nodata none to keep it)")


def detect_edge_fill(data: np.ndarray, valid: np.ndarray, dtype: np.dtype) -> tuple[float, float] | None:
    """(value, share of edge pixels) of a constant fill along the mosaic's edges, or None.

    A fill pixel has the same value in R, G and B. The most frequent such value on
    the two outer rows/columns counts when it covers >= FILL_EDGE_SHARE of the edge
    and >= FILL_AREA_SHARE of the mosaic (a region, not a line); values other than 0
    or the dtype's extremes need FILL_EDGE_SHARE_UNUSUAL of the edge and may cover
    at most half the mosaic. A value covering (nearly) everything is a uniform
    image, not fill.
    """
    h, w = data.shape[1:]
    if h < 4 or w < 4:
        return None
    same = (data == data[:1]).all(axis=0) & valid
    edge = np.zeros((h, w), dtype=bool)
    edge[:2, :] = edge[-2:, :] = edge[:, :2] = edge[:, -2:] = True
    vals = data[0][edge & same]
    if vals.size == 0:
        return None
    uniq, counts = np.unique(vals, return_counts=True)
    value = float(uniq[int(np.argmax(counts))])
    share = float(counts.max() / edge.sum())
    area = float(((data == value).all(axis=0) & valid).mean())
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else np.finfo(dtype)
    usual = value in (0.0, float(info.min), float(info.max))
    if not FILL_AREA_SHARE <= area < (0.999 if usual else 0.5):
        return None
    if share >= (FILL_EDGE_SHARE if usual else FILL_EDGE_SHARE_UNUSUAL):
        return value, share
    return None


def percentile_stretch(reader: MosaicReader, dtype: str) -> Stretch:
    """Identity for 8-bit imagery, else each band's 2nd..98th percentile over the valid pixels of the mosaic."""
    if dtype == "uint8":
        return Stretch()
    data, valid = reader.sample()
    if not valid.any():
        raise UserError(f"{reader.label}: no pixel is imagery (all nodata); check --nodata and the file")
    lo, hi = np.percentile(data[:, valid].astype(np.float64), [2, 98], axis=1)
    hi = np.where(hi > lo, hi, lo + 1.0)
    return Stretch(lo.astype(np.float32), hi.astype(np.float32))


# ---------------------------------------------------------------------------------
# cutting


@dataclass
class CutResult:
    """What `cut_mosaic` made: the kept cells (with `image` and `valid_fraction`), their grid, and how pixels were read."""

    cells: gpd.GeoDataFrame
    grid: GridInfo
    bands: tuple[int, int, int]
    nodata: list[float] | None
    stretch: Stretch = field(default_factory=Stretch)

    def imagery_meta(self) -> dict:
        return {"bands_rgb": list(self.bands), "nodata": self.nodata, "stretch": self.stretch.to_dict()}


def cut_mosaic(src: rasterio.io.DatasetReader, builder: WorkspaceBuilder, city: str, cfg: CutConfig,
               report: ImportReport, label: str,
               anchor: tuple[float, float, float, float] | None = None) -> CutResult:
    """Lay a square grid over `src` (or over `anchor`, a lon/lat box), write one PNG per kept cell."""
    cfg.check()
    check_mosaic(src, label, cfg.bands)
    bands = choose_bands(src, cfg.bands, label, report)
    reader = MosaicReader(src, bands, label)
    resolve_nodata(reader, cfg.nodata, report)
    stretch = percentile_stretch(reader, src.dtypes[bands[0] - 1])
    grid, cells = _lay_grid(src, city, cfg.cell_size_m, label, anchor)
    footprint = box(*src.bounds).buffer(0.5 * min(abs(src.res[0]), abs(src.res[1])), join_style=2)
    inside = cells.to_crs(src.crs).within(footprint).to_numpy()
    for cid in cells["cell_id"][~inside]:
        report.skip(cid, "extends beyond the mosaic")
    cells = cells[inside].reset_index(drop=True)
    if len(cells) == 0:
        raise UserError(f"{label}: no whole {cfg.cell_size_m:g} m cell fits inside the mosaic; use a smaller --cell-size")
    src_res_m = _source_resolution_m(src)
    resampling = Resampling.average if src_res_m < cfg.cell_size_m / cfg.tile_px else Resampling.bilinear
    images, fractions, flags = [], [], []
    keep = np.ones(len(cells), dtype=bool)
    too_little = f"less than {cfg.min_valid:.0%} of the cell is imagery (nodata / fill / transparent; --min-valid)"
    for i, (cid, row, col) in enumerate(tqdm(list(zip(cells["cell_id"], cells["row"], cells["col"])),
                                            desc=f"cutting {city}", unit="cell", leave=False)):
        # exact grid bounds (the polygons went through EPSG:4326)
        west = grid.west + col * cfg.cell_size_m
        north = grid.north - row * cfg.cell_size_m
        rgb, valid = _warp_cell(reader, grid.crs, (west, north - cfg.cell_size_m, west + cfg.cell_size_m, north),
                                cfg.tile_px, resampling)
        fractions.append(valid)
        if valid < cfg.min_valid:
            report.skip(cid, too_little)
            keep[i] = False
            images.append(None)
            flags.append("")
            continue
        images.append(builder.write_image(city, f"r{row:03d}_c{col:03d}.png", stretch(rgb)))
        report.images += 1
        flags.append(PARTIAL_FLAG if valid < 1.0 else "")
        if valid < 1.0:
            report.flag(cid, f"partial imagery: some of the cell is nodata (flag {PARTIAL_FLAG}, column {VALID_COLUMN})")
    cells["image"], cells[VALID_COLUMN], cells["flags"] = images, np.round(fractions, 4), flags
    n_inside = len(cells)
    cells = cells[keep].reset_index(drop=True)
    if len(cells) == 0 or len(cells) < cfg.min_kept * n_inside:
        raise UserError(f"{label}: only {len(cells)} of {n_inside} cells inside the mosaic kept "
                        f"({n_inside - len(cells)} with {too_little}); nothing was written. Check the imagery and "
                        "--nodata, lower --min-valid, or pass --min-kept 0 to accept a sparse workspace")
    nodata = None if reader.nodata is None else [None if np.isnan(v) else float(v) for v in reader.nodata]
    return CutResult(cells, grid, bands, nodata, stretch)


def _lay_grid(src: rasterio.io.DatasetReader, city: str, cell_size_m: float, label: str,
              anchor: tuple[float, float, float, float] | None = None) -> tuple[GridInfo, gpd.GeoDataFrame]:
    if anchor is not None:  # laid over the lon/lat box, not the mosaic: ids depend on the box only
        west, south, east, north = anchor
        utm = utm_crs_for(west, north)
        minx, miny, maxx, maxy = _inner_bounds(anchor, "EPSG:4326", utm)
    else:
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
        if not (east > west and north > south):
            raise UserError(f"{label}: has zero area in EPSG:4326 (bounds {src.bounds})")
        utm = utm_crs_for(west, north)
        minx, miny, maxx, maxy = _inner_bounds(src.bounds, src.crs, utm)
    ox, oy = minx, maxy
    (lon,), (lat,) = transform(utm, "EPSG:4326", [minx], [maxy])
    n_cols, n_rows = whole_cells(maxx - ox, cell_size_m), whole_cells(oy - miny, cell_size_m)
    if n_rows < 1 or n_cols < 1:
        raise UserError(f"{label}: the mosaic ({maxx - minx:.0f} x {maxy - miny:.0f} m) is smaller than one {cell_size_m:g} m cell")
    cells = square_grid(city, lon, lat, n_rows, n_cols, cell_size_m)
    grid_utm = utm_crs_for(lon, lat)  # the zone square_grid used
    (gx,), (gy,) = transform("EPSG:4326", grid_utm, [lon], [lat])
    return GridInfo(grid_utm, gx, gy, n_rows, n_cols, cell_size_m), cells


def _inner_bounds(bounds, src_crs, crs, n: int = 21) -> tuple[float, float, float, float]:
    """An axis-aligned box in `crs` inside `bounds` of `src_crs` (which may be slightly rotated there)."""
    l, b, r, t = bounds
    xs, ys = np.linspace(l, r, n), np.linspace(b, t, n)
    edges = {"west": ([l] * n, ys), "east": ([r] * n, ys), "south": (xs, [b] * n), "north": (xs, [t] * n)}
    ex = {k: transform(src_crs, crs, list(v[0]), list(v[1])) for k, v in edges.items()}
    return (max(ex["west"][0]), max(ex["south"][1]), min(ex["east"][0]), min(ex["north"][1]))


def _warp_cell(reader: MosaicReader, dst_crs, bounds: tuple[float, float, float, float], px: int,
               resampling: Resampling) -> tuple[np.ndarray, float]:
    """The cell as a (px, px, 3) float array (NaN where no imagery) and the fraction of it that is imagery."""
    src = reader.src
    window = _window_for(src, dst_crs, bounds, pad=2)
    data, valid = reader.read(window)
    data[:, ~valid] = np.nan
    win_transform = src.window_transform(window)
    dst_transform = from_bounds(*bounds, px, px)
    out = np.full((3, px, px), np.nan, dtype=np.float32)
    reproject(data, out, src_transform=win_transform, src_crs=src.crs, src_nodata=np.nan, dst_transform=dst_transform,
              dst_crs=dst_crs, dst_nodata=np.nan, resampling=resampling)
    covered = np.zeros((px, px), dtype=np.uint8)
    reproject(valid.astype(np.uint8) * 255, covered, src_transform=win_transform, src_crs=src.crs,
              dst_transform=dst_transform, dst_crs=dst_crs, resampling=Resampling.nearest, dst_nodata=0)
    return np.moveaxis(out, 0, -1), float((covered > 0).mean())


def _window_for(src: rasterio.io.DatasetReader, crs, bounds, pad: int) -> Window:
    b = transform_bounds(crs, src.crs, *bounds, densify_pts=5)
    w = window_from_bounds(*b, transform=src.transform)
    col0 = max(int(math.floor(w.col_off)) - pad, 0)
    row0 = max(int(math.floor(w.row_off)) - pad, 0)
    col1 = min(int(math.ceil(w.col_off + w.width)) + pad, src.width)
    row1 = min(int(math.ceil(w.row_off + w.height)) + pad, src.height)
    if col1 <= col0 or row1 <= row0:
        return Window(0, 0, 1, 1)
    return Window(col0, row0, col1 - col0, row1 - row0)


def _source_resolution_m(src: rasterio.io.DatasetReader) -> float:
    """Ground size of one mosaic pixel near its centre (metres)."""
    cx, cy = src.xy(src.height // 2, src.width // 2)
    lons, lats = transform(src.crs, "EPSG:4326", [cx, cx + src.res[0]], [cy, cy])
    _, _, dist = _GEOD.inv(lons[0], lats[0], lons[1], lats[1])
    return float(dist)
