"""`text-probe`: how well do descriptions alone predict the indicators? Raw vs refined.

Fits ridge probes on TF-IDF features (the reference) or on a text encoder
(--text-tower RUN: our model's text tower) per city and indicator, on the
workspace split plus seeded re-splits, and prints a Markdown table with the
paired difference between the two text columns.
"""

from __future__ import annotations

import argparse

NAME = "text-probe"
HELP = "text-only indicator probes (TF-IDF + ridge, or a text tower), raw vs refined text"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", "-w", required=True, help="workspace folder")
    p.add_argument("--columns", default="text_raw,text_refined",
                   help="comma-separated text columns to compare (default text_raw,text_refined)")
    p.add_argument("--indicators", default=None, help="comma-separated indicators (default: all)")
    p.add_argument("--cities", default=None, help="comma-separated cities (default: each city; 'all' = pooled)")
    p.add_argument("--seeds", type=int, default=5,
                   help="number of splits: the workspace split plus seeded random 60/20/20 re-splits (default 5)")
    p.add_argument("--text-tower", default=None, metavar="RUN",
                   help="use the text tower of this UrbanCLIP run/checkpoint instead of TF-IDF")
    p.add_argument("--batch-size", type=int, default=64, help="texts per batch for --text-tower")


def _text_tower(run: str, batch_size: int):
    import numpy as np
    import torch

    from urbanclip.checkpoint import load_model

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
    from urbanclip.text_probe import TextProbeConfig, comparison_table, run_text_probe, scores_table
    from urbanclip.workspace import Workspace

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
    features = "tfidf" if args.text_tower is None else _text_tower(args.text_tower, args.batch_size)
    name = "tfidf" if args.text_tower is None else "text-tower"
    scores = run_text_probe(ws, columns, indicators, cities, features, cfg, features_name=name)
    print(comparison_table(scores, columns[0], columns[1]) if len(columns) >= 2 else scores_table(scores))
    print(f"\nR² on the test split, mean ± std over {len(cfg.seeds)} splits (workspace split + seeds 1..{args.seeds - 1}); "
          "Δ is the paired difference on the same splits.")
    return 0
