"""Can a planner trust the descriptions, look-alikes and text search? Measured on the demo.

Describes every cell of a demo workspace with a checkpoint (the same captioner as
`python -m urbanclip describe --backend urbanclip`), loads the app's context (the
same embeddings, similarity index and text search the Map page uses) and scores,
against the demo's hidden ground truth (`demo_landuse`, `demo_frac_water`):

  descriptions   first sentence names the tile's true land-use class (all cells; water
                 cells), descriptions that repeat a sentence, distinct descriptions per
                 city, water mentioned when >= 25% of the tile is water (recall),
                 unverifiable claims of the kinds the refinement rules remove, and
                 sentences that are verbatim sentences of the workspace's own text
  grounding      AUC of the grounding score of the first sentence at telling correct
                 from wrong first sentences, and how many wrong ones are badged grounded
  look-alikes    top-1 cross-city score >= 0.999, effective rank of the vectors the index
                 searches, top-5 cross-city land-use agreement (and chance), mean
                 |delta log1p indicator| of the top-1 match vs a random cross-city pair,
                 the largest number of queries one cell is the top-1 match of (hubness);
                 and what the demo allows at best: the same quantities with the true
                 land-use mix as vectors, and the indicator noise floor (a perfect image
                 model's |delta log1p| ratio; see score_lookalike_ceiling)
  text search    per class query, how many of the top 10 cells belong to that class

It prints a table and, as its last line, one JSON object with every quantity.

    python bench/bench_descriptions.py                       # default demo, assets/model
    python bench/bench_descriptions.py --model RUN --workspace W
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from urbanclip.errors import UserError  # noqa: E402

WATER_SHARE = 0.25
# the classes of urbanclip.demo.landuse and the words that name each (the demo's LANDUSE_KEYWORDS)
CLASS_QUERIES = {
    "water": "water", "farmland": "farmland", "industrial": "industrial warehouses",
    "commercial": "downtown office towers", "park": "park", "dense_residential": "apartment blocks",
    "suburban_residential": "detached houses with gardens",
}
UNVERIFIABLE_RULES = ("count_vehicles", "count_people", "time_of_day", "weather", "mood", "vague_filler")
WATER_WORDS = ("water", "river", "lake", "sea", "coast", "shore")


def keyword_classes(sentence: str, keywords: dict[str, list[str]]) -> set[str]:
    """Classes whose keywords the sentence mentions (word-prefix match, case-insensitive)."""
    low = sentence.lower()
    return {c for c, words in keywords.items() if any(re.search(rf"\b{re.escape(w)}", low) for w in words)}


def sentence_key(sentence: str) -> str:
    """Two sentences are 'the same' when their words are (case, spacing, punctuation ignored)."""
    return " ".join(re.findall(r"[a-z0-9]+", sentence.lower()))


def effective_rank(vectors: np.ndarray) -> float:
    """Participation ratio of the squared singular values of the centred vectors: (sum s^2)^2 / sum s^4.
    1 = one direction holds all the variance; D = variance spread evenly over D directions."""
    x = np.asarray(vectors, dtype=np.float64)
    x = x - x.mean(axis=0)
    s2 = np.linalg.svd(x, compute_uv=False) ** 2
    return float(s2.sum() ** 2 / max((s2 ** 2).sum(), 1e-300))


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties half (Mann-Whitney U)."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return math.nan
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    allv = np.concatenate([pos, neg])[order]
    i = 0
    while i < len(allv):  # average ranks of ties
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def unverifiable(sentences: list[str]) -> list[str]:
    """Names of the refinement rules (of the unverifiable kinds) that fire on these sentences."""
    from urbanclip.text.refine import refine_sentences

    _, counts = refine_sentences(sentences)
    return [r for r in UNVERIFIABLE_RULES if counts.fired.get(r, 0)]


def describe_all(model_path: Path, ws, cell_ids: list[str], batch_size: int,
                 strategy: str | None = None) -> tuple[list[list[str]], float]:
    """Sentences per cell from the `describe --backend urbanclip` captioner, and seconds taken."""
    from urbanclip.text.captioners import make_captioner

    opts = {"strategy": strategy} if strategy else {}
    cap = make_captioner("urbanclip", str(model_path), batch_size=batch_size, **opts)
    t0 = time.perf_counter()
    out: list[list[str]] = []
    for i in range(0, len(cell_ids), batch_size):
        out += cap.describe([ws.load_image(c) for c in cell_ids[i:i + batch_size]])
    return out, time.perf_counter() - t0


def score_descriptions(cells, sentences: list[list[str]], source_sentences: set[str]) -> dict:
    from urbanclip.data.demo import LANDUSE_KEYWORDS

    landuse = cells["demo_landuse"].astype(str).tolist()
    water = cells["demo_frac_water"].to_numpy(dtype=float)
    first = [s[0] if s else "" for s in sentences]
    named = [keyword_classes(f, LANDUSE_KEYWORDS) for f in first]
    correct = np.array([lu in n for lu, n in zip(landuse, named)])
    only = np.array([n == {lu} for lu, n in zip(landuse, named)])
    is_water = np.array([lu == "water" for lu in landuse])
    repeats = np.array([len({sentence_key(x) for x in s}) < len(s) for s in sentences])
    mentions_water = np.array([any(re.search(rf"\b{w}", " ".join(s).lower()) for w in WATER_WORDS)
                               for s in sentences])
    wet = water >= WATER_SHARE
    dry = water < 0.02
    claims = [unverifiable(s) for s in sentences]
    claim_kinds = Counter(k for c in claims for k in c)
    all_sents = [x for s in sentences for x in s]
    verbatim = np.mean([sentence_key(x) in source_sentences for x in all_sents]) if all_sents else math.nan
    distinct = {}
    for city, grp in cells.groupby("city", sort=True):
        rows = [cells.index.get_loc(i) for i in grp.index]
        keys = {" | ".join(sentence_key(x) for x in sentences[r]) for r in rows}
        distinct[str(city)] = len(keys) / len(rows)
    per_class = {c: float(correct[np.array(landuse) == c].mean()) for c in sorted(set(landuse))}
    from urbanclip.data.workspace import split_sentences

    # the same check of the workspace's own text: how often the training text leads with the true class
    src_first = [(split_sentences(t) or [""])[0] if isinstance(t, str) else "" for t in cells["text_raw"]]
    src_correct = np.mean([lu in keyword_classes(f, LANDUSE_KEYWORDS) for lu, f in zip(landuse, src_first)])
    return {
        "source_first_sentence_class": float(src_correct),
        "cells": len(sentences), "empty": int(sum(not s for s in sentences)),
        "first_sentence_class": float(correct.mean()), "first_sentence_class_only": float(only.mean()),
        "first_sentence_class_water": float(correct[is_water].mean()) if is_water.any() else math.nan,
        "first_sentence_class_per_class": per_class,
        "repeat_sentence_share": float(repeats.mean()),
        "distinct_ratio_per_city": distinct, "distinct_ratio_min": min(distinct.values()),
        "water_recall": float(mentions_water[wet].mean()) if wet.any() else math.nan, "water_cells": int(wet.sum()),
        "water_false_mentions": float(mentions_water[dry].mean()) if dry.any() else math.nan,
        "unverifiable_share": float(np.mean([bool(c) for c in claims])), "unverifiable_kinds": dict(claim_kinds),
        "verbatim_source_sentence_share": float(verbatim),
        "sentences_per_description": float(np.mean([len(s) for s in sentences])),
        "correct_first": correct, "first": first,
    }


def score_grounding(ctx, cells, first: list[str], correct: np.ndarray, seed: int = 0) -> dict:
    """The app's grounding badge (services.profile.description_grounding) on first sentences.

    generated: each cell's generated first sentence, correct vs wrong (AUC of the badge's score,
    and of the contrastive percentile alone). controlled: each cell's own source lead sentence
    (naming only its true class) vs a lead sentence of another class taken from another cell.
    """
    from urbanclip.data.demo import LANDUSE_KEYWORDS
    from urbanclip.data.workspace import split_sentences
    from urbanclip.services.profile import description_grounding

    def grade(cid: str, sentence: str) -> tuple[float, float, float]:
        g = description_grounding(ctx, cid, [sentence]) if sentence else None
        return (math.nan, math.nan, math.nan) if g is None else (g.score, g.mean_percentile, float(g.low))

    ids = [str(c) for c in cells["cell_id"]]
    landuse = cells["demo_landuse"].astype(str).tolist()
    gen = np.array([grade(c, f) for c, f in zip(ids, first)])
    ok = np.isfinite(gen[:, 0])
    wrong, right = ok & ~correct, ok & correct
    leads = {}
    for t, lu in zip(cells["text_raw"], landuse):
        lead = (split_sentences(t) or [""])[0]
        if keyword_classes(lead, LANDUSE_KEYWORDS) == {lu}:
            leads.setdefault(lu, set()).add(lead)
    leads = {k: sorted(v) for k, v in leads.items()}
    rng = np.random.default_rng(seed)
    pos, neg = [], []
    for cid, lu in zip(ids, landuse):
        if lu in leads and len(leads) > 1:
            pos.append(grade(cid, str(rng.choice(leads[lu]))))
            neg.append(grade(cid, str(rng.choice(leads[str(rng.choice([k for k in leads if k != lu]))]))))
    pos, neg = np.array(pos), np.array(neg)
    both = np.concatenate([pos, neg])
    label = np.r_[np.ones(len(pos)), np.zeros(len(neg))].astype(bool)
    # the badge's trade-off at other share thresholds (score = the meaning share; percentile test unchanged)
    sweep = {f"{t:.1f}": {"wrong_badged_grounded": float(np.mean(~((gen[wrong, 0] < t) | (gen[wrong, 1] < 0.5)))),
                          "correct_badged_grounded": float(np.mean(~((gen[right, 0] < t) | (gen[right, 1] < 0.5))))}
             for t in (0.5, 0.6, 0.7, 0.8)} if wrong.any() and right.any() else {}
    # how "same meaning" was chosen: the badge's AUC on the val cells alone at other text-tower cosines,
    # and how close the model's own first sentences of one land use are vs of different land uses
    from dataclasses import replace

    from urbanclip.services.profile import GROUNDING

    val = (cells["split"].astype(str) == "val").to_numpy() & ok
    by_cosine = {}
    for cos in (0.5, 0.55, 0.6, 0.65, 0.7, 0.8):
        cfg = replace(GROUNDING, same_meaning=cos)
        sc = [description_grounding(ctx, c, [f], cfg) for c, f, v in zip(ids, first, val) if v]
        by_cosine[f"{cos:.2f}"] = roc_auc(np.array([x.score for x in sc]), correct[val])
    leads_model = list(getattr(ctx.model, "lead_sentences", None) or [])
    lead_cos = {}
    if len(leads_model) > 1:
        import torch

        with torch.inference_mode():
            e = ctx.model.encode_text(leads_model).float().cpu().numpy()
        cos_m = e @ e.T
        named = [frozenset(keyword_classes(x, LANDUSE_KEYWORDS)) for x in leads_model]
        same = np.array([[a == b for b in named] for a in named])
        off = ~np.eye(len(named), dtype=bool)
        if (same & off).any() and (~same).any():
            lead_cos = {"same_class_min": float(cos_m[same & off].min()), "same_class_max": float(cos_m[same & off].max()),
                        "other_class_p90": float(np.percentile(cos_m[~same], 90))}
    return {"grounding_auc": roc_auc(gen[ok, 0], correct[ok]), "grounding_threshold_sweep": sweep,
            "grounding_val_auc_by_same_meaning_cosine": by_cosine, "lead_sentence_cosines": lead_cos,
            "grounding_auc_percentile": roc_auc(gen[ok, 1], correct[ok]),
            "wrong_badged_grounded": float(np.mean(gen[wrong, 2] == 0)) if wrong.any() else math.nan,
            "correct_badged_grounded": float(np.mean(gen[right, 2] == 0)) if right.any() else math.nan,
            "grounding_wrong_n": int(wrong.sum()),
            "grounding_controlled_auc": roc_auc(both[:, 0], label),
            "grounding_controlled_auc_percentile": roc_auc(both[:, 1], label),
            "controlled_wrong_badged_grounded": float(np.mean(neg[:, 2] == 0)) if len(neg) else math.nan}


def indicator_matrix(ws, cells) -> np.ndarray:
    """Observed indicators on the model's scale (log1p), one column per indicator."""
    from urbanclip.data.indicators import to_model_scale

    return np.stack([np.asarray(to_model_scale(cells[n].to_numpy(dtype=float)), dtype=float)
                     for n in ws.indicator_names], axis=1)


