"""Area queries: what a drawn polygon or a set of cells adds up to, and where else looks like it.

An area is a set of cells of ONE city, chosen either by a polygon (GeoJSON geometry,
EPSG:4326 lon/lat, as Leaflet.draw returns it) or by a list of cell ids.

Which cells a polygon selects: **centre within** (a cell belongs to the area when its
centre point, the workspace's `lat`/`lon`, lies inside the polygon). Each cell then
counts once and whole: polygons that tile a city never double count a cell, and a
sliver touching a cell's corner does not add its whole population. The alternative,
area-weighted shares of intersecting cells, would assume people and GDP are spread
evenly inside a cell, which the data cannot tell; at ~1 km² cells the rule's error
is at most half a cell along the boundary.

Aggregates, per indicator, follow its `aggregation` in the manifest: "sum" indicators
(population, carbon, and GDP: the release's GDP is a cell total in million yuan from a
gridded GDP raster summed over the cell, so an area's GDP is the sum of its cells' GDP,
not a mean or a per-capita value) are summed; "mean" indicators (densities) are
averaged over cells (cells are of equal area). Observed sums use cells with a known
value and say how many that is; predicted sums use the probe predictions where present.

The combined description lists the sentences (from the workspace's text column) found
in most cells of the area, counting a sentence in a cell only when the model finds it
grounded there (urbanclip.text.faithfulness; percentile >= threshold) if a model is loaded.

Similar areas: the mean image embedding of the area's cells against the mean embedding
of every window of the same bounding-box size (rows x cols) in the other cities
(urbanclip.search.index.grid_windows), best first, non-overlapping. Both means are taken
over the similarity index's cell vectors, i.e. under the one similarity policy (centred
cosine, urbanclip.search.index): averaging raw cells leaves mostly the direction every
tile shares, and every window of a city then scores ~1.0 (measured on the demo:
0.999-1.000 for all top windows).
For a one-cell area the windows are single cells.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from urbanclip.data.workspace import split_sentences
from urbanclip.errors import UserError
from urbanclip.services.context import AppContext
from urbanclip.text.faithfulness import (
    GroundingConfig,
    encode_sentences,
    grounding_scores,
    normalise_caption,
    reference_rows,
)

SELECTION_RULE = "centre within"
POLYGON_TYPES = ("Polygon", "MultiPolygon")
DESCRIPTION_CELLS = 400   # cells whose sentences are grounded for the combined description (seeded sample above)


@dataclass
class AreaIndicator:
    """One indicator over the area: observed and predicted aggregates (NaN/None = unknown)."""

    name: str
    label: str
    unit: str
    aggregation: str             # "sum" or "mean" (from the manifest)
    observed: float              # NaN when no cell has a known value
    observed_cells: int          # cells with a known value
    predicted: float | None      # None when there are no predictions
    predicted_cells: int
    suspect_cells: int = 0       # cells whose observed value looks capped / filled (included in `observed`)
    predicted_from: str = "expected"  # "expected": of per-cell expected values; "median": of per-cell medians


@dataclass
class AreaPhrase:
    """A sentence of the combined description: in how many cells it is (grounded)."""

    sentence: str
    cells: int
    grounding: float | None      # mean percentile over those cells (None without a model)


@dataclass
class AreaMatch:
    """A window of cells in another city whose mean embedding is close to the area's."""

    city: str
    cell_ids: list[str]
    anchor: str                  # the window's north-west cell (to jump to)
    centre: str                  # the cell nearest the window's centre
    score: float                 # cosine similarity of the mean embeddings
    observed: dict[str, float]   # indicator aggregates over the window (same rule as the area)


@dataclass
class AreaSummary:
    city: str
    cell_ids: list[str]
    selection: str               # "polygon" | "cells"
    rule: str                    # how a polygon picks cells
    area_km2: float
    indicators: list[AreaIndicator]
    description: list[AreaPhrase]
    description_note: str
    similar: list[AreaMatch]
    similar_note: str
    window: tuple[int, int] = (1, 1)   # rows x cols of the windows searched
    notes: list[str] = field(default_factory=list)

    @property
    def n_cells(self) -> int:
        return len(self.cell_ids)


