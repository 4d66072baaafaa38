"""The full comparison: one report with every requested method, Table-2 layout, model runs reused."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from probe_helpers import build_signal_workspace

from urbanclip.evaluation.comparison import CompareConfig, beats, run_comparison
from urbanclip.errors import UserError
from urbanclip.evaluation.probe import ProbeConfig
from urbanclip.evaluation.reports import read_table2

PROBE = ProbeConfig(hidden=(16,), max_epochs=60, patience=8, seeds=(0, 1), min_train=5)
BUDGET = {"epochs": 1, "image_size": 32, "batch_size": 16, "width": 8, "dim": 16}


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return build_signal_workspace(tmp_path_factory.mktemp("c") / "ws", n=6)


def test_baselines_report_in_table2_layout(ws, tmp_path):
    cfg = CompareConfig(methods=("pca", "tile2vec"), indicators="population,carbon", probe=PROBE, baseline_opts=BUDGET)
    rows, paths = run_comparison(ws, tmp_path / "cmp", cfg)
    assert [r.method for r in rows] == ["pca", "tile2vec"]
    csv = pd.read_csv(paths["csv"])
    assert list(csv["method"]) == ["pca", "tile2vec"]
    for ind in ("population", "carbon"):
        for m in ("R2", "RMSE", "MAE"):
            assert f"{ind}_{m}" in csv.columns and f"{ind}_{m}_std" in csv.columns
    md = paths["md"].read_text()
    assert "| PCA (10 components) |" in md and "population R²" in md and "±" in md
    again = read_table2(paths["json"])
    assert again[0].results["population"]["R2"]["n_seeds"] == 2
    events = [json.loads(l)["event"] for l in (tmp_path / "cmp" / "metrics.jsonl").read_text().splitlines()]
    assert events[0] == "start" and events[-1] == "end" and events.count("step") == 2
    assert beats(rows, "tile2vec", ["pca"])["pca"].keys() == {"population", "carbon"}


def test_unknown_method_and_bad_run_are_refused():
    with pytest.raises(UserError, match="unknown method 'readx'"):
        CompareConfig(methods=("readx",))
    with pytest.raises(UserError, match="only for model methods"):
        CompareConfig(runs={"pca": "/x"})


def test_model_methods_pretrain_then_reuse(ws, tmp_path):
    pytest.importorskip("urbanclip.training.train")
    cfg = CompareConfig(methods=("urbanvit", "urbanclip"), indicators="population", probe=PROBE,
                        model_config="tiny", train_overrides={"max_steps": 2})
    rows, _ = run_comparison(ws, tmp_path / "cmp", cfg)
    assert [r.label for r in rows] == ["UrbanViT", "UrbanCLIP"]
    assert all((tmp_path / "cmp" / "runs" / m / "model.pt").is_file() for m in ("urbanvit", "urbanclip"))
    assert all("trained" in r.notes for r in rows)
    rows2, _ = run_comparison(ws, tmp_path / "cmp", cfg)  # second time: runs and embeddings are reused
    assert all("reused run" in r.notes for r in rows2)
    assert rows2[1].results == rows[1].results