def match_quality(query_rows: np.ndarray, top5_rows: np.ndarray, cells, y: np.ndarray, seed: int = 0) -> dict:
    """Top-5 land-use agreement and the top-1 match's mean |delta log1p| vs a random other-city cell's."""
    lu = cells["demo_landuse"].astype(str).to_numpy()
    city = cells["city"].astype(str).to_numpy()
    rng = np.random.default_rng(seed)
    rand = np.array([rng.choice(np.flatnonzero(city != city[q])) for q in query_rows])
    d_top = np.abs(y[top5_rows[:, 0]] - y[query_rows]).mean()
    d_rand = np.abs(y[rand] - y[query_rows]).mean()
    return {"agreement": float(np.mean(lu[top5_rows] == lu[query_rows][:, None])),
            "delta_top1": float(d_top), "delta_random": float(d_rand), "ratio": float(d_top / d_rand),
            # chance agreement: P(a random cell of another city has the query's class)
            "chance": float(np.mean([np.mean(lu[city != city[q]] == lu[q]) for q in query_rows]))}


def score_lookalikes(ctx, cells, seed: int = 0) -> dict:
    """Cross-city look-alikes exactly as the Map page shows them (services.profile.similar_cells)."""
    from urbanclip.services.profile import similar_cells

    ids = [c for c in cells["cell_id"] if ctx.vector_of(c) is not None]
    row = {c: i for i, c in enumerate(cells["cell_id"])}
    top1_scores, top5_rows, query_rows = [], [], []
    for cid in ids:
        sim = similar_cells(ctx, cid, k=5)
        if len(sim) < 5:
            continue
        top1_scores.append(sim[0].score)
        top5_rows.append([row[m.cell_id] for m in sim])
        query_rows.append(row[cid])
    top5_rows, query_rows = np.asarray(top5_rows), np.asarray(query_rows)
    q = match_quality(query_rows, top5_rows, cells, indicator_matrix(ctx.workspace, cells), seed)
    vecs = ctx.index.vectors if hasattr(ctx.index, "vectors") else ctx.vectors
    hubs = Counter(top5_rows[:, 0].tolist())
    return {"lookalike_top1_ge_0999": float(np.mean(np.asarray(top1_scores) >= 0.999)),
            "lookalike_min_top1_score": float(np.min(top1_scores)), "lookalike_median_top1": float(np.median(top1_scores)),
            "effective_rank": effective_rank(vecs), "embedding_dim": int(np.asarray(vecs).shape[1]),
            "lookalike_landuse_agreement_top5": q["agreement"], "lookalike_landuse_chance": q["chance"],
            "lookalike_delta_log1p_top1": q["delta_top1"], "lookalike_delta_log1p_random": q["delta_random"],
            "lookalike_delta_ratio": q["ratio"], "lookalike_max_hub": int(max(hubs.values()))}


