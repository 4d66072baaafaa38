"""Prediction intervals: conformal coverage on known noise, saved with the heads, shown by the app."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from app_helpers import pixel_context

from urbanclip.data.workspace import Workspace
from urbanclip.errors import UserError
from urbanclip.evaluation.probe import HEADS_FILE, META_FILE, ProbeConfig, ProbeHeads, fit_probes
from urbanclip.evaluation.uncertainty import Calibration, calibrate, conformal_quantile, coverage

FAST = ProbeConfig(hidden=(16,), max_epochs=60, patience=10, seeds=(0,), ensemble=3, min_train=5)


# ---------------------------------------------------------------------------------
# the conformal arithmetic


def test_conformal_quantile_is_the_finite_sample_rank():
    scores = np.arange(1.0, 10.0)  # 9 scores: ceil(10 * 0.8) = 8th smallest
    assert conformal_quantile(scores, 0.8) == 8.0
    assert conformal_quantile(scores[::-1], 0.8) == 8.0  # order does not matter
    assert conformal_quantile(np.array([1.0, 2.0]), 0.9) == 2.0  # too few scores: the largest
    with pytest.raises(UserError, match="between 0 and 1"):
        conformal_quantile(scores, 1.0)


def test_coverage_counts_finite_targets_inside():
    y = np.array([0.0, 1.0, 2.0, np.nan, 5.0])
    lo, hi = np.zeros(5), np.full(5, 2.0)
    assert coverage(y, lo, hi) == pytest.approx(3 / 4)  # 0, 1, 2 inside (bounds count), 5 outside, NaN ignored
    assert math.isnan(coverage(np.array([np.nan]), np.zeros(1), np.ones(1)))


def test_gaussian_noise_absolute_intervals_hit_nominal_coverage():
    rng = np.random.default_rng(0)
    sigma = 0.5
    f_cal, f_test = rng.normal(size=2000), rng.normal(size=20000)
    y_cal, y_test = f_cal + rng.normal(0, sigma, 2000), f_test + rng.normal(0, sigma, 20000)
    cal = calibrate(y_cal, f_cal, None, level=0.8)  # the predictor is the true mean: residuals are the noise
    assert cal.method == "absolute"
    assert cal.q == pytest.approx(1.2816 * sigma, rel=0.06)  # the Gaussian 90th percentile of |noise|
    lo, hi = cal.interval(f_test)
    assert coverage(y_test, lo, hi) == pytest.approx(0.8, abs=0.02)


def test_scaled_intervals_adapt_to_known_heteroscedastic_noise():
    rng = np.random.default_rng(1)
    n_cal, n_test = 3000, 20000
    s_cal, s_test = rng.uniform(0.1, 1.0, n_cal), rng.uniform(0.1, 1.0, n_test)  # the "ensemble spread"
    y_cal, y_test = rng.normal(0, s_cal), rng.normal(0, s_test)
    scaled = calibrate(y_cal, np.zeros(n_cal), s_cal, level=0.8)
    flat = calibrate(y_cal, np.zeros(n_cal), None, level=0.8)
    assert scaled.method == "scaled" and scaled.floor == pytest.approx(np.median(s_cal))
    lo, hi = scaled.interval(np.zeros(n_test), s_test)
    assert coverage(y_test, lo, hi) == pytest.approx(0.8, abs=0.02)
    noisy = s_test > 0.8
    flo, fhi = flat.interval(np.zeros(n_test))
    # both are valid on average; only the scaled one stays close to nominal where the noise is large
    assert coverage(y_test[noisy], lo[noisy], hi[noisy]) > coverage(y_test[noisy], flo[noisy], fhi[noisy]) + 0.05
    assert (hi - lo)[noisy].mean() > (hi - lo)[~noisy].mean()


def test_calibration_round_trips_and_refuses_unknown_method():
    c = Calibration(level=0.8, q=1.5, floor=0.2, method="scaled", n_cal=40, smearing=1.3)
    assert Calibration.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    old = {k: v for k, v in c.to_dict().items() if k != "smearing"}  # saved before expected values existed
    assert Calibration.from_dict(old).smearing == 0 and Calibration.from_dict(old).expected(np.ones(3)) is None
    with pytest.raises(UserError, match="interval method"):
        Calibration(level=0.8, q=1.0, method="quantile")
    with pytest.raises(UserError, match="ensemble"):
        ProbeConfig(ensemble=0)
    with pytest.raises(UserError, match="between 0 and 1"):
        ProbeConfig(interval=80)


def test_sums_of_expected_values_hit_log_normal_totals_where_sums_of_medians_run_low():
    # log1p values = a known prediction + log-normal noise (the demo's indicators are built this way)
    rng = np.random.default_rng(0)
    center = rng.uniform(4, 9, 6000)
    y = center + rng.normal(0, 0.6, center.size)
    cal = calibrate(y[:1000], center[:1000], level=0.8)
    assert cal.smearing == pytest.approx(math.exp(0.6 ** 2 / 2), rel=0.05)  # E[exp e] of N(0, 0.36)
    truth = np.expm1(y[1000:]).sum()
    assert np.expm1(center[1000:]).sum() / truth < 0.88  # medians: ~exp(-0.18) of the total
    assert cal.expected(center[1000:]).sum() / truth == pytest.approx(1.0, abs=0.04)
    assert (cal.expected(np.array([-5.0])) == 0).all()  # never below zero


# ---------------------------------------------------------------------------------
# the probe


@pytest.fixture(scope="module")
def ws(tiny_workspace_path):
    return Workspace.load(tiny_workspace_path)


def _noisy_table(ws, noise=0.3, seed=0):
    """Embeddings = log target + Gaussian noise (plus distractors): a probe's residuals are about that noise."""
    from urbanclip.data.embeddings import EmbeddingTable

    rng = np.random.default_rng(seed)
    y = np.nan_to_num(ws.log_targets("carbon"))
    x = np.stack([y + rng.normal(0, noise, len(y))] + [rng.normal(size=len(y)) for _ in range(3)], axis=1)
    return EmbeddingTable(list(ws.cells["cell_id"]), x)


