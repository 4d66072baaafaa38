"""Text-only indicator probes: how much do the descriptions alone say about a cell?

Used to measure whether refinement (urbanclip.text.refine) keeps the useful content:
the same probe on `text_raw` and `text_refined` should give the same R² within
noise. Two feature sources share one protocol:

* `TfidfFeatures`: TF-IDF on word 1-2 grams, fitted on the training cells only
  (the reference: no model, no pretraining);
* `EncodedFeatures(encode_texts)`: any `encode_texts(list[str]) -> np.ndarray`,
  e.g. our model's text tower (`UrbanCLIP.encode_text`) or the frozen sentence
  encoder all-MiniLM-L6-v2 (`features="minilm"`, urbanclip.text.sentence_encoder).

A ridge regression per indicator is fitted on the train split, its alpha chosen
on val, and R² reported on test (paper protocol: 60/20/20). Noise is estimated
by repeating over several seeded random splits; comparisons of two text columns
use the *same* splits, so the paired difference and its spread are reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import numpy as np

from urbanclip.errors import UserError
from urbanclip.data.splits import random_split
from urbanclip.data.workspace import Workspace, split_sentences

EncodeTexts = Callable[[list[str]], np.ndarray]


@dataclass
class TextProbeConfig:
    """Ridge probe settings. `seeds`: extra random 60/20/20 splits for the noise estimate
    (None = the workspace's stored split)."""

    alphas: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
    seeds: tuple[int | None, ...] = (None, 1, 2, 3, 4)
    max_features: int = 20000
    ngram_max: int = 2
    min_df: int = 2
    min_cells: int = 20  # below this a probe is meaningless; raise a clear error


class Features(Protocol):
    """Turns texts into a design matrix; `fit` sees training texts only."""

    name: str

    def fit(self, texts: list[str]) -> "Features": ...

    def transform(self, texts: list[str]): ...


class TfidfFeatures:
    """TF-IDF of word uni+bigrams, sublinear tf; the text-probe reference."""

    name = "tfidf"

    def __init__(self, cfg: TextProbeConfig):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self._vec = TfidfVectorizer(ngram_range=(1, cfg.ngram_max), min_df=cfg.min_df,
                                    max_features=cfg.max_features, sublinear_tf=True)

    def fit(self, texts: list[str]) -> "TfidfFeatures":
        self._vec.fit(texts)
        return self

    def transform(self, texts: list[str]):
        return self._vec.transform(texts)


class EncodedFeatures:
    """Features from a frozen text encoder; texts are encoded once and looked up."""

    def __init__(self, encode_texts: EncodeTexts, name: str = "encoder"):
        self.encode_texts = encode_texts
        self.name = name
        self._cache: dict[str, np.ndarray] = {}

    def fit(self, texts: list[str]) -> "EncodedFeatures":
        return self

    def transform(self, texts: list[str]) -> np.ndarray:
        todo = sorted({t for t in texts if t not in self._cache})
        if todo:
            vecs = np.asarray(self.encode_texts(todo), dtype=np.float32)
            if vecs.ndim != 2 or len(vecs) != len(todo):
                raise UserError(f"text encoder {self.name!r} returned shape {vecs.shape} for {len(todo)} texts; "
                                "it must return one row per text")
            self._cache.update(zip(todo, vecs))
        return np.stack([self._cache[t] for t in texts])


@dataclass
class ProbeScore:
    """R² of one (city, indicator, text column, features) probe over several splits."""

    city: str
    indicator: str
    column: str
    features: str
    r2: list[float] = field(default_factory=list)  # one per split, in cfg.seeds order
    n_cells: int = 0

    @property
    def mean(self) -> float:
        return float(np.mean(self.r2))

    @property
    def std(self) -> float:
        return float(np.std(self.r2, ddof=1)) if len(self.r2) > 1 else 0.0


def _ridge_r2(X, y: np.ndarray, split: np.ndarray, alphas: Sequence[float]) -> float:
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score

    tr, va, te = (split == "train"), (split == "val"), (split == "test")
    best, best_alpha = -np.inf, alphas[0]
    for a in alphas:
        m = Ridge(alpha=a).fit(X[tr], y[tr])
        s = r2_score(y[va], m.predict(X[va]))
        if s > best:
            best, best_alpha = s, a
    m = Ridge(alpha=best_alpha).fit(X[tr], y[tr])
    return float(r2_score(y[te], m.predict(X[te])))


def _texts(ws: Workspace, column: str, rows: np.ndarray) -> list[str]:
    if column not in ws.cells.columns:
        raise UserError(f"workspace {ws.root} has no text column {column!r}; "
                        f"run `python -m urbanclip refine --workspace {ws.root}` first" if column.startswith("text_refined")
                        else f"workspace {ws.root} has no text column {column!r}")
    values = ws.cells[column].to_numpy()[rows]
    return [" ".join(split_sentences(v)) for v in values]


def probe_cells(ws: Workspace, city: str | None, indicator: str, base_column: str = "text_raw") -> np.ndarray:
    """Row positions used for a probe: cells of `city` (None = all) with a source text and a known target.

    Every compared column uses these same rows, so a refined text that came out
    empty counts as an (informative) empty document, not as a dropped cell.
    """
    y = ws.log_targets(indicator)
    has_text = ws.cells[base_column].fillna("").astype(str).str.strip().ne("").to_numpy()
    in_city = np.ones(len(ws.cells), bool) if city is None else (ws.cells["city"] == city).to_numpy()
    return np.flatnonzero(has_text & np.isfinite(y) & in_city)


def _splits(ws: Workspace, rows: np.ndarray, seeds: Sequence[int | None]) -> list[np.ndarray]:
    out = []
    for s in seeds:
        out.append(ws.cells["split"].to_numpy()[rows].astype(str) if s is None else random_split(len(rows), seed=s))
    return out


FEATURE_NAMES = ("tfidf", "minilm")  # feature sources named by a string (others: pass an encode_texts callable)


def _encoded_features(features: str | EncodeTexts, name: str | None) -> EncodedFeatures | None:
    """None for TF-IDF (refitted per split), else the frozen encoder's cached features."""
    if isinstance(features, str):
        if features == "tfidf":
            return None
        if features == "minilm":
            from urbanclip.text.sentence_encoder import encode_texts, model_dir

            model_dir()  # missing package: fail before any probe, naming what to pip install
            return EncodedFeatures(encode_texts, name or "minilm")
        raise UserError(f"unknown text features {features!r}; use one of {', '.join(FEATURE_NAMES)} or an encoder function")
    return EncodedFeatures(features, name or getattr(features, "__name__", "encoder"))


def run_text_probe(ws: Workspace, columns: Sequence[str], indicators: Sequence[str] | None = None,
                   cities: Sequence[str | None] | None = None, features: str | EncodeTexts = "tfidf",
                   cfg: TextProbeConfig | None = None, base_column: str = "text_raw",
                   features_name: str | None = None) -> list[ProbeScore]:
    """R² of text-only ridge probes for each (city, indicator, column), on shared splits.

    `features` is "tfidf", "minilm" or an `encode_texts` callable; `cities` entries of None
    mean all cities pooled. Defaults: every indicator, each city separately.
    """
    cfg = cfg or TextProbeConfig()
    indicators = list(indicators or ws.indicator_names)
    cities = list(cities) if cities is not None else ws.cities
    encoder = _encoded_features(features, features_name)
    scores = []
    for city in cities:
        for ind in indicators:
            rows = probe_cells(ws, city, ind, base_column)
            where = f"city {city}" if city else "the workspace"
            if len(rows) < cfg.min_cells:
                raise UserError(f"only {len(rows)} cells of {where} have both a description in {base_column!r} and a "
                                f"known {ind!r}; a text probe needs at least {cfg.min_cells}")
            y = ws.log_targets(ind)[rows]
            splits = _splits(ws, rows, cfg.seeds)
            for col in columns:
                texts = _texts(ws, col, rows)
                sc = ProbeScore(city or "all", ind, col, features_name or ("tfidf" if encoder is None else encoder.name),
                                n_cells=len(rows))
                for split in splits:
                    feats = TfidfFeatures(cfg) if encoder is None else encoder
                    feats.fit([t for t, s in zip(texts, split) if s == "train"])
                    X = feats.transform(texts)
                    sc.r2.append(_ridge_r2(X, y, split, cfg.alphas))
                scores.append(sc)
    return scores


def comparison_table(scores: list[ProbeScore], a: str = "text_raw", b: str = "text_refined") -> str:
    """Markdown: R² (mean ± std over splits) of columns a and b and their paired difference."""
    by = {(s.city, s.indicator, s.features, s.column): s for s in scores}
    lines = [f"| city | indicator | features | R² {a} | R² {b} | Δ (b − a), paired | n cells |",
             "|---|---|---|---:|---:|---:|---:|"]
    for (city, ind, feat, col), sa in by.items():
        if col != a or (city, ind, feat, b) not in by:
            continue
        sb = by[(city, ind, feat, b)]
        d = np.asarray(sb.r2) - np.asarray(sa.r2)
        dstd = float(np.std(d, ddof=1)) if len(d) > 1 else 0.0
        lines.append(f"| {city} | {ind} | {feat} | {sa.mean:.3f} ± {sa.std:.3f} | {sb.mean:.3f} ± {sb.std:.3f} | "
                     f"{d.mean():+.3f} ± {dstd:.3f} | {sa.n_cells} |")
    return "\n".join(lines)


def scores_table(scores: list[ProbeScore]) -> str:
    """Markdown: one row per probe (when only one column is probed)."""
    lines = ["| city | indicator | column | features | R² mean ± std | splits | n cells |",
             "|---|---|---|---|---:|---:|---:|"]
    for s in scores:
        lines.append(f"| {s.city} | {s.indicator} | {s.column} | {s.features} | {s.mean:.3f} ± {s.std:.3f} | "
                     f"{len(s.r2)} | {s.n_cells} |")
    return "\n".join(lines)