def score_lookalike_ceiling(ws, cells, seed: int = 0, draws: int = 50) -> dict:
    """What the demo lets ANY image-only look-alike reach, from its hidden truth.

    oracle: the true land-use mix (`demo_frac_*`, what the tile shows) as the vectors, nearest
    in another city by Euclidean distance. noise floor: two cells with the SAME expected
    indicators still differ by the generator's per-cell log-normal noise and its hidden
    prosperity field (urbanclip.data.demo.indicators: invisible in the pixels); simulated with
    each cell's observed value standing in for its expected one. Divided by the random-pair
    delta, that is the least |delta log1p| ratio a perfect image model could show.
    """
    from urbanclip.data.demo.indicators import HIDDEN_SIGMA, NOISE_SIGMA

    frac = cells[[c for c in cells.columns if c.startswith("demo_frac_")]].to_numpy(dtype=float)
    y = indicator_matrix(ws, cells)
    q = match_quality(np.arange(len(cells)), nearest_other_city(frac, cells), cells, y, seed)
    rng = np.random.default_rng(seed)
    floor = []
    for n in ws.indicator_names:
        raw = cells[n].to_numpy(dtype=float)
        sd = math.hypot(NOISE_SIGMA[n], HIDDEN_SIGMA[n])
        a, b = (raw * np.exp(rng.normal(0.0, sd, (draws, len(raw)))) for _ in range(2))
        floor.append(np.abs(np.log1p(a) - np.log1p(b)).mean())
    return {"oracle_landuse_agreement_top5": q["agreement"], "oracle_delta_ratio": q["ratio"],
            "oracle_effective_rank": effective_rank(frac), "noise_floor_delta_log1p": float(np.mean(floor)),
            "noise_floor_delta_ratio": float(np.mean(floor) / q["delta_random"])}


