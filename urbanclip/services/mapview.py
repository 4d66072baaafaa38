"""The Map page's map: a city's grid coloured by a layer over the workspace's own imagery.

Rendering (issue 13): our own Streamlit component (`assets/map/`: Leaflet 1.9.3 and
Leaflet.draw, vendored, plus ~400 lines of `urbanmap.js`). The grid is not a layer of
10^5 polygons but two images warped onto the grid's corner points on one canvas: the
imagery mosaic and a colour image with one pixel per cell. The browser fetches them once
per (city, colour layer) from the app's own server; a click, a "Go to" jump or a search
re-renders the component with a few kilobytes of arguments (the selected cell's outline,
search matches, the active area, a numbered view command), so the grid is never re-sent,
the iframe stays and so do its zoom and pan. The component computes the cell under the
pointer from the same mapping it draws with, so tooltip, click and drawn cell agree, and
it answers a click at once (no double-click wait, no GPU picking pass).

Why not st.pydeck_chart (measured here, headless Chromium on 2 busy cores): deck.gl's click
waits 300 ms for a possible double click before Streamlit hears of it, its picking pass
re-renders every pickable polygon in software WebGL (~1 s per 5,000 stroked cells), and
Streamlit's selection toggles by object index. folium/streamlit-folium re-sent the whole
map on every click and reset the view.

    <workspace cache>/map/          (served by urbanclip.ui through Streamlit's component-folder route)
        grid-<city>-<fp>.json         rows, cols, patch corner points (lat, lon), cell ids row-major
        colour-<city>-<key>.png       one RGBA pixel per cell: the colour layer
        labels-<city>-<key>.json      tooltip text per cell, in the indicator's own unit
        mosaic-<city>-<fp>-<px>.jpg   the basemap: the city's own tiles (+ .json: unreadable tiles)

Every file is written to a unique temporary name in the same folder and renamed into
place, so concurrent sessions building the same file never collide.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from urbanclip import paths
from urbanclip.data.indicators import to_model_scale
from urbanclip.errors import UserError
from urbanclip.services.context import AppContext
from urbanclip.services.profile import format_value

COMPONENT_DIR = paths.assets_dir() / "map"   # index.html, urbanmap.js/css, vendor/leaflet, vendor/leaflet-draw
ESRI_URL = "https://server.arcgisonline.com/ArcGIS/rest/services/World_Imagery/MapServer/tile/{z}/{y}/{x}"
ESRI_ATTR = "Tiles © Esri — Source: Esri, Maxar, Earthstar Geographics, and the GIS User Community"
LAYERS = ("observed", "predicted", "residual", "uncertainty", "text match", "none")
PALETTES = {
    "observed": ["#fff5eb", "#fdae6b", "#e6550d", "#7f2704"],
    "predicted": ["#f7fbff", "#6baed6", "#2171b5", "#08306b"],
    "residual": ["#2166ac", "#f7f7f7", "#b2182b"],
    "uncertainty": ["#f2f0f7", "#9e9ac8", "#54278f"],
    "text match": ["#ffffcc", "#fd8d3c", "#bd0026"],
}
FILL_ALPHA = 140            # cells over the imagery: 55% opaque (the map lays the opaque colour image over at this)
MAP_HEIGHT = 620            # px
CELL_PX_AFTER_JUMP = 48     # a jump lands at a zoom where a cell is this wide: clickable
PATCHES_PER_SIDE = 16       # the grid is warped in at most 16 x 16 patches (two triangles each)
FORMAT_VERSION = 2          # bump when the data files change shape
KEEP_LAYER_FILES = 96       # colour/label files kept per workspace (a text search makes one pair per query)


# ---------------------------------------------------------------------------------
# where the map's files live


def map_dir(ctx: AppContext) -> Path:
    """The folder of the map's data files (served to the browser by urbanclip.ui)."""
    d = ctx.workspace.cache_dir / "map"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` under a unique temporary name in `path`'s folder, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------
# per-city arrays, computed once per context


@dataclass
class CityGrid:
    """What the map needs of a city's cells, in `city_cells` order."""

    rows: np.ndarray            # indices into workspace.cells
    cell_ids: list[str]
    rings: np.ndarray           # float64 [N, 5, 2] lon/lat, closed
    centres: np.ndarray         # float64 [N, 2] lon/lat
    grid_rc: np.ndarray         # int [N, 2] (row, col)
    n_rows: int
    n_cols: int
    bounds: tuple[float, float, float, float]
    cell_deg: float             # median cell width in degrees of longitude


def city_grid(ctx: AppContext, city: str) -> CityGrid:
    """The city's cells as arrays (memoised on the context: a 100k-cell city takes ~1 s once)."""
    memo = ctx.memo.setdefault("city_grid", {})
    if city in memo:
        return memo[city]
    import shapely

    ws = ctx.workspace
    info = ws.manifest.cities[city]
    rows = np.flatnonzero((ws.cells["city"] == city).to_numpy())
    sub = ws.cells.iloc[rows]
    rings = np.zeros((len(sub), 5, 2))
    for j, g in enumerate(sub.geometry):
        xy = shapely.get_coordinates(g.exterior if hasattr(g, "exterior") else g.convex_hull.exterior)
        if len(xy) != 5:  # not a quadrilateral: keep its bounding box (cells of our grids are quads)
            x0, y0, x1, y1 = g.bounds
            xy = np.array([[x0, y0], [x0, y1], [x1, y1], [x1, y0], [x0, y0]])
        rings[j] = xy
    centres = np.column_stack([sub["lon"].to_numpy(float), sub["lat"].to_numpy(float)])
    rc = np.column_stack([sub["row"].to_numpy(int), sub["col"].to_numpy(int)])
    b = tuple(float(v) for v in info.bounds)
    widths = rings[:, :4, 0].max(axis=1) - rings[:, :4, 0].min(axis=1)
    cell_deg = float(np.median(widths)) if len(widths) else 0.01
    n_rows = max(info.n_rows, int(rc[:, 0].max()) + 1 if len(rc) else 1)
    n_cols = max(info.n_cols, int(rc[:, 1].max()) + 1 if len(rc) else 1)
    grid = CityGrid(rows=rows, cell_ids=[str(c) for c in sub["cell_id"]], rings=rings, centres=centres,
                    grid_rc=rc, n_rows=n_rows, n_cols=n_cols, bounds=b, cell_deg=cell_deg)
    memo[city] = grid
    return grid


def city_position(ctx: AppContext, city: str, cell_id: str) -> int | None:
    """The cell's position in the city's arrays, or None when it is not a cell of `city`."""
    idx = ctx.memo.setdefault("city_index", {}).get(city)
    if idx is None:
        idx = ctx.memo["city_index"][city] = {c: j for j, c in enumerate(city_grid(ctx, city).cell_ids)}
    return idx.get(cell_id)


def cell_at_grid(ctx: AppContext, city: str, row: int, col: int) -> str | None:
    """The id of the city's cell at (row, col), or None."""
    rc = ctx.memo.setdefault("city_rc", {}).get(city)
    if rc is None:
        g = city_grid(ctx, city)
        rc = ctx.memo["city_rc"][city] = {(int(r), int(c)): cid for (r, c), cid in zip(g.grid_rc, g.cell_ids)}
    return rc.get((int(row), int(col)))


# ---------------------------------------------------------------------------------
# layer values, colours, legends


@dataclass
class LayerData:
    """One colour layer over a city's cells (aligned with `city_cells`).

    `values` are on the colour scale: log1p of the indicator for observed/predicted (they span
    orders of magnitude), log1p differences for residual and uncertainty, the score for text
    match. What a reader sees (tooltips `labels`, legend `ticks`) is in the indicator's own unit.
    """

    name: str
    values: np.ndarray                      # NaN = no value (drawn transparent)
    title: str                              # legend title, with the unit
    vmin: float
    vmax: float
    colors: list[str]
    unit: str = ""
    labels: list[str] = field(default_factory=list)      # tooltip text per cell, own units
    ticks: list[tuple[float, str]] = field(default_factory=list)  # (position 0..1, label) on the legend

    def label(self, i: int) -> str:
        return self.labels[i] if self.labels else "—"

    def rgba(self) -> np.ndarray:
        """uint8 [N, 4] fill colours (alpha 0 where there is no value)."""
        return colours(self.values, self.vmin, self.vmax, self.colors)

    def key(self) -> str:
        """Changes whenever anything drawn changes (values, scale, palette, labels)."""
        h = hashlib.sha1()
        h.update(np.ascontiguousarray(self.values, dtype=np.float64).tobytes())
        h.update(json.dumps([self.name, self.vmin, self.vmax, self.colors, FORMAT_VERSION]).encode())
        h.update("\x00".join(self.labels).encode())
        return h.hexdigest()[:12]


def colours(values: np.ndarray, vmin: float, vmax: float, palette: list[str], alpha: int = FILL_ALPHA) -> np.ndarray:
    """Piecewise-linear colour ramp over `palette` (hex stops), vectorised."""
    stops = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in palette], dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    t = np.clip((v - vmin) / (vmax - vmin if vmax > vmin else 1.0), 0, 1) * (len(stops) - 1)
    t = np.nan_to_num(t)
    lo = np.minimum(np.floor(t).astype(int), len(stops) - 2)
    f = (t - lo)[:, None]
    rgb = stops[lo] * (1 - f) + stops[lo + 1] * f
    out = np.zeros((len(v), 4), dtype=np.uint8)
    out[:, :3] = np.round(rgb).astype(np.uint8)
    out[:, 3] = np.where(np.isfinite(v), alpha, 0)
    return out


def available_layers(ctx: AppContext) -> list[str]:
    """The layers worth offering: indicator layers only with indicators, prediction layers only with
    probes, 'uncertainty' only with intervals."""
    has_ind = bool(ctx.workspace.indicator_names)
    needs = {"observed": has_ind, "predicted": has_ind and ctx.has_predictions,
             "residual": has_ind and ctx.has_predictions, "uncertainty": has_ind and ctx.has_intervals}
    return [name for name in LAYERS if needs.get(name, True)]


def default_indicator(ws) -> str | None:
    """The indicator the map starts with: population when present, else the first, else None (none at all)."""
    names = ws.indicator_names
    return "population" if "population" in names else (names[0] if names else None)


def layer_data(ctx: AppContext, city: str, layer: str, indicator: str | None = None,
               text_scores: np.ndarray | None = None) -> LayerData | None:
    """Colour values, labels and legend for `layer` over `city`; None when the layer has nothing to show.

    Residual = log1p(predicted) - log1p(observed), read as a ratio predicted ÷ observed;
    uncertainty = log1p(upper) - log1p(lower), the width of the prediction interval, read as
    upper ÷ lower.
    """
    ws = ctx.workspace
    rows = city_grid(ctx, city).rows
    if layer == "none":
        return None
    if layer == "text match":
        if text_scores is None:
            return None
        vals = np.asarray(text_scores, dtype=np.float64)[rows]
        how = "cosine, semantic" if ctx.has_model else "keyword TF-IDF"
        labels = [f"match {v:.3f}" if math.isfinite(v) else "—" for v in vals]
        return _finish(layer, vals, f"Text match score ({how})", labels, "", _linear_ticks)
    if indicator is None:
        return None  # a workspace without indicators: the grid alone
    if indicator not in ws.manifest.indicators:
        raise UserError(f"indicator {indicator!r} is not in this workspace; it has {ws.indicator_names}")
    spec = ws.manifest.indicators[indicator]
    raw_obs = ws.cells[indicator].to_numpy(dtype=np.float64)[rows]
    obs = to_model_scale(raw_obs)
    if layer == "observed":
        labels = [format_value(v, spec.unit) for v in raw_obs]
        return _finish(layer, obs, f"Observed {spec.label} ({_unit_words(spec.unit)}), log colour scale",
                       labels, spec.unit, _log1p_ticks)
    if layer in ("predicted", "residual"):
        pred = ctx.predictions.get(indicator)
        if pred is None:
            return None
        raw_pred = np.clip(pred[rows], 0, None)
        p = to_model_scale(raw_pred)
        if layer == "predicted":
            labels = [format_value(v, spec.unit) for v in raw_pred]
            return _finish(layer, p, f"Predicted {spec.label} ({_unit_words(spec.unit)}), log colour scale",
                           labels, spec.unit, _log1p_ticks)
        res = p - obs
        labels = [f"predicted ≈ {_ratio(math.exp(r))} observed ({format_value(a, spec.unit, False)} vs "
                  f"{format_value(b, spec.unit)})" if math.isfinite(r) else "—"
                  for r, a, b in zip(res, raw_pred, raw_obs)]
        return _finish(layer, res, f"Residual of {spec.label}: predicted ÷ observed", labels, spec.unit,
                       _ratio_ticks, symmetric=True)
    if layer == "uncertainty":
        if indicator not in ctx.intervals:
            return None
        lo_raw, hi_raw = (np.clip(a[rows], 0, None) for a in ctx.intervals[indicator])
        width = to_model_scale(hi_raw) - to_model_scale(lo_raw)
        level = f"{ctx.interval_level:.0%} " if ctx.interval_level else ""
        labels = [f"{level}interval {format_value(a, spec.unit, False)}–{format_value(b, spec.unit)}"
                  if math.isfinite(w) else "—" for w, a, b in zip(width, lo_raw, hi_raw)]
        return _finish(layer, width, f"{level}interval width of {spec.label}: upper ÷ lower", labels, spec.unit,
                       _ratio_ticks)
    raise UserError(f"unknown layer {layer!r}; choose one of {LAYERS}")


def same_scale(*layers: LayerData | None) -> list[LayerData | None]:
    """The layers recoloured on one scale (the union of their ranges), so two cities side by side
    compare by colour; ticks follow the shared range."""
    real = [x for x in layers if x is not None]
    if len(real) < 2:
        return list(layers)
    lo, hi = min(x.vmin for x in real), max(x.vmax for x in real)
    out = []
    for x in layers:
        if x is None:
            out.append(None)
            continue
        ticks = {"residual": _ratio_ticks, "uncertainty": _ratio_ticks, "text match": _linear_ticks}.get(x.name, _log1p_ticks)
        out.append(LayerData(x.name, x.values, x.title, lo, hi, x.colors, x.unit, x.labels, ticks(lo, hi, x.unit)))
    return out


def _unit_words(unit: str) -> str:
    return unit or "no unit"


def _ratio(x: float) -> str:
    """A ratio as a reader says it: '2.1 ×', '½ ×' style numbers with two significant digits."""
    return f"{x:.2g} ×" if x < 10 else f"{x:,.0f} ×"


def _finish(name: str, vals: np.ndarray, title: str, labels: list[str], unit: str,
            ticks: Callable[[float, float, str], list[tuple[float, str]]], symmetric: bool = False) -> LayerData | None:
    finite = vals[np.isfinite(vals)]
    if finite.size == 0:
        return None
    lo, hi = float(np.percentile(finite, 2)), float(np.percentile(finite, 98))
    if symmetric:
        m = max(abs(lo), abs(hi), 1e-6)
        lo, hi = -m, m
    if hi <= lo:
        hi = lo + 1e-6
    return LayerData(name, vals, title, lo, hi, PALETTES[name], unit=unit, labels=labels, ticks=ticks(lo, hi, unit))


def _nice(x: float) -> float:
    """Round to one significant digit from {1, 2, 5} x 10^k."""
    if x <= 0:
        return 0.0
    e = 10 ** math.floor(math.log10(x))
    return min((1, 2, 5, 10), key=lambda m: abs(math.log(x / (m * e)))) * e


def _log1p_ticks(lo: float, hi: float, unit: str) -> list[tuple[float, str]]:
    """Legend ticks at round raw values (0, 1, 10, 100, ... or 2, 5 steps) on a log1p colour scale."""
    raw = {_nice(math.expm1(t)) for t in np.linspace(lo, hi, 5)} | ({0.0} if lo <= 1e-9 else set())
    out: list[tuple[float, str]] = []
    for v in sorted(raw):
        pos = (math.log1p(v) - lo) / (hi - lo)
        if -0.01 <= pos <= 1.01 and all(abs(pos - p) > 0.12 for p, _ in out):
            out.append((min(max(pos, 0.0), 1.0), format_value(v, unit, with_unit=False)))
    return out


def _ratio_ticks(lo: float, hi: float, unit: str) -> list[tuple[float, str]]:
    """Ticks at ratios ¼ ×, ½ ×, 1 ×, 2 ×, 4 ×, ... of a log-difference scale."""
    out = []
    for k in range(-12, 13):
        r = 2.0 ** k
        pos = (math.log(r) - lo) / (hi - lo)
        if 0 <= pos <= 1 and all(abs(pos - p) > 0.12 for p, _ in out):
            out.append((pos, {0.25: "¼ ×", 0.5: "½ ×"}.get(r, f"1/{int(1 / r)} ×" if r < 1 else f"{r:g} ×")))
    return out


def _linear_ticks(lo: float, hi: float, unit: str) -> list[tuple[float, str]]:
    return [(p, f"{lo + p * (hi - lo):.2f}") for p in (0.0, 0.5, 1.0)]


def legend_html(layer: LayerData) -> str:
    """A gradient legend with the title and tick labels in the indicator's own unit, for st.markdown."""
    grad = ", ".join(layer.colors)
    # title and ticks carry the workspace's own indicator names and units: escaped, never markup
    ticks = "".join(f"<span style='position:absolute;left:{p * 100:.1f}%;transform:translateX(-{p * 100:.0f}%)'>"
                    f"{html.escape(label)}</span>" for p, label in layer.ticks)
    return (f"<div style='font-size:0.85rem'><b>{html.escape(layer.title)}</b>"
            f"<div style='height:12px;border-radius:3px;background:linear-gradient(to right, {grad})'></div>"
            f"<div style='position:relative;height:1.3em'>{ticks}</div></div>")


# ---------------------------------------------------------------------------------
# basemap from the workspace's own tiles


@dataclass
class Mosaic:
    path: Path                       # JPEG, row 0 north
    unreadable: list[str]            # cells whose tile file could not be read (drawn as missing)


def city_mosaic(ctx: AppContext, city: str, max_px: int = 3072) -> Mosaic | None:
    """A JPEG mosaic of the city's tiles, cached in the map folder; None when the city has no imagery.

    A tile that cannot be read is drawn as missing (dark grey) and listed in `unreadable`.
    """
    memo = ctx.memo.setdefault("mosaic", {})
    hit = memo.get((city, max_px))
    if hit is not None and (hit[0] is None or hit[0].path.is_file()):
        return hit[0]
    ws = ctx.workspace
    cells = ws.city_cells(city)
    if cells["image"].isna().all():
        memo[(city, max_px)] = (None,)
        return None
    info = ws.manifest.cities[city]
    tile = max(8, min(256, _source_px(ws, cells), max_px // max(info.n_rows, info.n_cols)))
    out = map_dir(ctx) / f"mosaic-{_safe(city)}-{ctx.fingerprint}-{tile}.jpg"
    notes = out.with_suffix(".json")
    if out.is_file() and notes.is_file():
        m = Mosaic(out, json.loads(notes.read_text("utf-8")).get("unreadable", []))
        memo[(city, max_px)] = (m,)
        return m
    from PIL import Image

    canvas = Image.new("RGB", (info.n_cols * tile, info.n_rows * tile), (40, 40, 40))
    unreadable = []
    for cid, r, c in zip(cells["cell_id"], cells["row"], cells["col"]):
        try:
            img = ws.load_image(cid, size=tile)
        except UserError:
            unreadable.append(str(cid))
            continue
        if img is not None:
            canvas.paste(img, (int(c) * tile, int(r) * tile))
    atomic_write_bytes(notes, json.dumps({"unreadable": unreadable}).encode())
    import io

    buf = io.BytesIO()
    canvas.save(buf, format="JPEG", quality=82)
    atomic_write_bytes(out, buf.getvalue())
    m = Mosaic(out, unreadable)
    memo[(city, max_px)] = (m,)
    return m


def _source_px(ws, cells) -> int:
    """The width of the city's tile images (the first readable one): the mosaic never upscales them."""
    for cid in cells["cell_id"][cells["image"].notna().to_numpy()][:5]:
        path = ws.image_path(cid)
        try:
            from PIL import Image

            with Image.open(path) as im:
                return int(im.size[0])
        except Exception:  # unreadable: try the next one
            continue
    return 256


def mosaic_note(m: Mosaic | None, city: str) -> str | None:
    """What the page says about tiles that could not be read (None when all were fine)."""
    if m is None or not m.unreadable:
        return None
    some = ", ".join(m.unreadable[:3]) + (" ..." if len(m.unreadable) > 3 else "")
    return (f"{len(m.unreadable)} tile image(s) of {city} cannot be read and are drawn as missing ({some}); "
            "replace or re-import those files.")



# ---------------------------------------------------------------------------------
# the files the component draws


def patch_size(n_rows: int, n_cols: int) -> int:
    """Cells per patch side, so that the grid has at most PATCHES_PER_SIDE patches a side."""
    return max(1, math.ceil(max(n_rows, n_cols) / PATCHES_PER_SIDE))


def grid_points(ctx: AppContext, city: str) -> tuple[int, np.ndarray]:
    """(patch, points): lon/lat of the grid lines' crossings at every `patch`-th row and column
    ([nr + 1, nc + 1, 2]), the corners the component warps its images onto.

    Each point is the shared corner of the cells meeting there (cells are squares in a metric
    CRS); where no cell has that corner (irregular grids) a quadratic fit of (col, row) ->
    (lon, lat) over every cell corner fills it in.
    """
    g = city_grid(ctx, city)
    p = patch_size(g.n_rows, g.n_cols)
    rb = np.minimum(np.arange(math.ceil(g.n_rows / p) + 1) * p, g.n_rows)
    cb = np.minimum(np.arange(math.ceil(g.n_cols / p) + 1) * p, g.n_cols)
    corners = _cell_corners(g)              # [N, 4, 2]: NW, NE, SW, SE
    r, c = g.grid_rc[:, 0], g.grid_rc[:, 1]
    at = {}                                 # (row line, col line) -> lon/lat, only where patches meet
    for k, (dr, dc) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        rr, cc = r + dr, c + dc
        keep = np.flatnonzero(((rr % p == 0) | (rr == g.n_rows)) & ((cc % p == 0) | (cc == g.n_cols)))
        for q in keep:
            at.setdefault((int(rr[q]), int(cc[q])), corners[q, k])
    pts = np.full((len(rb), len(cb), 2), np.nan)
    for i, rr in enumerate(rb):
        for j, cc in enumerate(cb):
            if (int(rr), int(cc)) in at:
                pts[i, j] = at[(int(rr), int(cc))]
    if np.isnan(pts).any():
        fit = _quadratic_fit(g, corners)
        miss = np.isnan(pts[..., 0])
        ii, jj = np.nonzero(miss)
        pts[ii, jj] = fit(cb[jj].astype(float), rb[ii].astype(float))
    return p, pts


def _cell_corners(g: CityGrid) -> np.ndarray:
    """Each cell's NW, NE, SW, SE vertex (lon, lat), told apart in a locally metric frame."""
    v = g.rings[:, :4]
    x = v[..., 0] * math.cos(math.radians(float(np.mean(g.bounds[1::2]))))
    y = v[..., 1]
    pick = [np.argmin(x - y, axis=1), np.argmax(x + y, axis=1), np.argmin(x + y, axis=1), np.argmax(x - y, axis=1)]
    n = np.arange(len(v))
    return np.stack([v[n, k] for k in pick], axis=1)


def _quadratic_fit(g: CityGrid, corners: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Least-squares (col, row) -> (lon, lat), quadratic in both, from every cell corner."""
    r, c = g.grid_rc[:, 0].astype(float), g.grid_rc[:, 1].astype(float)
    cols = np.concatenate([c, c + 1, c, c + 1])
    rows = np.concatenate([r, r, r + 1, r + 1])
    xy = np.concatenate([corners[:, 0], corners[:, 1], corners[:, 2], corners[:, 3]])

    def design(cc, rr):
        return np.column_stack([np.ones_like(cc), cc, rr, cc * rr, cc ** 2, rr ** 2])

    coef, *_ = np.linalg.lstsq(design(cols, rows), xy, rcond=None)
    return lambda cc, rr: design(np.asarray(cc, float), np.asarray(rr, float)) @ coef


def grid_file(ctx: AppContext, city: str) -> str:
    """grid-<city>-<fp>.json (a name in map_dir): rows, cols, patch corner points, cell ids row-major."""
    name = f"grid-{_safe(city)}-{ctx.fingerprint}-{FORMAT_VERSION}.json"
    path = map_dir(ctx) / name
    if not path.is_file():
        g = city_grid(ctx, city)
        p, pts = grid_points(ctx, city)
        ids: list[str | None] = [None] * (g.n_rows * g.n_cols)
        for (r, c), cid in zip(g.grid_rc, g.cell_ids):
            ids[int(r) * g.n_cols + int(c)] = cid
        doc = {"rows": g.n_rows, "cols": g.n_cols, "patch": p,
               "points": [[round(float(la), 7), round(float(lo), 7)] for lo, la in pts.reshape(-1, 2)],
               "ids": ids}
        atomic_write_bytes(path, json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode())
    return name


def layer_files(ctx: AppContext, city: str, layer: LayerData | None) -> tuple[str | None, str | None]:
    """(colour PNG, labels JSON) names in map_dir for this layer: one RGBA pixel and one tooltip per cell."""
    if layer is None:
        return None, None
    from PIL import Image

    g = city_grid(ctx, city)
    key = hashlib.sha1(f"{ctx.fingerprint}:{layer.key()}:{FORMAT_VERSION}".encode()).hexdigest()[:12]
    colour, labels = f"colour-{_safe(city)}-{key}.png", f"labels-{_safe(city)}-{key}.json"
    d = map_dir(ctx)
    if not (d / colour).is_file() or not (d / labels).is_file():
        img = np.zeros((g.n_rows, g.n_cols, 4), dtype=np.uint8)
        img[g.grid_rc[:, 0], g.grid_rc[:, 1]] = colours(layer.values, layer.vmin, layer.vmax, layer.colors, alpha=255)
        text = [""] * (g.n_rows * g.n_cols)
        for (r, c), t in zip(g.grid_rc, layer.labels):
            text[int(r) * g.n_cols + int(c)] = t
        atomic_write_bytes(d / labels, json.dumps(text, separators=(",", ":"), ensure_ascii=False).encode())
        buf = io.BytesIO()
        Image.fromarray(img, "RGBA").save(buf, format="PNG")
        atomic_write_bytes(d / colour, buf.getvalue())
        _prune(d)
    return colour, labels


def _prune(d: Path, keep: int = KEEP_LAYER_FILES, min_age_s: float = 600) -> None:
    """Remove the oldest colour/label files beyond `keep` pairs (never one younger than `min_age_s`)."""
    files = sorted(d.glob("colour-*.png"), key=lambda p: p.stat().st_mtime, reverse=True)
    now = time.time()
    for f in files[keep:]:
        try:
            if now - f.stat().st_mtime > min_age_s:
                f.unlink(missing_ok=True)
                (d / ("labels-" + f.name[len("colour-"):-len(".png")] + ".json")).unlink(missing_ok=True)
        except OSError:
            continue


# ---------------------------------------------------------------------------------
# the view: the app sends a numbered command only when it means to move the map


def city_view(ctx: AppContext, city: str, seq: int = 0) -> dict:
    """Fit the whole city."""
    w, s, e, n = city_grid(ctx, city).bounds
    return {"city": city, "seq": seq, "bounds": [[s, w], [n, e]]}


def jump_zoom(cell_deg: float) -> float:
    """The Leaflet zoom (256 px tiles) at which a cell is CELL_PX_AFTER_JUMP px wide."""
    return round(min(19.0, math.log2(CELL_PX_AFTER_JUMP * 360.0 / (256.0 * max(cell_deg, 1e-9)))), 2)


def jump_view(ctx: AppContext, cell_id: str, seq: int) -> dict:
    """Centre on a cell at a zoom where a cell is clickable."""
    c = ctx.workspace.cell(cell_id)
    g = city_grid(ctx, str(c["city"]))
    return {"city": str(c["city"]), "seq": seq, "center": [float(c["lat"]), float(c["lon"])],
            "zoom": jump_zoom(g.cell_deg)}


# ---------------------------------------------------------------------------------
# the component's arguments and events


def _ring_latlng(ctx: AppContext, city: str, cell_id: str) -> list[list[float]] | None:
    j = city_position(ctx, city, cell_id)
    if j is None:
        return None
    return [[round(float(la), 7), round(float(lo), 7)] for lo, la in city_grid(ctx, city).rings[j][:4]]


def map_args(ctx: AppContext, city: str, layer: LayerData | None, base: str, view: dict,
             selected: str | None = None, matches: list[str] | None = None, area_ids: list[str] | None = None,
             area_polygon: dict | None = None, online: bool = False, interactive: bool = True, draw: bool = True,
             height: int = MAP_HEIGHT) -> dict[str, Any]:
    """Everything the map component needs for `city`: file names (fetched once), outlines and the view.

    `base` is the URL prefix the browser fetches map_dir's files from. A few kB, whatever the
    city's size: the grid travels in the files.
    """
    mosaic = city_mosaic(ctx, city)
    colour, labels = layer_files(ctx, city, layer)
    area = None
    if area_ids:
        geom = ctx.workspace.cells.iloc[[ctx.workspace.index_of(c) for c in area_ids]].geometry.union_all()
        area = geom.__geo_interface__
    sel = _ring_latlng(ctx, city, selected) if selected else None
    return {
        "base": base, "city": city, "grid": grid_file(ctx, city),
        "mosaic": mosaic.path.name if mosaic is not None else None, "colour": colour, "labels": labels,
        "selected": {"id": selected, "ring": sel} if sel else None,
        "matches": [r for r in (_ring_latlng(ctx, city, c) for c in (matches or [])) if r],
        "area": _plain(area), "drawn": _plain(area_polygon),
        "view": {k: v for k, v in view.items() if k != "city"},
        "opacity": round(FILL_ALPHA / 255, 3),
        "online": bool(online), "online_url": ESRI_URL, "online_attribution": ESRI_ATTR,
        "interactive": interactive, "draw": draw, "height": height,
    }


def _plain(geojson: Any) -> Any:
    """GeoJSON with tuples turned into lists (the component's arguments are JSON)."""
    return None if geojson is None else json.loads(json.dumps(geojson))


@dataclass
class MapEvent:
    """What the map component reported: a clicked cell or a drawn polygon, numbered."""

    n: int
    cell_id: str | None = None
    polygon: dict | None = None


def map_event(ctx: AppContext, city: str, value: Any) -> MapEvent | None:
    """Read the component's value; a click is resolved to the city's cell at (row, col)."""
    if not isinstance(value, dict) or not isinstance(value.get("n"), int):
        return None
    if value.get("kind") == "click":
        try:
            cid = cell_at_grid(ctx, city, int(value["row"]), int(value["col"]))
        except (KeyError, TypeError, ValueError):
            return None
        return MapEvent(value["n"], cell_id=cid) if cid is not None else None
    if value.get("kind") == "draw":
        geom = value.get("geometry")
        if isinstance(geom, dict) and geom.get("type") in ("Polygon", "MultiPolygon"):
            return MapEvent(value["n"], polygon=geom)
    return None
