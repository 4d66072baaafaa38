"""SimilarityIndex: top-k equals brute-force cosine, city filters, numpy and FAISS agree."""

from __future__ import annotations

import numpy as np
import pandas as pd
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
    idx = SimilarityIndex(v, ids, cities, backend=backend, center=False)
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
    idx = SimilarityIndex(v * 7.0, ids, cities, backend="numpy", center=False)  # scale must not matter
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
    plain = SimilarityIndex(v, ids, cities, backend="numpy", center=False)
    centred = SimilarityIndex(v, ids, cities, backend="numpy", center=True, whiten=0)
    assert plain.scores(v[0]).min() > 0.95
    s = centred.scores(v[0])
    assert s[0] == pytest.approx(1.0, abs=1e-5) and s.min() < 0.5
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    c = unit - unit.mean(axis=0)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    brute = [ids[i] for i in np.argsort(-(c[30:] @ c[0]))[:5] + 30]
    assert [m.cell_id for m in centred.top_k(v[0], k=5, exclude_city="A")] == brute


def test_the_policy_is_centred_cosine_for_cells_and_uncentred_text_queries():
    """One policy everywhere: cells are unit vectors minus their mean, renormalised (then whitened,
    see the whitening test; whiten=0 here)."""
    rng = np.random.default_rng(1)
    cone = rng.normal(size=16) * 10  # every vector shares this direction: raw cosine ~1 for every pair
    v = (cone + rng.normal(size=(40, 16))).astype(np.float32)
    ids, cities = [f"c{i}" for i in range(40)], ["A"] * 20 + ["B"] * 20
    idx = SimilarityIndex(v, ids, cities, backend="numpy", whiten=0)
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    centred = unit - unit.mean(axis=0)
    centred /= np.linalg.norm(centred, axis=1, keepdims=True)
    assert np.allclose(idx.vectors, centred, atol=1e-5)
    assert np.allclose(idx.scores(v[0]), centred @ centred[0], atol=1e-5)
    raw = SimilarityIndex(v, ids, cities, backend="numpy", center=False).scores(v[0])
    assert np.sort(raw)[-2] > 0.9 and np.sort(idx.scores(v[0]))[-2] < np.sort(raw)[-2]  # centring spreads scores
    t = rng.normal(size=16).astype(np.float32)
    assert np.allclose(idx.text_scores(t), centred @ (t / np.linalg.norm(t)), atol=1e-5)
    a, b, score = idx.best_in_city("A", "B")
    assert list(a) == list(range(20)) and all(20 <= j < 40 for j in b)
    assert np.allclose(score, (centred[:20] @ centred[20:].T).max(axis=1), atol=1e-5)
    with pytest.raises(UserError, match="no embedded cells"):
        idx.best_in_city("A", "Nowhere")


def _centred(x):
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    c = u - u.mean(axis=0)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def test_readings_are_the_second_half_of_each_cell_and_text_queries_read_the_first():
    """With readings a cell is [centred embedding, centred reading], each half of equal weight."""
    rng = np.random.default_rng(2)
    v, ids, cities = _data(n=60, d=8, seed=2)
    r = np.sqrt(rng.dirichlet(np.ones(5), size=60)).astype(np.float32)  # readings: sqrt of probabilities
    idx = SimilarityIndex(v, ids, cities, backend="numpy", readings=r, whiten=0)
    plain = SimilarityIndex(v, ids, cities, backend="numpy", whiten=0)
    both = np.hstack([_centred(v), _centred(r)]) / np.sqrt(2)
    assert np.allclose(idx.vectors, both, atol=1e-5) and idx.dim == 13 and idx.image_dim == 8
    # cosine of two cells = the mean of the halves' cosines
    assert np.allclose(idx.scores("c0"), (_centred(v) @ _centred(v)[0] + _centred(r) @ _centred(r)[0]) / 2, atol=1e-5)
    # a cell's id and its raw embedding + reading are the same query
    by_id, by_vector = idx.top_k("c3", 5), idx.top_k(np.concatenate([v[3], r[3]]), 5)
    assert [m.cell_id for m in by_id] == [m.cell_id for m in by_vector]
    assert np.allclose([m.score for m in by_id], [m.score for m in by_vector], atol=1e-5)
    # text queries score the image half only, on the same cosine scale as without readings
    t = rng.normal(size=8).astype(np.float32)
    assert np.allclose(idx.text_scores(t), plain.text_scores(t), atol=1e-5)
    with pytest.raises(UserError, match="13"):
        idx.top_k(v[3], 5)  # the embedding alone is not a query of this index
    with pytest.raises(UserError, match="not in the similarity index"):
        idx.top_k("nowhere", 5)
    with pytest.raises(UserError, match="readings of shape"):
        SimilarityIndex(v, ids, cities, readings=r[:10])
    with pytest.raises(UserError, match="NaN"):
        SimilarityIndex(v, ids, cities, readings=np.full_like(r, np.nan))


