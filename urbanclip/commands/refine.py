"""`refine`: clean descriptions with the rule table, flag low quality, choose one summary.

Reads `text_raw` (or --column) and writes, side by side with it:
  text_refined  kept sentences ("\\n"-joined); training uses it when present
  text_summary  the one chosen summary sentence
  text_quality  quality flags (';'-joined; "" = fine)
The raw column is never modified, so the ablation "w/o refined text" can use it.
Rule counts are printed and stored in manifest.extra["refine"].
--similarity minilm makes the quality filter (repetition check, summary choice) compare
sentences with the frozen all-MiniLM-L6-v2 encoder instead of bag-of-words cosine.

--grounding-threshold T --checkpoint RUN adds self-calibration after the rules: every kept
sentence is scored by the checkpoint's grounding (urbanclip.text.faithfulness: similarity to its
own tile ranked among random tiles of the city, 0.5 = chance) and sentences below T are
dropped (the best-grounded one of each description stays). It then also writes
  text_refined_rules  the rules-only result (what text_refined would be without the filter)
  text_ungrounded     the dropped sentences
so `text-probe --columns text_refined_rules,text_refined` measures the filter on the same splits.
"""

from __future__ import annotations

import argparse
import json
import time

NAME = "refine"
HELP = "refine descriptions with rules, flag low quality, choose one summary per cell"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", "-w", required=True, help="workspace folder")
    p.add_argument("--column", default="text_raw", help="source text column (default text_raw)")
    p.add_argument("--urban-population", type=float, default=1000.0,
                   help="cells with at least this population are 'urban' for the off-topic check (default 1000)")
    p.add_argument("--off-topic-keywords", default=None,
                   help="comma-separated words that make a text off-topic for an urban cell (replaces the default list)")
    p.add_argument("--min-words", type=int, default=None, help="descriptions with fewer words are flagged too_short")
    p.add_argument("--similarity", default="bow", choices=("bow", "minilm"),
                   help="sentence similarity of the quality filter: bag-of-words cosine (default) or "
                        "minilm (frozen all-MiniLM-L6-v2 sentence encoder)")
    p.add_argument("--grounding-threshold", type=float, default=None, metavar="T",
                   help="also drop sentences whose grounding percentile (own tile vs random tiles of the city, "
                        "0.5 = chance) under --checkpoint is below T, e.g. 0.5; needs --checkpoint")
    p.add_argument("--checkpoint", default=None, metavar="RUN",
                   help="UrbanCLIP run folder or checkpoint that judges grounding (e.g. assets/model)")
    p.add_argument("--n-reference", type=int, default=256,
                   help="random tiles per city each sentence is ranked against (default 256)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random reference tiles (default 0)")
    p.add_argument("--json", action="store_true", help="print rule counts as JSON instead of a table")


def refine_workspace(ws, column: str = "text_raw", urban_population: float = 1000.0, quality_cfg=None,
                     similarity: str = "bow", grounding_model=None, grounding_cfg=None) -> dict:
    """Refine every cell of `ws` in memory (caller saves). Returns the summary stored in the manifest.

    `similarity`: the quality filter's sentence similarity, "bow" (bag-of-words cosine) or "minilm".
    `grounding_model` + `grounding_cfg` (urbanclip.text.faithfulness.GroundingConfig, its `threshold`):
    drop rule-refined sentences that the model finds weakly grounded in their tile.
    """
    import numpy as np

    from urbanclip.errors import UserError
    from urbanclip.text.quality import QualityConfig, assess, bow_cosine
    from urbanclip.text.sentence_encoder import similarity_function
    from urbanclip.text.refine import RULES_VERSION, RuleCounts, refine_sentences
    from urbanclip.data.workspace import join_sentences, split_sentences

    if column not in ws.cells.columns:
        raise UserError(f"workspace {ws.root} has no column {column!r}; text columns: "
                        f"{[c for c in ws.cells.columns if c.startswith('text_')]}")
    qcfg = quality_cfg or QualityConfig()
    sim_fn = similarity_function(similarity) or bow_cosine
    pop = ws.cells["population"].to_numpy(dtype=float) if "population" in ws.cells.columns else None
    total = RuleCounts()
    refined, summaries, quality = [], [], []
    flag_counts: dict[str, int] = {}
    kept_all = []
    for text in ws.cells[column].to_numpy():
        kept, counts = refine_sentences(split_sentences(text))
        total += counts
        kept_all.append(kept)
    grounding = None
    if grounding_model is not None:
        kept_all, grounding = _grounding_filter(ws, kept_all, grounding_model, grounding_cfg, total)
    if hasattr(sim_fn, "prime"):  # a sentence encoder: embed every kept sentence in big batches first
        sim_fn.prime([s.strip() for kept in kept_all for s in kept if s and s.strip()])
    for i, kept in enumerate(kept_all):
        is_urban = None if pop is None or not np.isfinite(pop[i]) else bool(pop[i] >= urban_population)
        rep = assess(kept, qcfg, is_urban=is_urban, similarity_fn=sim_fn)
        for f in rep.flags:
            flag_counts[f] = flag_counts.get(f, 0) + 1
        refined.append(join_sentences(kept))
        summaries.append(kept[rep.summary_index] if rep.summary_index >= 0 else "")
        quality.append(rep.flags_text)
    prov = f"urbanclip refine ({RULES_VERSION}) from {column}"
    ws.set_column("text_refined", refined, prov)
    ws.set_column("text_summary", summaries, prov + ": one summary sentence per cell")
    ws.set_column("text_quality", quality, prov + ": quality flags")
    summary = {"rules_version": RULES_VERSION, "source_column": column, "similarity": similarity, "time": time.time(),
               "counts": total.as_dict(), "quality_flags": flag_counts, "cells": len(refined)}
    if grounding is not None:
        summary["grounding"] = grounding
    ws.manifest.extra["refine"] = summary
    return summary


