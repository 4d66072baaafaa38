"""UrbanCLIP model: shapes, masks (no looking ahead, no looking at padding), learning, generation."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from urbanclip.errors import UserError
from urbanclip.model.config import tiny_config
from urbanclip.model.losses import CoCaLoss, TwoViewLoss
from urbanclip.model.model import UrbanCLIP
from urbanclip.model.tokenizer import UrbanTokenizer

CAPTIONS = ["a green park with trees.", "grey industrial warehouses.", "a wide river with water.",
            "dense residential blocks."]


@pytest.fixture(scope="module")
def tok() -> UrbanTokenizer:
    return UrbanTokenizer.train(CAPTIONS * 3, vocab_size=300)


@pytest.fixture
def model(tok) -> UrbanCLIP:
    torch.manual_seed(0)
    return UrbanCLIP(tiny_config()[0], tok).eval()


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_shapes_and_normalisation(model):
    cfg = model.config
    img = model.encode_image(_images(3))
    txt = model.encode_text(CAPTIONS)
    assert img.shape == (3, cfg.embed_dim) and txt.shape == (4, cfg.embed_dim)
    assert torch.allclose(img.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(txt.norm(dim=-1), torch.ones(4), atol=1e-5)
    assert model.similarity(_images(3), CAPTIONS).shape == (3, 4)
    ids, _ = model.tokenizer.encode_batch(CAPTIONS[:2], cfg.context_length)
    assert model.caption_logits(_images(2), ids).shape == (2, cfg.context_length, cfg.vocab_size)


def test_causal_mask_prevents_looking_ahead(model):
    ids, _ = model.tokenizer.encode_batch(CAPTIONS[:2], 12)
    changed = ids.clone()
    changed[:, 6] = 42
    a, b = model.caption_logits(_images(2), ids), model.caption_logits(_images(2), changed)
    assert torch.equal(a[:, :6], b[:, :6])          # the past cannot see position 6
    assert not torch.allclose(a[:, 6:], b[:, 6:])   # the future does


def test_text_cls_ignores_padding_content(model):
    ids, mask = model.tokenizer.encode_batch(["a park."], model.config.context_length)
    garbage = ids.clone()
    garbage[~mask] = 77  # different ids at padded positions, still masked out
    assert torch.allclose(model.text_embedding(ids, mask), model.text_embedding(garbage, mask), atol=1e-6)


def test_cls_does_not_change_token_states(model):
    """Training (with the appended [CLS]) and generation (without) see the same token states."""
    ids, mask = model.tokenizer.encode_batch(CAPTIONS, model.config.context_length - 1)
    with_cls, _ = model._unimodal(ids, mask)
    without, _ = model._unimodal(ids)
    assert torch.allclose(with_cls[mask], without[mask], atol=1e-5)


def test_loss_goes_down_on_a_tiny_batch(tok):
    torch.manual_seed(0)
    model = UrbanCLIP(tiny_config()[0], tok).train()
    images = _images(4, seed=1)
    ids, mask = tok.encode_batch(CAPTIONS, model.config.context_length)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        out = CoCaLoss(pad_id=tok.pad_id)(model(images, ids, mask))
        opt.zero_grad()
        out.total.backward()
        opt.step()
        first = first if first is not None else [float(v.detach()) for v in out]
    assert float(out.lm.detach()) < 0.5 * first[2]
    assert float(out.con.detach()) < 0.3 * first[1]
    model.eval()
    assert model.generate(images[:1], max_len=20)[0] == "A green park with trees."


def test_ablation_weights_switch_losses_off(model):
    ids, mask = model.tokenizer.encode_batch(CAPTIONS[:2], model.config.context_length)
    pad = model.tokenizer.pad_id
    only_con, only_lm = CoCaLoss(1.0, 0.0, pad), CoCaLoss(0.0, 1.0, pad)
    no_lm = only_con(model(_images(2), ids, mask, **only_con.needs))
    no_con = only_lm(model(_images(2), ids, mask, **only_lm.needs))
    assert float(no_lm.lm) == 0.0 and torch.allclose(no_lm.total, no_lm.con)
    assert float(no_con.con) == 0.0 and torch.allclose(no_con.total, no_con.lm)


class _ScriptedLogits:
    """Replaces the decoder's next-token distribution: "park", ".", then EOS, for every row."""

    def __init__(self, model: UrbanCLIP):
        self.model, self.calls = model, 0
        tok = model.tokenizer
        self.script = tok.encode("park.") + [tok.eos_id]

    def __call__(self, ids, visual, banned, temperature=1.0):
        nxt = self.script[min(ids.shape[1] - 1, len(self.script) - 1)]
        self.calls += 1
        logp = torch.full((ids.shape[0], self.model.config.vocab_size), -1e4)
        logp[:, nxt] = 0.0
        return logp.log_softmax(-1)


@pytest.mark.parametrize("strategy", ["greedy", "beam", "top-p"])
def test_generation_stops_at_eos(model, strategy, monkeypatch):
    scripted = _ScriptedLogits(model)
    monkeypatch.setattr("urbanclip.model.model.CachedStep",
                        lambda m, visual, banned: lambda ids, rows: scripted(ids, visual[rows], banned))
    out = model.generate(_images(2), max_len=20, strategy=strategy)
    assert out == ["Park.", "Park."]  # decoded, capitalised
    assert scripted.calls <= len(scripted.script)  # stopped at EOS, far before max_len (beams run as one batch)


