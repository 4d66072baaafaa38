"""Training data: balanced sampling of tiles (rare descriptions drawn more often, reproducible per epoch)."""

from __future__ import annotations

from collections import Counter

from urbanclip.training.dataset import BalancedSampler, concept_key


def test_concept_key_is_the_land_use_and_water_words_of_the_lead_sentence():
    assert concept_key(["This is farmland divided into fields of crops.", "A river flows."]) == "crops farmland fields"
    assert concept_key(["Most of the area is open water."]) == "water"
    assert concept_key(["An aerial view of the countryside."]) == "" and concept_key([]) == ""


def test_rare_keys_are_drawn_more_often_per_tile_and_orders_repeat_per_epoch():
    keys = ["common"] * 90 + ["rare"] * 10
    s = BalancedSampler(keys, power=1.0, seed=3)
    draws = Counter()
    for epoch in range(20):
        s.set_epoch(epoch)
        draws.update("rare" if i >= 90 else "common" for i in s)
    assert 0.4 < draws["rare"] / sum(draws.values()) < 0.6  # power 1: each key alike
    s.set_epoch(5)
    first = list(s)
    s.set_epoch(5)
    assert list(s) == first and len(first) == len(s) == 100
    uniform = BalancedSampler(keys, power=0.0, seed=3)
    assert sum(i >= 90 for i in uniform) < 25  # power 0: each tile alike


def test_ranks_take_disjoint_strides_of_one_global_order():
    keys = [str(i % 7) for i in range(50)]
    a, b = BalancedSampler(keys, 0.5, num_replicas=2, rank=0), BalancedSampler(keys, 0.5, num_replicas=2, rank=1)
    whole = BalancedSampler(keys, 0.5, num_replicas=1, rank=0)
    assert len(a) == len(b) == 25
    assert list(a) == list(whole)[:50:2] and list(b) == list(whole)[1:50:2]
