"""Decoding: no repeated sentence or n-gram, no end mid-sentence, beam search recovers, tidy text."""

from __future__ import annotations

import pytest
import torch

from urbanclip.errors import UserError
from urbanclip.model.decoding import Constraints, DecodeConfig, beam_search, decode, sample, tidy

# a toy vocabulary: 0 pad, 1 bos, 2 eos, 3 cls, then words
WORDS = {0: "<pad>", 1: "<bos>", 2: "<eos>", 3: "<cls>", 4: " a", 5: " park", 6: ".", 7: " river", 8: " green"}
A, PARK, DOT, RIVER, GREEN = 4, 5, 6, 7, 8
V = len(WORDS)


def constraints(n: int = 3, sentences: bool = True) -> Constraints:
    return Constraints(lambda i: WORDS[i], V, eos_id=2, no_repeat_ngram=n, no_repeat_sentence=sentences)


def scripted(table: dict[tuple[int, ...], dict[int, float]]):
    """A fake decoder: next-token probabilities by the generated prefix (no BOS); unlisted tokens ~0."""
    def step(ids: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        out = torch.full((ids.shape[0], V), -30.0)
        for j, row in enumerate(ids.tolist()):
            for tok, p in table.get(tuple(row[1:]), {2: 1.0}).items():
                out[j, tok] = torch.log(torch.tensor(p))
        return out.log_softmax(-1)
    return step


def test_end_of_text_only_after_a_complete_sentence():
    c = constraints()
    assert 2 in c.banned([])                  # never an empty description
    assert 2 in c.banned([A, PARK])            # never mid-sentence
    assert 2 not in c.banned([A, PARK, DOT])


def test_closing_a_repeated_sentence_is_banned():
    c = constraints(n=0)
    assert DOT in c.banned([A, PARK, DOT, A, PARK])
    assert DOT not in c.banned([A, PARK, DOT, A, RIVER])
    assert DOT not in constraints(n=0, sentences=False).banned([A, PARK, DOT, A, PARK])


def test_ngrams_may_not_repeat_within_a_sentence_but_sentences_may_share_phrases():
    c = constraints(n=3)
    assert RIVER in c.banned([A, PARK, RIVER, A, PARK])           # "a park river" again, same sentence
    assert GREEN not in c.banned([A, PARK, GREEN, DOT, A, PARK])  # another sentence may reuse "a park green"
    assert A not in c.banned([A, PARK, DOT, GREEN, PARK, DOT])


def test_beam_search_keeps_the_alternative_when_the_likely_sentence_repeats():
    step = scripted({(): {A: 1.0}, (A,): {PARK: 1.0}, (A, PARK): {DOT: 1.0},
                     (A, PARK, DOT): {A: 0.9, 2: 0.1}, (A, PARK, DOT, A): {PARK: 0.6, RIVER: 0.4},
                     (A, PARK, DOT, A, PARK): {DOT: 1.0}, (A, PARK, DOT, A, RIVER): {DOT: 1.0}})
    free = beam_search(step, 1, 1, constraints(n=0, sentences=False), max_len=10, beam_size=3)
    assert free == [[A, PARK, DOT, A, PARK, DOT]]
    assert beam_search(step, 1, 1, constraints(n=0), max_len=10, beam_size=3) == [[A, PARK, DOT, A, RIVER, DOT]]


def test_length_limit_cuts_back_to_the_last_complete_sentence():
    loop = scripted({(): {A: 1.0}, (A,): {PARK: 1.0}, (A, PARK): {DOT: 1.0}, (A, PARK, DOT): {GREEN: 1.0},
                     (A, PARK, DOT, GREEN): {RIVER: 1.0}})
    assert beam_search(loop, 2, 1, constraints(n=0), max_len=5, beam_size=2) == [[A, PARK, DOT]] * 2
    assert sample(loop, 1, 1, constraints(n=0), max_len=5, top_p=0.9, temperature=1.0, seed=0) == [[A, PARK, DOT]]


def test_greedy_is_a_beam_of_one_and_decode_validates():
    step = scripted({(): {A: 0.6, GREEN: 0.4}, (A,): {PARK: 1.0}, (A, PARK): {DOT: 1.0}, (GREEN,): {DOT: 1.0}})
    assert decode(step, 1, 1, constraints(), DecodeConfig(strategy="greedy")) == [[A, PARK, DOT]]
    with pytest.raises(UserError, match="strategy"):
        DecodeConfig(strategy="random").validate()
    with pytest.raises(UserError, match="no_repeat_ngram"):
        DecodeConfig(no_repeat_ngram=1).validate()
    with pytest.raises(UserError, match="max_len"):
        DecodeConfig(max_len=0).validate()


def test_tidy_capitalises_and_ends_every_sentence():
    assert tidy("the area is green .  a river flows") == "The area is green. A river flows."
    assert tidy("  ") == "" and tidy("...") == ""
