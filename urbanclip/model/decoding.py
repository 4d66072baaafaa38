"""Decoding a description from the multimodal decoder: search, repetition control, tidy sentences.

The model supplies one function, `step(ids [n, t], rows [n]) -> log-probs [n, vocab]`
(rows = which image each prefix belongs to); this module decides which tokens to keep.

* `beam`: batched beam search over all images at once (`beam_size=1` is greedy),
  ranked by length-normalised log-probability (Wu et al. 2016 with alpha = 1).
* `top-p`: nucleus sampling (Holtzman et al. 2020), seeded.

Every strategy obeys the same `Constraints`, which make a description readable:
  - no repeated sentence: the token that would close a sentence identical to an earlier
    one is banned, so beam search keeps another continuation instead of stopping there;
  - no repeated n-gram inside a sentence (a loop "the area is a few trees are a few trees");
    across sentences only whole sentences are compared, because different sentences
    legitimately share phrases ("... cuts straight across the area.", "Some trees are
    scattered across the area."): blocking those made greedy decoding write "Some trees are
    scattered across the area covers the area." for 29 demo tiles;
  - no end of text in the middle of a sentence, and never an empty description.
A description that hits the length limit is cut back to its last complete sentence,
and `tidy` capitalises the (lower-cased) sentences.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from urbanclip.errors import UserError

STRATEGIES = ("beam", "greedy", "top-p")
SENTENCE_END = (".", "!", "?")

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class DecodeConfig:
    """How descriptions are decoded. The defaults are what the app, `describe` and the benches use."""

    strategy: str = "beam"          # beam | greedy (= beam of 1) | top-p
    beam_size: int = 4
    max_len: int = 63               # new tokens; the model caps it at context_length - 1
    no_repeat_ngram: int = 4        # 0 = off; an n-gram may not occur twice within one sentence
    no_repeat_sentence: bool = True
    top_p: float = 0.9
    temperature: float = 1.0
    seed: int = 0

    @classmethod
    def overriding(cls, **fields: Any) -> "DecodeConfig":
        """The defaults with each field that is not None replaced (an option the user left unset)."""
        return cls(**{k: v for k, v in fields.items() if v is not None})

    def validate(self, where: str = "decoding") -> None:
        if self.strategy not in STRATEGIES:
            raise UserError(f"{where}: strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if not isinstance(self.max_len, int) or self.max_len < 1:
            raise UserError(f"{where}: max_len must be a positive number of tokens, got {self.max_len!r}")
        if not isinstance(self.beam_size, int) or self.beam_size < 1:
            raise UserError(f"{where}: beam_size must be >= 1, got {self.beam_size!r}")
        if self.no_repeat_ngram < 0 or self.no_repeat_ngram == 1:
            raise UserError(f"{where}: no_repeat_ngram must be 0 (off) or >= 2, got {self.no_repeat_ngram!r}")
        if not 0 < self.top_p <= 1:
            raise UserError(f"{where}: top_p must be in (0, 1], got {self.top_p!r}")
        if not self.temperature > 0:
            raise UserError(f"{where}: temperature must be > 0, got {self.temperature!r}")


class Constraints:
    """Which tokens a partial description may not take next (see module doc)."""

    def __init__(self, decode_token: Callable[[int], str], vocab_size: int, eos_id: int,
                 no_repeat_ngram: int = 4, no_repeat_sentence: bool = True):
        self.eos_id = eos_id
        self.n = no_repeat_ngram
        self.no_repeat_sentence = no_repeat_sentence
        self.ends = frozenset(i for i in range(vocab_size) if i != eos_id
                              and decode_token(i).strip().endswith(SENTENCE_END))

    def split(self, seq: Sequence[int]) -> tuple[list[tuple[int, ...]], list[int]]:
        """(completed sentences, the sentence in progress) of a token sequence."""
        done, cur = [], []
        for t in seq:
            cur.append(t)
            if t in self.ends:
                done.append(tuple(cur))
                cur = []
        return done, cur

    def banned(self, seq: Sequence[int]) -> list[int]:
        done, cur = self.split(seq)
        out: list[int] = []
        if cur or not done:
            out.append(self.eos_id)  # end only after a complete sentence
        if self.no_repeat_sentence and cur:
            said = set(done)
            out += [e for e in self.ends if tuple(cur) + (e,) in said]
        if self.n and len(cur) >= self.n - 1:  # a loop inside the sentence being written
            prefix = tuple(cur[-(self.n - 1):])
            for i in range(len(cur) - self.n + 1):
                if tuple(cur[i:i + self.n - 1]) == prefix:
                    out.append(cur[i + self.n - 1])
        return out

    def complete(self, seq: Sequence[int]) -> list[int]:
        """`seq` cut back to its last complete sentence (all of it when none is complete)."""
        last = max((i for i, t in enumerate(seq) if t in self.ends), default=-1)
        return list(seq[:last + 1]) if last >= 0 else list(seq)


def _apply_bans(logp: torch.Tensor, seqs: Sequence[Sequence[int]], constraints: Constraints) -> torch.Tensor:
    rows, cols = [], []
    for j, s in enumerate(seqs):
        b = constraints.banned(s)
        rows += [j] * len(b)
        cols += b
    if rows:
        logp = logp.clone()
        logp[rows, cols] = float("-inf")
    return logp


def beam_search(step: Step, n_images: int, bos_id: int, constraints: Constraints, max_len: int,
                beam_size: int, device: torch.device | str = "cpu") -> list[list[int]]:
    """Best token sequence per image (no BOS/EOS). `beam_size=1` is greedy decoding.

    Every live beam of every image advances in one batched `step`; a beam that emits EOS is
    finished and ranked by its log-probability / length. An image stops when it has
    `beam_size` finished descriptions or no live beam can still beat its best one.
    """
    K, eos = beam_size, constraints.eos_id
    beams: list[list[tuple[float, list[int]]]] = [[(0.0, [])] for _ in range(n_images)]
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(n_images)]
    alive = list(range(n_images))
    for _ in range(max_len):
        if not alive:
            break
        flat = [(r, b) for r in alive for b in beams[r]]
        ids = torch.tensor([[bos_id] + q for _, (_, q) in flat], dtype=torch.long, device=device)
        rows = torch.tensor([r for r, _ in flat], dtype=torch.long, device=device)
        logp = _apply_bans(step(ids, rows).float().cpu(), [q for _, (_, q) in flat], constraints)
        total = logp + torch.tensor([s for _, (s, _) in flat]).unsqueeze(1)
        vocab, start, still = logp.shape[-1], 0, []
        for r in alive:
            n = len(beams[r])
            best, idx = total[start:start + n].reshape(-1).topk(min(2 * K, n * vocab))
            prev, start = beams[r], start + n
            cands: list[tuple[float, list[int]]] = []
            for s, ix in zip(best.tolist(), idx.tolist()):
                if s == float("-inf") or len(cands) == K:
                    break
                b, v = divmod(ix, vocab)
                seq = prev[b][1] + [v]
                if v == eos:
                    finished[r].append((s / len(seq), seq[:-1]))
                else:
                    cands.append((s, seq))
            # a live beam's log-prob can only fall, so sum / max_len bounds its final normalised score
            best_done = max((f[0] for f in finished[r]), default=float("-inf"))
            beams[r] = [c for c in cands if c[0] / max_len > best_done]
            if beams[r] and len(finished[r]) < K:
                still.append(r)
        alive = still
    out = []
    for r in range(n_images):
        if finished[r]:
            out.append(max(finished[r], key=lambda f: f[0])[1])
        elif beams[r]:  # length limit: the best live beam, cut back to a complete sentence
            out.append(constraints.complete(max(beams[r], key=lambda c: c[0])[1]))
        else:
            out.append([])
    return out


def sample(step: Step, n_images: int, bos_id: int, constraints: Constraints, max_len: int, top_p: float,
           temperature: float, seed: int, device: torch.device | str = "cpu") -> list[list[int]]:
    """Nucleus sampling: each token from the smallest set of tokens holding >= top_p of the mass."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    seqs: list[list[int]] = [[] for _ in range(n_images)]
    done = [False] * n_images
    for _ in range(max_len):
        live = [i for i in range(n_images) if not done[i]]
        if not live:
            break
        ids = torch.tensor([[bos_id] + seqs[i] for i in live], dtype=torch.long, device=device)
        logp = step(ids, torch.tensor(live, dtype=torch.long, device=device)).float().cpu() * (1.0 / temperature)
        logp = _apply_bans(logp.log_softmax(-1), [seqs[i] for i in live], constraints)
        probs, order = logp.exp().sort(-1, descending=True)
        probs = probs.masked_fill(probs.cumsum(-1) - probs >= top_p, 0.0)
        pick = order.gather(-1, torch.multinomial(probs, 1, generator=gen))[:, 0].tolist()
        for i, t in zip(live, pick):
            if t == constraints.eos_id:
                done[i] = True
            else:
                seqs[i].append(t)
    return [s if d else constraints.complete(s) for s, d in zip(seqs, done)]


_SENTENCE = re.compile(r"[^.!?]+[.!?]*")


def tidy(text: str) -> str:
    """One space between sentences, each capitalised and ending with a full stop."""
    out = []
    for m in _SENTENCE.finditer(text or ""):
        s = re.sub(r"\s+", " ", m.group(0)).strip()
        s = re.sub(r"\s+([,.;:!?])", r"\1", s)
        if not s or not re.search(r"[A-Za-z]", s):
            continue
        s = s[0].upper() + s[1:]
        out.append(s if s.endswith(SENTENCE_END) else s + ".")
    return " ".join(out)


def decode(step: Step, n_images: int, bos_id: int, constraints: Constraints, cfg: DecodeConfig,
           device: torch.device | str = "cpu") -> list[list[int]]:
    """Token ids per image under `cfg` (its strategy, length limit and constraints)."""
    cfg.validate()
    if cfg.strategy == "top-p":
        return sample(step, n_images, bos_id, constraints, cfg.max_len, cfg.top_p, cfg.temperature, cfg.seed,
                      device)
    k = 1 if cfg.strategy == "greedy" else cfg.beam_size
    return beam_search(step, n_images, bos_id, constraints, cfg.max_len, k, device)
