"""The Map page's folium map: a city's grid coloured by a layer over its own imagery.

Choice: folium + streamlit-folium (not pydeck) because clicks on a GeoJSON cell come
back to Python (`last_active_drawing`) and an image overlay of local tiles is
native. Offline by construction: Leaflet JS/CSS are the vendored copies in
`assets/vendor/leaflet/` passed as `data:` URIs (folium would link to CDNs), and
the basemap is a mosaic of the workspace's own tiles (cached JPEG in the workspace
cache) embedded as an ImageOverlay. Esri World Imagery is an opt-in online layer.

The mosaic is placed by the city's lon/lat bounds; cells are square in UTM, so
the overlay is exact at the grid's scale only up to the small UTM/lon-lat skew.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import folium
import numpy as np
from branca.colormap import LinearColormap
from PIL import Image

from urbanclip import paths
from urbanclip.errors import UserError
from urbanclip.data.indicators import to_model_scale
from urbanclip.services.context import AppContext
from urbanclip.services.profile import format_value

LEAFLET_DIR = paths.assets_dir() / "vendor" / "leaflet"
LEAFLET_DRAW_DIR = paths.assets_dir() / "vendor" / "leaflet-draw"  # Leaflet.draw 1.0.4, MIT (assets/vendor/NOTICE.md)
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


@lru_cache(maxsize=8)
def _data_uri(path: Path, mime: str) -> str:
    if not path.is_file():
        raise UserError(f"{path} is missing: the offline Leaflet copy is part of the app; restore assets/vendor/leaflet/")
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def offline_assets() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(default_js, default_css) for folium: only Leaflet, served inline."""
    return ([("leaflet", _data_uri(LEAFLET_DIR / "leaflet.js", "text/javascript"))],
            [("leaflet_css", _data_uri(LEAFLET_DIR / "leaflet.css", "text/css"))])


# ---------------------------------------------------------------------------------
# layer values


@dataclass
class LayerData:
    """Values of one layer for a city's cells (aligned with `city_cells`), with its legend."""

    name: str
    values: np.ndarray          # NaN = no value (drawn transparent)
    title: str                  # legend title with unit
    vmin: float
    vmax: float
    colors: list[str]
    unit: str = ""              # indicator unit; values of observed/predicted layers are log1p(unit)

    def colormap(self) -> LinearColormap:
        return LinearColormap(self.colors, vmin=self.vmin, vmax=self.vmax)

    def label(self, v: float) -> str:
        """What the tooltip says for one cell: back on the indicator's own scale, with unit."""
        if not math.isfinite(v):
            return "—"
        if self.name in ("observed", "predicted"):
            return format_value(math.expm1(v), self.unit)
        if self.name == "residual":
            return f"{v:+.2f} on the log1p scale (predicted ≈ {math.exp(v):.2f} x observed)"
        if self.name == "uncertainty":
            return f"upper ≈ {math.exp(v):.1f} x lower ({v:.2f} wide on the log1p scale)"
        return f"{v:.3f}"


def available_layers(ctx: AppContext) -> list[str]:
    """The layers worth offering: prediction layers only with probes, 'uncertainty' only with intervals."""
    needs = {"predicted": ctx.has_predictions, "residual": ctx.has_predictions, "uncertainty": ctx.has_intervals}
    return [name for name in LAYERS if needs.get(name, True)]


