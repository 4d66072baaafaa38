"""Do predicted sums add up to the observed totals? Measured on the demo with the app's context.

The Compare page and the area panel sum predictions over many cells. A probe predicts
log1p values, so a cell's back-transformed prediction is a median; the app sums expected
values instead (uncertainty.Calibration.expected: Duan's smearing factor from the
validation residuals). This prints, per city and indicator, predicted / observed for both
sums, over all cells and over the test split's cells only (never seen by the probe).

    python bench/bench_totals.py                    # default demo, assets/model
    python bench/bench_totals.py --workspace W --model RUN
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from urbanclip.errors import UserError  # noqa: E402


def ratios(ctx, mask: np.ndarray) -> dict[str, dict[str, float]]:
    """indicator -> {"expected": sum of expected / observed, "median": sum of medians / observed} over `mask`."""
    cells = ctx.workspace.cells
    out = {}
    for name in ctx.workspace.indicator_names:
        obs = cells[name].to_numpy(dtype=float)
        known = mask & np.isfinite(obs) & np.isfinite(ctx.predictions[name])
        total = obs[known].sum()
        out[name] = {"expected": float(ctx.expected[name][known].sum() / total),
                     "median": float(ctx.predictions[name][known].sum() / total)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workspace", "-w", default=None, help="workspace (default: the app's demo, built if missing)")
    p.add_argument("--model", "-m", default="assets/model", help="run folder or checkpoint (default assets/model)")
    args = p.parse_args()
    from urbanclip.services.context import ensure_workspace, load_context

    ws = ensure_workspace(Path(args.workspace) if args.workspace else None)
    ctx = load_context(ws.root, Path(args.model))
    missing = [k for k in ws.indicator_names if k not in ctx.expected]
    if missing:
        raise UserError(f"no expected values for {missing}: {ctx.notes}")
    cells = ws.cells
    city = cells["city"].astype(str).to_numpy()
    test = (cells["split"].astype(str) == "test").to_numpy()
    result = {c: ratios(ctx, city == c) for c in ws.cities}
    result["all cities, test cells"] = ratios(ctx, test)
    print(f"predicted / observed sum ({ws.root}, model {args.model}): expected values | medians")
    for where, per in result.items():
        print(f"  {where:24s} " + "  ".join(f"{k} {v['expected']:.2f} | {v['median']:.2f}" for k, v in per.items()))
    print(json.dumps(result))


if __name__ == "__main__":
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