def _grounding_filter(ws, kept_all: list[list[str]], model, cfg, total) -> tuple[list[list[str]], dict]:
    """Drop weakly grounded sentences (self-calibration); writes text_refined_rules and text_ungrounded."""
    import math

    from urbanclip.text.faithfulness import GroundingConfig, ground_sentences
    from urbanclip.text.refine import UNGROUNDED, drop_ungrounded
    from urbanclip.data.workspace import join_sentences

    cfg = cfg or GroundingConfig()
    cfg.validate("refine --grounding-threshold")
    ids = [str(c) for c in ws.cells["cell_id"]]
    g = ground_sentences(model, ws, dict(zip(ids, kept_all)), cfg)
    scores: dict[str, list[float]] = {c: [] for c in ids}
    for cid, pct in zip(g["cell_id"], g["percentile"]):
        scores[cid].append(float(pct))
    out, dropped_all = [], []
    for cid, kept in zip(ids, kept_all):
        keep, dropped = drop_ungrounded(kept, scores[cid], cfg.threshold) if kept else ([], [])
        out.append(keep)
        dropped_all.append(dropped)
    n_dropped = sum(len(d) for d in dropped_all)
    total.fired[UNGROUNDED] += n_dropped
    total.removed[UNGROUNDED] += n_dropped
    total.sentences_out -= n_dropped
    path = getattr(model, "checkpoint_path", None)
    prov = f"urbanclip refine grounding filter (threshold {cfg.threshold:g}, checkpoint {path})"
    ws.set_column("text_refined_rules", [join_sentences(k) for k in kept_all],
                  "urbanclip refine: rules only, before the grounding filter")
    ws.set_column("text_ungrounded", [join_sentences(d) for d in dropped_all], prov + ": dropped sentences")
    pct = g["percentile"].to_numpy(dtype=float)
    finite = pct[[math.isfinite(v) for v in pct]]
    return out, {"checkpoint": str(path), "threshold": cfg.threshold, "n_reference": cfg.n_reference, "seed": cfg.seed,
                 "sentences_scored": int(finite.size), "sentences_unscored": int(pct.size - finite.size),
                 "sentences_dropped": n_dropped, "cells_thinned": int(sum(1 for d in dropped_all if d)),
                 "mean_percentile": float(finite.mean()) if finite.size else None}


def run(args: argparse.Namespace) -> int:
    from urbanclip.text.quality import QualityConfig
    from urbanclip.text.refine import RuleCounts
    from urbanclip.data.workspace import Workspace

    ws = Workspace.load(args.workspace)
    qcfg = QualityConfig()
    if args.off_topic_keywords is not None:
        qcfg.off_topic_keywords = tuple(w.strip().lower() for w in args.off_topic_keywords.split(",") if w.strip())
    if args.min_words is not None:
        qcfg.min_words = args.min_words
    model, gcfg = _grounding_args(args)
    summary = refine_workspace(ws, args.column, args.urban_population, qcfg, similarity=args.similarity,
                               grounding_model=model, grounding_cfg=gcfg)
    ws.save()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    c = RuleCounts(sentences_in=summary["counts"]["sentences_in"], sentences_out=summary["counts"]["sentences_out"])
    c.fired.update(summary["counts"]["fired"])
    c.removed.update(summary["counts"]["removed"])
    print(c.table())
    print(f"quality flags over {summary['cells']} cells: {summary['quality_flags'] or 'none'}")
    if "grounding" in summary:
        g = summary["grounding"]
        print(f"grounding filter (threshold {g['threshold']:g}): dropped {g['sentences_dropped']} of "
              f"{g['sentences_scored']} scored sentences in {g['cells_thinned']} cells; mean percentile "
              f"{g['mean_percentile']:.3f}; also wrote text_refined_rules, text_ungrounded")
    print(f"wrote text_refined, text_summary, text_quality to {ws.root}")
    return 0


def _grounding_args(args: argparse.Namespace):
    """(model, GroundingConfig) for --grounding-threshold, or (None, None); checks the pair of options."""
    from urbanclip.errors import UserError

    if args.grounding_threshold is None:
        if args.checkpoint is not None:
            raise UserError("--checkpoint is only used with --grounding-threshold T (e.g. 0.5); add it or drop "
                            "--checkpoint")
        return None, None
    if args.checkpoint is None:
        raise UserError("--grounding-threshold needs --checkpoint RUN: the UrbanCLIP run whose image and text "
                        "towers score each sentence (e.g. --checkpoint assets/model)")
    from urbanclip.model.checkpoint import load_model
    from urbanclip.text.faithfulness import GroundingConfig

    cfg = GroundingConfig(n_reference=args.n_reference, seed=args.seed, threshold=args.grounding_threshold)
    cfg.validate("refine --grounding-threshold")
    return load_model(args.checkpoint), cfg
