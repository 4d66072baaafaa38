"""R² / RMSE / MAE agree with sklearn, including edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from urbanclip.evaluation.metrics import mean_std, regression_metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    t = rng.normal(size=50)
    p = t + rng.normal(scale=0.5, size=50)
    m = regression_metrics(t, p)
    assert m["R2"] == pytest.approx(r2_score(t, p), abs=1e-12)
    assert m["RMSE"] == pytest.approx(np.sqrt(mean_squared_error(t, p)), abs=1e-12)
    assert m["MAE"] == pytest.approx(mean_absolute_error(t, p), abs=1e-12)


def test_perfect_and_constant_predictions():
    t = np.array([1.0, 2.0, 3.0])
    assert regression_metrics(t, t) == {"R2": 1.0, "RMSE": 0.0, "MAE": 0.0}
    m = regression_metrics(t, np.full(3, t.mean()))
    assert m["R2"] == pytest.approx(r2_score(t, np.full(3, t.mean())))  # 0.0
    assert regression_metrics(np.ones(3), np.zeros(3))["R2"] == r2_score(np.ones(3), np.zeros(3))


def test_length_mismatch_and_empty_are_errors():
    with pytest.raises(ValueError, match="differ in length"):
        regression_metrics([1, 2], [1])
    with pytest.raises(ValueError, match="at least one"):
        regression_metrics([], [])


def test_mean_std_over_seeds():
    assert mean_std([1.0]) == (1.0, 0.0)
    mu, sd = mean_std([1.0, 2.0, 3.0])
    assert mu == 2.0 and sd == pytest.approx(1.0)