def area_indicator_table(summary: AreaSummary) -> pd.DataFrame:
    """The area panel's table: aggregated predicted and observed values, and how many cells are known."""
    from urbanclip.services.profile import format_value

    return pd.DataFrame({
        "Indicator": [f"{iv.label} ({iv.aggregation})" for iv in summary.indicators],
        "Predicted": [format_value(iv.predicted, iv.unit) for iv in summary.indicators],
        "Observed": [format_value(iv.observed, iv.unit) for iv in summary.indicators],
        "Cells known": [f"{iv.observed_cells} of {summary.n_cells}" for iv in summary.indicators],
    }).set_index("Indicator")


# ---------------------------------------------------------------------------------
# selecting cells


def parse_geometry(geojson: Any):
    """A shapely (Multi)Polygon from a GeoJSON geometry, Feature or one-polygon FeatureCollection
    (dict or JSON text, lon/lat EPSG:4326). UserError naming what is wrong otherwise."""
    from shapely.geometry import shape
    from shapely.validation import explain_validity

    obj = geojson
    if isinstance(obj, (str, bytes)):
        try:
            obj = json.loads(obj)
        except ValueError as e:
            raise UserError(f"area polygon is not valid JSON ({e}); pass a GeoJSON Polygon geometry") from None
    if not isinstance(obj, dict) or "type" not in obj:
        raise UserError("area polygon must be a GeoJSON object with a 'type' (Polygon, MultiPolygon or a Feature "
                        f"holding one), got {type(obj).__name__}")
    if obj["type"] == "FeatureCollection":
        polys = [f for f in obj.get("features") or [] if isinstance(f, dict)
                 and (f.get("geometry") or {}).get("type") in POLYGON_TYPES]
        if len(polys) != 1:
            raise UserError(f"area FeatureCollection must hold exactly one polygon feature, it holds {len(polys)}")
        obj = polys[0]
    if obj["type"] == "Feature":
        obj = obj.get("geometry")
        if not isinstance(obj, dict) or "type" not in obj:
            raise UserError("area Feature has no geometry; draw a polygon")
    if obj["type"] not in POLYGON_TYPES:
        raise UserError(f"area geometry must be a Polygon or MultiPolygon, got {obj['type']!r}; draw a polygon or "
                        "rectangle, not a line or marker")
    if "coordinates" not in obj:
        raise UserError(f"area {obj['type']} has no 'coordinates'")
    try:
        geom = shape(obj)
    except Exception as e:  # shapely raises several kinds for malformed rings
        raise UserError(f"area {obj['type']} coordinates are malformed ({e}); a ring is a list of [lon, lat] "
                        "points whose last point equals the first") from None
    if geom.is_empty or geom.convex_hull.area <= 0:  # (a bow-tie has zero signed area but is "invalid", below)
        raise UserError("area polygon is empty (no coordinates or zero area); draw a polygon with at least three "
                        "distinct corners")
    minx, miny, maxx, maxy = geom.bounds
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise UserError(f"area polygon bounds {tuple(round(b, 4) for b in geom.bounds)} are not lon/lat degrees: "
                        "GeoJSON uses EPSG:4326 [longitude, latitude] order")
    if not geom.is_valid:
        raise UserError(f"area polygon is invalid ({explain_validity(geom)}); redraw it without crossing edges")
    return geom


def cells_in_polygon(ctx_or_ws, geojson: Any, city: str | None = None) -> list[str]:
    """Cell ids whose centre lies inside the polygon (see module doc), optionally only in `city`."""
    import shapely

    ws = getattr(ctx_or_ws, "workspace", ctx_or_ws)
    geom = parse_geometry(geojson)
    cells = ws.city_cells(city) if city is not None else ws.cells
    inside = shapely.contains_xy(geom, cells["lon"].to_numpy(dtype=float), cells["lat"].to_numpy(dtype=float))
    ids = [str(c) for c in cells["cell_id"].to_numpy()[inside]]
    if ids:
        cities = sorted({str(c) for c in cells["city"].to_numpy()[inside]})
        if len(cities) > 1:
            raise UserError(f"the polygon covers cells of several cities ({', '.join(cities)}); an area lies in "
                            "one city: draw it inside one")
        return ids
    where = f"city {city!r}" if city is not None else "any city"
    touches = cells.sindex.query(geom, predicate="intersects")
    if len(touches) == 0:
        bounds = [ws.manifest.cities[c].bounds for c in ([city] if city else ws.cities)]
        cover = "; ".join(f"lon {b[0]:.4f}–{b[2]:.4f}, lat {b[1]:.4f}–{b[3]:.4f}" for b in bounds)
        raise UserError(f"the polygon lies outside {where} (grid covers {cover}); draw it over the grid")
    raise UserError(f"the polygon touches {len(touches)} cell(s) of {where} but contains no cell centre; "
                    "cells count when their centre is inside (draw a larger polygon)")


