"""What the side panel shows for one cell: image, descriptions, indicators, look-alikes.

`profile_cell` only reads cached embeddings and precomputed predictions, so a click
costs a dictionary lookup plus one top-k over the index; generation (the only
model forward pass) runs for the one clicked tile and is memoised per cell.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from urbanclip.data.workspace import split_sentences
from urbanclip.errors import UserError
from urbanclip.services.context import AppContext
from urbanclip.text.faithfulness import DescriptionGrounding, GroundingConfig, ground_description, reference_rows

GROUNDING = GroundingConfig()  # side panel: 256 random tiles of the city, flag below the 50th percentile
MIN_GROUNDING_REFERENCE = 50  # fewer tiles to compare with and a percentile says nothing ("better than 44% of 5")


@dataclass
class IndicatorValue:
    """One indicator of a cell: observed (NaN = unknown), predicted (None = no probe) and the
    prediction interval (None = no interval), all on the indicator's raw scale."""

    name: str
    label: str
    unit: str
    observed: float
    predicted: float | None
    lower: float | None = None
    upper: float | None = None
    level: float | None = None      # nominal coverage of [lower, upper], e.g. 0.8
    note: str = ""                  # why there is no prediction, or why the observed value is suspect


@dataclass
class SimilarCell:
    cell_id: str
    city: str
    score: float
    image_path: Path | None
    observed: dict[str, float]
    description: str


@dataclass
class CellProfile:
    cell_id: str
    city: str
    row: int
    col: int
    lat: float
    lon: float
    image_path: Path | None
    generated: str | None          # the model's description of the tile
    generated_note: str            # why there is none, when None
    source_description: str        # the workspace's own description ("" when none)
    source_column: str             # which column it came from (text_refined / text_raw)
    indicators: list[IndicatorValue]
    similar: list[SimilarCell]
    similar_note: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    grounding: DescriptionGrounding | None = None         # of `generated` (None = not measurable)
    source_grounding: DescriptionGrounding | None = None  # of `source_description`
    grounding_note: str = ""        # why grounding is not shown, when it could have been
    indicator_note: str = ""        # e.g. the workspace has no indicators yet
    image_problem: str = ""        # why the cell's tile file is not shown (it cannot be read), "" when fine

    @property
    def interval_caption(self) -> str | None:
        """The caption under the indicator table, only when some prediction carries an interval."""
        levels = {iv.level for iv in self.indicators if iv.lower is not None and iv.level}
        if not levels:
            return None
        return (f"Predictions carry their {max(levels):.0%} prediction interval (an ensemble of probe heads, "
                "calibrated on held-out cells).")


JPEG_MEMO = 512  # tiles kept as JPEG bytes per context


def tile_jpeg(ctx: AppContext, cell_id: str, size: int | None = None, quality: int = 85) -> bytes | None:
    """The cell's tile as JPEG bytes (resized to size x size when given), memoised per context.

    What the panel sends the browser: a few kB instead of the tile file (a 128 px demo PNG is
    30 kB). None when the cell has no imagery or its file cannot be read.
    """
    import io
    from collections import OrderedDict

    memo = ctx.memo.setdefault("tile_jpeg", OrderedDict())
    key = (cell_id, size, quality)
    if key in memo:
        return memo[key]
    try:
        img = ctx.workspace.load_image(cell_id, size=size)
    except UserError:
        img = None
    data = None
    if img is not None:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        data = buf.getvalue()
    memo[key] = data
    while len(memo) > JPEG_MEMO:
        memo.popitem(last=False)
    return data


def _observed(ctx: AppContext, cell) -> dict[str, float]:
    return {k: float(cell[k]) for k in ctx.workspace.indicator_names}


def generate_description(ctx: AppContext, cell_id: str) -> str:
    """The model's description of one tile (memoised per cell), decoded as `describe` does."""
    if cell_id in ctx._generated:
        return ctx._generated[cell_id]
    from urbanclip.model.inference import describe_images

    img = ctx.workspace.load_image(cell_id)
    if img is None:
        raise UserError(f"cell {cell_id!r} has no image, so there is nothing to describe")
    text = describe_images(ctx.model, [img])[0]
    ctx._generated[cell_id] = text
    return text


