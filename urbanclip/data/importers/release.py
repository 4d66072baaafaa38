"""Import the UrbanCLIP dataset release into a workspace.

Source: the dataset toolkit published with UrbanCLIP (WWW 2024); no licence is
stated there, so imported workspaces are for research/evaluation use. Layout::

    indicators.csv           satellite_img_name, BD09 coordinate, WGS84 coordinate,
                             carbon_emissions (ton), population (unit), gdp (million yuan)
    captions/*.json          [[{"caption": str, "image": "<City>/<file>"}, ...]]  (several sentences per image)
    images/<City>/16_<x>_<y>_s.jpg   Baidu tiles, BD09 tile indices at zoom 16, 256 x 256 RGB

Geometry. Each row names a Baidu tile (x, y at zoom 16; y grows north), 1024
BD09-Mercator units wide. The CSV column "WGS84 coordinate" is the tile's
lower-left corner, but in the public release it equals Baidu's BD09MC -> BD09
lon/lat of that corner to 1e-14 degrees, i.e. it is *BD09*, not WGS84 (about
1.2 km off in Beijing). `datum="auto"` detects this and converts all four tile
corners BD09MC -> BD09 -> GCJ-02 -> WGS84 (`urbanclip.data.tiles`); when the column
really is WGS84 (it does not match BD09), its corner is kept and the tile's
extent is taken from the same conversion. The choice is written to the manifest.

Cells without an image file or without captions are kept and flagged
(`missing_image`, `missing_text`, `unreadable_image`); captions whose image is
not in the CSV are reported as skipped.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from PIL import Image

from urbanclip.errors import UserError
from urbanclip.data.importers import ImportReport
from urbanclip.data.indicators import STANDARD
from urbanclip.data.tiles import baidu_tile_size_mc, bd09_to_gcj02, bd09mc_to_bd09, bd09mc_to_wgs84, gcj02_to_wgs84
from urbanclip.data.workspace import Manifest, Workspace, WorkspaceBuilder, join_sentences

NAME_COL = "satellite_img_name"
BD09_COL = "BD09 coordinate"
WGS84_COL = "WGS84 coordinate"
# source column -> (workspace indicator, unit as written in the source)
INDICATOR_COLUMNS = {
    "carbon_emissions (ton)": ("carbon", "ton"),
    "population (unit)": ("population", "unit (persons, WorldPop 1 km)"),
    "gdp (million yuan)": ("gdp", "million yuan"),
}
REQUIRED = (NAME_COL, WGS84_COL, *INDICATOR_COLUMNS)
_NAME_RE = r"^(?P<city>[^/\\]+)/(?P<z>\d+)_(?P<x>\d+)_(?P<y>\d+)_s\.(?:jpg|jpeg|png)$"
_LATLON_RE = r"^\s*\(?\s*(?P<lat>[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*,\s*(?P<lon>[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*\)?\s*$"
_BD09_RE = r"^\s*\(?\s*(?P<x>\d+)\s*,\s*(?P<y>\d+)\s*\)?\s*$"
BD09_MATCH_TOL_DEG = 1e-7


def import_release(release_dir: Path | str, out: Path | str, *, cities: list[str] | None = None,
                   csv: Path | str | None = None, captions: list[Path | str] | None = None,
                   images_dir: Path | str | None = None, datum: str = "auto", overwrite: bool = False,
                   split_seed: int = 0, name: str | None = None) -> tuple[Workspace, ImportReport]:
    """Build a workspace at `out` from an UrbanCLIP release folder; return it with the report.

    `csv`, `captions` and `images_dir` default to the release layout inside
    `release_dir`. `cities` keeps only those cities. `datum` is how to read the
    "WGS84 coordinate" column: "auto" (detect BD09), "bd09" or "wgs84".
    """
    release_dir = Path(release_dir).expanduser()
    csv_path = Path(csv) if csv else release_dir / "indicators.csv"
    images_root = Path(images_dir) if images_dir else release_dir / "images"
    caption_paths = [Path(p) for p in captions] if captions is not None else sorted((release_dir / "captions").glob("*.json"))
    if datum not in ("auto", "bd09", "wgs84"):
        raise UserError(f"datum must be 'auto', 'bd09' or 'wgs84', got {datum!r}")
    report = ImportReport(source=str(release_dir))

    table = read_indicator_csv(csv_path)
    if cities:
        known = sorted(table["city"].unique())
        unknown = [c for c in cities if c not in known]
        if unknown:
            raise UserError(f"{csv_path}: no cells for city {unknown[0]!r}; the CSV has {known}")
        table = table[table["city"].isin(cities)].reset_index(drop=True)

    table["geometry"], used_datum = _tile_polygons(table, datum, csv_path)
    report.notes.append(f"column {WGS84_COL!r} read as {used_datum}")
    for city, sub in table.groupby("city"):
        table.loc[sub.index, "row"] = sub["y"].max() - sub["y"]
        table.loc[sub.index, "col"] = sub["x"] - sub["x"].min()

    texts = read_captions(caption_paths, set(table["cell_id"]), report, set(table["city"]) if cities else None)
    table["text_raw"] = [texts.get(cid, "") for cid in table["cell_id"]]
    report.texts = int((table["text_raw"] != "").sum())

    with WorkspaceBuilder(out, overwrite=overwrite) as builder:
        table["image"], table["flags"] = _copy_images(table, images_root, builder, report)
        for cid, img, flag, txt in zip(table["cell_id"], table["image"], table["flags"], table["text_raw"]):
            if flag == "missing_image":
                report.flag(cid, "no image file")
            if not txt:
                report.flag(cid, "no captions")
        manifest = _manifest(name or f"urbanclip-release{'-' + '-'.join(cities) if cities else ''}",
                             csv_path, caption_paths, images_root, used_datum, split_seed)
        cells = gpd.GeoDataFrame(
            table[["cell_id", "city", "row", "col", "image", "text_raw", "flags", *manifest.indicators, "geometry"]],
            geometry="geometry", crs="EPSG:4326")
        ws = builder.finish(cells, manifest, cell_size_m=_cell_sizes(cells))
    report.cells = len(ws.cells)
    return ws, report


# ---------------------------------------------------------------------------------
# the indicators CSV


def read_indicator_csv(path: Path) -> pd.DataFrame:
    """Parse and validate the CSV: one row per tile with city, x, y, corner lat/lon and raw indicators.

    Any bad value raises UserError naming the file, the CSV line and the column.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"indicators CSV {path} not found; point --csv at the release's indicators.csv")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as e:
        raise UserError(f"{path}: cannot be read as CSV ({e})") from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
    if len(df) == 0:
        raise UserError(f"{path}: has a header but no rows")
    line = df.index.to_numpy() + 2  # header is line 1

    def bad(mask: pd.Series | np.ndarray, col: str, what: str) -> None:
        i = int(np.flatnonzero(np.asarray(mask))[0])
        raise UserError(f"{path}, line {line[i]}, column {col!r}: {what} (value {df[col].iloc[i]!r}); fix or remove that row")

    names = df[NAME_COL].str.strip().str.extract(_NAME_RE)
    if names["city"].isna().any():
        bad(names["city"].isna(), NAME_COL, "expected '<City>/<z>_<x>_<y>_s.jpg'")
    out = pd.DataFrame({
        "cell_id": df[NAME_COL].str.strip().str.replace(r"\.(?:jpg|jpeg|png)$", "", regex=True),
        "file": df[NAME_COL].str.strip(),
        "city": names["city"],
        "z": names["z"].astype(int), "x": names["x"].astype(int), "y": names["y"].astype(int),
    })
    if out["z"].nunique() != 1:
        raise UserError(f"{path}: column {NAME_COL!r} mixes zoom levels {sorted(out['z'].unique())}; one zoom per release is expected")
    dup = out["cell_id"].duplicated()
    if dup.any():
        bad(dup, NAME_COL, "duplicate tile name")
    if BD09_COL in df.columns:
        bd = df[BD09_COL].str.extract(_BD09_RE)
        if bd["x"].isna().any():
            bad(bd["x"].isna(), BD09_COL, "expected '(x,y)' tile indices")
        mismatch = (bd["x"].astype(int) != out["x"]) | (bd["y"].astype(int) != out["y"])
        if mismatch.any():
            bad(mismatch, BD09_COL, f"does not match the tile indices in {NAME_COL!r}")
    ll = df[WGS84_COL].str.extract(_LATLON_RE)
    if ll["lat"].isna().any():
        bad(ll["lat"].isna(), WGS84_COL, "expected '(lat, lon)' in decimal degrees")
    out["corner_lat"] = ll["lat"].astype(float)
    out["corner_lon"] = ll["lon"].astype(float)
    if (out["corner_lat"].abs() > 90).any():
        bad(out["corner_lat"].abs() > 90, WGS84_COL, "latitude outside -90..90 (is the order '(lat, lon)'?)")
    if (out["corner_lon"].abs() > 180).any():
        bad(out["corner_lon"].abs() > 180, WGS84_COL, "longitude outside -180..180")
    for col, (ind, _unit) in INDICATOR_COLUMNS.items():
        vals = pd.to_numeric(df[col].str.strip(), errors="coerce")
        if vals.isna().any():
            bad(vals.isna(), col, "not a number (empty or NaN)")
        if (vals < 0).any():
            bad(vals < 0, col, "negative; indicators are totals and must be >= 0")
        if np.isinf(vals).any():
            bad(np.isinf(vals), col, "infinite")
        out[ind] = vals.astype("float64")
    return out