def layer_data(ctx: AppContext, city: str, layer: str, indicator: str | None = None,
               text_scores: np.ndarray | None = None) -> LayerData | None:
    """Colour values for `layer` over `city`; None when the layer has nothing to show.

    Indicators are coloured on the log1p scale (they span orders of magnitude);
    the legend says so. Residual = log1p(predicted) - log1p(observed); uncertainty =
    log1p(upper) - log1p(lower), the width of the prediction interval (a ratio on the raw scale).
    """
    ws = ctx.workspace
    mask = (ws.cells["city"] == city).to_numpy()
    if layer == "none":
        return None
    if layer == "text match":
        if text_scores is None:
            return None
        vals = np.asarray(text_scores, dtype=np.float64)[mask]
        title = "text match score (cosine)" if ctx.has_model else "text match score (keyword TF-IDF)"
    else:
        if indicator not in ws.manifest.indicators:
            raise UserError(f"indicator {indicator!r} is not in this workspace; it has {ws.indicator_names}")
        spec = ws.manifest.indicators[indicator]
        obs = to_model_scale(ws.cells[indicator].to_numpy(dtype=np.float64))[mask]
        if layer == "observed":
            vals, title = obs, f"observed {spec.label}, log1p({spec.unit})"
        elif layer in ("predicted", "residual"):
            pred = ctx.predictions.get(indicator)
            if pred is None:
                return None
            p = to_model_scale(np.clip(pred[mask], 0, None))
            vals, title = (p, f"predicted {spec.label}, log1p({spec.unit})") if layer == "predicted" else \
                (p - obs, f"residual {spec.label}: predicted − observed, log1p({spec.unit})")
        elif layer == "uncertainty":
            if indicator not in ctx.intervals:
                return None
            lo, hi = (to_model_scale(np.clip(a[mask], 0, None)) for a in ctx.intervals[indicator])
            level = f"{ctx.interval_level:.0%} " if ctx.interval_level else ""
            vals, title = hi - lo, f"{level}interval width of {spec.label}, log1p({spec.unit})"
        else:
            raise UserError(f"unknown layer {layer!r}; choose one of {LAYERS}")
    finite = vals[np.isfinite(vals)]
    if finite.size == 0:
        return None
    lo, hi = float(np.nanpercentile(finite, 2)), float(np.nanpercentile(finite, 98))
    if layer == "residual":
        m = max(abs(lo), abs(hi), 1e-6)
        lo, hi = -m, m
    if hi <= lo:
        hi = lo + 1e-6
    unit = ws.manifest.indicators[indicator].unit if indicator in ws.manifest.indicators else ""
    return LayerData(layer, vals, title, lo, hi, PALETTES[layer], unit=unit)


def legend_html(layer: LayerData) -> str:
    """A small gradient legend with the title (unit) and range, for st.markdown."""
    grad = ", ".join(layer.colors)
    return (f"<div style='font-size:0.85rem'><b>{layer.title}</b>"
            f"<div style='height:12px;border-radius:3px;background:linear-gradient(to right, {grad})'></div>"
            f"<div style='display:flex;justify-content:space-between'><span>{layer.vmin:.2f}</span>"
            f"<span>{layer.vmax:.2f}</span></div></div>")


# ---------------------------------------------------------------------------------
# basemap from the workspace's own tiles