def description_grounding(ctx: AppContext, cell_id: str, sentences: list[str],
                          cfg: GroundingConfig = GROUNDING, captioner: bool = True) -> DescriptionGrounding | None:
    """How well `sentences` fit this cell's tile (urbanclip.text.faithfulness): versus random tiles
    of its city (cached image embeddings, the text tower on a few sentences) and, with `captioner`,
    by the captioner's support of each sentence (one decoder pass over the tile). The support is
    ranked against the model's own first sentences, so it only judges text this model wrote: for
    a workspace's source text (other wording) pass captioner=False. None when it cannot be
    measured: no model with a text tower, embeddings not from that model, no embedding for the
    cell, or no sentence.
    """
    model = ctx.model
    if model is None or not getattr(model, "has_text", False) or ctx.vectors is None:
        return None
    if not (ctx.encoder_key or "").startswith("urbanclip"):
        return None
    vec = ctx.vector_of(cell_id)
    if vec is None or not sentences:
        return None
    city = str(ctx.workspace.cell(cell_id)["city"])
    same_city = np.flatnonzero(embedded_cities(ctx) == city)
    rows = reference_rows(same_city, city, cfg)
    rows = rows[np.asarray([ctx.cell_ids[r] != cell_id for r in rows], dtype=bool)]
    if len(rows) < MIN_GROUNDING_REFERENCE:
        return None  # a percentile among a handful of tiles means nothing (see grounding_note)
    image = ctx.workspace.load_image(cell_id) if captioner else None  # for the captioner's support
    return ground_description(model, vec, ctx.vectors[rows], sentences, cfg, image=image)


def grounding_note(ctx: AppContext, cell_id: str) -> str:
    """Why no grounding is shown although the model could measure it: too few tiles of the city to compare with."""
    if ctx.model is None or not getattr(ctx.model, "has_text", False) or ctx.vector_of(cell_id) is None:
        return ""
    city = ctx.workspace.cell(cell_id)["city"]
    city_of = dict(zip(ctx.workspace.cells["cell_id"], ctx.workspace.cells["city"]))
    n = sum(1 for c in ctx.cell_ids if city_of.get(c) == city and c != cell_id)
    if n >= MIN_GROUNDING_REFERENCE:
        return ""
    return (f"Grounding not shown: only {n} other tiles of {city} have imagery, and a description is compared "
            f"with at least {MIN_GROUNDING_REFERENCE} to say whether it fits its own tile better than others.")


def suspect_note(ws, name: str, cell) -> str:
    """The caveat of an observed value that looks like a cap or fill of the source ('' when it does not)."""
    info = ws.suspect_values().get(name)
    if not info or info["flag"] not in str(cell["flags"]).split(";"):
        return ""
    return (f"observed {info['value']:,.0f} is held by {info['cells']:,} cells: probably a cap or fill value of "
            "the source, not a measurement")


def embedded_cities(ctx: AppContext) -> np.ndarray:
    """The city of each embedded cell (rows of ctx.vectors), computed once per context."""
    arr = ctx.memo.get("embedded_cities")
    if arr is None or len(arr) != len(ctx.cell_ids):
        city_of = dict(zip(ctx.workspace.cells["cell_id"], ctx.workspace.cells["city"]))
        arr = ctx.memo["embedded_cities"] = np.asarray([city_of.get(c) for c in ctx.cell_ids], dtype=object)
    return arr


def similarity_basis(ctx: AppContext) -> str:
    """What the look-alikes' similarity compares, in a planner's words (search.index's policy)."""
    if ctx.index is None:
        return ""
    if getattr(ctx.index, "reading_offset", None) is not None:
        return "similarity compares the tiles' image embeddings and what the captioner reads in them (cosine, 1 = alike)"
    return "similarity compares the tiles' image embeddings (cosine, 1 = alike)"