def test_probe_reports_test_coverage_of_its_own_intervals(ws):
    res = fit_probes(ws, _noisy_table(ws), "carbon", FAST)
    iv, tp = res.intervals["carbon"], res.test_predictions["carbon"]
    y, lo, hi, pred = (np.array(tp[k]) for k in ("y_true", "lower", "upper", "y_pred"))
    assert iv["coverage"] == pytest.approx(coverage(y, lo, hi))  # the reported number is of the reported intervals
    assert iv["width"] == pytest.approx(np.mean(hi - lo))
    assert (lo <= pred).all() and (pred <= hi).all()
    assert 0.55 <= iv["coverage"] <= 1.0 and iv["n_test"] == len(y) and iv["level"] == 0.8
    summ = res.summary()["carbon"]
    assert summ["coverage"]["mean"] == iv["coverage"] and summ["coverage"]["level"] == 0.8


def test_heads_save_intervals_and_old_heads_still_predict(ws, tmp_path):
    t = _noisy_table(ws)
    res = fit_probes(ws, t, "carbon", FAST)
    d = res.heads.save(tmp_path / "heads")
    again = ProbeHeads.load(d)
    assert again.has_intervals and len(again.members["carbon"]) == FAST.ensemble - 1
    a, b = res.heads.predict_interval(t.vectors)["carbon"], again.predict_interval(t.vectors)["carbon"]
    assert np.allclose(a.lower, b.lower) and np.allclose(a.upper, b.upper) and np.allclose(a.pred, b.pred)
    assert (a.lower <= a.pred).all() and (a.pred <= a.upper).all() and (a.lower >= 0).all()
    assert np.allclose(a.pred, again.predict(t.vectors)["carbon"])  # the point prediction is the plain head's
    one = again.predict_interval(t.vectors[0])["carbon"]
    assert one.lower.shape == (1,)
    # a folder saved before intervals existed: no members in the blob, no "intervals" in the meta
    _strip_intervals(d)
    old = ProbeHeads.load(d)
    assert not old.has_intervals
    assert np.allclose(old.predict(t.vectors)["carbon"], a.pred)
    with pytest.raises(UserError, match="without prediction intervals"):
        old.predict_interval(t.vectors)


def _strip_intervals(d):
    import torch

    blob = torch.load(d / HEADS_FILE, weights_only=True)
    torch.save({k: {kk: vv for kk, vv in b.items() if kk != "members"} for k, b in blob.items()}, d / HEADS_FILE)
    meta = json.loads((d / META_FILE).read_text())
    meta.pop("intervals"), meta.pop("split")
    meta["config"] = {k: v for k, v in meta["config"].items() if k not in ("ensemble", "interval", "drop_zero_targets")}
    (d / META_FILE).write_text(json.dumps(meta))


# ---------------------------------------------------------------------------------
# the app: context, profile, map layer, page


@pytest.fixture(scope="module")
def ctx_with_intervals(ws):
    ctx = pixel_context(ws)
    from urbanclip.data.embeddings import EmbeddingTable

    res = fit_probes(ws, EmbeddingTable(ctx.cell_ids, ctx.vectors), None, FAST)
    pos = {c: i for i, c in enumerate(ctx.cell_ids)}
    rows = np.array([pos[c] for c in ws.cells["cell_id"]])
    for k, iv in res.heads.predict_interval(ctx.vectors).items():
        ctx.predictions[k] = iv.pred[rows]
        ctx.intervals[k] = (iv.lower[rows], iv.upper[rows])
        ctx.expected[k] = iv.expected[rows]
        ctx.interval_level = iv.level
    return ctx