def city_mosaic(ctx: AppContext, city: str, max_px: int = 1536) -> Path | None:
    """A JPEG mosaic of the city's tiles (row 0 north), cached in the workspace cache.

    None when the city has no imagery at all.
    """
    ws = ctx.workspace
    cells = ws.city_cells(city)
    if cells["image"].isna().all():
        return None
    info = ws.manifest.cities[city]
    tile = max(8, min(256, max_px // max(info.n_rows, info.n_cols)))
    out = ws.cache_dir / "mosaic" / f"{_safe(city)}-{ctx.fingerprint}-{tile}.jpg"
    if out.is_file():
        return out
    canvas = Image.new("RGB", (info.n_cols * tile, info.n_rows * tile), (40, 40, 40))
    for cid, r, c in zip(cells["cell_id"], cells["row"], cells["col"]):
        img = ws.load_image(cid, size=tile)
        if img is not None:
            canvas.paste(img, (int(c) * tile, int(r) * tile))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.jpg")
    canvas.save(tmp, format="JPEG", quality=82)
    tmp.replace(out)
    return out


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


# ---------------------------------------------------------------------------------
# the map


def city_geojson(ctx: AppContext, city: str, layer: LayerData | None) -> dict:
    """FeatureCollection of the city's cells with cell_id, value and fill colour."""
    ws = ctx.workspace
    cells = ws.city_cells(city)
    cmap = layer.colormap() if layer is not None else None
    feats = []
    for j, (cid, geom) in enumerate(zip(cells["cell_id"], cells.geometry)):
        v = float(layer.values[j]) if layer is not None else math.nan
        color = cmap(min(max(v, layer.vmin), layer.vmax)) if (cmap is not None and math.isfinite(v)) else None
        feats.append({"type": "Feature", "geometry": geom.__geo_interface__,
                      "properties": {"cell_id": str(cid), "value": None if not math.isfinite(v) else round(v, 4),
                                     "label": layer.label(v) if layer is not None else "", "fill": color}})
    return {"type": "FeatureCollection", "features": feats}


def build_map(ctx: AppContext, city: str, layer: LayerData | None, selected: str | None = None,
              highlight: list[str] | None = None, online_imagery: bool = False, opacity: float = 0.55) -> folium.Map:
    """The folium map for `city`: mosaic basemap, coloured grid, selected cell outlined."""
    ws = ctx.workspace
    b = ws.manifest.cities[city].bounds
    m = folium.Map(location=[(b[1] + b[3]) / 2, (b[0] + b[2]) / 2], tiles=None, control_scale=True,
                   prefer_canvas=False, zoom_snap=0.25)
    m.default_js, m.default_css = offline_assets()
    m.fit_bounds([[b[1], b[0]], [b[3], b[2]]])
    if online_imagery:
        folium.TileLayer(ESRI_URL, attr=ESRI_ATTR, name="Esri World Imagery (online)", max_zoom=19).add_to(m)
    mosaic = city_mosaic(ctx, city)
    if mosaic is not None:
        folium.raster_layers.ImageOverlay(str(mosaic), bounds=[[b[1], b[0]], [b[3], b[2]]],
                                          name="Workspace imagery", opacity=1.0).add_to(m)

    def style(feature):
        fill = feature["properties"]["fill"]
        return {"color": "#ffffff", "weight": 0.5, "opacity": 0.6,
                "fillColor": fill or "#000000", "fillOpacity": opacity if fill else 0.0}

    folium.GeoJson(city_geojson(ctx, city, layer), name="Grid", style_function=style,
                   highlight_function=lambda f: {"weight": 2, "color": "#ffff00"},
                   tooltip=folium.GeoJsonTooltip(fields=["cell_id", "label"],
                                                 aliases=["cell", layer.name if layer is not None else ""]),
                   ).add_to(m)
    for cid in highlight or []:
        if cid in set(ws.city_cells(city)["cell_id"]):
            folium.GeoJson(ws.cell(cid).geometry.__geo_interface__, interactive=False,
                           style_function=lambda f: {"color": "#00e5ff", "weight": 2, "fillOpacity": 0.0}).add_to(m)
    if selected is not None and ws.cell(selected)["city"] == city:
        folium.GeoJson(ws.cell(selected).geometry.__geo_interface__, name="Selected", interactive=False,
                       style_function=lambda f: {"color": "#ff00ff", "weight": 4, "fillOpacity": 0.0}).add_to(m)
    return m


# ---------------------------------------------------------------------------------
# area selection: a draw control and the selected area's outline


def draw_assets() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(default_js, default_css) of Leaflet.draw, served inline from assets/vendor/leaflet-draw/."""
    return ([("leaflet_draw_js", _data_uri(LEAFLET_DRAW_DIR / "leaflet.draw.js", "text/javascript"))],
            [("leaflet_draw_css", _data_uri(LEAFLET_DRAW_DIR / "leaflet.draw.css", "text/css"))])


def add_draw_control(m: folium.Map) -> folium.Map:
    """A polygon/rectangle drawing tool (Leaflet.draw, offline); shapes come back in `all_drawings`."""
    from folium.plugins import Draw

    draw = Draw(draw_options={"polyline": False, "circle": False, "marker": False, "circlemarker": False,
                              "polygon": {"allowIntersection": False, "showArea": False},
                              "rectangle": {"showArea": False}},
                edit_options={"edit": False, "remove": True}, show_geometry_on_click=False)
    draw.default_js, draw.default_css = draw_assets()  # instance copies: never the CDN links of the class
    draw.add_to(m)
    return m


def add_area_outline(m: folium.Map, ctx: AppContext, cell_ids: list[str], polygon: dict | None = None) -> folium.Map:
    """Outline the area's cells (and the polygon that chose them) on the map; not clickable."""
    ws = ctx.workspace
    if cell_ids:
        geoms = ws.cells.iloc[[ws.index_of(c) for c in cell_ids]].geometry
        folium.GeoJson(geoms.union_all().__geo_interface__, name="Area", interactive=False,
                       style_function=lambda f: {"color": "#ffd400", "weight": 3, "fillColor": "#ffd400",
                                                 "fillOpacity": 0.12}).add_to(m)
    if polygon is not None:
        folium.GeoJson(polygon, name="Drawn area", interactive=False,
                       style_function=lambda f: {"color": "#ffffff", "weight": 2, "dashArray": "6 4",
                                                 "fillOpacity": 0.0}).add_to(m)
    return m