def nearest_other_city(vectors: np.ndarray, cells, k: int = 5) -> np.ndarray:
    """Rows of each cell's k nearest cells (Euclidean) in other cities."""
    v = np.asarray(vectors, dtype=np.float64)
    sq = (v * v).sum(1)
    dist = sq[:, None] + sq[None, :] - 2 * v @ v.T
    city = cells["city"].astype(str).to_numpy()
    dist[city[:, None] == city[None, :]] = np.inf
    return np.argsort(dist, axis=1, kind="stable")[:, :k]


def score_lookalike_tradeoff(ctx, cells, seed: int = 0) -> dict:
    """What it would take to spread the index's vectors over more directions, and what it costs.

    The index (search.index.SimilarityIndex) built with other whitening powers: coordinates on the
    principal axes divided by (singular value ** p); p = 0 is plain centred cosine, p = 0.5 the
    app's policy (WHITEN_POWER), p = 1 full whitening. Also the supervision: the same look-alikes
    from the text tower's embedding of each cell's own source description (the text the
    contrastive loss aligned the tiles to), centred by the same policy.
    """
    import torch

    from urbanclip.data.embeddings import EmbeddingTable
    from urbanclip.data.topics import topic_order
    from urbanclip.data.workspace import split_sentences
    from urbanclip.search.index import SimilarityIndex

    ids = [str(c) for c in cells["cell_id"]]
    y = indicator_matrix(ctx.workspace, cells)
    rows = np.arange(len(ids))

    def quality(index: SimilarityIndex) -> dict:
        w = np.stack([index.vectors[index.row_of(c)] for c in ids]).astype(np.float64)
        q = match_quality(rows, nearest_other_city(w, cells), cells, y, seed)
        return {"effective_rank": effective_rank(w), "agreement": q["agreement"], "ratio": q["ratio"]}

    table = EmbeddingTable(ctx.cell_ids, ctx.vectors)
    out = {f"whitened_{p}": quality(SimilarityIndex.for_table(table, ctx.workspace, readings=ctx.readings, whiten=p))
           for p in (0.0, 0.5, 0.75, 1.0)}
    col = ctx.workspace.text_column()
    texts = [" ".join(topic_order(split_sentences(t))) if isinstance(t, str) else "" for t in cells[col]]
    with torch.inference_mode():
        t = np.concatenate([ctx.model.encode_text(texts[i:i + 128]).float().cpu().numpy()
                            for i in range(0, len(texts), 128)])
    out["source_text"] = {**quality(SimilarityIndex(t, ids, cells["city"].astype(str).tolist(), whiten=0)),
                          "column": col}
    return out