def similar_cells(ctx: AppContext, cell_id: str, k: int = 5, other_cities: bool = True,
                  only_city: str | None = None) -> list[SimilarCell]:
    """Top-k cells most like this one by the similarity policy (search.index: image embedding and the
    captioner's reading), by default in other cities."""
    vec = ctx.vector_of(cell_id)
    if vec is None or ctx.index is None:
        return []
    ws = ctx.workspace
    city = ws.cell(cell_id)["city"]
    exclude = city if other_cities and only_city is None else None
    # by cell id: the index's own vector of the cell (embedding and, with readings, the captioner's reading)
    matches = ctx.index.top_k(str(cell_id), k=k + (0 if exclude else 1), exclude_city=exclude, only_city=only_city)
    text_col = ws.text_column()
    out = []
    for m in matches:
        if m.cell_id == cell_id:
            continue
        c = ws.cell(m.cell_id)
        out.append(SimilarCell(cell_id=m.cell_id, city=m.city, score=float(m.score),
                               image_path=ws.readable_image_path(m.cell_id), observed=_observed(ctx, c),
                               description=" ".join(split_sentences(c[text_col])[:2])))
    return out[:k]


def profile_cell(ctx: AppContext, cell_id: str, generate: bool = True, k: int = 5) -> CellProfile:
    """Everything the side panel shows for `cell_id`."""
    t0 = time.perf_counter()
    ws = ctx.workspace
    cell = ws.cell(cell_id)  # UserError for unknown ids
    i = ws.index_of(cell_id)
    image_path = ws.readable_image_path(cell_id)
    image_problem = ""
    if image_path is None and ws.image_path(cell_id) is not None:
        err = ws.unreadable_images().get(cell_id, "the file is missing")
        image_problem = (f"The tile image {ws.image_path(cell_id)} cannot be read ({err}): it is shown as missing and "
                         "has no embedding. Replace or remove the file.")
    text_col = ws.text_column()

    indicators = []
    for name, spec in ws.manifest.indicators.items():
        pred = ctx.predictions.get(name)
        p = None if pred is None or not math.isfinite(pred[i]) else float(pred[i])
        lo, hi = ctx.intervals.get(name, (None, None))
        has_iv = p is not None and lo is not None and math.isfinite(lo[i]) and math.isfinite(hi[i])
        note = suspect_note(ws, name, cell) or (ctx.prediction_notes.get(name, "") if p is None else "")
        indicators.append(IndicatorValue(name=name, label=spec.label, unit=spec.unit,
                                         observed=float(cell[name]), predicted=p,
                                         lower=float(lo[i]) if has_iv else None, upper=float(hi[i]) if has_iv else None,
                                         level=ctx.interval_level if has_iv else None, note=note))
    indicator_note = "" if indicators else (
        "This workspace has no indicators yet; attach some with `python -m urbanclip attach raster|table ...`.")
    t1 = time.perf_counter()

    if ctx.vectors is None:
        similar, similar_note = [], "Similar cells need a trained model (no image embeddings loaded)."
    elif ctx.vector_of(cell_id) is None:
        similar, similar_note = [], "This cell has no image embedding (no imagery), so it cannot be matched."
    else:
        similar = similar_cells(ctx, cell_id, k=k)
        similar_note = "" if similar else "No other city has embedded cells to compare with."
    t2 = time.perf_counter()

    generated, note = None, ""
    if image_path is None:
        note = ("The tile cannot be read, so the model cannot describe it." if image_problem else
                "Imagery is unavailable for this cell, so the model cannot describe it.")
    elif not ctx.has_model:
        note = "No model loaded: train one on the Train page to get generated descriptions."
    elif not generate:
        note = "Generation is switched off."
    else:
        try:
            generated = generate_description(ctx, cell_id)
        except UserError as e:
            note = str(e)
    t3 = time.perf_counter()

    from urbanclip.text.captioners import split_generated

    source_sentences = split_sentences(cell[text_col])
    grounding = description_grounding(ctx, cell_id, split_generated(generated)) if generated else None
    source_grounding = description_grounding(ctx, cell_id, source_sentences, captioner=False)
    t4 = time.perf_counter()

    return CellProfile(
        cell_id=cell_id, city=str(cell["city"]), row=int(cell["row"]), col=int(cell["col"]),
        lat=float(cell["lat"]), lon=float(cell["lon"]), image_path=image_path,
        generated=generated, generated_note=note,
        source_description="\n".join(source_sentences), source_column=text_col,
        indicators=indicators, similar=similar, similar_note=similar_note,
        timings_ms={"lookup": (t1 - t0) * 1e3, "similar": (t2 - t1) * 1e3, "generate": (t3 - t2) * 1e3,
                    "grounding": (t4 - t3) * 1e3, "total": (t4 - t0) * 1e3},
        grounding=grounding, source_grounding=source_grounding,
        grounding_note="" if (grounding or source_grounding) else grounding_note(ctx, cell_id),
        indicator_note=indicator_note, image_problem=image_problem)