def cells_by_id(ws, cell_ids: Sequence[str], city: str | None = None) -> list[str]:
    """Validated, de-duplicated cell ids of one city (UserError for unknown ids or mixed cities)."""
    if isinstance(cell_ids, str):
        cell_ids = [cell_ids]
    ids = list(dict.fromkeys(str(c).strip() for c in cell_ids if str(c).strip()))
    if not ids:
        raise UserError("the area has no cells: pick at least one cell id (or draw a polygon)")
    for c in ids:
        ws.index_of(c)  # UserError naming the unknown id
    cities = sorted({str(ws.cell(c)["city"]) for c in ids})
    if len(cities) > 1:
        raise UserError(f"the cells belong to several cities ({', '.join(cities)}); an area lies in one city")
    if city is not None and cities[0] != city:
        raise UserError(f"the cells are in {cities[0]!r}, not in the selected city {city!r}")
    return ids


# ---------------------------------------------------------------------------------
# aggregates


def _aggregate(values: np.ndarray, how: str) -> tuple[float, int]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan, 0
    return (float(finite.mean()) if how == "mean" else float(finite.sum())), int(finite.size)


def indicator_totals(ctx: AppContext, cell_ids: Sequence[str]) -> list[AreaIndicator]:
    """Observed and predicted aggregates of every indicator over `cell_ids`."""
    ws = ctx.workspace
    idx = np.array([ws.index_of(c) for c in cell_ids], dtype=np.int64)
    out = []
    for name, spec in ws.manifest.indicators.items():
        how = "mean" if spec.aggregation == "mean" else "sum"
        obs, n_obs = _aggregate(ws.cells[name].to_numpy(dtype=np.float64)[idx], how)
        # expected values add up to totals; medians (the per-cell display) run low, so they are the fallback
        pred_from = "expected" if name in ctx.expected else "median"
        pred_all = ctx.expected.get(name, ctx.predictions.get(name))
        pred, n_pred = (None, 0)
        if pred_all is not None:
            p, n_pred = _aggregate(np.asarray(pred_all, dtype=np.float64)[idx], how)
            pred = p if n_pred else None
        flag = ws.suspect_values().get(name, {}).get("flag")
        suspect = int(ws.cells["flags"].iloc[idx].str.split(";").apply(lambda f: flag in f).sum()) if flag else 0
        out.append(AreaIndicator(name, spec.label, spec.unit, how, obs, n_obs, pred, n_pred, suspect, pred_from))
    return out


def area_km2(ws, cell_ids: Sequence[str]) -> float:
    """Ground area of the cells (equal-area projection), km²."""
    geoms = ws.cells.iloc[[ws.index_of(c) for c in cell_ids]].geometry
    return float(geoms.to_crs("EPSG:6933").area.sum() / 1e6)


def _grounding_ready(ctx: AppContext) -> bool:
    model = ctx.model
    return (model is not None and getattr(model, "has_text", False) and ctx.vectors is not None
            and (ctx.encoder_key or "").startswith("urbanclip"))


