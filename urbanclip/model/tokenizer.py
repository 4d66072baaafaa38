"""Byte-level BPE tokenizer trained on the workspace's own descriptions.

Why our own: no download is allowed, and urban descriptions use a small,
repetitive vocabulary, so a ~1-8k BPE trained on them is compact and covers
every byte (nothing is ever <unk>). Saved as one `tokenizer.json` beside the
checkpoint and embedded in it as a string, so a model is self-describing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from urbanclip.errors import UserError

PAD, BOS, EOS, CLS = "<pad>", "<bos>", "<eos>", "<cls>"
SPECIAL_TOKENS = (PAD, BOS, EOS, CLS)  # ids 0..3 in this order
FILENAME = "tokenizer.json"


class UrbanTokenizer:
    """Wraps a `tokenizers.Tokenizer` with the special-token conventions of the model."""

    def __init__(self, tokenizer: Tokenizer):
        self._tok = tokenizer
        ids = [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS]
        if any(i is None for i in ids):
            raise UserError(f"tokenizer lacks special tokens {SPECIAL_TOKENS}; retrain it with UrbanTokenizer.train")
        self.pad_id, self.bos_id, self.eos_id, self.cls_id = ids

    # -- building -------------------------------------------------------------------
    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> "UrbanTokenizer":
        """Learn merges from `texts` (lower-cased, whitespace-normalised)."""
        texts = [t for t in texts if isinstance(t, str) and t.strip()]
        if not texts:
            raise UserError("no descriptions to train the tokenizer on: the workspace's text column is empty "
                            "(add descriptions, or train image-only with train.image_only=true)")
        tok = Tokenizer(models.BPE())
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @classmethod
    def from_str(cls, data: str) -> "UrbanTokenizer":
        try:
            return cls(Tokenizer.from_str(data))
        except Exception as e:  # tokenizers raises plain Exceptions
            raise UserError(f"stored tokenizer cannot be parsed ({e}); the checkpoint is damaged") from None

    def to_str(self) -> str:
        return self._tok.to_str()

    def save(self, directory: str | Path) -> Path:
        from urbanclip.data.workspace import atomic_write_bytes

        path = Path(directory) / FILENAME
        atomic_write_bytes(path, self.to_str().encode("utf-8"))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "UrbanTokenizer":
        path = Path(directory)
        path = path / FILENAME if path.is_dir() else path
        if not path.is_file():
            raise UserError(f"tokenizer file {path} does not exist; it is written by `python -m urbanclip pretrain`")
        return cls.from_str(path.read_text("utf-8"))

    # -- use ------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` without special tokens."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str], context_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`[BOS] tokens [EOS] [PAD]...` per text, truncated to context_length.

        Returns (ids LongTensor[N, L], mask BoolTensor[N, L], True on real tokens).
        A text that is too long loses its tail and its EOS (the model is never
        taught to stop in mid-sentence).
        """
        encs = self._tok.encode_batch([str(t) for t in texts], add_special_tokens=False)
        ids = torch.full((len(texts), context_length), self.pad_id, dtype=torch.long)
        for i, enc in enumerate(encs):
            seq = ([self.bos_id] + enc.ids + [self.eos_id])[:context_length]
            ids[i, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        return ids, ids != self.pad_id

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Text of ids up to the first EOS, special tokens dropped."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        if self.eos_id in ids:
            ids = ids[:ids.index(self.eos_id)]
        ids = [i for i in ids if i not in (self.pad_id, self.bos_id, self.cls_id)]
        return self._tok.decode(ids).strip()
