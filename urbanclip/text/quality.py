"""Quality filter for descriptions, and the choice of one summary per image.

The paper filters low-quality descriptions and keeps one high-quality summary
per image. We keep every sentence (training may use them all) but flag the
description and mark the chosen summary, so nothing is silently lost:

  empty         no sentence left (after refinement)
  too_short     fewer than `min_words` words in all sentences together
  off_topic     talks only about ocean/forest/... (configurable keyword lists)
                although the cell is known to be urban (`is_urban=True`)
  repetitive    few distinct words, or one sentence repeated in other words

(Cells whose image is missing are flagged in the workspace `flags` column by
the importer and by `describe`; this filter judges the text only.)

The summary is the sentence most representative of the others (highest mean
similarity, the medoid) with a bonus per urban keyword it names. Similarity is
a hook (`similarity_fn`): bag-of-words cosine by default; a text encoder can be
plugged in (all-MiniLM-L6-v2: urbanclip.text.sentence_encoder, `refine --similarity minilm`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

SimilarityFn = Callable[[list[str]], np.ndarray]  # n sentences -> n x n similarity in [0, 1]

_WORD = re.compile(r"[a-z]+")
_STOP = frozenset(
    "a an the and or of in on at to with by for from is are was were be been it its this that these those "
    "there their as which while also some several many few various into near along around".split())


@dataclass
class QualityConfig:
    """Thresholds and keyword lists of the filter (all configurable per workspace)."""

    min_words: int = 8
    min_distinct_ratio: float = 0.35  # distinct content words / content words below this = repetitive
    max_pair_similarity: float = 0.9  # two sentences this alike (bag-of-words cosine) = repetitive
    off_topic_keywords: tuple[str, ...] = (
        "ocean", "sea", "seas", "beach", "waves", "forest", "jungle", "desert", "glacier", "mountain",
        "mountains", "wilderness", "iceberg", "island", "coral", "sky", "clouds")
    urban_keywords: tuple[str, ...] = (
        "building", "buildings", "road", "roads", "street", "streets", "highway", "residential",
        "commercial", "industrial", "city", "urban", "houses", "apartment", "apartments", "parking",
        "intersection", "railway", "train", "bridge", "factory", "factories", "warehouse", "warehouses",
        "village", "town", "district", "neighborhood", "neighbourhood", "blocks", "campus", "stadium",
        "construction", "port", "airport", "farmland", "field", "fields", "park")
    summary_keyword_bonus: float = 0.05


@dataclass
class QualityReport:
    """Flags of one description and the index of its chosen summary sentence (-1 if none)."""

    flags: list[str] = field(default_factory=list)
    summary_index: int = -1

    @property
    def ok(self) -> bool:
        return not self.flags

    @property
    def flags_text(self) -> str:
        return ";".join(self.flags)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _content(text: str) -> list[str]:
    return [w for w in _words(text) if w not in _STOP]


def bow_cosine(sentences: list[str]) -> np.ndarray:
    """Bag-of-words cosine similarity between sentences (stop words removed)."""
    bags = [Counter(_content(s)) for s in sentences]
    n = len(bags)
    sim = np.eye(n)
    norms = [math.sqrt(sum(v * v for v in b.values())) for b in bags]
    for i in range(n):
        for j in range(i + 1, n):
            dot = sum(c * bags[j].get(w, 0) for w, c in bags[i].items())
            v = dot / (norms[i] * norms[j]) if norms[i] and norms[j] else 0.0
            sim[i, j] = sim[j, i] = v
    return sim


def assess(sentences: Sequence[str], cfg: QualityConfig | None = None, *, is_urban: bool | None = None,
           similarity_fn: SimilarityFn = bow_cosine) -> QualityReport:
    """Flag one description and choose its summary sentence.

    `is_urban`: True when the cell is known to be built up (e.g. from its
    population); only then can an ocean/forest-only text be called off-topic.
    """
    cfg = cfg or QualityConfig()
    sents = [s.strip() for s in sentences if s and s.strip()]
    rep = QualityReport()
    if not sents:
        rep.flags.append("empty")
        return rep
    words = [w for s in sents for w in _words(s)]
    if len(words) < cfg.min_words:
        rep.flags.append("too_short")
    vocab = set(words)
    urban = vocab & set(cfg.urban_keywords)
    if is_urban and not urban and vocab & set(cfg.off_topic_keywords):
        rep.flags.append("off_topic")
    sim = np.asarray(similarity_fn(sents), dtype=np.float64)
    if sim.shape != (len(sents), len(sents)):
        raise ValueError(f"similarity_fn returned shape {sim.shape} for {len(sents)} sentences")
    content = [w for s in sents for w in _content(s)]
    off_diag = sim[~np.eye(len(sents), dtype=bool)]
    if (len(content) >= cfg.min_words and len(set(content)) / len(content) < cfg.min_distinct_ratio) or \
            (off_diag.size and off_diag.max() >= cfg.max_pair_similarity):
        rep.flags.append("repetitive")
    rep.summary_index = choose_summary(sents, sim, cfg)
    return rep


def choose_summary(sentences: list[str], sim: np.ndarray, cfg: QualityConfig | None = None) -> int:
    """Index of the summary: the medoid sentence, plus a bonus per urban keyword it names."""
    cfg = cfg or QualityConfig()
    n = len(sentences)
    if n == 0:
        return -1
    if n == 1:
        return 0
    centrality = (sim.sum(axis=1) - np.diag(sim)) / (n - 1)
    kw = set(cfg.urban_keywords)
    bonus = np.array([cfg.summary_keyword_bonus * len(set(_words(s)) & kw) for s in sentences])
    return int(np.argmax(centrality + bonus))  # ties -> first sentence, deterministic
