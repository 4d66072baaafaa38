"""The search box: parse what the user typed and dispatch to the right lookup.

Accepted forms, tried in this order:
  1. a cell id               "Alphaville/r003_c004"
  2. a city name             "alphaville" (case-insensitive)
  3. a place name the workspace carries (manifest.extra["places"] = {name: [lat, lon]})
  4. coordinates             "39.91, 116.40" (lat, lon in degrees)
  5. free text               "dense residential blocks beside a river": semantic search with
     the model's text tower when a model is loaded, else keyword match over the
     workspace's own descriptions (labelled as such).
Anything else gets a message listing these forms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from shapely.geometry import Point

from urbanclip.services.context import AppContext

ACCEPTED_FORMS = ("a city name, a place name, a cell id (e.g. {example}), "
                  "coordinates as 'lat, lon' (e.g. {latlon}), or a free-text description "
                  "(e.g. 'dense residential blocks beside a river')")
LATLON = re.compile(r"^\s*\(?\s*(-?\d+(?:\.\d+)?)\s*[,;\s]\s*(-?\d+(?:\.\d+)?)\s*\)?\s*$")
WORD = re.compile(r"[A-Za-z]{2,}")


@dataclass
class Hit:
    cell_id: str
    city: str
    score: float


@dataclass
class SearchResult:
    """kind: 'cell' | 'city' | 'place' | 'latlon' | 'text' | 'error'."""

    kind: str
    message: str
    city: str | None = None
    cell_id: str | None = None
    center: tuple[float, float] | None = None     # (lat, lon) to move the map to
    scores: np.ndarray | None = None              # free text: one score per workspace cell (NaN = none)
    ranked: list[Hit] = field(default_factory=list)
    method: str = ""                              # 'semantic' | 'keyword' for free text

    @property
    def found(self) -> str:
        """What kind of thing the search found, as the page says it."""
        if self.kind == "text":
            return "Semantic match" if self.method == "semantic" else "Keyword match"
        return {"cell": "Cell", "city": "City", "place": "Place", "latlon": "Coordinates"}.get(self.kind, "Nothing found")


def accepted_forms(ctx: AppContext) -> str:
    ws = ctx.workspace
    first = ws.cells.iloc[0]
    return ACCEPTED_FORMS.format(example=repr(first["cell_id"]), latlon=f"'{first['lat']:.4f}, {first['lon']:.4f}'")


def _places(ctx: AppContext) -> dict[str, tuple[float, float]]:
    raw = ctx.workspace.manifest.extra.get("places", {}) or {}
    out = {}
    for name, v in raw.items():
        try:
            out[str(name).lower()] = (float(v[0]), float(v[1]))
        except (TypeError, ValueError, IndexError):
            continue
    return out


def cell_at(ctx: AppContext, lat: float, lon: float):
    """The cell containing (lat, lon), or None."""
    ws = ctx.workspace
    pt = Point(lon, lat)
    sindex = ws.cells.sindex
    for i in sindex.query(pt, predicate="intersects"):
        return ws.cells.iloc[int(i)]
    return None


def search(ctx: AppContext, query: str, k: int = 10, city: str | None = None) -> SearchResult:
    """Dispatch `query` to cell/city/place/coordinate/free-text lookup (see module doc)."""
    ws = ctx.workspace
    q = (query or "").strip()
    if not q:
        return SearchResult("error", f"Type something to search: {accepted_forms(ctx)}.")
    if q in set(ws.cells["cell_id"]):
        c = ws.cell(q)
        return SearchResult("cell", f"Cell {q} in {c['city']}.", city=str(c["city"]), cell_id=q,
                            center=(float(c["lat"]), float(c["lon"])))
    by_lower = {c.lower(): c for c in ws.cities}
    if q.lower() in by_lower:
        name = by_lower[q.lower()]
        b = ws.manifest.cities[name].bounds
        return SearchResult("city", f"City {name}.", city=name, center=((b[1] + b[3]) / 2, (b[0] + b[2]) / 2))
    places = _places(ctx)
    if q.lower() in places:
        lat, lon = places[q.lower()]
        c = cell_at(ctx, lat, lon)
        if c is None:
            return SearchResult("error", f"Place {q!r} ({lat:.4f}, {lon:.4f}) lies outside every city grid.")
        return SearchResult("place", f"{q} is in cell {c['cell_id']} ({c['city']}).", city=str(c["city"]),
                            cell_id=str(c["cell_id"]), center=(lat, lon))
    m = LATLON.match(q)
    if m:
        lat, lon = float(m.group(1)), float(m.group(2))
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            return SearchResult("error", f"{q!r} is not a valid 'lat, lon' (latitude within ±90, longitude within ±180).")
        c = cell_at(ctx, lat, lon)
        if c is None:
            covers = "; ".join(f"{n}: lat {v.bounds[1]:.3f}–{v.bounds[3]:.3f}, lon {v.bounds[0]:.3f}–{v.bounds[2]:.3f}"
                               for n, v in ws.manifest.cities.items())
            return SearchResult("error", f"No cell contains ({lat}, {lon}). The grids cover {covers}.")
        return SearchResult("latlon", f"({lat}, {lon}) is in cell {c['cell_id']} ({c['city']}).",
                            city=str(c["city"]), cell_id=str(c["cell_id"]), center=(lat, lon))
    if len(WORD.findall(q)) >= 1:
        return text_search(ctx, q, k=k, city=city)
    return SearchResult("error", f"Could not understand {q!r}. Search accepts {accepted_forms(ctx)}.")


def text_search(ctx: AppContext, text: str, k: int = 10, city: str | None = None) -> SearchResult:
    """Rank cells by how well they match a description (semantic if a model is loaded)."""
    ws = ctx.workspace
    n = len(ws.cells)
    scores = np.full(n, np.nan)
    if ctx.has_model and ctx.vectors is not None:
        import torch

        with torch.inference_mode():
            q = ctx.model.encode_text([text])
        q = np.asarray(q.detach().cpu().numpy() if hasattr(q, "detach") else q, dtype=np.float32)[0]
        pos = {c: i for i, c in enumerate(ws.cells["cell_id"])}
        idx = np.array([pos[c] for c in ctx.cell_ids])
        scores[idx] = ctx.vectors @ q
        method = "semantic"
    else:
        from sklearn.feature_extraction.text import TfidfVectorizer

        docs = ws.cells[ws.text_column()].fillna("").astype(str).tolist()
        if not any(docs):
            return SearchResult("error", "Free-text search needs a trained model (text tower) or source "
                                         "descriptions in the workspace; this workspace has neither.")
        vec = TfidfVectorizer(stop_words="english")
        try:
            mat = vec.fit_transform(docs)
            qv = vec.transform([text])
        except ValueError:
            return SearchResult("error", f"{text!r} has no searchable words.")
        scores = np.asarray((mat @ qv.T).todense()).ravel().astype(np.float64)
        if not np.any(scores > 0):
            return SearchResult("error", f"No description mentions {text!r} (keyword match; load a model for "
                                         f"semantic search). Search accepts {accepted_forms(ctx)}.")
        method = "keyword"
    cities = ws.cells["city"].to_numpy()
    masked = np.where(np.isfinite(scores), scores, -np.inf)
    if city is not None:
        masked = np.where(cities == city, masked, -np.inf)
    order = np.argsort(-masked, kind="stable")[:k]
    ranked = [Hit(str(ws.cells["cell_id"].iloc[i]), str(cities[i]), float(scores[i]))
              for i in order if np.isfinite(masked[i])]
    label = "semantic match (text tower)" if method == "semantic" else "keyword match over source descriptions (no model loaded)"
    best = ranked[0] if ranked else None
    return SearchResult("text", f"{len(ranked)} best cells for {text!r} by {label}.",
                        city=best.city if best else None, cell_id=best.cell_id if best else None,
                        scores=scores, ranked=ranked, method=method)
