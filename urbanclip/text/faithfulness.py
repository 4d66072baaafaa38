"""Caption faithfulness: are descriptions diverse, and does each sentence fit its own tile?

A captioner that writes the same safe text for every tile looks fluent and says
nothing (docs/METHOD.md section 2 asks for descriptions of *this* tile's infrastructure,
greenery, water and activity). Three measures over a city:

  distinct ratio            distinct captions / captions (case and spacing ignored):
                            1/N when every tile gets the same text, 1 when all differ
  mean pairwise similarity  TF-IDF cosine between the captions of two different tiles,
                            averaged over all pairs: 1 = interchangeable, 0 = no shared words
  grounding                 per sentence, our own image-text similarity sim(tile, sentence)
                            ranked among sim(r, sentence) for R random tiles r of the same
                            city (seeded): `percentile` in [0, 1] (share of random tiles the
                            sentence fits worse than its own; ties count half) and `z`
                            ((own - mean) / std over the random tiles). 0.5 = the sentence fits
                            its tile no better than a random one (generic or wrong).

Grounding is a self-consistency check of one checkpoint (its image and text towers
judge its own or the workspace's sentences), in the spirit of CLIPScore (Hessel et
al. 2021) made relative to random tiles so it does not depend on the similarity
scale. It cannot catch an error both towers share. `refine --grounding-threshold`
uses it to drop ungrounded source sentences before training (self-calibration).

Texts come from `model.generate` (source "generated") or an existing text column.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from urbanclip.data.workspace import Workspace, atomic_write_bytes, atomic_write_json, split_sentences
from urbanclip.errors import UserError
from urbanclip.model.inference import (
    ModelImageEncoder,
    describe_cells,
    embed_cells,
    encode_texts,
    image_batch,
    need_text_tower,
)

GENERATED = "generated"
SUPPORT_RANK_THRESHOLD = 0.2  # badge (older checkpoints): the first sentence is in the captioner's least sure fifth
# badge: the captioner gives less than this share of its weight to what the first sentence says. On the
# demo (bench/bench_descriptions.py) 0.7 leaves 3% of "grounded" first sentences wrong and flags 20% of
# right ones; 0.5 would flag 7% of right ones but pass half the wrong ones
MEANING_SHARE_THRESHOLD = 0.7
_SPACE = re.compile(r"\s+")
_TRAILING = re.compile(r"[\s.!?,;:]+$")


@dataclass
class GroundingConfig:
    """How grounding is measured. `threshold` is on the percentile scale: below it a
    sentence (or a description, by its mean) counts as weakly grounded."""

    n_reference: int = 256      # random tiles of the same city each sentence is compared with
    seed: int = 0
    threshold: float = 0.5      # percentile; 0.5 = no better than a random tile of the city
    batch_size: int = 64        # texts / images per forward pass
    # two first sentences "say the same" when the text tower puts them at least this close (cosine);
    # chosen on the demo's val cells (bench/bench_descriptions.py prints the sweep): the shipped
    # model's wordings of one land use sit at 0.66-0.97, nine in ten pairs of different land uses below 0.41
    same_meaning: float = 0.6

    def validate(self, where: str = "grounding") -> None:
        if self.n_reference < 2:
            raise UserError(f"{where}: n_reference must be at least 2 random tiles, got {self.n_reference}")
        if not 0.0 <= self.threshold <= 1.0:
            raise UserError(f"{where}: threshold is a percentile and must be within [0, 1], got {self.threshold}")
        if self.batch_size < 1:
            raise UserError(f"{where}: batch_size must be at least 1, got {self.batch_size}")


# ---------------------------------------------------------------------------------
# diversity of a set of captions


def normalise_caption(text: Any) -> str:
    """Lower case, one space, no trailing punctuation: the key two captions are 'the same' by."""
    from urbanclip.text.refine import coerce_text

    if not isinstance(text, str):
        return ""
    text, _ = coerce_text(text)  # undecodable bytes a byte-level decoder can emit are not content
    return _TRAILING.sub("", _SPACE.sub(" ", text).strip().lower())


def distinct_ratio(captions: Sequence[str]) -> float:
    """Distinct captions / captions (1/N = all identical, 1 = all different)."""
    if len(captions) == 0:
        raise UserError("distinct ratio of no captions is undefined; the city has no cells with text")
    return len({normalise_caption(c) for c in captions}) / len(captions)


def mean_pairwise_similarity(captions: Sequence[str]) -> float:
    """Mean TF-IDF cosine over all pairs of different non-empty captions (NaN with fewer than 2).

    TF-IDF (word 1-2 grams, fitted on these captions) down-weights words every caption
    uses. Rows are L2-normalised, so the sum over all pairs is ||sum of rows||² minus
    the diagonal: O(N), no N x N matrix.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    docs = [normalise_caption(c) for c in captions]
    docs = [d for d in docs if d]
    n = len(docs)
    if n < 2:
        return math.nan
    try:
        x = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit_transform(docs)
    except ValueError:  # no word at all (only punctuation / digits)
        return math.nan
    norms = np.asarray(x.multiply(x).sum(axis=1)).ravel()  # 1 per row, 0 for a row without words
    total = np.asarray(x.sum(axis=0)).ravel()
    pair_sum = float(total @ total) - float(norms.sum())
    return max(0.0, min(1.0, pair_sum / (n * (n - 1))))