def test_readings_decide_between_look_alikes_the_embedding_cannot_tell_apart():
    # cells 1 and 2 have the same embedding; the query's reading agrees with cell 2's
    v = np.array([[1, 0, 0], [1, 0.1, 0], [1, 0.1, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    r = np.sqrt(np.array([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1], [0.5, 0.5], [0.5, 0.5]], dtype=np.float32))
    ids, cities = ["q", "a", "b", "c", "d"], ["X", "Y", "Y", "Y", "Y"]
    assert SimilarityIndex(v, ids, cities, backend="numpy", readings=r).top_k("q", 1, exclude_city="X")[0].cell_id == "b"


def test_for_table_aligns_readings_by_cell_id(tmp_path):
    from types import SimpleNamespace

    v, ids, cities = _data(n=12, d=4, seed=3)
    r = np.sqrt(np.random.default_rng(3).dirichlet(np.ones(3), size=12)).astype(np.float32)
    ws = SimpleNamespace(cells=pd.DataFrame({"cell_id": ids, "city": cities}))
    table = SimpleNamespace(vectors=v, cell_ids=ids)
    shuffled = SimpleNamespace(vectors=r[::-1], cell_ids=ids[::-1])
    idx = SimilarityIndex.for_table(table, ws, backend="numpy", readings=shuffled)
    assert np.allclose(idx.vectors, SimilarityIndex(v, ids, cities, backend="numpy", readings=r).vectors, atol=1e-6)
    with pytest.raises(UserError, match="have no reading"):
        SimilarityIndex.for_table(table, ws, readings=SimpleNamespace(vectors=r[:5], cell_ids=ids[:5]))


def _participation_ratio(x):
    s2 = np.linalg.svd(x - x.mean(axis=0), compute_uv=False) ** 2
    return s2.sum() ** 2 / (s2 ** 2).sum()


def test_whitening_evens_out_the_dominant_directions_and_leaves_text_queries_alone():
    rng = np.random.default_rng(4)
    # two strong directions (say, two land uses) and twelve weak ones
    v = (rng.normal(size=(200, 2)) @ rng.normal(size=(2, 14)) * 6 + rng.normal(size=(200, 14))).astype(np.float32)
    ids, cities = [f"c{i}" for i in range(200)], ["A"] * 100 + ["B"] * 100
    r = np.sqrt(rng.dirichlet(np.ones(4), size=200)).astype(np.float32)
    base = SimilarityIndex(v, ids, cities, backend="numpy", readings=r, whiten=0)
    idx = SimilarityIndex(v, ids, cities, backend="numpy", readings=r, whiten=0.5)
    x = base.vectors - base.vectors.mean(axis=0)
    _, sv, axes = np.linalg.svd(x, full_matrices=False)
    want = x @ axes.T / np.sqrt(sv)
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    assert np.allclose(idx.vectors @ idx.vectors.T, want @ want.T, atol=1e-4)  # sign-free comparison
    assert _participation_ratio(idx.vectors) > 1.3 * _participation_ratio(base.vectors)  # here 7.1 vs 5.0
    by_id, by_vector = idx.top_k("c7", 5), idx.top_k(np.concatenate([v[7], r[7]]), 5)  # raw queries whitened alike
    assert [m.cell_id for m in by_id] == [m.cell_id for m in by_vector]
    assert np.allclose([m.score for m in by_id], [m.score for m in by_vector], atol=1e-5)
    t = rng.normal(size=14).astype(np.float32)
    assert np.allclose(idx.text_scores(t), base.text_scores(t), atol=1e-5)
    with pytest.raises(UserError, match="whiten"):
        SimilarityIndex(v, ids, cities, whiten=2.0)