def test_context_refits_heads_saved_without_intervals(tiny_workspace_copy):
    from urbanclip.data.embeddings import EmbeddingTable
    from urbanclip.services.context import _attach_predictions, probe_dir

    ctx = pixel_context(Workspace.load(tiny_workspace_copy))
    ctx.encoder_key = "pixels"
    d = probe_dir(ctx)
    fit_probes(ctx.workspace, EmbeddingTable(ctx.cell_ids, ctx.vectors), None, FAST).heads.save(d)
    _strip_intervals(d)
    (d / "DONE").write_text("ok\n")
    # min_train=10: this tiny workspace has ~115 training cells, below the app's default minimum
    _attach_predictions(ctx, fit_missing=False, progress=lambda m: None, min_train=10)  # may not refit: point predictions only
    assert ctx.has_predictions and not ctx.has_intervals
    assert any("no prediction intervals" in n for n in ctx.notes)
    ctx.predictions.clear()
    _attach_predictions(ctx, fit_missing=True, progress=lambda m: None, min_train=10)  # the app's cache: refitted cleanly
    assert ctx.has_intervals and ctx.interval_level == 0.8
    assert any("predate prediction intervals" in n for n in ctx.notes)
    assert ProbeHeads.load(d).has_intervals
    lo, hi = ctx.intervals["population"]
    ok = np.isfinite(lo)
    assert ok.any() and (lo[ok] <= ctx.predictions["population"][ok] + 1e-9).all()
    # the log residuals' spread lifts each expected value above its median
    assert (ctx.expected["population"][ok] >= ctx.predictions["population"][ok]).all()


def test_context_refits_heads_saved_without_expected_values(tiny_workspace_copy):
    from urbanclip.data.embeddings import EmbeddingTable
    from urbanclip.services.context import _attach_predictions, probe_dir

    ctx = pixel_context(Workspace.load(tiny_workspace_copy))
    ctx.encoder_key = "pixels"
    d = probe_dir(ctx)
    fit_probes(ctx.workspace, EmbeddingTable(ctx.cell_ids, ctx.vectors), None, FAST).heads.save(d)
    meta = json.loads((d / META_FILE).read_text())
    for c in meta["intervals"].values():
        c.pop("smearing")
    (d / META_FILE).write_text(json.dumps(meta))
    (d / "DONE").write_text("ok\n")
    assert ProbeHeads.load(d).has_intervals and not ProbeHeads.load(d).has_expected
    _attach_predictions(ctx, fit_missing=True, progress=lambda m: None, min_train=10)
    assert ProbeHeads.load(d).has_expected and set(ctx.expected) == set(ctx.predictions)


def test_profile_and_uncertainty_layer(ctx_with_intervals):
    from urbanclip.services.mapview import available_layers, layer_data
    from urbanclip.services.profile import format_prediction, format_value, profile_cell

    ctx = ctx_with_intervals
    ws = ctx.workspace
    cid = ws.cells["cell_id"].iloc[4]
    iv = next(v for v in profile_cell(ctx, cid, generate=False).indicators if v.name == "gdp")
    lo, hi = ctx.intervals["gdp"]
    assert iv.lower == pytest.approx(lo[4]) and iv.upper == pytest.approx(hi[4]) and iv.level == 0.8
    text = format_prediction(iv)
    assert text == (f"{format_value(iv.predicted, iv.unit)} (80%: {format_value(iv.lower, iv.unit, with_unit=False)}"
                    f"–{format_value(iv.upper, iv.unit, with_unit=False)})")
    assert "M million" not in text
    assert "uncertainty" in available_layers(ctx)
    city = ws.cities[0]
    layer = layer_data(ctx, city, "uncertainty", "gdp")
    mask = (ws.cells["city"] == city).to_numpy()
    assert np.allclose(layer.values, np.log1p(hi[mask]) - np.log1p(lo[mask]))
    assert "80% interval width" in layer.title and "upper ÷ lower" in layer.title
    lo0, hi0 = max(float(lo[mask][0]), 0.0), max(float(hi[mask][0]), 0.0)
    assert layer.label(0) == f"80% interval {format_value(lo0, 'million yuan', False)}–{format_value(hi0, 'million yuan')}"
    from urbanclip.services.context import AppContext

    bare = AppContext(workspace=ws, predictions=dict(ctx.predictions))
    assert "uncertainty" not in available_layers(bare) and layer_data(bare, city, "uncertainty", "gdp") is None


def test_map_page_shows_intervals_and_offers_the_layer(ctx_with_intervals, tiny_workspace_path, monkeypatch):
    import streamlit as st
    from app_helpers import map_page_with

    at = map_page_with(ctx_with_intervals, tiny_workspace_path, monkeypatch)
    at.session_state["selected_cell"] = ctx_with_intervals.workspace.cells["cell_id"].iloc[0]
    at.run()
    assert not at.exception
    assert "uncertainty" in at.radio(key="layer").options
    text = "\n".join(str(e.value) for e in list(at.markdown) + list(at.caption))
    assert "(80%: " in at.table[0].value["Predicted"].iloc[0] and "80% prediction interval" in text
    at.radio(key="layer").set_value("uncertainty").run()
    assert not at.exception
    assert "80% interval width of Population" in "\n".join(str(e.value) for e in at.markdown)
    st.cache_resource.clear()