def combined_description(ctx: AppContext, cell_ids: Sequence[str], top: int = 5,
                         cfg: GroundingConfig | None = None) -> tuple[list[AreaPhrase], str]:
    """The sentences present in most of the area's cells (grounded ones when a model is loaded)."""
    ws = ctx.workspace
    cfg = cfg or GroundingConfig()
    col = ws.text_column()
    ids = list(cell_ids)
    note = ""
    if len(ids) > DESCRIPTION_CELLS:
        rng = np.random.default_rng(cfg.seed)
        ids = [ids[i] for i in sorted(rng.choice(len(ids), DESCRIPTION_CELLS, replace=False))]
        note = f"From a random sample of {DESCRIPTION_CELLS} of the {len(cell_ids)} cells. "
    sents = {c: split_sentences(ws.cell(c)[col]) for c in ids}
    if not any(sents.values()):
        return [], note + f"No cell of the area has a description (column `{col}`)."
    counts: dict[str, int] = defaultdict(int)
    scores: dict[str, list[float]] = defaultdict(list)
    example: dict[str, str] = {}
    if _grounding_ready(ctx):
        unique = list(dict.fromkeys(s for ss in sents.values() for s in ss))
        pos = {s: i for i, s in enumerate(unique)}
        text = encode_sentences(ctx.model, unique, cfg.batch_size)
        row = {c: i for i, c in enumerate(ctx.cell_ids)}
        city = str(ws.cell(ids[0])["city"])
        city_of = dict(zip(ws.cells["cell_id"], ws.cells["city"]))
        same = np.flatnonzero(np.asarray([city_of.get(c) == city for c in ctx.cell_ids]))
        ref_rows = reference_rows(same, city, cfg)
        ref_sims = ctx.vectors[ref_rows] @ text.T
        for c, ss in sents.items():
            i = row.get(c)
            if i is None or not ss:
                continue
            cols = np.array([pos[s] for s in ss])
            pct, _ = grounding_scores(ctx.vectors[i] @ text[cols].T, ref_sims[ref_rows != i][:, cols])
            for s, p in zip(ss, pct):
                if p >= cfg.threshold:
                    k = normalise_caption(s)
                    counts[k] += 1
                    scores[k].append(float(p))
                    example.setdefault(k, s)
        note += (f"Sentences of `{col}` that the model finds grounded in a cell (fits it better than "
                 f"{cfg.threshold:.0%} of random tiles), by how many cells they describe.")
    else:
        for ss in sents.values():
            for s in dict.fromkeys(ss):
                k = normalise_caption(s)
                counts[k] += 1
                example.setdefault(k, s)
        note += f"Most frequent sentences of `{col}` (not grounding-checked: no model with a text tower is loaded)."
    ranked = sorted(counts, key=lambda k: (-counts[k], -(np.mean(scores[k]) if scores[k] else 0.0), k))[:top]
    phrases = [AreaPhrase(example[k], counts[k], float(np.mean(scores[k])) if scores[k] else None) for k in ranked]
    if not phrases:
        note += " No sentence is grounded in any cell of the area."
    return phrases, note


# ---------------------------------------------------------------------------------
# similar areas in other cities


def _grid_shape(ws, cell_ids: Sequence[str]) -> tuple[int, int]:
    sub = ws.cells.iloc[[ws.index_of(c) for c in cell_ids]]
    return int(sub["row"].max() - sub["row"].min() + 1), int(sub["col"].max() - sub["col"].min() + 1)