@pytest.mark.parametrize("strategy", ["greedy", "beam", "top-p"])
def test_generation_runs_on_a_real_model(model, strategy):
    out = model.generate(_images(2), max_len=5, strategy=strategy)
    assert len(out) == 2 and all(isinstance(t, str) for t in out)


@pytest.mark.parametrize("strategy", ["greedy", "beam", "top-p"])
def test_kv_cached_steps_equal_full_recomputation(model, strategy, monkeypatch):
    """Generation's KV cache is an optimisation only: every step's log-probs match re-reading the prefix."""
    import urbanclip.model.model as model_module

    real = model_module.CachedStep
    checked = []

    def checking(m, visual, banned):
        cached = real(m, visual, banned)

        def step(ids, rows):
            hit = all((r, tuple(q[:-1])) in cached.index for r, q in zip(rows.tolist(), ids.tolist()))
            got = cached(ids, rows)
            x, _ = m._unimodal(ids)  # the training path: every position of the prefix read again
            for block in m.multimodal:
                x = block(x, visual=visual[rows])
            want = m.lm_head(m.ln_final(x[:, -1])).float().masked_fill(banned, float("-inf")).log_softmax(-1)
            finite = torch.isfinite(want)
            assert torch.equal(finite, torch.isfinite(got))
            assert torch.allclose(got[finite], want[finite], atol=1e-4)
            checked.append(hit)
            return got
        return step

    monkeypatch.setattr(model_module, "CachedStep", checking)
    model.generate(_images(3), max_len=12, strategy=strategy)
    assert checked[0] is False and sum(checked) >= 2  # the first step fills the cache, later ones read it


def test_generation_errors(model):
    with pytest.raises(UserError, match="strategy"):
        model.generate(_images(1), strategy="random")
    with pytest.raises(UserError, match="max_len"):
        model.generate(_images(1), max_len=0)


def test_image_only_model(tmp_path):
    torch.manual_seed(0)
    vit = UrbanCLIP(tiny_config()[0], with_text=False)
    assert vit.kind == "urbanvit" and not hasattr(vit, "token_emb")
    out = TwoViewLoss()(vit(torch.cat([_images(4, 1), _images(4, 2)])))
    out.total.backward()
    assert torch.isfinite(out.total) and vit.visual.patch_embed.proj.weight.grad is not None
    with pytest.raises(UserError, match="image-only"):
        vit.encode_text(["a park"])


def test_tokenizer_bigger_than_vocab_is_rejected(tok):
    cfg = dataclasses.replace(tiny_config()[0], vocab_size=300)
    big = UrbanTokenizer.train([f"word{i} token{i * 7} thing{i * 13}" for i in range(300)], vocab_size=400)
    assert big.vocab_size > 300
    with pytest.raises(UserError, match="vocab_size"):
        UrbanCLIP(cfg, big)


def test_init_visual_from_local_checkpoint(tmp_path, model):
    torch.manual_seed(1)
    donor = UrbanCLIP(tiny_config()[0], with_text=False)
    torch.save(donor.visual.state_dict(), tmp_path / "vit.pth")
    report = model.init_visual_from(tmp_path / "vit.pth")
    assert report == {"missing": [], "unexpected": []}
    assert torch.equal(model.visual.pos_embed, donor.visual.pos_embed)
    with pytest.raises(UserError, match="does not exist"):
        model.init_visual_from(tmp_path / "missing.pth")


def test_sentence_logprobs_split_the_caption_loglikelihood_by_sentence(model):
    tok = model.tokenizer
    sents = ["a green park with trees.", "a wide river with water."]
    lp = model.sentence_logprobs(_images(1), [sents])[0]
    ids = torch.tensor([[tok.bos_id] + tok.encode(sents[0]) + tok.encode(sents[1])])
    logits = model.caption_logits(_images(1), ids[:, :-1]).log_softmax(-1)
    total = logits.gather(-1, ids[:, 1:, None]).sum()
    assert len(lp) == 2 and all(v < 0 for v in lp)
    assert abs(sum(lp) - float(total)) < 1e-3


def test_one_tile_serves_many_candidate_sentences(model):
    # the grounding badge scores several first sentences of one tile: the tile is read once
    cands = [[c] for c in CAPTIONS]
    once = model.sentence_logprobs(_images(1), cands)
    repeated = model.sentence_logprobs(_images(1).expand(len(CAPTIONS), -1, -1, -1), cands)
    assert torch.allclose(torch.tensor(once), torch.tensor(repeated), atol=1e-5)


def test_first_sentence_logprobs_equal_per_description_scoring(model):
    # every tile x candidate first sentence at once equals scoring each one-sentence description alone
    imgs = _images(3)
    lp = model.first_sentence_logprobs(imgs, CAPTIONS)
    assert lp.shape == (3, len(CAPTIONS))
    for b in range(3):
        alone = [v[0] for v in model.sentence_logprobs(imgs[b:b + 1], [[c] for c in CAPTIONS])]
        assert torch.allclose(lp[b], torch.tensor(alone), atol=1e-4)
