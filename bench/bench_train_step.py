"""Training-step throughput (images/s) of our UrbanCLIP vs two CoCa references.

* `coca-pytorch` (lucidrains' CoCa) gets the SAME image encoder (timm ViT of the
  config's size, all tokens out);
* `open_clip` (open-clip-torch's `CoCa` and `CoCaLoss`) builds its own ViT of the same
  width / depth / heads / patch size with its attentional poolers.
All three have the same text width / depth (unimodal + multimodal) / heads, vocabulary,
number of visual queries, image size and sequence length; each step is forward
(contrastive + captioning loss) + backward + AdamW. Rounds alternate between the
models so load from other processes hits all alike; we report the median images/s
over rounds and the ratio ours / each reference.

    python bench/bench_train_step.py                    # demo config, batch 32
    python bench/bench_train_step.py --config paper-small --batch 16

Needs `pip install --no-deps coca-pytorch==0.1.0 open-clip-torch==3.3.0 ftfy wcwidth`
(torch untouched); a reference that is not installed is skipped with a note.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import torch

from urbanclip.model.config import ModelConfig, demo_config
from urbanclip.model.losses import CoCaLoss
from urbanclip.model.model import UrbanCLIP
from urbanclip.model.tokenizer import UrbanTokenizer

CONFIGS = {
    "demo": lambda: demo_config()[0],
    # a ViT-S-like middle ground that still runs on a laptop CPU
    "paper-small": lambda: ModelConfig(image_size=128, patch_size=16, width=256, depth=6, heads=8, embed_dim=256,
                                       n_visual_queries=64, text_width=256, text_depth=6, text_heads=8,
                                       vocab_size=4000, context_length=48),
}


def ours(cfg: ModelConfig, vocab: int):
    tok = UrbanTokenizer.train(["a park beside a river", "dense blocks"], vocab_size=min(cfg.vocab_size, 300))
    model = UrbanCLIP(cfg, tok).train()
    loss_fn = CoCaLoss(pad_id=tok.pad_id)

    def step(images, ids, mask):
        return loss_fn(model(images, ids, mask)).total
    return model, step


def coca(cfg: ModelConfig, vocab: int):
    from coca_pytorch.coca_pytorch import CoCa
    from timm.models.vision_transformer import VisionTransformer

    vit = VisionTransformer(img_size=cfg.image_size, patch_size=cfg.patch_size, embed_dim=cfg.width, depth=cfg.depth,
                            num_heads=cfg.heads, mlp_ratio=cfg.mlp_ratio, class_token=True, global_pool="",
                            num_classes=0)

    class Tokens(torch.nn.Module):  # CoCa wants the encoder to return [b, n, image_dim]
        def __init__(self):
            super().__init__()
            self.vit = vit

        def forward(self, x):
            return self.vit.forward_features(x)

    # CoCa adds one [CLS] query to num_img_queries itself
    model = CoCa(dim=cfg.text_width, num_tokens=vocab, unimodal_depth=cfg.unimodal_depth,
                 multimodal_depth=cfg.multimodal_depth, dim_latents=cfg.embed_dim, image_dim=cfg.width,
                 num_img_queries=cfg.n_visual_queries, dim_head=cfg.text_width // cfg.text_heads,
                 heads=cfg.text_heads, img_encoder=Tokens(), pad_id=0).train()

    def step(images, ids, mask):
        return model(text=ids, images=images, return_loss=True)
    return model, step


def open_clip_coca(cfg: ModelConfig, vocab: int):
    from open_clip.coca_model import CoCa
    from open_clip.loss import CoCaLoss as OpenClipCoCaLoss

    vision = dict(image_size=cfg.image_size, patch_size=cfg.patch_size, width=cfg.width, layers=cfg.depth,
                  head_width=cfg.width // cfg.heads, mlp_ratio=cfg.mlp_ratio, attentional_pool=True,
                  attn_pooler_queries=cfg.n_visual_queries, attn_pooler_heads=cfg.heads, output_tokens=True)
    text = dict(context_length=cfg.context_length, vocab_size=vocab, width=cfg.text_width, heads=cfg.text_heads,
                layers=cfg.unimodal_depth, mlp_ratio=cfg.mlp_ratio, embed_cls=True, output_tokens=True)
    multimodal = dict(context_length=cfg.context_length, vocab_size=vocab, width=cfg.text_width,
                      heads=cfg.text_heads, layers=cfg.multimodal_depth, mlp_ratio=cfg.mlp_ratio)
    model = CoCa(embed_dim=cfg.embed_dim, multimodal_cfg=multimodal, text_cfg=text, vision_cfg=vision,
                 pad_id=0).train()
    loss_fn = OpenClipCoCaLoss(caption_loss_weight=1.0, clip_loss_weight=1.0, pad_id=0)

    def step(images, ids, mask):
        out = model(images, ids)
        con, lm = loss_fn(out["image_features"], out["text_features"], out["logits"], out["labels"],
                          out["logit_scale"])
        return con + lm
    return model, step


REFERENCES = {"coca-pytorch": coca, "open_clip": open_clip_coca}


def time_steps(model, step, batch, n_steps: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    t0 = time.perf_counter()
    for _ in range(n_steps):
        loss = step(*batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return batch[0].shape[0] * n_steps / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=sorted(CONFIGS), default="demo")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=5, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = CONFIGS[args.config]()
    vocab = cfg.vocab_size
    images = torch.randn(args.batch, 3, cfg.image_size, cfg.image_size)
    ids = torch.randint(4, vocab, (args.batch, cfg.context_length))
    ids[:, 0] = 1
    lengths = torch.randint(cfg.context_length // 3, cfg.context_length, (args.batch,))
    mask = torch.arange(cfg.context_length)[None] < lengths[:, None]
    ids = ids.masked_fill(~mask, 0)
    batch = (images, ids, mask)
    models = {"urbanclip": ours(cfg, vocab)}
    for name, build in REFERENCES.items():
        try:
            models[name] = build(cfg, vocab)
        except ImportError as e:
            print(f"skipping {name}: {e} (pip install --no-deps coca-pytorch==0.1.0 open-clip-torch==3.3.0 "
                  "ftfy wcwidth)")
    params = {k: sum(p.numel() for p in m.parameters()) for k, (m, _) in models.items()}
    for m, step in models.values():  # warm-up: allocator, kernels
        time_steps(m, step, batch, 2)
    rates: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(args.rounds):
        for k, (m, step) in models.items():
            rates[k].append(time_steps(m, step, batch, args.steps))
    med = {k: statistics.median(v) for k, v in rates.items()}
    ratios = {k: med["urbanclip"] / med[k] for k in models if k != "urbanclip"}
    print(f"config {args.config} ({json.dumps(dataclasses.asdict(cfg))}), batch {args.batch}, "
          f"{args.threads} threads, torch {torch.__version__}")
    for k in models:
        print(f"  {k:13s} {med[k]:8.1f} images/s (median of {args.rounds} rounds x {args.steps} steps; "
              f"rounds {[round(r, 1) for r in rates[k]]}), {params[k] / 1e6:.2f} M params")
    for k, r in ratios.items():
        print(f"ratio urbanclip / {k} = {r:.2f}x")
    print(json.dumps({"config": args.config, "batch": args.batch, "threads": args.threads, "images_per_s": med,
                      "ratios": ratios, "params": params}))


if __name__ == "__main__":
    main()
