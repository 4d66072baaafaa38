"""`refine`: clean descriptions with the rule table, flag low quality, choose one summary
(see urbanclip.text.refine_workspace for what is written where)."""

from __future__ import annotations

import argparse
import json

NAME = "refine"
HELP = "refine descriptions with rules, flag low quality, choose one summary per cell"
WRITES_WORKSPACE = True  # held (urbanclip.runlock) while it rewrites the workspace


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


def run(args: argparse.Namespace) -> int:
    from urbanclip.data.workspace import Workspace
    from urbanclip.text.quality import QualityConfig
    from urbanclip.text.refine import RuleCounts
    from urbanclip.text.refine_workspace import refine_workspace

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
