"""`faithfulness`: are a checkpoint's captions diverse, and grounded in their own tiles?

For each city and each text source (the model's generated captions and/or existing
text columns): distinct-caption ratio, mean pairwise TF-IDF similarity, and per-sentence
grounding (own-tile similarity ranked among random tiles of the city). Writes
OUT/faithfulness.json and OUT/faithfulness.md and prints the Markdown.
See urbanclip/faithfulness.py for the definitions.
"""

from __future__ import annotations

import argparse

NAME = "faithfulness"
HELP = "caption faithfulness of a checkpoint: distinct ratio, pairwise similarity, grounding per sentence"
RUN_FOLDER = "out"  # held (urbanclip.runlock) while the command writes to it


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", "-w", required=True, help="workspace folder")
    p.add_argument("--checkpoint", "-c", required=True,
                   help="UrbanCLIP run folder or checkpoint file (the shipped one: assets/model)")
    p.add_argument("--city", action="append", default=None,
                   help="city to assess; repeat for several (default: every city of the workspace)")
    p.add_argument("--source", default="generated",
                   help="comma-separated text sources: 'generated' (model.generate) and/or text columns such as "
                        "text_raw, text_refined (default generated)")
    p.add_argument("--out", "-o", default=None, help="report folder (default: only print the Markdown)")
    p.add_argument("--n-reference", type=int, default=256,
                   help="random tiles of the same city each sentence is ranked against (default 256)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="grounding percentile below which a sentence counts as weakly grounded (default 0.5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random reference tiles and --max-cells subset")
    p.add_argument("--max-cells", type=int, default=None,
                   help="assess a seeded random subset of this many cells per city (generation is the slow part)")
    p.add_argument("--max-len", type=int, default=None,
                   help="generated caption length limit in tokens (default: the model's context length)")
    p.add_argument("--batch-size", type=int, default=64, help="tiles / sentences per forward pass (default 64)")
    p.add_argument("--json", action="store_true", help="print the JSON report instead of Markdown")


def run(args: argparse.Namespace) -> int:
    from urbanclip.paths import check_out_folder

    if args.out:
        check_out_folder(args.out)  # before any work: a bad --out is an error, not a traceback at the end
    import json

    from urbanclip.data.workspace import Workspace
    from urbanclip.errors import UserError
    from urbanclip.model.checkpoint import load_model
    from urbanclip.text.faithfulness import FaithfulnessReport, GroundingConfig, assess, image_embeddings, write_report

    ws = Workspace.load(args.workspace)
    cfg = GroundingConfig(n_reference=args.n_reference, seed=args.seed, threshold=args.threshold,
                          batch_size=args.batch_size)
    cfg.validate("faithfulness")
    sources = [s.strip() for s in args.source.split(",") if s.strip()]
    if not sources:
        raise UserError("--source is empty; give 'generated' and/or text columns such as text_raw")
    cities = args.city or ws.cities
    for c in cities:
        ws.city_cells(c)  # clear error for an unknown city, before loading the model
    model = load_model(args.checkpoint)
    images = image_embeddings(model, ws, cfg.batch_size)
    results = [assess(model, ws, city, src, cfg, max_len=args.max_len, max_cells=args.max_cells, images=images)
               for city in cities for src in sources]
    import hashlib

    sha = hashlib.sha256(model.checkpoint_path.read_bytes()).hexdigest()[:16]
    report = FaithfulnessReport(checkpoint=str(model.checkpoint_path), workspace=str(ws.root),
                                synthetic=ws.manifest.synthetic, config=cfg, results=results, max_len=args.max_len,
                                checkpoint_sha256=sha)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.markdown())
    if args.out:
        paths = write_report(report, args.out)
        print(f"wrote {paths['json']} and {paths['md']}")
    return 0
