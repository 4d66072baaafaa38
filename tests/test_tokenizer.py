"""Tokenizer: byte-level BPE trained on descriptions, special tokens, padding, round trip."""

from __future__ import annotations

import pytest

from urbanclip.errors import UserError
from urbanclip.model.tokenizer import SPECIAL_TOKENS, UrbanTokenizer

TEXTS = ["Dense residential blocks beside a river.", "A green park with trees and a pond.",
         "Industrial warehouses with large grey roofs.", "Farmland with regular fields."] * 5


@pytest.fixture(scope="module")
def tok() -> UrbanTokenizer:
    return UrbanTokenizer.train(TEXTS, vocab_size=320)


def test_special_tokens_have_fixed_ids(tok):
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.cls_id) == (0, 1, 2, 3)
    assert len(SPECIAL_TOKENS) == 4
    assert tok.vocab_size <= 320


def test_encode_batch_layout(tok):
    ids, mask = tok.encode_batch(["a park", "industrial warehouses with large grey roofs"], context_length=12)
    assert ids.shape == mask.shape == (2, 12)
    first = ids[0][mask[0]].tolist()
    assert first[0] == tok.bos_id and first[-1] == tok.eos_id
    assert (ids[0][~mask[0]] == tok.pad_id).all()
    assert mask[0].tolist() == sorted(mask[0].tolist(), reverse=True)  # right padding


def test_truncation_drops_eos(tok):
    ids, mask = tok.encode_batch([" ".join(TEXTS[:4])], context_length=6)
    assert mask.all() and ids[0, 0] == tok.bos_id and tok.eos_id not in ids[0].tolist()


def test_decode_round_trip_lowercases(tok):
    ids, _ = tok.encode_batch(["A Green park, with trees!"], context_length=32)
    assert tok.decode(ids[0]) == "a green park, with trees!"


def test_unknown_bytes_are_encoded_not_lost(tok):
    ids, _ = tok.encode_batch(["café 北京"], context_length=40)
    assert tok.decode(ids[0]) == "café 北京"


def test_save_load(tok, tmp_path):
    tok.save(tmp_path)
    again = UrbanTokenizer.load(tmp_path)
    assert again.encode("a park beside a river") == tok.encode("a park beside a river")
    assert again.to_str() == tok.to_str()


def test_errors(tmp_path):
    with pytest.raises(UserError, match="no descriptions"):
        UrbanTokenizer.train(["", "  "], vocab_size=300)
    with pytest.raises(UserError, match="does not exist"):
        UrbanTokenizer.load(tmp_path / "nope")
    with pytest.raises(UserError, match="damaged"):
        UrbanTokenizer.from_str("{not json")
