"""UrbanCLIP: a ViT image encoder, two attentional poolers and a decoder-only text
transformer trained with a contrastive and a captioning loss (CoCa, Yu et al. 2022;
docs/METHOD.md sections 3-6).

Reads top to bottom: helpers, blocks (attention, cross-attention, decoder block,
attentional pooler), then the model with typed methods `encode_image`,
`encode_text`, `caption_logits`, `generate`, and `forward` (the training pass, whose
output the losses in `losses.py` read).
Shapes use einops names: b batch, n/l sequence, h heads, d head dim, q queries.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from urbanclip.errors import UserError
from urbanclip.model.config import ModelConfig
from urbanclip.model.decoding import Constraints, DecodeConfig, decode, tidy
from urbanclip.model.losses import INIT_LOGIT_SCALE, CoCaOutput
from urbanclip.model.tokenizer import UrbanTokenizer

# ---------------------------------------------------------------------------------
# building blocks

KV = tuple[torch.Tensor, torch.Tensor]  # cached keys and values of one attention layer, [b, h, n, d] each


class SelfAttention(nn.Module):
    """Multi-head self-attention on `scaled_dot_product_attention` (fused kernels on CPU and GPU)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # causal when mask is None; otherwise `mask` [b, 1, n, n] (True = may attend) already is
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        return self.out(rearrange(out, "b h n d -> b n (h d)"))

    def forward_cached(self, x: torch.Tensor, past: KV | None) -> tuple[torch.Tensor, KV]:
        """Causal attention of new positions `x` after the cached keys/values `past` of earlier ones;
        returns the output and the keys/values of all positions (generation's KV cache)."""
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        if past is not None:
            if x.shape[1] != 1:
                raise ValueError("a cached step takes one new position")
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=past is None)
        return self.out(rearrange(out, "b h n d -> b n (h d)")), (k, v)


class CrossAttention(nn.Module):
    """Queries from `x` attend to a context of another width (text -> visual tokens, queries -> patches)."""

    def __init__(self, dim: int, heads: int, context_dim: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q = rearrange(self.q(x), "b n (h d) -> b h n d", h=self.heads)
        k, v = rearrange(self.kv(context), "b m (two h d) -> two b h m d", two=2, h=self.heads)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out(rearrange(out, "b h n d -> b n (h d)"))


def feed_forward(dim: int, mlp_ratio: float) -> nn.Sequential:
    hidden = int(dim * mlp_ratio)
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class DecoderBlock(nn.Module):
    """Pre-LN transformer block: causal self-attention, optional cross-attention to visual tokens, MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, context_dim: int | None = None):
        super().__init__()
        self.ln_attn = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.ln_cross = nn.LayerNorm(dim) if context_dim else None
        self.cross = CrossAttention(dim, heads, context_dim) if context_dim else None
        self.ln_mlp = nn.LayerNorm(dim)
        self.mlp = feed_forward(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                visual: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_attn(x), mask)
        if self.cross is not None:
            x = x + self.cross(self.ln_cross(x), visual)
        return x + self.mlp(self.ln_mlp(x))

    def forward_cached(self, x: torch.Tensor, past: KV | None,
                       visual: torch.Tensor | None = None) -> tuple[torch.Tensor, KV]:
        """`forward` (causal) for new positions after cached ones; also returns this block's KV cache."""
        a, kv = self.attn.forward_cached(self.ln_attn(x), past)
        x = x + a
        if self.cross is not None:
            x = x + self.cross(self.ln_cross(x), visual)
        return x + self.mlp(self.ln_mlp(x)), kv


class AttentionalPooler(nn.Module):
    """n learned queries cross-attend to the image tokens (CoCa's task-specific poolers; Set Transformer PMA).

    `query_norm=True` is open_clip's pooler: unit-scale queries (randn, then a LayerNorm) and
    Xavier-initialised projections, so the attention logits start at O(1) and every query can
    learn its own pattern. The legacy pooler (queries * 0.02, projections std 0.02) starts with
    logits ~1e-3: attention is uniform, every query returns the same mean-pooled vector, and
    the gradient that would separate them is a product of two tiny factors. Measured on the
    shipped lr 1e-3 x 18 epoch model: its 16 visual tokens were identical (std across queries
    1e-4) after training, so the decoder saw one averaged vector per tile.
    """

    def __init__(self, dim: int, context_dim: int, n_queries: int, heads: int, query_norm: bool = True):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(n_queries, dim) * (1.0 if query_norm else 0.02))
        self.ln_queries = nn.LayerNorm(dim) if query_norm else None
        self.ln_context = nn.LayerNorm(context_dim)
        self.attn = CrossAttention(dim, heads, context_dim)
        self.ln_out = nn.LayerNorm(dim)

    def reset_attention(self) -> None:
        """Xavier-uniform projections, zero biases (torch's MultiheadAttention init, as in open_clip)."""
        for lin in (self.attn.q, self.attn.kv, self.attn.out):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        queries = self.ln_queries(self.queries) if self.ln_queries is not None else self.queries
        q = repeat(queries, "q d -> b q d", b=tokens.shape[0])
        return self.ln_out(self.attn(q, self.ln_context(tokens)))  # [b, q, dim]


