"""Probe protocol: stored split, disjoint sets, determinism, save/load, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from probe_helpers import build_signal_workspace

from urbanclip.data.embeddings import EmbeddingTable
from urbanclip.errors import UserError
from urbanclip.evaluation.metrics import regression_metrics
from urbanclip.evaluation.probe import ProbeConfig, ProbeHeads, fit_probes
from urbanclip.data.splits import random_split

FAST = ProbeConfig(hidden=(32,), max_epochs=200, patience=15, seeds=(0,))


def _oracle_table(ws, noise=0.05, seed=0):
    """Embeddings that contain the (log) targets plus noise: a probe must recover them."""
    rng = np.random.default_rng(seed)
    cols = [np.nan_to_num(ws.log_targets(k)) for k in ("population", "gdp", "carbon")]
    x = np.stack(cols + [rng.normal(size=len(ws.cells)) for _ in range(5)], axis=1)
    return EmbeddingTable(list(ws.cells["cell_id"]), x + rng.normal(scale=noise, size=x.shape))


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return build_signal_workspace(tmp_path_factory.mktemp("p") / "ws", n=8)


def test_split_is_deterministic_and_disjoint():
    a, b = random_split(200, seed=3), random_split(200, seed=3)
    assert (a == b).all()
    assert (a != random_split(200, seed=4)).any()
    counts = {s: int((a == s).sum()) for s in ("train", "val", "test")}
    assert counts == {"train": 120, "val": 40, "test": 40}  # 60/20/20, each cell in exactly one split


def test_probe_recovers_targets_and_uses_the_stored_split(ws):
    res = fit_probes(ws, _oracle_table(ws), "population,gdp", FAST)
    summ = res.summary()
    assert summ["population"]["R2"]["mean"] > 0.9 and summ["gdp"]["R2"]["mean"] > 0.9
    split = dict(zip(ws.cells["cell_id"], ws.cells["split"]))
    test_ids = res.test_predictions["population"]["cell_id"]
    assert test_ids and all(split[c] == "test" for c in test_ids)
    assert res.counts["population"] == {s: int((ws.cells["split"] == s).sum()) for s in ("train", "val", "test")}
    # the reported metric is the metric of the reported predictions
    tp = res.test_predictions["population"]
    assert regression_metrics(tp["y_true"], tp["y_pred"])["R2"] == pytest.approx(summ["population"]["R2"]["mean"])


def test_same_seed_same_result_and_seeds_give_std(ws):
    t = _oracle_table(ws)
    a = fit_probes(ws, t, ["carbon"], FAST).per_seed["carbon"]
    b = fit_probes(ws, t, ["carbon"], FAST).per_seed["carbon"]
    assert a == b
    cfg = ProbeConfig(hidden=(32,), max_epochs=100, patience=10, seeds=(0, 1, 2))
    s = fit_probes(ws, t, ["carbon"], cfg).summary()["carbon"]["R2"]
    assert s["n_seeds"] == 3 and s["std"] >= 0


def test_noise_embeddings_score_about_zero(ws):
    rng = np.random.default_rng(1)
    t = EmbeddingTable(list(ws.cells["cell_id"]), rng.normal(size=(len(ws.cells), 8)))
    r2 = fit_probes(ws, t, ["population"], FAST).summary()["population"]["R2"]["mean"]
    assert r2 < 0.3


def test_heads_round_trip_and_predict_raw_scale(ws, tmp_path):
    t = _oracle_table(ws)
    res = fit_probes(ws, t, "population", FAST, encoder_key="oracle")
    d = res.heads.save(tmp_path / "heads")
    again = ProbeHeads.load(d)
    assert again.encoder_key == "oracle" and again.fingerprint == ws.fingerprint()
    p1, p2 = res.heads.predict(t.vectors), again.predict(t.vectors)
    assert np.allclose(p1["population"], p2["population"])
    assert (p1["population"] >= 0).all()
    # raw scale: log1p of the prediction is close to the log target
    assert np.corrcoef(np.log1p(p1["population"]), ws.log_targets("population"))[0, 1] > 0.95
    one = again.predict(t.vectors[0])  # a single clicked cell
    assert one["population"].shape == (1,)
    with pytest.raises(UserError, match="dimensions"):
        again.predict(np.ones((2, 3)))
    with pytest.raises(UserError, match="no saved probe heads"):
        ProbeHeads.load(tmp_path / "nothing")


def test_missing_indicator_is_a_clear_error(ws):
    with pytest.raises(UserError, match="'rent' is not in workspace"):
        fit_probes(ws, _oracle_table(ws), "rent", FAST)


def test_all_nan_indicator_is_a_clear_error(tmp_path):
    ws = build_signal_workspace(tmp_path / "w", n=5, nan_indicator="gdp")
    with pytest.raises(UserError, match="'gdp' has no known values"):
        fit_probes(ws, _oracle_table(ws), "gdp", FAST)


def test_too_few_cells_is_a_clear_error(tmp_path):
    ws = build_signal_workspace(tmp_path / "w", n=3, cities=("Solo",))  # 9 cells -> 5 train
    with pytest.raises(UserError, match="train cells with a known value"):
        fit_probes(ws, _oracle_table(ws), "population", FAST)


def test_empty_seeds_and_bad_hidden_are_refused():
    with pytest.raises(UserError, match="seed"):
        ProbeConfig(seeds=())
    with pytest.raises(UserError, match="hidden"):
        ProbeConfig(hidden=(0,))


def test_cli_probe_similar_transfer(tmp_path, capsys):
    from urbanclip.cli import main

    ws = build_signal_workspace(tmp_path / "w", n=6)
    w = str(ws.root)
    assert main(["probe", "-w", w, "-e", "pca", "-o", str(tmp_path / "rep"), "--indicators", "population",
                 "--hidden", "16", "--max-epochs", "40"]) == 0
    assert (tmp_path / "rep" / "report.md").is_file()
    heads = list((tmp_path / "rep" / "heads").iterdir())
    assert len(heads) == 1 and ProbeHeads.load(heads[0]).indicators == ["population"]
    cell = ws.cells["cell_id"][0]
    assert main(["similar", "-w", w, "-c", cell, "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "Beta/" in out and "population" in out  # neighbours from the other city, with indicators
    assert main(["transfer", "-w", w, "-e", "pca", "-o", str(tmp_path / "tr"), "--indicators", "carbon",
                 "--hidden", "16", "--max-epochs", "40"]) == 0
    assert (tmp_path / "tr" / "transfer.csv").is_file()
    assert main(["probe", "-w", w, "-e", "pca", "-o", str(tmp_path / "x"), "--indicators", "rent"]) == 2
    assert "'rent' is not in workspace" in capsys.readouterr().err
