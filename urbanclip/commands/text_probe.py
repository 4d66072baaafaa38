"""`text-probe`: how well do descriptions alone predict the indicators? Raw vs refined.

Fits ridge probes per city and indicator, on the workspace split plus seeded
re-splits, and prints a Markdown table with the paired difference between the
two text columns. Feature sources (--features, several at once, same splits):
  tfidf        TF-IDF word 1-2 grams (the reference; the default)
  minilm       frozen all-MiniLM-L6-v2 sentence embeddings (urbanclip.text.sentence_encoder)
  text-tower   our model's text tower of --text-tower RUN (the default when only that is given)
"""

from __future__ import annotations

import argparse

NAME = "text-probe"
HELP = "text-only indicator probes (TF-IDF, MiniLM or a text tower + ridge), raw vs refined text"
FEATURES = ("tfidf", "minilm", "text-tower")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", "-w", required=True, help="workspace folder")
    p.add_argument("--columns", default="text_raw,text_refined",
                   help="comma-separated text columns to compare (default text_raw,text_refined)")
    p.add_argument("--indicators", default=None, help="comma-separated indicators (default: all)")
    p.add_argument("--cities", default=None, help="comma-separated cities (default: each city; 'all' = pooled)")
    p.add_argument("--seeds", type=int, default=5,
                   help="number of splits: the workspace split plus seeded random 60/20/20 re-splits (default 5)")
    p.add_argument("--features", default=None,
                   help=f"comma-separated feature sources: {', '.join(FEATURES)} "
                        "(default tfidf, or text-tower when --text-tower is given)")
    p.add_argument("--text-tower", default=None, metavar="RUN",
                   help="the UrbanCLIP run/checkpoint whose text tower is the text-tower feature source")
    p.add_argument("--batch-size", type=int, default=64, help="texts per batch for --text-tower")


def _text_tower(run: str, batch_size: int):
    import numpy as np
    import torch

    from urbanclip.model.checkpoint import load_model

    model = load_model(run)

    def encode_texts(texts: list[str]) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                out.append(model.encode_text(texts[i:i + batch_size]).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 1), np.float32)

    return encode_texts


def run(args: argparse.Namespace) -> int:
    from urbanclip.errors import UserError
    from urbanclip.evaluation.text_probe import TextProbeConfig, comparison_table, run_text_probe, scores_table
    from urbanclip.data.workspace import Workspace

    ws = Workspace.load(args.workspace)
    columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    if not columns:
        raise UserError("--columns is empty; give at least one text column")
    indicators = [c.strip() for c in args.indicators.split(",")] if args.indicators else None
    cities = None
    if args.cities:
        cities = [None if c.strip() == "all" else c.strip() for c in args.cities.split(",")]
        for c in cities:
            if c is not None:
                ws.city_cells(c)  # clear error for an unknown city
    if args.seeds < 1:
        raise UserError("--seeds must be at least 1")
    cfg = TextProbeConfig(seeds=(None,) + tuple(range(1, args.seeds)))
    if args.features:
        names = [f.strip().lower() for f in args.features.split(",") if f.strip()]
    else:
        names = ["tfidf" if args.text_tower is None else "text-tower"]
    bad = [f for f in names if f not in FEATURES]
    if bad or not names:
        raise UserError(f"--features {args.features!r}: choose from {', '.join(FEATURES)}")
    if "text-tower" in names and args.text_tower is None:
        raise UserError("--features text-tower needs --text-tower RUN (a run folder or checkpoint)")
    scores = []
    for name in dict.fromkeys(names):  # the same splits for every source (seeded), so rows compare directly
        features = _text_tower(args.text_tower, args.batch_size) if name == "text-tower" else name
        scores += run_text_probe(ws, columns, indicators, cities, features, cfg, features_name=name)
    print(comparison_table(scores, columns[0], columns[1]) if len(columns) >= 2 else scores_table(scores))
    print(f"\nR² on the test split, mean ± std over {len(cfg.seeds)} splits (workspace split + seeds 1..{args.seeds - 1}); "
          "Δ is the paired difference on the same splits.")
    return 0
