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

from urbanclip.errors import UserError
from urbanclip.text.faithfulness import DescriptionGrounding, GroundingConfig, ground_description, reference_rows
from urbanclip.services.context import AppContext
from urbanclip.data.workspace import split_sentences

GROUNDING = GroundingConfig()  # side panel: 256 random tiles of the city, flag below the 50th percentile


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


def _observed(ctx: AppContext, cell) -> dict[str, float]:
    return {k: float(cell[k]) for k in ctx.workspace.indicator_names}


def generate_description(ctx: AppContext, cell_id: str) -> str:
    """The model's description of one tile (memoised per cell), decoded as `describe` does."""
    if cell_id in ctx._generated:
        return ctx._generated[cell_id]
    import torch

    from urbanclip.model.transforms import eval_transform

    img = ctx.workspace.load_image(cell_id)
    if img is None:
        raise UserError(f"cell {cell_id!r} has no image, so there is nothing to describe")
    x = eval_transform(ctx.model.config.image_size)(img).unsqueeze(0)
    with torch.inference_mode():
        text = ctx.model.generate(x)[0]
    ctx._generated[cell_id] = text
    return text


def description_grounding(ctx: AppContext, cell_id: str, sentences: list[str],
                          cfg: GroundingConfig = GROUNDING) -> DescriptionGrounding | None:
    """How well `sentences` fit this cell's tile (urbanclip.text.faithfulness): versus random tiles
    of its city (cached image embeddings, the text tower on a few sentences) and by the captioner's
    support of each sentence (one decoder pass over the tile). None when it cannot be measured:
    no model with a text tower, embeddings not from that model, no embedding for the cell, or no
    sentence.
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
    city_of = dict(zip(ctx.workspace.cells["cell_id"], ctx.workspace.cells["city"]))
    same_city = np.flatnonzero(np.asarray([city_of.get(c) == city for c in ctx.cell_ids]))
    rows = reference_rows(same_city, city, cfg)
    rows = rows[np.asarray([ctx.cell_ids[r] != cell_id for r in rows], dtype=bool)]
    image = ctx.workspace.load_image(cell_id)  # for the captioner's support of each sentence
    return ground_description(model, vec, ctx.vectors[rows], sentences, cfg, image=image)


def similar_cells(ctx: AppContext, cell_id: str, k: int = 5, other_cities: bool = True,
                  only_city: str | None = None) -> list[SimilarCell]:
    """Top-k cells whose image embedding is closest (cosine), by default in other cities."""
    vec = ctx.vector_of(cell_id)
    if vec is None or ctx.index is None:
        return []
    ws = ctx.workspace
    city = ws.cell(cell_id)["city"]
    exclude = city if other_cities and only_city is None else None
    matches = ctx.index.top_k(vec, k=k + (0 if exclude else 1), exclude_city=exclude, only_city=only_city)
    text_col = ws.text_column()
    out = []
    for m in matches:
        if m.cell_id == cell_id:
            continue
        c = ws.cell(m.cell_id)
        out.append(SimilarCell(cell_id=m.cell_id, city=m.city, score=float(m.score),
                               image_path=ws.image_path(m.cell_id), observed=_observed(ctx, c),
                               description=" ".join(split_sentences(c[text_col])[:2])))
    return out[:k]


def profile_cell(ctx: AppContext, cell_id: str, generate: bool = True, k: int = 5) -> CellProfile:
    """Everything the side panel shows for `cell_id`."""
    t0 = time.perf_counter()
    ws = ctx.workspace
    cell = ws.cell(cell_id)  # UserError for unknown ids
    i = ws.index_of(cell_id)
    image_path = ws.image_path(cell_id)
    text_col = ws.text_column()

    indicators = []
    for name, spec in ws.manifest.indicators.items():
        pred = ctx.predictions.get(name)
        p = None if pred is None or not math.isfinite(pred[i]) else float(pred[i])
        lo, hi = ctx.intervals.get(name, (None, None))
        has_iv = p is not None and lo is not None and math.isfinite(lo[i]) and math.isfinite(hi[i])
        indicators.append(IndicatorValue(name=name, label=spec.label, unit=spec.unit,
                                         observed=float(cell[name]), predicted=p,
                                         lower=float(lo[i]) if has_iv else None, upper=float(hi[i]) if has_iv else None,
                                         level=ctx.interval_level if has_iv else None))
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
        note = "Imagery is unavailable for this cell, so the model cannot describe it."
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
    source_grounding = description_grounding(ctx, cell_id, source_sentences)
    t4 = time.perf_counter()

    return CellProfile(
        cell_id=cell_id, city=str(cell["city"]), row=int(cell["row"]), col=int(cell["col"]),
        lat=float(cell["lat"]), lon=float(cell["lon"]), image_path=image_path,
        generated=generated, generated_note=note,
        source_description="\n".join(source_sentences), source_column=text_col,
        indicators=indicators, similar=similar, similar_note=similar_note,
        timings_ms={"lookup": (t1 - t0) * 1e3, "similar": (t2 - t1) * 1e3, "generate": (t3 - t2) * 1e3,
                    "grounding": (t4 - t3) * 1e3, "total": (t4 - t0) * 1e3},
        grounding=grounding, source_grounding=source_grounding)


def format_prediction(iv: IndicatorValue) -> str:
    """The predicted value with its interval when there is one: '12,345 persons (80%: 9,870–15,400)'."""
    text = format_value(iv.predicted, iv.unit)
    if iv.predicted is None or iv.lower is None or iv.upper is None:
        return text
    level = f"{iv.level:.0%}" if iv.level else "interval"
    return f"{text} ({level}: {format_value(iv.lower, '')}–{format_value(iv.upper, '')})"


def format_value(value: float | None, unit: str) -> str:
    """Human-readable indicator value with unit ('—' when unknown)."""
    if value is None or not np.isfinite(value):
        return "—"
    if abs(value) >= 1e6:
        s = f"{value / 1e6:,.2f} M"
    elif abs(value) >= 100:
        s = f"{value:,.0f}"
    else:
        s = f"{value:.3g}"  # three significant digits: 85, 7.69, 0.0123
    return f"{s} {unit}".strip()