def _tile_polygons(table: pd.DataFrame, datum: str, csv_path: Path) -> tuple[np.ndarray, str]:
    """WGS84 polygons of every tile, and how the corner column was interpreted."""
    z = int(table["z"].iloc[0])
    s = baidu_tile_size_mc(z)
    x0, y0 = table["x"].to_numpy() * s, table["y"].to_numpy() * s
    bd_lon, bd_lat = bd09mc_to_bd09(x0, y0)
    is_bd09 = bool(np.all(np.abs(bd_lon - table["corner_lon"]) < BD09_MATCH_TOL_DEG)
                   and np.all(np.abs(bd_lat - table["corner_lat"]) < BD09_MATCH_TOL_DEG))
    if datum == "auto":
        datum = "bd09" if is_bd09 else "wgs84"
    # corners in order lower-left, lower-right, upper-right, upper-left (BD09MC units)
    xs = np.stack([x0, x0 + s, x0 + s, x0], axis=1)
    ys = np.stack([y0, y0, y0 + s, y0 + s], axis=1)
    lon, lat = bd09mc_to_wgs84(xs, ys)
    if datum == "bd09":
        # the CSV corner is BD09 lon/lat; convert it (equal to lon[:,0] when the column is consistent)
        ll_lon, ll_lat = gcj02_to_wgs84(*bd09_to_gcj02(table["corner_lon"].to_numpy(), table["corner_lat"].to_numpy()))
        label = "BD09 lon/lat (converted BD09 -> GCJ-02 -> WGS84)"
    else:
        ll_lon, ll_lat = table["corner_lon"].to_numpy(), table["corner_lat"].to_numpy()
        label = "WGS84 (tile extent from the BD09MC tile size)"
    lon = lon - lon[:, :1] + ll_lon[:, None]
    lat = lat - lat[:, :1] + ll_lat[:, None]
    coords = np.stack([lon, lat], axis=2)  # (n, 4, 2)
    polys = shapely.polygons(coords)
    if not shapely.is_valid(polys).all():
        i = int(np.flatnonzero(~shapely.is_valid(polys))[0])
        raise UserError(f"{csv_path}: tile {table['file'].iloc[i]!r} gives an invalid polygon; check its coordinates")
    return polys, label


