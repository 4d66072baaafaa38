"""The comparison trains a configuration once: a method whose effective training config equals
an earlier method's (w/o refined text on a workspace without refined text) reuses that run."""

from __future__ import annotations

import pytest
from probe_helpers import build_signal_workspace

from urbanclip.evaluation.comparison import CompareConfig, run_comparison
from urbanclip.evaluation.probe import ProbeConfig

PROBE = ProbeConfig(hidden=(16,), max_epochs=30, patience=5, seeds=(0,), min_train=5)


def test_identical_training_config_is_trained_once(tmp_path):
    pytest.importorskip("urbanclip.training.train")
    ws = build_signal_workspace(tmp_path / "ws", n=6)
    assert "text_refined" not in ws.cells.columns
    cfg = CompareConfig(methods=("urbanclip-raw-text", "urbanclip-no-lm", "urbanclip"), indicators="population",
                        probe=PROBE, model_config="tiny", train_overrides={"max_steps": 2})
    rows, _ = run_comparison(ws, tmp_path / "cmp", cfg)
    runs = tmp_path / "cmp" / "runs"
    assert (runs / "urbanclip-raw-text" / "model.pt").is_file() and (runs / "urbanclip-no-lm" / "model.pt").is_file()
    assert not (runs / "urbanclip").exists()  # same config as urbanclip-raw-text: not trained again
    assert "same training config as urbanclip-raw-text" in rows[2].notes
    assert rows[2].results == rows[0].results
    assert "trained" in rows[1].notes and "same training config" not in rows[1].notes
    rows2, _ = run_comparison(ws, tmp_path / "cmp", cfg)  # a rerun still reuses everything
    assert "same training config as urbanclip-raw-text" in rows2[2].notes
    assert rows2[2].results == rows[2].results
