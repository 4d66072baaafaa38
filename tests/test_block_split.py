"""Spatial-block split: whole blocks per split, disjoint, deterministic, stored once; probes and reports use it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from urbanclip.errors import UserError
from urbanclip.evaluation.probe import ProbeConfig, fit_probes
from urbanclip.data.splits import (SPLITS, block_ids, block_split, parse_splits, split_column, store_block_split)
from urbanclip.data.workspace import Workspace

FAST = ProbeConfig(hidden=(16,), max_epochs=40, patience=8, seeds=(0,), ensemble=2, min_train=5)


def grid(cities=("A", "B"), n=20):
    c, r, q = [], [], []
    for city in cities:
        for i in range(n):
            for j in range(n):
                c.append(city), r.append(i), q.append(j)
    return np.array(c), np.array(r), np.array(q)


def test_whole_blocks_disjoint_and_60_20_20():
    c, r, q = grid(n=20)
    labels = block_split(c, r, q, block_size=4, seed=0)
    assert set(labels) == set(SPLITS) and len(labels) == len(c)  # every cell in exactly one split
    blocks = block_ids(c, r, q, 4)
    per_block = pd.Series(labels).groupby(blocks).nunique()
    assert (per_block == 1).all()  # no block spans two splits
    assert all(b.startswith(("A/", "B/")) for b in blocks)  # blocks never span cities
    share = pd.Series(labels).value_counts(normalize=True)
    assert share["train"] == pytest.approx(0.6, abs=0.03)
    assert share["val"] == pytest.approx(0.2, abs=0.03) and share["test"] == pytest.approx(0.2, abs=0.03)


def test_uneven_edge_blocks_still_whole():
    c, r, q = grid(cities=("A",), n=13)  # 13 = 3 x 4 + 1: thin edge blocks
    labels = block_split(c, r, q, block_size=4, seed=5)
    assert (pd.Series(labels).groupby(block_ids(c, r, q, 4)).nunique() == 1).all()
    assert set(labels) == set(SPLITS)


def test_deterministic_per_seed():
    c, r, q = grid()
    a, b = block_split(c, r, q, 3, seed=1), block_split(c, r, q, 3, seed=1)
    assert (a == b).all()
    assert (a != block_split(c, r, q, 3, seed=2)).any()


def test_block_size_one_is_a_cell_level_split():
    c, r, q = grid(cities=("A",), n=10)
    labels = block_split(c, r, q, block_size=1, seed=0)
    assert {s: int((labels == s).sum()) for s in SPLITS} == {"train": 60, "val": 20, "test": 20}


@pytest.mark.parametrize("bad", [0, -2, 2.5, True])
def test_bad_block_size_is_a_clear_error(bad):
    c, r, q = grid(n=4)
    with pytest.raises(UserError, match="block size must be a whole number of cells >= 1"):
        block_split(c, r, q, block_size=bad)


def test_too_few_blocks_is_a_clear_error():
    c, r, q = grid(cities=("A",), n=4)
    with pytest.raises(UserError, match="only 1 block"):
        block_split(c, r, q, block_size=8)


def test_parse_splits():
    assert parse_splits("random, block,random") == ("random", "block")
    with pytest.raises(UserError, match="unknown split 'spatial'"):
        parse_splits("random,spatial")
    with pytest.raises(UserError, match="--splits is empty"):
        parse_splits(" , ")


def test_stored_in_the_workspace_and_reused(tiny_workspace_copy):
    ws = Workspace.load(tiny_workspace_copy)
    fp = ws.fingerprint()
    with pytest.raises(UserError, match="no 'split_block' column"):
        split_column(ws, "block")
    col = store_block_split(ws, block_size=3)
    again = Workspace.load(tiny_workspace_copy)
    assert col == "split_block" and (again.cells[col] == ws.cells[col]).all()
    assert again.manifest.extra["split_block"]["block_size"] == 3
    assert "block_split(block_size=3" in again.manifest.provenance["split_block"]
    assert again.fingerprint() == fp  # the split is not content: cached embeddings stay valid
    mtime = (tiny_workspace_copy / "cells.parquet").stat().st_mtime_ns
    store_block_split(again, block_size=3)  # same parameters: nothing rewritten
    assert (tiny_workspace_copy / "cells.parquet").stat().st_mtime_ns == mtime
    store_block_split(again, block_size=2)
    assert Workspace.load(tiny_workspace_copy).manifest.extra["split_block"]["block_size"] == 2


def _table(ws, seed=0):
    from urbanclip.data.embeddings import EmbeddingTable

    rng = np.random.default_rng(seed)
    y = np.nan_to_num(ws.log_targets("population"))
    x = np.stack([y, rng.normal(size=len(y)), rng.normal(size=len(y))], axis=1)
    return EmbeddingTable(list(ws.cells["cell_id"]), x + rng.normal(scale=0.1, size=x.shape))


def test_probe_scores_on_the_block_split(tiny_workspace_copy):
    ws = Workspace.load(tiny_workspace_copy)
    store_block_split(ws, block_size=4)
    res = fit_probes(ws, _table(ws), "population", FAST, split="block")
    block = dict(zip(ws.cells["cell_id"], ws.cells["split_block"]))
    assert res.split == "block" and res.heads.split == "block"
    assert all(block[c] == "test" for c in res.test_predictions["population"]["cell_id"])
    assert res.counts["population"]["test"] == int((ws.cells["split_block"] == "test").sum())


def test_drop_zero_targets_leaves_out_zero_cells(tiny_workspace_copy):
    ws = Workspace.load(tiny_workspace_copy)
    ws.cells.loc[ws.cells.index[:20], "population"] = 0.0
    keep = fit_probes(ws, _table(ws), "population", FAST)
    drop = fit_probes(ws, _table(ws), "population", ProbeConfig(**{**FAST.__dict__, "drop_zero_targets": True}))
    zeros = int((ws.cells["population"] == 0).sum())
    assert zeros >= 20
    assert sum(keep.counts["population"].values()) - sum(drop.counts["population"].values()) == zeros
    assert min(drop.test_predictions["population"]["y_true"]) > 0


def test_cli_probe_reports_both_splits(tiny_workspace_copy, tmp_path, capsys):
    from urbanclip.cli import main

    out = tmp_path / "rep"
    args = ["probe", "-w", str(tiny_workspace_copy), "-e", "pca", "-o", str(out), "--indicators", "population,gdp",
            "--hidden", "16", "--max-epochs", "30", "--ensemble", "2", "--drop-zero-targets", "--block-size", "3"]
    assert main(args) == 0
    csv = pd.read_csv(out / "report.csv")
    assert list(csv["split"]) == ["random", "block"]
    assert {"population_coverage", "population_width", "gdp_R2"} <= set(csv.columns)
    md = (out / "report.md").read_text()
    assert "| Method | Split |" in md and "spatial block" in md
    assert "R², random vs spatial-block split" in md and "Prediction intervals (nominal 80%)" in md
    assert "whole 3x3-cell blocks" in md and "indicator is 0 were left out" in md
    meta = json.loads((out / "report.json").read_text())["meta"]
    assert meta["drop_zero_targets"] is True and meta["splits"]["block"]["block_size"] == 3
    assert (out / "heads").is_dir() and (out / "heads-block").is_dir()
    assert Workspace.load(tiny_workspace_copy).manifest.extra["split_block"]["block_size"] == 3
    capsys.readouterr()
    assert main(args[:-2] + ["--block-size", "0"]) == 2
    assert "block size must be a whole number" in capsys.readouterr().err
    assert main(args[:-2] + ["--splits", "random,spatial"]) == 2
    assert "unknown split 'spatial'" in capsys.readouterr().err


def test_comparison_rows_per_split(tiny_workspace_copy, tmp_path):
    from urbanclip.evaluation.comparison import CompareConfig, beats, run_comparison

    ws = Workspace.load(tiny_workspace_copy)
    cfg = CompareConfig(methods=("pca",), indicators="carbon", probe=FAST, splits=("random", "block"), block_size=4)
    rows, paths = run_comparison(ws, tmp_path / "cmp", cfg)
    assert [(r.method, r.split) for r in rows] == [("pca", "random"), ("pca", "block")]
    assert rows[0].results != rows[1].results
    data = json.loads(paths["json"].read_text())
    assert data["meta"]["splits"]["block"]["block_size"] == 4 and data["meta"]["drop_zero_targets"] is False
    assert [r["split"] for r in data["rows"]] == ["random", "block"]
    assert beats(rows, "pca", ["pca"], split="block")["pca"] == {"carbon": False}
    with pytest.raises(UserError, match="block size"):
        CompareConfig(block_size=0)