def _cell_sizes(cells: gpd.GeoDataFrame) -> dict[str, float]:
    """Median tile width in metres per city (tiles are ~1 km; Mercator tiles shrink with latitude)."""
    out = {}
    for city, sub in cells.groupby("city"):
        metric = sub.geometry.to_crs(sub.geometry.estimate_utm_crs())
        out[str(city)] = round(float(np.median(np.sqrt(metric.area))), 1)
    return out


# ---------------------------------------------------------------------------------
# captions


def read_captions(paths: list[Path], known_ids: set[str], report: ImportReport,
                  cities: set[str] | None = None) -> dict[str, str]:
    """cell_id -> sentences ("\\n"-joined) from the captions JSON files, in file order."""
    sentences: dict[str, list[str]] = {}
    unknown: dict[str, str] = {}
    for path in paths:
        try:
            data = json.loads(Path(path).read_text("utf-8"))
        except FileNotFoundError:
            raise UserError(f"captions file {path} not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"captions file {path} is not valid JSON ({e}); re-download or remove it") from None
        if not isinstance(data, list):
            raise UserError(f"captions file {path}: expected a JSON list of lists of {{caption, image}}, got {type(data).__name__}")
        entries = []
        for part in data:  # the release nests one list; accept flat lists as well
            entries.extend(part if isinstance(part, list) else [part])
        for k, e in enumerate(entries):
            if not (isinstance(e, dict) and isinstance(e.get("caption"), str) and isinstance(e.get("image"), str)):
                raise UserError(f"captions file {path}: entry {k} must be an object with string fields 'caption' and 'image', got {str(e)[:80]!r}")
            cid = re.sub(r"\.(?:jpg|jpeg|png)$", "", e["image"].strip())
            if cid not in known_ids:
                if cities is None or cid.split("/")[0] in cities:
                    unknown.setdefault(cid, str(path))
                continue
            sentences.setdefault(cid, []).append(e["caption"])
    for cid, path in unknown.items():
        report.skip(cid, f"captions in {Path(path).name} for an image not in the indicators CSV")
    return {cid: join_sentences(s) for cid, s in sentences.items()}


# ---------------------------------------------------------------------------------
# images


def _copy_images(table: pd.DataFrame, images_root: Path, builder: WorkspaceBuilder,
                 report: ImportReport) -> tuple[list[str | None], list[str]]:
    """Copy each existing, readable RGB tile; others are flagged with the reason."""
    present: dict[str, set[str]] = {}
    if images_root.is_dir():
        for city_dir in os.scandir(images_root):
            if city_dir.is_dir():
                present[city_dir.name] = {f.name for f in os.scandir(city_dir.path) if f.is_file()}
    images, flags = [], []
    for cid, city, file in zip(table["cell_id"], table["city"], table["file"]):
        fname = file.split("/", 1)[1]
        if fname not in present.get(city, ()):
            images.append(None)
            flags.append("missing_image")
            continue
        src = images_root / city / fname
        problem = check_rgb_image(src)
        if problem:
            report.flag(cid, f"unreadable image {src}: {problem}")
            images.append(None)
            flags.append("missing_image;unreadable_image")
            continue
        images.append(builder.copy_image(city, fname, src))
        flags.append("")
        report.images += 1
    return images, flags


def check_rgb_image(path: Path) -> str | None:
    """None when `path` decodes fully as a 3-band RGB image, else the reason it does not."""
    try:
        with Image.open(path) as im:
            im.load()
            mode, bands = im.mode, len(im.getbands())
    except Exception as e:
        return f"cannot be decoded ({type(e).__name__}: {e})"
    if mode != "RGB":
        return f"has mode {mode} with {bands} band(s); expected 3-band RGB"
    return None


# ---------------------------------------------------------------------------------
# manifest


def _manifest(name: str, csv_path: Path, caption_paths: list[Path], images_root: Path, datum: str,
              split_seed: int) -> Manifest:
    prov = {
        "cell_id": f"{NAME_COL!r} of {csv_path} without the extension",
        "geometry": f"Baidu tile (BD09MC, 1024 units at zoom 16) from {NAME_COL!r}; lower-left corner from {WGS84_COL!r} read as {datum}",
        "row": "max BD09 tile y of the city minus tile y (row 0 = north)",
        "col": "tile x minus min BD09 tile x of the city",
        "text_raw": "LLaMA-Adapter V2 captions from " + ", ".join(str(p) for p in caption_paths) + " (sentences in file order)",
        "image": f"copied from {images_root}",
    }
    for col, (ind, unit) in INDICATOR_COLUMNS.items():
        prov[ind] = f"{csv_path} column {col!r} (unit: {unit})"
    prov["gdp"] += "; note: many values are exactly 10000.0, a cap or fill value in the source GDP raster"
    return Manifest(
        name=name, indicators={k: STANDARD[k] for k in ("population", "gdp", "carbon")}, provenance=prov,
        synthetic=False, source=f"urbanclip.data.importers.release: {csv_path.parent}", split_seed=split_seed,
        extra={"release": {"original_columns": {c: {"indicator": i, "unit": u} for c, (i, u) in INDICATOR_COLUMNS.items()},
                           "corner_datum": datum, "tile_scheme": "Baidu BD09MC, zoom 16",
                           "licence": "no licence stated by the UrbanCLIP release; research/evaluation use"}})