# ---------------------------------------------------------------------------------
# grounding: own-tile similarity ranked among random tiles


def grounding_scores(own: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(percentile [k], z [k]) of own similarities [k] among reference similarities [R, k]."""
    own = np.asarray(own, dtype=np.float64).reshape(-1)
    ref = np.asarray(reference, dtype=np.float64).reshape(-1, own.shape[0])
    if ref.shape[0] == 0:
        nan = np.full(own.shape, np.nan)
        return nan, nan
    pct = ((ref < own).sum(axis=0) + 0.5 * (ref == own).sum(axis=0)) / ref.shape[0]
    std = ref.std(axis=0)
    z = (own - ref.mean(axis=0)) / np.where(std > 1e-12, std, 1e-12)
    return pct, z


def reference_rows(candidates: np.ndarray, city: str, cfg: GroundingConfig) -> np.ndarray:
    """Seeded random subset of `candidates` (row numbers of one city's embedded tiles).

    The seed mixes cfg.seed with the city's name, so a city's reference tiles do not
    depend on which other cities are assessed in the same run.
    """
    candidates = np.asarray(candidates, dtype=np.int64)
    k = min(cfg.n_reference + 1, len(candidates))  # +1: the tile itself is dropped from its own reference
    rng = np.random.default_rng([cfg.seed, zlib.crc32(str(city).encode("utf-8"))])
    return np.sort(rng.choice(candidates, size=k, replace=False)) if k < len(candidates) else candidates


def _need_text_model(model: Any) -> None:
    need_text_tower(model, "grounding")


def encode_sentences(model: Any, sentences: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Text-tower embeddings [n, D] (float32, L2-normalised) of `sentences`."""
    _need_text_model(model)
    return encode_texts(model, sentences, batch_size)


def image_embeddings(model: Any, workspace: Workspace, batch_size: int = 64):
    """The model's image embeddings of every cell with imagery (an EmbeddingTable).

    A model loaded from a checkpoint reads and fills the workspace's embedding cache
    (the same entry probes, search and the app use); an in-memory model embeds directly.
    """
    from urbanclip.data.embeddings import EmbeddingTable, cached_embeddings, embeddable_cells

    path = getattr(model, "checkpoint_path", None)
    if path is not None:
        return cached_embeddings(workspace, ModelImageEncoder(Path(path), kind=model.kind, batch_size=batch_size,
                                                              model=model))
    ids = embeddable_cells(workspace)
    if not ids:
        raise UserError(f"workspace {workspace.root} has no cells with images; grounding compares tiles with text")
    return EmbeddingTable(ids, embed_cells(model, workspace, ids, batch_size))


def ground_sentences(model: Any, workspace: Workspace, sentences_by_cell: Mapping[str, Sequence[str]],
                     cfg: GroundingConfig | None = None, images=None) -> pd.DataFrame:
    """Grounding of every sentence of every cell in `sentences_by_cell`.

    Returns one row per (cell, sentence): cell_id, city, sentence_index, sentence,
    similarity (cosine, own tile), percentile, z. Cells without an image embedding
    get NaN scores (there is no tile to check against). `images` (an EmbeddingTable
    from `image_embeddings`) is computed when not given.
    """
    cfg = cfg or GroundingConfig()
    cfg.validate()
    _need_text_model(model)
    images = images if images is not None else image_embeddings(model, workspace, cfg.batch_size)
    vectors = np.asarray(images.vectors, dtype=np.float32)
    row_of = {c: i for i, c in enumerate(images.cell_ids)}
    city_of_row = np.asarray([str(workspace.cell(c)["city"]) for c in images.cell_ids])

    unique: dict[str, int] = {}
    for sents in sentences_by_cell.values():
        for s in sents:
            unique.setdefault(s, len(unique))
    text_vecs = encode_sentences(model, list(unique), cfg.batch_size)

    refs: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # city -> (reference rows, sims [R, n_unique])
    records = []
    for cid, sents in sentences_by_cell.items():
        city = str(workspace.cell(cid)["city"])  # UserError for unknown ids
        if not sents:
            continue
        cols = np.array([unique[s] for s in sents], dtype=np.int64)
        i = row_of.get(cid)
        if i is None:
            pct = z = own = np.full(len(sents), np.nan)
        else:
            if city not in refs:
                rows = reference_rows(np.flatnonzero(city_of_row == city), city, cfg)
                refs[city] = (rows, vectors[rows] @ text_vecs.T)
            rows, sims = refs[city]
            keep = rows != i
            own = vectors[i] @ text_vecs[cols].T
            pct, z = grounding_scores(own, sims[keep][:, cols])
        for j, s in enumerate(sents):
            records.append((cid, city, j, s, float(own[j]), float(pct[j]), float(z[j])))
    return pd.DataFrame(records, columns=["cell_id", "city", "sentence_index", "sentence", "similarity",
                                          "percentile", "z"])


@dataclass
class DescriptionGrounding:
    """Grounding of one description (the side panel's badge).

    Checks of the first sentence, which states the land use:
    * contrastive: `percentiles[0]`, the share of random tiles of the city it fits worse than
      its own tile (`percentiles`/`z` hold this for every sentence);
    * captioner, by meaning: `meaning_share`, the captioner's probability P(sentence | tile) over
      the first sentences it writes for held-out tiles (`lead_sentences`, stored in the checkpoint
      by `training.train.evaluate`) plus this one, renormalised, summed over those that say the
      same as this one (`meaning_share`). Why by meaning: a land use has several wordings, and
      the captioner's doubt between "farmland" wordings is no doubt about the tile, while its
      weight on "suburban housing" wordings is. This is semantic uncertainty (Kuhn et al., ICLR
      2023), with "same meaning" = text-tower cosine >= `GroundingConfig.same_meaning`.
      `alternative` = the likeliest first sentence of another meaning.
    * captioner, by wording (checkpoints without `lead_sentences`): `support`, P(sentence | tile,
      the sentences before it) per sentence, ranked against `support_reference`, the quantiles of
      the support of the model's held-out first sentences; `support_rank` 0.1 = less sure than
      of 90% of its own.
    `score` = the meaning share (else sqrt(first-sentence percentile x support rank)); the badge
    flags a first sentence the captioner gives less than `share_threshold` of its weight (else:
    in its least sure fifth), or that fits its tile no better than chance. On the demo (bench/
    bench_descriptions.py) a wrong first sentence is most often the tile's second land use on a
    mixed tile: it fits that tile better than random tiles (the percentile stays high), but the
    captioner gives the tile's main land use more weight. Without a tile image or references
    (older checkpoints), the badge falls back to the mean percentile.
    """

    sentences: list[str]
    percentiles: list[float]
    z: list[float]
    threshold: float
    n_reference: int
    support: list[float] | None = None
    support_reference: list[float] | None = None
    rank_threshold: float = SUPPORT_RANK_THRESHOLD
    meaning_share: float = math.nan
    alternative: str | None = None
    share_threshold: float = MEANING_SHARE_THRESHOLD

    @property
    def mean_percentile(self) -> float:
        vals = [p for p in self.percentiles if math.isfinite(p)]
        return float(np.mean(vals)) if vals else math.nan

    @property
    def support_rank(self) -> float:
        """Where the first sentence's support falls among the reference quantiles, in [0, 1]."""
        if not self.support or not self.support_reference or not math.isfinite(self.support[0]):
            return math.nan
        ref = np.asarray(self.support_reference, dtype=np.float64)
        return float(np.interp(self.support[0], ref, np.linspace(0.0, 1.0, len(ref))))

    @property
    def _by_meaning(self) -> bool:
        return math.isfinite(self.meaning_share) and bool(self.percentiles) and math.isfinite(self.percentiles[0])

    @property
    def _checked(self) -> bool:
        if self._by_meaning:
            return True
        return math.isfinite(self.support_rank) and bool(self.percentiles) and math.isfinite(self.percentiles[0])

    @property
    def score(self) -> float:
        """What the badge judges (higher = better grounded)."""
        if self._by_meaning:
            return self.meaning_share
        if self._checked:
            return math.sqrt(self.percentiles[0] * self.support_rank)
        return self.mean_percentile

    @property
    def low(self) -> bool:
        if self._by_meaning:
            return self.meaning_share < self.share_threshold or self.percentiles[0] < self.threshold
        if self._checked:
            return self.support_rank < self.rank_threshold or self.percentiles[0] < self.threshold
        m = self.mean_percentile
        return math.isfinite(m) and m < self.threshold

    @property
    def weak_sentences(self) -> list[str]:
        weak = [self.sentences[0]] if self._checked and self.low else []
        return weak + [s for s, p in zip(self.sentences, self.percentiles)
                       if math.isfinite(p) and p < self.threshold and s not in weak]

    def message(self) -> str:
        if self._by_meaning:
            text = (f"the captioner gives {self.meaning_share:.0%} of its weight to first sentences that say this"
                    + (f" (its likeliest other reading: \u201c{self.alternative}\u201d)" if self.alternative else "")
                    + f", and it fits this tile better than {self.percentiles[0]:.0%} of {self.n_reference} random "
                    "tiles of the city (50% = chance)")
        elif self._checked:
            text = (f"the captioner is surer of the first sentence than of {self.support_rank:.0%} of the first "
                    f"sentences it wrote for held-out tiles, and it fits this tile better than "
                    f"{self.percentiles[0]:.0%} of {self.n_reference} random tiles of the city (50% = chance)")
        elif math.isfinite(self.mean_percentile):
            text = (f"fits its own tile better than {self.mean_percentile:.0%} of {self.n_reference} random tiles "
                    "of the city (50% = no better than chance)")
        else:
            return "Grounding could not be measured."
        return ("Weakly grounded: " if self.low else "Grounded: ") + text


def _tile_batch(model: Any, image: Any):
    """One tile as the model's input batch [1, 3, S, S]: a PIL tile (the one eval transform,
    `model.inference.image_batch`) or an already model-ready tensor [3, S, S]."""
    import torch

    return image.unsqueeze(0) if isinstance(image, torch.Tensor) else image_batch(model, [image])


def captioner_support(model: Any, image: Any, sentences: Sequence[str]) -> list[float]:
    """P(sentence | tile, the sentences before it) for each sentence, from the captioner of `model`;
    `image` is a PIL tile or a model-ready tensor [3, S, S]."""
    import torch

    _need_text_model(model)
    with torch.inference_mode():
        lp = model.sentence_logprobs(_tile_batch(model, image), [list(sentences)])[0]
    return [float(math.exp(v)) if math.isfinite(v) else math.nan for v in lp]


def meaning_share(model: Any, image: Any, sentence: str, references: Sequence[str],
                  same_meaning: float = 0.6, reference_vectors: np.ndarray | None = None) -> tuple[float, str | None]:
    """How much of the captioner's weight goes to first sentences that say what `sentence` says.

    The candidates are `sentence` and `references` (the first sentences the model writes,
    `model.lead_sentences`); each gets P(candidate | tile) from the captioner (one decoder pass,
    the tile read once), renormalised over the candidates. Returns (the summed share of the
    candidates whose text-tower cosine with `sentence` is >= `same_meaning`, the likeliest
    candidate of another meaning or None). See DescriptionGrounding. `reference_vectors`: the text
    tower's embeddings of `references` when already known (`model.lead_embeddings`, made at load).
    """
    import torch

    _need_text_model(model)
    refs = [r for r in dict.fromkeys(references) if r != sentence]
    cands = [sentence, *refs]
    with torch.inference_mode():
        lp = model.first_sentence_logprobs(_tile_batch(model, image), cands)[0].double().numpy()
        if reference_vectors is not None and len(reference_vectors) == len(references):
            vec_of = dict(zip(references, np.asarray(reference_vectors, dtype=np.float32)))
            first = model.encode_text([sentence]).float().cpu().numpy()
            emb = np.concatenate([first, np.stack([vec_of[r] for r in refs])]) if refs else first
        else:
            emb = model.encode_text(cands).float().cpu().numpy()
    lp[~np.isfinite(lp)] = -np.inf
    if not np.isfinite(lp[0]):
        return math.nan, None
    p = np.exp(lp - lp.max())
    p /= p.sum()
    same = emb @ emb[0] >= same_meaning
    same[0] = True
    other = np.flatnonzero(~same)
    alternative = cands[other[np.argmax(p[other])]] if other.size else None
    return float(p[same].sum()), alternative


def ground_description(model: Any, image_vector: np.ndarray, reference_vectors: np.ndarray,
                       sentences: Sequence[str], cfg: GroundingConfig | None = None,
                       image: Any = None) -> DescriptionGrounding | None:
    """Grounding of one tile's sentences against precomputed image embeddings, plus the captioner's
    support of each sentence when the tile `image` is given (one teacher-forced decoder pass).

    `reference_vectors` [R, D]: embeddings of random tiles of the same city, the tile itself excluded.
    None when there is nothing to ground (no sentence, no reference tiles).
    """
    cfg = cfg or GroundingConfig()
    sents = [s for s in sentences if s and s.strip()]
    ref = np.asarray(reference_vectors, dtype=np.float32)
    if not sents or ref.ndim != 2 or ref.shape[0] == 0:
        return None
    text = encode_sentences(model, sents, cfg.batch_size)
    own = np.asarray(image_vector, dtype=np.float32) @ text.T
    pct, z = grounding_scores(own, ref @ text.T)
    leads = getattr(model, "lead_sentences", None)
    share, alternative, support = math.nan, None, None
    if image is not None and leads:  # the badge by meaning (the per-sentence support is then not read)
        share, alternative = meaning_share(model, image, sents[0], leads, cfg.same_meaning,
                                           getattr(model, "lead_embeddings", None))
    elif image is not None:
        support = captioner_support(model, image, sents)
    return DescriptionGrounding(sents, [float(p) for p in pct], [float(v) for v in z], cfg.threshold,
                                int(ref.shape[0]), support, getattr(model, "lead_support_reference", None),
                                meaning_share=share, alternative=alternative)


# ---------------------------------------------------------------------------------
# captions of a city


def generate_captions(model: Any, workspace: Workspace, cell_ids: Sequence[str], max_len: int | None = None,
                      batch_size: int = 32, strategy: str | None = None) -> list[str]:
    """The model's description of each cell ("" for cells without imagery); None = the decoding default."""
    from urbanclip.model.decoding import DecodeConfig

    _need_text_model(model)
    return describe_cells(model, workspace, list(cell_ids), DecodeConfig.overriding(max_len=max_len, strategy=strategy),
                          batch_size)


def caption_sentences(text: str, source: str) -> list[str]:
    """Sentences of one caption: generated text is split at sentence ends, stored text by line."""
    if source == GENERATED:
        from urbanclip.text.captioners import split_generated

        return split_generated(text)
    return split_sentences(text)


@dataclass
class SourceFaithfulness:
    """The three measures for one city and one text source."""

    city: str
    source: str                     # "generated" or a text column
    cells: int                      # cells assessed that have text
    empty_captions: int             # cells assessed whose caption had no sentence (counted nowhere else)
    distinct_captions: int
    distinct_ratio: float
    mean_pairwise_similarity: float
    sentences: int
    distinct_sentences: int
    grounding_mean: float           # mean percentile over sentences with a score
    grounding_median: float
    grounding_mean_z: float
    share_below_threshold: float    # sentences with percentile < threshold
    descriptions_below_threshold: float  # cells whose mean sentence percentile < threshold
    frequent_sentences: list[dict] = field(default_factory=list)  # most frequent, with mean grounding
    weakest_cells: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


@dataclass
class FaithfulnessReport:
    """Faithfulness of one checkpoint on one workspace: one entry per (city, source)."""

    checkpoint: str
    workspace: str
    synthetic: bool
    config: GroundingConfig
    results: list[SourceFaithfulness]
    max_len: int | None = None     # generated caption length limit (None = the model's context)
    checkpoint_sha256: str = ""   # content hash prefix: which weights the numbers belong to

    def to_dict(self) -> dict:
        return {"checkpoint": self.checkpoint, "checkpoint_sha256": self.checkpoint_sha256,
                "workspace": self.workspace, "synthetic": self.synthetic,
                "grounding": asdict(self.config), "max_len": self.max_len,
                "results": [r.to_dict() for r in self.results]}

    def markdown(self) -> str:
        t = self.config.threshold
        sha = f" (sha256 {self.checkpoint_sha256})" if self.checkpoint_sha256 else ""
        lines = [f"# Caption faithfulness of `{self.checkpoint}`{sha}", "",
                 f"Workspace `{self.workspace}`" + (" (SYNTHETIC demo data)" if self.synthetic else "") + ".",
                 f"Grounding = percentile of sim(tile, sentence) among {self.config.n_reference} random tiles of the "
                 f"same city (seed {self.config.seed}); 0.5 = no better than chance. Threshold {t:g}.", "",
                 "| city | source | cells (empty) | distinct ratio | mean pairwise TF-IDF cos | sentences (distinct) | "
                 "grounding mean | median | mean z | sentences < thr | descriptions < thr |",
                 "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in self.results:
            lines.append(f"| {r.city} | {r.source} | {r.cells} ({r.empty_captions}) | {_f(r.distinct_ratio)} | "
                         f"{_f(r.mean_pairwise_similarity)} | {r.sentences} ({r.distinct_sentences}) | "
                         f"{_f(r.grounding_mean)} | {_f(r.grounding_median)} | {_f(r.grounding_mean_z, 2)} | "
                         f"{_pct(r.share_below_threshold)} | {_pct(r.descriptions_below_threshold)} |")
        for r in self.results:
            if r.frequent_sentences:
                lines += ["", f"## {r.city}, {r.source}: most frequent sentences", "",
                          "| sentence | cells | mean grounding |", "|---|---:|---:|"]
                lines += [f"| {s['sentence']} | {s['count']} | {_f(s['grounding'])} |" for s in r.frequent_sentences]
            if r.weakest_cells:
                lines += ["", f"Weakest descriptions ({r.source}): "
                          + "; ".join(f"`{c['cell_id']}` {_f(c['grounding'])}" for c in r.weakest_cells)]
        return "\n".join(lines) + "\n"


def _f(v: float | None, digits: int = 3) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _pct(v: float | None) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:.0%}"


def assess(model: Any, workspace: Workspace, city: str, source: str = GENERATED,
           cfg: GroundingConfig | None = None, max_len: int | None = None, max_cells: int | None = None,
           images=None, captions: Sequence[str] | None = None, top: int = 8) -> SourceFaithfulness:
    """The three measures for one city's captions from `source` ("generated" or a text column).

    `max_cells` assesses a seeded random subset of the city's cells (generation is the
    slow part); `captions` passes pre-generated texts aligned with the chosen cells.
    """
    cfg = cfg or GroundingConfig()
    cfg.validate()
    cells = workspace.city_cells(city)  # UserError for an unknown city
    if source != GENERATED and source not in workspace.cells.columns:
        raise UserError(f"--source {source!r} is neither 'generated' nor a column of workspace {workspace.root}; "
                        f"text columns: {[c for c in workspace.cells.columns if c.startswith('text_')]}")
    ids = [str(c) for c in cells["cell_id"]]
    if source == GENERATED:
        ids = [c for c, img in zip(ids, cells["image"]) if isinstance(img, str) and img]
    if max_cells is not None and max_cells < len(ids):
        if max_cells < 2:
            raise UserError(f"--max-cells must be at least 2, got {max_cells}")
        rng = np.random.default_rng([cfg.seed, zlib.crc32(city.encode("utf-8")), 1])
        ids = [ids[i] for i in sorted(rng.choice(len(ids), size=max_cells, replace=False))]
    if captions is None:
        captions = (generate_captions(model, workspace, ids, max_len=max_len, batch_size=cfg.batch_size)
                    if source == GENERATED else [str(workspace.cell(c)[source] or "") for c in ids])
    if len(captions) != len(ids):
        raise ValueError(f"{len(captions)} captions for {len(ids)} cells")
    sentences = {c: s for c, t in zip(ids, captions) if (s := caption_sentences(t, source))}
    if not sentences:
        raise UserError(f"city {city!r} has no {source} text to assess")
    ids = list(sentences)
    texts = [" ".join(s) for s in sentences.values()]  # the caption as its clean sentences
    g = ground_sentences(model, workspace, sentences, cfg, images=images)
    scored = g[np.isfinite(g["percentile"])]
    per_cell = scored.groupby("cell_id")["percentile"].mean()
    freq = Counter(normalise_caption(s) for s in g["sentence"])
    g_key = g.assign(key=[normalise_caption(s) for s in g["sentence"]])
    by_key = g_key.groupby("key")["percentile"].mean()
    example = g_key.drop_duplicates("key").set_index("key")["sentence"]
    frequent = [{"sentence": str(example[k]), "count": int(n), "grounding": float(by_key[k])}
                for k, n in freq.most_common(top)]
    weakest = [{"cell_id": str(c), "grounding": float(v)} for c, v in per_cell.nsmallest(min(5, len(per_cell))).items()]
    pct = scored["percentile"].to_numpy()
    return SourceFaithfulness(
        city=city, source=source, cells=len(ids), empty_captions=len(captions) - len(ids), distinct_captions=len({normalise_caption(t) for t in texts}),
        distinct_ratio=distinct_ratio(texts), mean_pairwise_similarity=mean_pairwise_similarity(texts),
        sentences=int(len(g)), distinct_sentences=len(freq),
        grounding_mean=float(pct.mean()) if pct.size else math.nan,
        grounding_median=float(np.median(pct)) if pct.size else math.nan,
        grounding_mean_z=float(scored["z"].mean()) if pct.size else math.nan,
        share_below_threshold=float((pct < cfg.threshold).mean()) if pct.size else math.nan,
        descriptions_below_threshold=float((per_cell < cfg.threshold).mean()) if len(per_cell) else math.nan,
        frequent_sentences=frequent, weakest_cells=weakest)


def write_report(report: FaithfulnessReport, out: str | Path) -> dict[str, Path]:
    """OUT/faithfulness.json and OUT/faithfulness.md (atomic writes)."""
    out = Path(out).expanduser()
    paths = {"json": out / "faithfulness.json", "md": out / "faithfulness.md"}
    atomic_write_json(paths["json"], report.to_dict())
    atomic_write_bytes(paths["md"], report.markdown().encode("utf-8"))
    return paths


def load_report(path: str | Path) -> dict:
    return json.loads(Path(path).read_text("utf-8"))
