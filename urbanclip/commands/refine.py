"""`refine`: clean descriptions with the rule table, flag low quality, choose one summary.

Reads `text_raw` (or --column) and writes, side by side with it:
  text_refined  kept sentences ("\\n"-joined); training uses it when present
  text_summary  the one chosen summary sentence
  text_quality  quality flags (';'-joined; "" = fine)
The raw column is never modified, so the ablation "w/o refined text" can use it.
Rule counts are printed and stored in manifest.extra["refine"].
--similarity minilm makes the quality filter (repetition check, summary choice) compare
sentences with the frozen all-MiniLM-L6-v2 encoder instead of bag-of-words cosine.
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
    p.add_argument("--json", action="store_true", help="print rule counts as JSON instead of a table")


def refine_workspace(ws, column: str = "text_raw", urban_population: float = 1000.0, quality_cfg=None,
                     similarity: str = "bow") -> dict:
    """Refine every cell of `ws` in memory (caller saves). Returns the summary stored in the manifest.

    `similarity`: the quality filter's sentence similarity, "bow" (bag-of-words cosine) or "minilm".
    """
    import numpy as np

    from urbanclip.errors import UserError
    from urbanclip.quality import QualityConfig, assess, bow_cosine
    from urbanclip.sentence_encoder import similarity_function
    from urbanclip.refine import RULES_VERSION, RuleCounts, refine_sentences
    from urbanclip.workspace import join_sentences, split_sentences

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
    ws.manifest.extra["refine"] = summary
    return summary


def run(args: argparse.Namespace) -> int:
    from urbanclip.quality import QualityConfig
    from urbanclip.refine import RuleCounts
    from urbanclip.workspace import Workspace

    ws = Workspace.load(args.workspace)
    qcfg = QualityConfig()
    if args.off_topic_keywords is not None:
        qcfg.off_topic_keywords = tuple(w.strip().lower() for w in args.off_topic_keywords.split(",") if w.strip())
    if args.min_words is not None:
        qcfg.min_words = args.min_words
    summary = refine_workspace(ws, args.column, args.urban_population, qcfg, similarity=args.similarity)
    ws.save()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    c = RuleCounts(sentences_in=summary["counts"]["sentences_in"], sentences_out=summary["counts"]["sentences_out"])
    c.fired.update(summary["counts"]["fired"])
    c.removed.update(summary["counts"]["removed"])
    print(c.table())
    print(f"quality flags over {summary['cells']} cells: {summary['quality_flags'] or 'none'}")
    print(f"wrote text_refined, text_summary, text_quality to {ws.root}")
    return 0