def score_text_search(ctx, cells) -> dict:
    from urbanclip.services.lookup import text_search

    lu = dict(zip(cells["cell_id"], cells["demo_landuse"].astype(str)))
    out = {}
    for cls, q in CLASS_QUERIES.items():
        res = text_search(ctx, q, k=10)
        out[q] = int(sum(lu[h.cell_id] == cls for h in res.ranked[:10]))
    return {"text_search_top10": out, "text_search_min": min(out.values())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workspace", "-w", default=None, help="demo workspace (default: the app's demo, built if missing)")
    p.add_argument("--model", "-m", default="assets/model", help="run folder or checkpoint (default assets/model)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--strategy", default=None, help="decoding strategy (default: the captioner's default)")
    p.add_argument("--examples", type=int, default=6, help="example descriptions to print")
    p.add_argument("--save", default=None, metavar="FILE.json",
                   help="also write every cell's description (sentences) and the result to this file")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from urbanclip.services.context import ensure_workspace, load_context

    ws = ensure_workspace(Path(args.workspace) if args.workspace else None)
    cells = ws.cells
    missing = [c for c in ("demo_landuse", "demo_frac_water") if c not in cells.columns]
    if missing:
        raise UserError(f"workspace {ws.root} has no {missing} columns: this benchmark needs the synthetic demo "
                        "(`python -m urbanclip demo --out W`)")
    model_path = Path(args.model)
    t0 = time.perf_counter()
    ctx = load_context(ws.root, model_path, fit_missing_probes=False)
    if ctx.model is None or ctx.index is None:
        raise UserError(f"could not load {model_path} with embeddings: {ctx.notes}")
    cell_ids = [str(c) for c in cells["cell_id"]]
    sentences, describe_s = describe_all(model_path, ws, cell_ids, args.batch_size, args.strategy)
    from urbanclip.data.workspace import split_sentences

    source = {sentence_key(s) for col in [c for c in cells.columns if c.startswith("text_")]
              for t in cells[col] if isinstance(t, str) for s in split_sentences(t)}
    d = score_descriptions(cells, sentences, source)
    g = score_grounding(ctx, cells, d.pop("first"), d.pop("correct_first"))
    la = score_lookalikes(ctx, cells)
    ts = score_text_search(ctx, cells)
    ceiling = score_lookalike_ceiling(ws, cells)
    tradeoff = score_lookalike_tradeoff(ctx, cells)
    result = {"workspace": str(ws.root), "model": str(model_path), "describe_seconds": round(describe_s, 1),
              "seconds": round(time.perf_counter() - t0, 1), **d, **g, **la, **ceiling, "lookalike_tradeoff": tradeoff, **ts}

    rows = [
        ("first sentence names the true land-use class", d["first_sentence_class"], ">= 0.80"),
        ("  ... on water cells", d["first_sentence_class_water"], ">= 0.90"),
        ("  ... and no other class", d["first_sentence_class_only"], ""),
        ("  the source text (text_raw) by the same check", d["source_first_sentence_class"], ""),
        ("descriptions repeating a sentence", d["repeat_sentence_share"], "0"),
        ("distinct descriptions per city (min)", d["distinct_ratio_min"], ">= 0.30"),
        (f"water mentioned when >= {WATER_SHARE:.0%} water (recall, {d['water_cells']} cells)", d["water_recall"], ">= 0.90"),
        ("water mentioned when < 2% water", d["water_false_mentions"], ""),
        ("descriptions with an unverifiable claim", d["unverifiable_share"], "<= 0.05"),
        ("generated sentences found verbatim in the workspace text", d["verbatim_source_sentence_share"], ""),
        ("grounding AUC, correct vs wrong generated first sentences (badge score)", g["grounding_auc"], ">= 0.85"),
        ("  ... by the contrastive percentile alone", g["grounding_auc_percentile"], ""),
        (f"wrong generated first sentences badged grounded ({g['grounding_wrong_n']})", g["wrong_badged_grounded"], ""),
        ("correct generated first sentences badged grounded", g["correct_badged_grounded"], ""),
        ("grounding AUC, own-class vs other-class lead sentence (badge score)", g["grounding_controlled_auc"], ""),
        ("  ... by the contrastive percentile alone", g["grounding_controlled_auc_percentile"], ""),
        ("other-class lead sentences badged grounded", g["controlled_wrong_badged_grounded"], ""),
        ("look-alikes: top-1 score >= 0.999", la["lookalike_top1_ge_0999"], "<= 0.05"),
        (f"look-alikes: effective rank (of {la['embedding_dim']})", la["effective_rank"], ">= 8"),
        (f"look-alikes: top-5 land-use agreement (chance {la['lookalike_landuse_chance']:.2f})",
         la["lookalike_landuse_agreement_top5"], ">= 0.85"),
        (f"look-alikes: |d log1p| top-1 / random ({la['lookalike_delta_log1p_top1']:.2f} / "
         f"{la['lookalike_delta_log1p_random']:.2f})", la["lookalike_delta_ratio"], "<= 0.30"),
        ("look-alikes: most queries sharing one top-1 match", la["lookalike_max_hub"], ""),
        ("  ceiling, true land-use mix as vectors: effective rank", ceiling["oracle_effective_rank"], ""),
        ("  ceiling, true land-use mix as vectors: top-5 land-use agreement",
         ceiling["oracle_landuse_agreement_top5"], ""),
        ("  ceiling, true land-use mix as vectors: |d log1p| top-1 / random", ceiling["oracle_delta_ratio"], ""),
        (f"  floor, same expected indicators: |d log1p| ({ceiling['noise_floor_delta_log1p']:.2f}) / random",
         ceiling["noise_floor_delta_ratio"], ""),
    ] + [(f"text search {q!r}: top 10 of its class", n, ">= 8") for q, n in ts["text_search_top10"].items()]
    print(f"{len(cell_ids)} cells of {ws.root}, model {model_path}; described in {describe_s:.0f} s")
    print(f"{'quantity':74s} {'measured':>9s}  target")
    for name, v, target in rows:
        print(f"{name:74s} {v:9.3f}  {target}" if isinstance(v, float) else f"{name:74s} {v:9d}  {target}")
    print("first-sentence accuracy per class: " + ", ".join(f"{k} {v:.2f}" for k, v in d["first_sentence_class_per_class"].items()))
    if g["grounding_threshold_sweep"]:
        print("grounding badge at other meaning-share thresholds (wrong / correct first sentences badged grounded): "
              + "; ".join(f"{t} {v['wrong_badged_grounded']:.2f} / {v['correct_badged_grounded']:.2f}"
                          for t, v in g["grounding_threshold_sweep"].items()))
    print("grounding AUC on the val cells by the same-meaning cosine: "
          + "; ".join(f"{c} {v:.3f}" for c, v in g["grounding_val_auc_by_same_meaning_cosine"].items()))
    if g["lead_sentence_cosines"]:
        lc = g["lead_sentence_cosines"]
        print(f"the model's own first sentences, text-tower cosine: same land use {lc['same_class_min']:.2f}-"
              f"{lc['same_class_max']:.2f}, different land uses 90th percentile {lc['other_class_p90']:.2f}")
    print("look-alikes by whitening power, 0.5 = the index (effective rank / top-5 agreement / |d| ratio): "
          + "; ".join(f"p={k.split('_')[1]} {v['effective_rank']:.1f} / {v['agreement']:.3f} / {v['ratio']:.3f}"
                      for k, v in tradeoff.items() if k.startswith("whitened")))
    src = tradeoff["source_text"]
    print(f"look-alikes by the text tower on each cell's own {src['column']} (the supervision): effective rank "
          f"{src['effective_rank']:.1f}, top-5 agreement {src['agreement']:.3f}, |d| ratio {src['ratio']:.3f}")
    print("unverifiable claims by rule: " + (json.dumps(d["unverifiable_kinds"]) or "none"))
    rng = np.random.default_rng(0)
    for i in sorted(rng.choice(len(cell_ids), size=min(args.examples, len(cell_ids)), replace=False)):
        print(f"  {cell_ids[i]} [{cells['demo_landuse'].iloc[i]}, water {cells['demo_frac_water'].iloc[i]:.0%}]: "
              + " ".join(sentences[i]))
    if args.save:
        Path(args.save).write_text(json.dumps({"result": result, "descriptions": dict(zip(cell_ids, sentences))},
                                              default=float, indent=1), "utf-8")
    print(json.dumps(result, default=float))


if __name__ == "__main__":
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