def causal_mask_with_cls(valid: torch.Tensor) -> torch.Tensor:
    """[b, 1, l+1, l+1] bool mask for tokens + an appended text [CLS].

    Causal everywhere; additionally no query may attend to padding (except
    itself, so no row is empty). With right padding a real token's past holds no
    padding, so only the [CLS] row changes: it sees every real token, never a pad.
    """
    b, n = valid.shape[0], valid.shape[1] + 1
    keys = torch.cat([valid, valid.new_ones(b, 1)], dim=1)  # [CLS] itself is valid
    causal = torch.ones(n, n, dtype=torch.bool, device=valid.device).tril()
    eye = torch.eye(n, dtype=torch.bool, device=valid.device)
    return rearrange(causal & (keys[:, None, :] | eye), "b i j -> b 1 i j")


# ---------------------------------------------------------------------------------
# the model


class UrbanCLIP(nn.Module):
    """Image encoder + poolers + text decoder. `with_text=False` gives UrbanViT (image only)."""

    def __init__(self, config: ModelConfig, tokenizer: UrbanTokenizer | None = None, with_text: bool = True):
        super().__init__()
        config.validate()
        self.config = config
        self.has_text = with_text
        self.tokenizer: UrbanTokenizer | None = None
        c = config

        # image encoder: timm ViT, learnable [CLS] and positional embeddings, all tokens out
        self.visual = VisionTransformer(img_size=c.image_size, patch_size=c.patch_size, embed_dim=c.width,
                                        depth=c.depth, num_heads=c.heads, mlp_ratio=c.mlp_ratio,
                                        class_token=True, global_pool="", num_classes=0)
        # pooler 1: a single query -> the global image embedding for the contrastive loss
        self.contrastive_pool = AttentionalPooler(c.width, c.width, 1, c.heads, c.pooler_query_norm)
        self.image_proj = nn.Linear(c.width, c.embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(INIT_LOGIT_SCALE))

        if with_text:
            # pooler 2: N queries -> visual tokens the multimodal decoder cross-attends to
            self.caption_pool = AttentionalPooler(c.text_width, c.width, c.n_visual_queries, c.text_heads,
                                                  c.pooler_query_norm)
            self.token_emb = nn.Embedding(c.vocab_size, c.text_width)
            self.pos_emb = nn.Parameter(torch.randn(c.context_length, c.text_width) * 0.01)
            self.text_cls = nn.Parameter(torch.randn(c.text_width) * 0.02)
            # first half: unimodal causal decoder (the text encoder)
            self.unimodal = nn.ModuleList(DecoderBlock(c.text_width, c.text_heads, c.mlp_ratio)
                                          for _ in range(c.unimodal_depth))
            self.text_ln = nn.LayerNorm(c.text_width)
            self.text_proj = nn.Linear(c.text_width, c.embed_dim, bias=False)
            # second half: multimodal decoder with cross-attention, then the LM head (tied to the embedding)
            self.multimodal = nn.ModuleList(DecoderBlock(c.text_width, c.text_heads, c.mlp_ratio, c.text_width)
                                            for _ in range(c.multimodal_depth))
            self.ln_final = nn.LayerNorm(c.text_width)
            self.lm_head = nn.Linear(c.text_width, c.vocab_size, bias=False)
            self._init_text_weights()
            self.lm_head.weight = self.token_emb.weight
        for pool in (self.contrastive_pool, getattr(self, "caption_pool", None)):
            if pool is not None and pool.ln_queries is not None:
                pool.reset_attention()
        if tokenizer is not None:
            self.attach_tokenizer(tokenizer)

    def _init_text_weights(self) -> None:
        for name, m in self.named_modules():
            if name.startswith("visual"):
                continue  # timm initialises its own ViT
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)

    @property
    def kind(self) -> str:
        return "urbanclip" if self.has_text else "urbanvit"

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def attach_tokenizer(self, tokenizer: UrbanTokenizer) -> None:
        if tokenizer.vocab_size > self.config.vocab_size:
            raise UserError(f"tokenizer has {tokenizer.vocab_size} tokens but the model config's vocab_size is "
                            f"{self.config.vocab_size}; raise model.vocab_size or retrain the tokenizer")
        self.tokenizer = tokenizer

    def init_visual_from(self, path: str | Path) -> dict[str, list[str]]:
        """Start the ViT from a local timm or open_clip state dict (strict=False); report key mismatches."""
        from timm.models.vision_transformer import checkpoint_filter_fn

        path = Path(path).expanduser()
        if not path.is_file():
            raise UserError(f"init checkpoint {path} (model.init_checkpoint) does not exist; fix the path or set it to null")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise UserError(f"init checkpoint {path} cannot be read as a torch state dict ({e})") from None
        state = state.get("state_dict", state.get("model", state)) if isinstance(state, dict) else state
        if any(k.startswith("visual.trunk.") for k in state):  # open_clip wrapping a timm trunk
            state = {k[len("visual.trunk."):]: v for k, v in state.items() if k.startswith("visual.trunk.")}
        state = checkpoint_filter_fn(state, self.visual)
        own = self.visual.state_dict()
        state = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
        result = self.visual.load_state_dict(state, strict=False)
        if not state:
            raise UserError(f"init checkpoint {path} has no tensor matching this ViT (width {self.config.width}, "
                            f"patch {self.config.patch_size}); it is for a different architecture")
        return {"missing": list(result.missing_keys), "unexpected": list(result.unexpected_keys)}

    def _need_text(self) -> UrbanTokenizer:
        if not self.has_text:
            raise UserError("this is an image-only model (UrbanViT); it has no text encoder or decoder")
        if self.tokenizer is None:
            raise UserError("the model has no tokenizer attached; load it with urbanclip.model.checkpoint.load_model")
        return self.tokenizer

    # -- image side -------------------------------------------------------------------
    def image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """ViT output, [b, 1 + patches, width] ([CLS] first)."""
        return self.visual.forward_features(images)

    def _image_embedding(self, tokens: torch.Tensor) -> torch.Tensor:
        pooled = self.contrastive_pool(tokens)[:, 0]  # [b, width]
        return F.normalize(self.image_proj(pooled), dim=-1)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Global image embeddings [b, embed_dim], L2-normalised; images from `data.eval_transform`."""
        return self._image_embedding(self.image_tokens(images.to(self.device)))

    # -- text side --------------------------------------------------------------------
    def _embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.token_emb(ids) + self.pos_emb[: ids.shape[1]]

    def _unimodal(self, ids: torch.Tensor, valid: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Token states [b, l, w] and, when `valid` is given, the text [CLS] state [b, w]."""
        x = self._embed_tokens(ids)
        if valid is None:  # generation: causal only, no [CLS]
            for block in self.unimodal:
                x = block(x)
            return x, None
        # the [CLS] sits at the last position of a full context whatever the batch is trimmed to, so
        # a trimmed training batch and a full-width inference batch embed a text identically
        cls = repeat(self.text_cls + self.pos_emb[self.config.context_length - 1], "w -> b 1 w", b=ids.shape[0])
        x = torch.cat([x, cls], dim=1)
        mask = causal_mask_with_cls(valid)
        for block in self.unimodal:
            x = block(x, mask)
        return x[:, :-1], x[:, -1]

    def _multimodal(self, x: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        for block in self.multimodal:
            x = block(x, visual=visual)
        return self.lm_head(self.ln_final(x))  # [b, l, vocab]

    @staticmethod
    def _shift(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inputs ids[:, :-1] (with their mask) and next-token targets ids[:, 1:] (CoCa convention),
        with the padding columns that no text of the batch reaches cut off (they change nothing:
        padding is masked out of attention and ignored by the loss, it only costs compute)."""
        width = max(int(mask.sum(1).max()), 2) if mask.numel() else ids.shape[1]
        ids, mask = ids[:, :width], mask[:, :width]
        return ids[:, :-1], mask[:, :-1], ids[:, 1:]

    def text_embedding(self, token_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Normalised text embeddings [b, embed_dim] from `tokenizer.encode_batch` output."""
        self._need_text()
        ids, valid, _ = self._shift(token_ids.to(self.device), mask.to(self.device))
        _, cls = self._unimodal(ids, valid)
        return F.normalize(self.text_proj(self.text_ln(cls)), dim=-1)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Normalised text embeddings [len(texts), embed_dim] in the image embedding space."""
        tok = self._need_text()
        ids, mask = tok.encode_batch(list(texts), self.config.context_length)
        return self.text_embedding(ids, mask)

    def similarity(self, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """Cosine similarity [n_images, n_texts]."""
        return self.encode_image(images) @ self.encode_text(texts).t()

    def caption_logits(self, images: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits [b, l, vocab] for every prefix of token_ids (teacher forcing); one image
        ([1, 3, S, S]) is read once and serves every row of token_ids (candidate texts of one tile)."""
        self._need_text()
        visual = self.caption_pool(self.image_tokens(images.to(self.device)))
        if visual.shape[0] == 1 and token_ids.shape[0] > 1:
            visual = visual.expand(token_ids.shape[0], -1, -1)
        x, _ = self._unimodal(token_ids.to(self.device))
        return self._multimodal(x, visual)

    # -- the training forward pass -------------------------------------------------------
    def forward(self, images: torch.Tensor, token_ids: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                contrast: bool = True, captions: bool = True) -> CoCaOutput:
        """ONE pass of the image encoder and the text decoder for both losses (`losses.CoCaLoss`).

        Without `token_ids` (UrbanViT, or image-only batches) only the image embedding is
        computed. `contrast` / `captions` skip the parts a switched-off loss term would not read.
        """
        tokens = self.image_tokens(images)
        image_emb = self._image_embedding(tokens)
        if token_ids is None:
            return CoCaOutput(image_emb, None, None, None, self.logit_scale)
        self._need_text()
        ids, valid, targets = self._shift(token_ids, mask)
        text_states, cls = self._unimodal(ids, valid)
        text_emb = F.normalize(self.text_proj(self.text_ln(cls)), dim=-1) if contrast else None
        logits = self._multimodal(text_states, self.caption_pool(tokens)) if captions else None
        return CoCaOutput(image_emb, text_emb, logits, targets, self.logit_scale)

    @torch.no_grad()
    def first_sentence_logprobs(self, images: torch.Tensor, sentences: list[str]) -> torch.Tensor:
        """log P(sentence | tile) as the description's first sentence, for every tile x sentence: [b, k].

        What the captioner reads in each tile, over a fixed set of candidate first sentences (the
        grounding badge's meaning share, the look-alikes' readings). The candidates pass the text
        layers once; only the multimodal layers see each tile x sentence pair.
        """
        tok = self._need_text()
        rows = [[tok.bos_id] + tok.encode(s)[: self.config.context_length - 1] for s in sentences]
        width = max(max(len(r) for r in rows), 2)
        ids = torch.full((len(rows), width), tok.pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        ids = ids.to(self.device)
        targets, real = ids[:, 1:], ids[:, 1:] != tok.pad_id
        x, _ = self._unimodal(ids[:, :-1])  # causal: the padding after a sentence changes nothing before it
        visual = self.caption_pool(self.image_tokens(images.to(self.device)))  # [b, q, w]
        b, k = visual.shape[0], len(rows)
        logp = self._multimodal(x.repeat(b, 1, 1), visual.repeat_interleave(k, dim=0)).float().log_softmax(-1)
        token_lp = logp.gather(-1, targets.repeat(b, 1)[..., None])[..., 0] * real.repeat(b, 1)
        return token_lp.sum(-1).view(b, k).cpu()

    @torch.no_grad()
    def sentence_logprobs(self, images: torch.Tensor, descriptions: list[list[str]]) -> list[list[float]]:
        """log P(sentence | image, the sentences before it) under the captioner, for every sentence of
        every description (teacher forcing, one pass); NaN for sentences beyond the context length.
        `images`: one per description, or one image for all of them."""
        tok = self._need_text()
        rows, spans = [], []
        for sents in descriptions:
            ids, marks = [tok.bos_id], []
            for s in sents:
                piece = tok.encode(s)
                marks.append((len(ids), len(ids) + len(piece)))
                ids += piece
            rows.append(ids[:self.config.context_length])
            spans.append(marks)
        width = max(len(r) for r in rows) if rows else 1
        ids = torch.full((len(rows), max(width, 2)), tok.pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        ids = ids.to(self.device)
        logp = self.caption_logits(images, ids[:, :-1]).float().log_softmax(-1)
        token_lp = logp.gather(-1, ids[:, 1:, None])[..., 0].cpu()  # [b, l-1]: log P(ids[t] | ids[:t])
        out = []
        for i, marks in enumerate(spans):
            out.append([float(token_lp[i, a - 1:b - 1].sum()) if b <= len(rows[i]) else float("nan")
                        for a, b in marks])
        return out

    # -- generation -------------------------------------------------------------------
    def _banned(self, tok: UrbanTokenizer) -> torch.Tensor:
        """Token ids generation must never emit: padding, BOS, [CLS] and ids the tokenizer does not have."""
        banned = torch.zeros(self.config.vocab_size, dtype=torch.bool, device=self.device)
        banned[[tok.pad_id, tok.bos_id, tok.cls_id]] = True
        banned[tok.vocab_size:] = True
        return banned

    @torch.no_grad()
    def generate(self, images: torch.Tensor, cfg: DecodeConfig | None = None, **overrides) -> list[str]:
        """Describe each image (urbanclip.decoding: beam search without repeated sentences or n-grams,
        ending on a complete sentence). `overrides` replace fields of `cfg`, e.g. strategy="greedy";
        max_len is capped at context_length - 1."""
        tok = self._need_text()
        cfg = dataclasses.replace(cfg or DecodeConfig(), **overrides)
        cfg.validate()
        cfg.max_len = min(cfg.max_len, self.config.context_length - 1)
        visual = self.caption_pool(self.image_tokens(images.to(self.device)))
        step = CachedStep(self, visual, self._banned(tok))
        seqs = decode(step, visual.shape[0], tok.bos_id, self._constraints(tok, cfg), cfg, self.device)
        return [tidy(tok.decode(s)) for s in seqs]

    def _constraints(self, tok: UrbanTokenizer, cfg: DecodeConfig) -> Constraints:
        key = (cfg.no_repeat_ngram, cfg.no_repeat_sentence)
        cached = getattr(self, "_constraints_cache", None)
        if cached is None or cached[0] != key or cached[1] is not tok:
            c = Constraints(lambda i: tok.decode([i]), tok.vocab_size, tok.eos_id, *key)
            self._constraints_cache = (key, tok, c)
        return self._constraints_cache[2]


class CachedStep:
    """`step(ids, rows) -> log-probs` for `decoding.decode`, with a KV cache.

    The decoder re-reading every prefix at every step made generation quadratic in its length
    (linear layers were 45% of a click's time). Every live prefix at step t is a prefix of step
    t-1 plus one token, so this keeps the keys/values of the last step's prefixes, keyed by
    (image row, token ids), and runs only the new token through the decoder. A step whose
    prefixes it has not seen (the first, or a caller's own order) is recomputed in full, so
    the answer never depends on the cache.
    """

    def __init__(self, model: UrbanCLIP, visual: torch.Tensor, banned: torch.Tensor):
        self.model, self.visual, self.banned = model, visual, banned
        self.index: dict[tuple[int, tuple[int, ...]], int] = {}
        self.cache: list[KV] = []

    def __call__(self, ids: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        m = self.model
        row_list, id_list = rows.tolist(), ids.tolist()
        src = [self.index.get((r, tuple(q[:-1]))) for r, q in zip(row_list, id_list)]
        blocks = list(m.unimodal) + list(m.multimodal)
        visual = self.visual[rows]
        if ids.shape[1] > 1 and self.cache and all(i is not None for i in src):
            pick = torch.tensor(src, dtype=torch.long, device=ids.device)
            past: list[KV | None] = [(k[pick], v[pick]) for k, v in self.cache]
            x = m.token_emb(ids[:, -1:]) + m.pos_emb[ids.shape[1] - 1]
        else:
            past = [None] * len(blocks)
            x = m._embed_tokens(ids)
        cache = []
        for i, block in enumerate(blocks):
            x, kv = block.forward_cached(x, past[i], visual if i >= len(m.unimodal) else None)
            cache.append(kv)
        self.cache = cache
        self.index = {(r, tuple(q)): j for j, (r, q) in enumerate(zip(row_list, id_list))}
        logits = m.lm_head(m.ln_final(x[:, -1])).float()
        return logits.masked_fill(self.banned, float("-inf")).log_softmax(-1)  # [n, vocab]
