"""Cross-city transfer: one R² per ordered pair, diagonal = within-city probe, files readable by the app."""

from __future__ import annotations

import json

import numpy as np
import pytest
from probe_helpers import build_signal_workspace

from urbanclip.data.embeddings import EmbeddingTable
from urbanclip.errors import UserError
from urbanclip.evaluation.probe import ProbeConfig
from urbanclip.evaluation.reports import mean_offdiagonal, write_transfer
from urbanclip.evaluation.transfer import transfer_matrix

FAST = ProbeConfig(hidden=(16,), max_epochs=80, patience=10, seeds=(0, 1), min_train=5)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return build_signal_workspace(tmp_path_factory.mktemp("t") / "ws", n=6, cities=("Alpha", "Beta", "Gamma"))


def _table(ws):
    rng = np.random.default_rng(0)
    x = np.stack([ws.log_targets("population"), ws.log_targets("carbon"), rng.normal(size=len(ws.cells))], 1)
    return EmbeddingTable(list(ws.cells["cell_id"]), x + rng.normal(scale=0.1, size=x.shape))


def test_matrix_shape_and_records(ws, tmp_path):
    res = transfer_matrix(ws, _table(ws), "population,carbon", FAST)
    assert set(res.matrices) == {"population", "carbon"}
    for m in res.matrices.values():
        assert m.shape == (3, 3) and list(m.index) == list(m.columns) == ["Alpha", "Beta", "Gamma"]
        assert np.isfinite(m.to_numpy()).all() and (m.to_numpy() > 0.5).all()  # the signal transfers
    assert len(res.records) == 2 * 3 * 3 * 2  # indicators x train x test x seeds
    long = res.long_table()
    assert len(long) == 18 and {"r2", "r2_std", "n_seeds"} <= set(long.columns)
    paths = write_transfer(res.matrices, long, tmp_path, "oracle")
    data = json.loads(paths["json"].read_text())
    assert data["transfer"]["population"]["Alpha"]["Beta"] == pytest.approx(res.matrices["population"].loc["Alpha", "Beta"])
    assert paths["html_population"].is_file()
    assert data["mean_offdiagonal_r2"]["carbon"] == pytest.approx(mean_offdiagonal(res.matrices["carbon"]))


def test_app_can_read_the_transfer_files(ws, tmp_path):
    from urbanclip.services.cities import load_transfer

    res = transfer_matrix(ws, _table(ws), "population", FAST, cities=["Alpha", "Beta"])
    paths = write_transfer(res.matrices, res.long_table(), tmp_path)
    for p in (paths["json"], paths["csv"]):
        m = load_transfer(p)["population"]
        assert np.allclose(m.to_numpy(), res.matrices["population"].to_numpy())


def test_needs_two_known_cities(ws):
    with pytest.raises(UserError, match="at least two cities"):
        transfer_matrix(ws, _table(ws), "population", FAST, cities=["Alpha"])
    with pytest.raises(UserError, match="'Atlantis' has no embedded cells"):
        transfer_matrix(ws, _table(ws), "population", FAST, cities=["Alpha", "Atlantis"])
