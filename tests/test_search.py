"""SimilarityIndex: top-k equals brute-force cosine, city filters, numpy and FAISS agree."""

from __future__ import annotations

import numpy as np
import pytest

from urbanclip.errors import UserError
from urbanclip.search.index import SimilarityIndex, faiss_available


def _data(n=300, d=16, seed=0):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, d)).astype(np.float32)
    ids = [f"c{i}" for i in range(n)]
    cities = np.array(["A", "B", "C"])[rng.integers(0, 3, n)]
    return v, ids, cities


def _brute(v, cities, q, k, keep):
    vn = v / np.linalg.norm(v, axis=1, keepdims=True)
    s = vn @ (q / np.linalg.norm(q))
    s = np.where(keep, s, -np.inf)
    order = np.argsort(-s, kind="stable")[:k]
    return [int(i) for i in order], s[order]


@pytest.mark.parametrize("backend", ["numpy", pytest.param("faiss", marks=pytest.mark.skipif(
    not faiss_available(), reason="faiss not installed"))])
def test_top_k_matches_brute_force(backend):
    v, ids, cities = _data()
    idx = SimilarityIndex(v, ids, cities, backend=backend)
    rng = np.random.default_rng(5)
    for _ in range(10):
        q = rng.normal(size=16)
        for kw, keep in (({}, np.ones(len(v), bool)), ({"exclude_city": "A"}, cities != "A"),
                         ({"only_city": "C"}, cities == "C")):
            want, want_s = _brute(v, cities, q, 7, keep)
            got = idx.top_k(q, k=7, **kw)
            assert [m.cell_id for m in got] == [ids[i] for i in want]
            assert np.allclose([m.score for m in got], want_s, atol=1e-5)
            assert all(m.city == cities[i] for m, i in zip(got, want))


def test_scores_are_cosine_and_per_city_top_k():
    v, ids, cities = _data(60)
    idx = SimilarityIndex(v * 7.0, ids, cities, backend="numpy")  # scale must not matter
    q = v[3]
    s = idx.scores(q)
    vn = v / np.linalg.norm(v, axis=1, keepdims=True)
    assert np.allclose(s, vn @ vn[3], atol=1e-6)
    assert idx.top_k(q, 1)[0].cell_id == "c3" and idx.top_k(q, 1)[0].score == pytest.approx(1.0, abs=1e-6)
    per = idx.top_k_per_city(q, k=2, exclude_city=cities[3])
    assert set(per) == set(cities) - {cities[3]}
    assert all(len(ms) == 2 and all(m.city == c for m in ms) for c, ms in per.items())


def test_k_larger_than_index_returns_everything_sorted():
    v, ids, cities = _data(10)
    got = SimilarityIndex(v, ids, cities, backend="numpy").top_k(v[0], k=50)
    assert len(got) == 10
    assert [m.score for m in got] == sorted((m.score for m in got), reverse=True)


def test_bad_inputs():
    v, ids, cities = _data(10)
    with pytest.raises(UserError, match="3 cell ids"):
        SimilarityIndex(v, ids[:3], cities)
    idx = SimilarityIndex(v, ids, cities, backend="numpy")
    with pytest.raises(UserError, match="dimensions"):
        idx.top_k(np.ones(3))
    with pytest.raises(UserError, match="no indexed cells"):
        idx.top_k(v[0], exclude_city="Atlantis")
    with pytest.raises(UserError, match="unknown search backend"):
        SimilarityIndex(v, ids, cities, backend="annoy")
    bad = v.copy()
    bad[0, 0] = np.nan
    with pytest.raises(UserError, match="NaN"):
        SimilarityIndex(bad, ids, cities)


def test_centred_index_spreads_a_narrow_cone_and_keeps_the_ranking_exact():
    rng = np.random.default_rng(0)
    common = rng.normal(size=16)
    v = (common * 20 + rng.normal(size=(60, 16))).astype(np.float32)  # every plain cosine is ~1
    ids, cities = [f"c{i}" for i in range(60)], ["A"] * 30 + ["B"] * 30
    plain = SimilarityIndex(v, ids, cities, backend="numpy")
    centred = SimilarityIndex(v, ids, cities, backend="numpy", center=True)
    assert plain.scores(v[0]).min() > 0.95
    s = centred.scores(v[0])
    assert s[0] == pytest.approx(1.0, abs=1e-5) and s.min() < 0.5
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    c = unit - unit.mean(axis=0)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    brute = [ids[i] for i in np.argsort(-(c[30:] @ c[0]))[:5] + 30]
    assert [m.cell_id for m in centred.top_k(v[0], k=5, exclude_city="A")] == brute