@dataclass
class GeneratedDescription:
    """The model's description of a cell's tile, or why there is none, and how well it is grounded."""

    text: str | None
    note: str
    grounding: DescriptionGrounding | None = None


def describe_cell(ctx: AppContext, cell_id: str) -> GeneratedDescription:
    """Generate (memoised) and ground the description of one tile: the slow part of a click,
    so the panel draws everything else first and this last."""
    if ctx.workspace.image_path(cell_id) is None:
        return GeneratedDescription(None, "Imagery is unavailable for this cell, so the model cannot describe it.")
    if not ctx.has_model:
        return GeneratedDescription(None, "No model loaded: train one on the Train page to get generated descriptions.")
    try:
        text = generate_description(ctx, cell_id)
    except UserError as e:
        return GeneratedDescription(None, str(e))
    from urbanclip.text.captioners import split_generated

    return GeneratedDescription(text, "", description_grounding(ctx, cell_id, split_generated(text)))


def indicator_table(prof: CellProfile) -> pd.DataFrame:
    """The panel's indicator table: one row per indicator, predicted (with interval) beside observed,
    and a Note column when a value is missing for a reason or looks capped."""
    table = pd.DataFrame({"Indicator": [iv.label for iv in prof.indicators],
                          "Predicted": [format_prediction(iv) for iv in prof.indicators],
                          "Observed": [format_value(iv.observed, iv.unit) + (" (cap/fill?)" if "cap or fill" in iv.note else "")
                                       for iv in prof.indicators]})
    if any(iv.note for iv in prof.indicators):
        table["Note"] = [iv.note for iv in prof.indicators]
    return table.set_index("Indicator")


def format_prediction(iv: IndicatorValue) -> str:
    """The predicted value with its interval when there is one: '12,345 persons (80%: 9,870–15,400)'."""
    text = format_value(iv.predicted, iv.unit)
    if iv.predicted is None or iv.lower is None or iv.upper is None:
        return text
    level = f"{iv.level:.0%}" if iv.level else "interval"
    return f"{text} ({level}: {format_value(iv.lower, iv.unit, with_unit=False)}–{format_value(iv.upper, iv.unit, with_unit=False)})"


SCALE_WORDS = (("trillion", 1e12), ("billion", 1e9), ("million", 1e6), ("thousand", 1e3))


def split_unit(unit: str) -> tuple[float, str]:
    """'million yuan' -> (1e6, 'yuan'); 'persons' -> (1, 'persons'): a scale word in a unit is a multiplier."""
    head, _, rest = (unit or "").strip().partition(" ")
    factor = dict(SCALE_WORDS).get(head.lower())
    return (factor, rest.strip()) if factor and rest.strip() else (1.0, (unit or "").strip())


def format_value(value: float | None, unit: str, with_unit: bool = True) -> str:
    """An indicator value as a reader says it, in the indicator's own unit ('—' when unknown).

    The unit's scale word is folded into the number, so 2,860 'million yuan' reads
    '2.86 billion yuan' (never '2.86 M million yuan'); 12345.4 persons reads '12,345 persons',
    1 person reads '1 person'; below 100, three significant digits ('7.69', '0.0123').
    """
    if value is None or not np.isfinite(value):
        return "—"
    factor, base = split_unit(unit)
    v = float(value) * factor
    a = abs(v)
    word = next(((w, f) for w, f in SCALE_WORDS[:3] if a >= f), None)
    if word is not None:
        x = v / word[1]
        s = f"{x:,.0f} {word[0]}" if abs(x) >= 1000 else f"{x:.3g} {word[0]}"
    elif a >= 100:
        s = f"{v:,.0f}"
    else:
        s = f"{v:.3g}" if v else "0"
    if not with_unit or not base:
        return s
    if s in ("1", "-1"):
        first, _, rest = base.partition(" ")
        if len(first) > 2 and first.endswith("s") and not first.endswith("ss"):
            base = (first[:-1] + " " + rest).strip()  # 'persons' -> 'person'
    return f"{s} {base}"
