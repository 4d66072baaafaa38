"""Embedding throughput for a whole city: tiles/s of `UrbanCLIP.encode_image`, batched, no grad.

Measures (a) decode + `eval_transform` of the tiles from disk, (b) the model alone
on the preprocessed batch, in contiguous and channels-last memory layouts, and
(c) end to end. Results are printed; nothing is written.

    python bench/bench_embed.py --workspace ~/.cache/urbanclip/workspaces/demo --city <name> --model assets/model
    python bench/bench_embed.py --tiles 1200            # no workspace: random tiles, demo-config model
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from urbanclip.model.config import demo_config  # noqa: E402
from urbanclip.model.transforms import eval_transform  # noqa: E402


def load(args):
    if args.model:
        from urbanclip.model.checkpoint import load_model

        return load_model(args.model)
    from urbanclip.model.model import UrbanCLIP

    return UrbanCLIP(demo_config()[0], with_text=False).eval()


def embed(model, x: torch.Tensor, batch: int, channels_last: bool) -> float:
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            xb = x[i:i + batch]
            model.encode_image(xb.contiguous(memory_format=torch.channels_last) if channels_last else xb)
    return len(x) / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workspace", help="workspace folder (default: random tiles)")
    p.add_argument("--city", help="city of the workspace (default: its first)")
    p.add_argument("--model", help="run folder or checkpoint (default: untrained demo-config image tower)")
    p.add_argument("--tiles", type=int, default=1200, help="number of random tiles without a workspace")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = load(args)
    size = model.config.image_size
    tf = eval_transform(size)
    result = {"image_size": size, "batch": args.batch, "threads": args.threads}
    if args.workspace:
        from urbanclip.data.workspace import Workspace

        ws = Workspace.load(args.workspace)
        city = args.city or ws.cities[0]
        ids = [c for c, img in zip(ws.city_cells(city)["cell_id"], ws.city_cells(city)["image"]) if img]
        t0 = time.perf_counter()
        x = torch.stack([tf(ws.load_image(c)) for c in ids])
        result.update(city=city, tiles=len(ids), decode_tiles_per_s=len(ids) / (time.perf_counter() - t0))
    else:
        x = torch.randn(args.tiles, 3, size, size)
        result.update(city="random", tiles=args.tiles)
    embed(model, x[: args.batch], args.batch, False)  # warm-up
    result["model_tiles_per_s"] = embed(model, x, args.batch, channels_last=False)
    result["model_tiles_per_s_channels_last"] = embed(model, x, args.batch, channels_last=True)
    if "decode_tiles_per_s" in result:
        best = max(result["model_tiles_per_s"], result["model_tiles_per_s_channels_last"])
        result["end_to_end_tiles_per_s"] = 1 / (1 / result["decode_tiles_per_s"] + 1 / best)
    for k, v in result.items():
        print(f"  {k}: {v:.1f}" if isinstance(v, float) else f"  {k}: {v}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
