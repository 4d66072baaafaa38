"""Workspaces: the one data model every stage reads and writes.

A workspace is a folder::

    W/
      manifest.json     version, cities, bounds, indicators (+units), provenance of columns
      cells.parquet     GeoParquet, one row per grid cell, EPSG:4326 polygons
      images/<city>/... tile images referenced by the `image` column (relative paths)
      cache/            derived data (embeddings, probe heads), safe to delete

Cell columns (`REQUIRED_COLUMNS` always exist):
  cell_id   unique string id ("<city>/<row>_<col>" or the source's own tile name)
  city      city name, a key of manifest.cities
  row, col  grid position inside the city (row 0 = north), used for adjacency
  image     relative path of the tile image, or None when there is none
  text_raw  source description, one sentence per line ("" when none)
  split     'train' / 'val' / 'test'
  flags     ';'-separated reasons a cell is incomplete (missing_image, missing_text, ...)
  lat, lon  cell centre, for search and display
plus one float column per indicator in manifest.indicators (raw values, NaN = unknown).

Writes are atomic: a new workspace is built in a staging folder and renamed
into place only after validation; updates of an existing one write temp files
and `os.replace` them. Nothing else in the package parses workspace files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import geopandas as gpd
import numpy as np
import pandas as pd
from PIL import Image

from urbanclip.errors import UserError, ValidationError
from urbanclip.data.indicators import TARGET_TRANSFORM, IndicatorSpec, to_model_scale
from urbanclip.data.splits import SPLITS, random_split

FORMAT = "urbanclip-workspace"
VERSION = 1
MANIFEST = "manifest.json"
CELLS = "cells.parquet"
IMAGES_DIR = "images"
CACHE_DIR = "cache"
CRS = "EPSG:4326"
REQUIRED_COLUMNS = ("cell_id", "city", "row", "col", "image", "text_raw", "split", "flags", "lat", "lon", "geometry")
TEXT_SEPARATOR = "\n"


@dataclass
class CityInfo:
    """One city of a workspace."""

    name: str
    bounds: tuple[float, float, float, float]  # (min lon, min lat, max lon, max lat), EPSG:4326
    n_cells: int
    n_rows: int
    n_cols: int
    cell_size_m: float | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["bounds"] = [float(b) for b in self.bounds]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CityInfo":
        return cls(name=d["name"], bounds=tuple(d["bounds"]), n_cells=int(d["n_cells"]),
                   n_rows=int(d["n_rows"]), n_cols=int(d["n_cols"]), cell_size_m=d.get("cell_size_m"))


@dataclass
class Manifest:
    """What a workspace holds and where every column came from."""

    name: str
    indicators: dict[str, IndicatorSpec]
    cities: dict[str, CityInfo] = field(default_factory=dict)
    provenance: dict[str, str] = field(default_factory=dict)  # column -> where it came from
    synthetic: bool = False
    source: str = ""  # importer / generator that made the workspace, and its input
    split_seed: int = 0
    target_transform: str = TARGET_TRANSFORM
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = VERSION

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": self.version,
            "name": self.name,
            "synthetic": self.synthetic,
            "source": self.source,
            "split_seed": self.split_seed,
            "target_transform": self.target_transform,
            "cities": {k: v.to_dict() for k, v in self.cities.items()},
            "indicators": {k: v.to_dict() for k, v in self.indicators.items()},
            "provenance": dict(self.provenance),
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict, where: str = MANIFEST) -> "Manifest":
        if d.get("format") != FORMAT:
            raise ValidationError(f"{where}: field 'format' must be {FORMAT!r}; this is not an urbanclip workspace manifest")
        if int(d.get("version", -1)) > VERSION:
            raise ValidationError(f"{where}: version {d.get('version')} is newer than this urbanclip understands ({VERSION}); upgrade urbanclip")
        try:
            return cls(
                name=d["name"],
                indicators={k: IndicatorSpec.from_dict(v) for k, v in d["indicators"].items()},
                cities={k: CityInfo.from_dict(v) for k, v in d.get("cities", {}).items()},
                provenance=dict(d.get("provenance", {})),
                synthetic=bool(d.get("synthetic", False)),
                source=d.get("source", ""),
                split_seed=int(d.get("split_seed", 0)),
                target_transform=d.get("target_transform", TARGET_TRANSFORM),
                extra=d.get("extra", {}),
                version=int(d.get("version", VERSION)),
            )
        except KeyError as e:
            raise ValidationError(f"{where}: missing field {e.args[0]!r}") from None


# ---------------------------------------------------------------------------------
# atomic file helpers


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temp file in the same folder and os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"))


def _write_cells(cells: gpd.GeoDataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        cells.to_parquet(tmp, index=False, compression="zstd")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------
# validation


def validate(cells: gpd.GeoDataFrame, manifest: Manifest, root: Path | None = None) -> None:
    """Raise ValidationError naming the column and rows when `cells` breaks the data model."""
    where = f"{root / CELLS}" if root else CELLS
    missing = [c for c in REQUIRED_COLUMNS if c not in cells.columns]
    if missing:
        raise ValidationError(f"{where}: missing column(s) {missing}")
    if cells.crs is None or cells.crs.to_epsg() != 4326:
        raise ValidationError(f"{where}: geometry CRS must be EPSG:4326, got {cells.crs}")
    if len(cells) == 0:
        raise ValidationError(f"{where}: no cells")
    dup = cells["cell_id"][cells["cell_id"].duplicated()]
    if len(dup):
        raise ValidationError(f"{where}: column 'cell_id' has duplicates, e.g. {dup.iloc[0]!r}")
    if cells["cell_id"].isna().any():
        raise ValidationError(f"{where}: column 'cell_id' has empty values")
    unknown_city = sorted(set(cells["city"]) - set(manifest.cities))
    if unknown_city:
        raise ValidationError(f"{where}: city {unknown_city[0]!r} is not listed in manifest.cities")
    bad_split = sorted(set(cells["split"].dropna()) - set(SPLITS)) + (["<missing>"] if cells["split"].isna().any() else [])
    if bad_split:
        raise ValidationError(f"{where}: column 'split' must be one of {SPLITS}, found {bad_split[0]!r}")
    geom = cells.geometry
    b = geom.bounds
    broken = geom.isna() | geom.is_empty | ~geom.is_valid | ~((b["maxx"] > b["minx"]) & (b["maxy"] > b["miny"]))
    if broken.any():
        bad = cells["cell_id"][broken].iloc[0]
        raise ValidationError(f"{where}: cell {bad!r} has an empty or invalid polygon")
    for name in manifest.indicators:
        if name not in cells.columns:
            raise ValidationError(f"{where}: indicator column {name!r} (listed in the manifest) is missing")
        vals = pd.to_numeric(cells[name], errors="coerce")
        nonnum = cells[name].notna() & vals.isna()
        if nonnum.any():
            raise ValidationError(f"{where}: indicator {name!r} is not numeric for cell {cells['cell_id'][nonnum].iloc[0]!r}")
        neg = vals < 0
        if neg.any():
            raise ValidationError(f"{where}: indicator {name!r} is negative ({vals[neg].iloc[0]}) for cell {cells['cell_id'][neg].iloc[0]!r}; indicators are counts or totals and must be >= 0")
        if np.isinf(vals).any():
            raise ValidationError(f"{where}: indicator {name!r} has an infinite value")
    if root is not None:
        for cid, rel in zip(cells["cell_id"], cells["image"]):
            if isinstance(rel, str) and rel and not (root / rel).is_file():
                raise ValidationError(f"{where}: image {rel!r} of cell {cid!r} does not exist in {root}")


def _city_infos(cells: gpd.GeoDataFrame, cell_size_m: dict[str, float] | None = None) -> dict[str, CityInfo]:
    infos = {}
    for city, sub in cells.groupby("city", sort=True):
        b = sub.total_bounds
        infos[str(city)] = CityInfo(
            name=str(city), bounds=tuple(float(x) for x in b), n_cells=int(len(sub)),
            n_rows=int(sub["row"].max()) + 1, n_cols=int(sub["col"].max()) + 1,
            cell_size_m=(cell_size_m or {}).get(str(city)))
    return infos


def normalise_cells(cells: gpd.GeoDataFrame | pd.DataFrame, indicators: Iterable[str], split_seed: int = 0) -> gpd.GeoDataFrame:
    """Fill optional columns with their defaults, fix dtypes and order, add a split if absent.

    Importers build a frame with at least cell_id, city, row, col, geometry; this
    fills image/text_raw/flags/lat/lon/split so every workspace looks the same.
    """
    cells = gpd.GeoDataFrame(cells, geometry="geometry", crs=getattr(cells, "crs", None) or CRS).copy()
    if cells.crs.to_epsg() != 4326:
        cells = cells.to_crs(CRS)
    cells["cell_id"] = cells["cell_id"].astype(str)
    cells["city"] = cells["city"].astype(str)
    cells["row"] = cells["row"].astype("int32")
    cells["col"] = cells["col"].astype("int32")
    if "image" not in cells:
        cells["image"] = None
    # object dtype keeps None as None (pandas 3 would otherwise infer a string dtype with NaN)
    cells["image"] = pd.Series([v if isinstance(v, str) and v else None for v in cells["image"]], index=cells.index, dtype=object)
    if "text_raw" not in cells:
        cells["text_raw"] = ""
    cells["text_raw"] = cells["text_raw"].fillna("").astype(str)
    if "flags" not in cells:
        cells["flags"] = ""
    flags = []
    for f, img, txt in zip(cells["flags"].fillna(""), cells["image"], cells["text_raw"]):
        parts = [p for p in str(f).split(";") if p]
        if not isinstance(img, str) and "missing_image" not in parts:
            parts.append("missing_image")
        if not txt and "missing_text" not in parts:
            parts.append("missing_text")
        flags.append(";".join(parts))
    cells["flags"] = flags
    cent = cells.geometry.representative_point() if len(cells) else cells.geometry
    cells["lat"] = np.asarray(cent.y, dtype=np.float64)
    cells["lon"] = np.asarray(cent.x, dtype=np.float64)
    for name in indicators:
        if name not in cells:
            cells[name] = np.nan
        cells[name] = pd.to_numeric(cells[name], errors="coerce").astype("float64")
    if "split" not in cells or cells["split"].isna().all():
        cells["split"] = random_split(len(cells), seed=split_seed) if len(cells) >= 3 else "train"
    cells["split"] = cells["split"].astype(str)
    front = [c for c in REQUIRED_COLUMNS if c != "geometry"]
    ordered = front + [c for c in cells.columns if c not in front and c != "geometry"] + ["geometry"]
    return cells[ordered].sort_values(["city", "row", "col", "cell_id"]).reset_index(drop=True)


# ---------------------------------------------------------------------------------
# building a new workspace


class WorkspaceBuilder:
    """Stage a new workspace (images first, then the table) and move it into place at once.

    Usage::

        with WorkspaceBuilder(root, overwrite=True) as b:
            rel = b.write_image("Beijing", "r000_c000.png", png_bytes)
            ...
            ws = b.finish(cells, manifest)

    If anything raises before `finish` completes, the staging folder is removed
    and `root` is untouched.
    """

    def __init__(self, root: Path | str, overwrite: bool = False):
        self.root = Path(root).expanduser().resolve()
        if self.root.exists() and not overwrite:
            raise UserError(f"{self.root} already exists; choose another folder or pass --overwrite")
        if self.root.exists() and not (self.root / MANIFEST).exists() and any(self.root.iterdir()):
            raise UserError(f"{self.root} exists, is not empty and is not a workspace; refusing to replace it")
        self.root.parent.mkdir(parents=True, exist_ok=True)
        self.staging = self.root.parent / f".{self.root.name}.staging-{uuid.uuid4().hex[:8]}"
        self.staging.mkdir()
        self._done = False

    def __enter__(self) -> "WorkspaceBuilder":
        return self

    def __exit__(self, *exc) -> None:
        if not self._done:
            shutil.rmtree(self.staging, ignore_errors=True)

    def image_relpath(self, city: str, filename: str) -> str:
        return f"{IMAGES_DIR}/{_safe_name(city)}/{filename}"

    def write_image(self, city: str, filename: str, data: bytes | np.ndarray | Image.Image, format: str | None = None) -> str:
        """Store one tile (encoded bytes, an HxWx3 uint8 array or a PIL image); return its relative path."""
        rel = self.image_relpath(city, filename)
        dest = self.staging / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, (bytes, bytearray)):
            dest.write_bytes(bytes(data))
        else:
            img = Image.fromarray(np.asarray(data, dtype=np.uint8)) if isinstance(data, np.ndarray) else data
            fmt = format or ("JPEG" if filename.lower().endswith((".jpg", ".jpeg")) else "PNG")
            kwargs = {"quality": 92} if fmt == "JPEG" else {"optimize": False}
            img.convert("RGB").save(dest, format=fmt, **kwargs)
        return rel

    def copy_image(self, city: str, filename: str, source: Path) -> str:
        rel = self.image_relpath(city, filename)
        dest = self.staging / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
        return rel

    def finish(self, cells: gpd.GeoDataFrame | pd.DataFrame, manifest: Manifest,
               cell_size_m: dict[str, float] | None = None) -> "Workspace":
        cells = normalise_cells(cells, manifest.indicators, split_seed=manifest.split_seed)
        manifest.cities = _city_infos(cells, cell_size_m)
        for col in REQUIRED_COLUMNS:
            manifest.provenance.setdefault(col, "urbanclip.data.workspace (derived)")
        validate(cells, manifest, self.staging)
        _write_cells(cells, self.staging / CELLS)
        atomic_write_json(self.staging / MANIFEST, manifest.to_dict())
        trash = None
        if self.root.exists():
            trash = self.root.parent / f".{self.root.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.root, trash)
        os.replace(self.staging, self.root)
        self._done = True
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        return Workspace(self.root, cells, manifest)


def _safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


# ---------------------------------------------------------------------------------
# the workspace


class Workspace:
    """A loaded workspace: `cells` (GeoDataFrame) + `manifest`, rooted at a folder."""

    def __init__(self, root: Path, cells: gpd.GeoDataFrame, manifest: Manifest):
        self.root = Path(root)
        self.cells = cells
        self.manifest = manifest
        self._index: dict[str, int] | None = None

    # -- loading / saving ---------------------------------------------------------
    @classmethod
    def load(cls, root: Path | str) -> "Workspace":
        root = Path(root).expanduser().resolve()
        mpath = root / MANIFEST
        if not root.is_dir():
            raise UserError(f"workspace folder {root} does not exist; build the demo with `python -m urbanclip demo` or import data with `python -m urbanclip import ...`")
        if not mpath.is_file():
            raise UserError(f"{mpath} is missing: {root} is not an urbanclip workspace")
        try:
            manifest = Manifest.from_dict(json.loads(mpath.read_text("utf-8")), where=str(mpath))
        except json.JSONDecodeError as e:
            raise ValidationError(f"{mpath}: not valid JSON ({e})") from None
        cpath = root / CELLS
        if not cpath.is_file():
            raise UserError(f"{cpath} is missing: the workspace is incomplete; re-import it")
        try:
            cells = gpd.read_parquet(cpath)
        except Exception as e:  # pyarrow raises many kinds
            raise ValidationError(f"{cpath}: cannot be read as GeoParquet ({e})") from None
        validate(cells, manifest, None)
        return cls(root, cells, manifest)

    def save(self) -> None:
        """Validate and atomically rewrite cells.parquet and manifest.json."""
        self.cells = normalise_cells(self.cells, self.manifest.indicators, self.manifest.split_seed)
        sizes = {k: v.cell_size_m for k, v in self.manifest.cities.items()}
        self.manifest.cities = _city_infos(self.cells, sizes)
        validate(self.cells, self.manifest, self.root)
        _write_cells(self.cells, self.root / CELLS)
        atomic_write_json(self.root / MANIFEST, self.manifest.to_dict())
        self._index = None

    def set_column(self, name: str, values: Any, provenance: str) -> None:
        """Add or replace a column (in memory; call `save`) and record where it came from."""
        if name in ("cell_id", "geometry"):
            raise UserError(f"column {name!r} cannot be overwritten")
        self.cells[name] = values
        self.manifest.provenance[name] = provenance

    # -- lookups ------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def cities(self) -> list[str]:
        return sorted(self.manifest.cities)

    @property
    def indicator_names(self) -> list[str]:
        return list(self.manifest.indicators)

    @property
    def cache_dir(self) -> Path:
        d = self.root / CACHE_DIR
        d.mkdir(parents=True, exist_ok=True)
        return d

    def city_cells(self, city: str) -> gpd.GeoDataFrame:
        if city not in self.manifest.cities:
            raise UserError(f"city {city!r} is not in workspace {self.root}; it has {self.cities}")
        return self.cells[self.cells["city"] == city]

    def index_of(self, cell_id: str) -> int:
        if self._index is None:
            self._index = {cid: i for i, cid in enumerate(self.cells["cell_id"])}
        try:
            return self._index[cell_id]
        except KeyError:
            raise UserError(f"cell {cell_id!r} is not in workspace {self.root}") from None

    def cell(self, cell_id: str) -> pd.Series:
        return self.cells.iloc[self.index_of(cell_id)]

    def image_path(self, cell_id: str) -> Path | None:
        rel = self.cell(cell_id)["image"]
        return self.root / rel if isinstance(rel, str) and rel else None

    def load_image(self, cell_id: str, size: int | None = None) -> Image.Image | None:
        """The tile as an RGB PIL image (resized to size x size if given), or None if the cell has none."""
        path = self.image_path(cell_id)
        if path is None:
            return None
        return load_rgb(path, size)

    def sentences(self, cell_id: str, column: str = "text_raw") -> list[str]:
        return split_sentences(self.cell(cell_id)[column])

    def text_column(self) -> str:
        """The description column training should use: refined when present, else raw."""
        return "text_refined" if "text_refined" in self.cells.columns else "text_raw"

    def log_targets(self, indicator: str) -> np.ndarray:
        """Indicator on the model scale (the one log transform); NaN where unknown."""
        if indicator not in self.manifest.indicators:
            raise UserError(f"indicator {indicator!r} is not in workspace {self.root}; it has {self.indicator_names}")
        return to_model_scale(self.cells[indicator].to_numpy(dtype=np.float64))

    def fingerprint(self) -> str:
        """Hash of what a model sees: cell ids, image files (name + size) and texts.

        Caches (embeddings, probe heads) are keyed by it, so they are recomputed
        only when the content changes.
        """
        h = hashlib.sha256()
        text_cols = [c for c in self.cells.columns if c.startswith("text_")]
        for row in self.cells[["cell_id", "image", *text_cols]].itertuples(index=False):
            cid, img, *texts = row
            size = (self.root / img).stat().st_size if isinstance(img, str) and img and (self.root / img).exists() else -1
            h.update(f"{cid}\x00{img}\x00{size}\x00".encode())
            for t in texts:
                h.update(str(t).encode("utf-8", "replace") + b"\x00")
        return h.hexdigest()[:16]

    def summary(self) -> str:
        lines = [f"workspace {self.name!r} at {self.root}" + (" (SYNTHETIC demo data)" if self.manifest.synthetic else "")]
        for c in self.cities:
            sub = self.city_cells(c)
            n_img = int(sub["image"].notna().sum())
            n_txt = int((sub["text_raw"] != "").sum())
            lines.append(f"  {c}: {len(sub)} cells, {n_img} with images, {n_txt} with descriptions")
        for k, spec in self.manifest.indicators.items():
            known = int(self.cells[k].notna().sum())
            lines.append(f"  indicator {k} [{spec.unit}]: {known} known values")
        return "\n".join(lines)


def split_sentences(text: Any) -> list[str]:
    """Sentences of a stored description (one per line)."""
    if not isinstance(text, str) or not text:
        return []
    return [s.strip() for s in text.split(TEXT_SEPARATOR) if s.strip()]


def join_sentences(sentences: Iterable[str]) -> str:
    return TEXT_SEPARATOR.join(s.strip().replace("\n", " ") for s in sentences if s and s.strip())


def load_rgb(path: Path, size: int | None = None) -> Image.Image:
    """Open an image file as RGB with a clear error for unreadable files."""
    try:
        with Image.open(path) as im:
            im.load()
            img = im.convert("RGB")
    except Exception as e:
        raise UserError(f"image {path} cannot be read ({e}); replace or remove the file") from None
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return img