def similar_areas(ctx: AppContext, cell_ids: Sequence[str], k: int = 3) -> tuple[list[AreaMatch], str, tuple[int, int]]:
    """Top-k non-overlapping windows in other cities by cosine of mean image embeddings."""
    from urbanclip.search.index import grid_windows, normalise_rows

    ws = ctx.workspace
    shape = _grid_shape(ws, cell_ids)
    if ctx.index is None:
        return [], "Similar areas need image embeddings (train a model, or wait for the baseline to load).", shape
    index = ctx.index
    own = [r for r in (index.row_of(c) for c in cell_ids) if r is not None]
    if not own:
        return [], "No cell of the area has an image embedding (no imagery), so it cannot be matched.", shape
    unit = index.vectors  # the similarity policy's (centred) cell vectors
    query = unit[own].mean(axis=0)
    if not np.any(np.abs(query) > 1e-9):
        return [], "The area's mean embedding equals the workspace's mean tile, so no area stands out as similar.", shape
    city = str(ws.cell(cell_ids[0])["city"])
    emb_cells = ws.cells.set_index("cell_id").loc[index.cell_ids, ["city", "row", "col"]]
    ids_w, vecs_w, cities_w, members = [], [], [], []
    for other in ws.cities:
        if other == city:
            continue
        sel = (emb_cells["city"] == other).to_numpy()
        if not sel.any():
            continue
        anchors, means = grid_windows(emb_cells["row"].to_numpy()[sel], emb_cells["col"].to_numpy()[sel],
                                      unit[sel], *shape)
        for (r0, c0), v in zip(anchors, means):
            ids_w.append(f"{other}@{r0},{c0}")
            vecs_w.append(v)
            cities_w.append(other)
            members.append((other, int(r0), int(c0)))
    if not vecs_w:
        return [], "No other city has embedded cells to compare with.", shape
    scores = normalise_rows(np.stack(vecs_w)) @ normalise_rows(query[None])[0]  # cosine of the window means
    chosen: list[tuple[float, str, int, int, int, int]] = []
    for j in np.argsort(-scores, kind="stable"):
        other, r0, c0 = members[j]
        h, w = min(shape[0], ws.manifest.cities[other].n_rows), min(shape[1], ws.manifest.cities[other].n_cols)
        if any(o == other and r0 < r + hh and r < r0 + h and c0 < c + ww and c < c0 + w
               for _, o, r, c, hh, ww in chosen):
            continue  # overlaps a better window of the same city
        chosen.append((float(scores[j]), other, r0, c0, h, w))
        if len(chosen) == k:
            break
    matches = []
    for score, other, r0, c0, h, w in chosen:
        sub = ws.city_cells(other)
        inwin = sub[(sub["row"] >= r0) & (sub["row"] < r0 + h) & (sub["col"] >= c0) & (sub["col"] < c0 + w)]
        win_ids = [str(c) for c in inwin["cell_id"]]
        d = (inwin["row"] - (r0 + (h - 1) / 2)) ** 2 + (inwin["col"] - (c0 + (w - 1) / 2)) ** 2
        centre = str(inwin["cell_id"].iloc[int(np.argmin(d.to_numpy()))])
        anchor = min(win_ids, key=lambda c: (int(ws.cell(c)["row"]), int(ws.cell(c)["col"])))
        observed = {iv.name: iv.observed for iv in indicator_totals(AppContext(workspace=ws), win_ids)}
        matches.append(AreaMatch(other, win_ids, anchor, centre, score, observed))
    return matches, "", shape


# ---------------------------------------------------------------------------------
# the whole panel


def summarise_area(ctx: AppContext, cell_ids: Sequence[str], selection: str = "cells", k: int = 3,
                   describe: bool = True) -> AreaSummary:
    """Aggregates, combined description and similar areas for validated `cell_ids` of one city."""
    ws = ctx.workspace
    ids = cells_by_id(ws, cell_ids)
    city = str(ws.cell(ids[0])["city"])
    notes = []
    indicators = indicator_totals(ctx, ids)
    partial = [iv.label for iv in indicators if 0 < iv.observed_cells < len(ids)]
    if partial:
        notes.append(f"Observed values are unknown for some cells ({', '.join(partial)}): sums cover known cells only.")
    if any(iv.predicted is not None and iv.aggregation == "sum" and iv.predicted_from == "median"
           for iv in indicators):
        notes.append("Predicted sums add up each cell's predicted value, a median (the probes predict log1p), "
                     "so they tend to run below the true total; refit the probes to sum expected values instead.")
    for iv in indicators:
        if iv.suspect_cells:
            info = ws.suspect_values()[iv.name]
            notes.append(f"{iv.suspect_cells} of these cells hold {iv.label} exactly {info['value']:,.0f}, probably a cap "
                         f"or fill value of the source: the observed {iv.aggregation} includes them as they are.")
    phrases, dnote = combined_description(ctx, ids) if describe else ([], "Combined description switched off.")
    similar, snote, shape = similar_areas(ctx, ids, k=k)
    return AreaSummary(city=city, cell_ids=ids, selection=selection, rule=SELECTION_RULE, area_km2=area_km2(ws, ids),
                       indicators=indicators, description=phrases, description_note=dnote, similar=similar,
                       similar_note=snote, window=shape, notes=notes)


def area_from_polygon(ctx: AppContext, geojson: Any, city: str | None = None, **kw) -> AreaSummary:
    """`summarise_area` of the cells whose centre lies inside a GeoJSON polygon (EPSG:4326)."""
    return summarise_area(ctx, cells_in_polygon(ctx.workspace, geojson, city), selection="polygon", **kw)


def area_from_cells(ctx: AppContext, cell_ids: Sequence[str], city: str | None = None, **kw) -> AreaSummary:
    """`summarise_area` of a list of cell ids (all in one city)."""
    return summarise_area(ctx, cells_by_id(ctx.workspace, cell_ids, city), selection="cells", **kw)
