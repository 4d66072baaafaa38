"""Sharded, resumable describe and embed: ranks split the cells, chunks survive interruptions, rank 0 merges."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from urbanclip.data.embeddings import cache_paths, cached_embeddings, embed_sharded
from urbanclip.data.shards import Shard
from urbanclip.data.workspace import Workspace
from urbanclip.text.describe import describe_workspace

REPO = Path(__file__).resolve().parents[1]


class MeanCaptioner:
    """Says how bright a tile is; counts the tiles it saw; can stop (Ctrl-C) after `stop_after` calls."""

    provenance = "test captioner (mean brightness)"

    def __init__(self, stop_after: int | None = None):
        self.seen: list[int] = []
        self.stop_after = stop_after

    def describe(self, images):
        if self.stop_after is not None and len(self.seen) >= self.stop_after:
            raise KeyboardInterrupt
        self.seen.append(len(images))
        return [[f"A tile of brightness {int(np.asarray(im).mean())}."] for im in images]


class MeanEncoder:
    key, label = "mean-rgb", "mean RGB"

    def __init__(self):
        self.calls: list[int] = []

    def embed(self, workspace, cell_ids):
        self.calls.append(len(cell_ids))
        return np.stack([np.asarray(workspace.load_image(c), dtype=np.float32).mean(axis=(0, 1)) for c in cell_ids])


def test_two_ranks_describe_their_own_share_and_rank_0_merges(tiny_workspace_copy):
    ws = Workspace.load(tiny_workspace_copy)
    n = int(ws.cells["image"].notna().sum())
    ranks = {r: MeanCaptioner() for r in (0, 1)}
    # rank 1 finishes first (its chunks on disk, the workspace untouched), then rank 0 merges
    s1 = describe_workspace(Workspace.load(ws.root), ranks[1], chunk_size=16, show_progress=False, shard=Shard(1, 2))
    assert "text_generated" not in Workspace.load(ws.root).cells.columns
    assert s1["rank"] == 1 and sum(ranks[1].seen) == n // 2
    s0 = describe_workspace(Workspace.load(ws.root), ranks[0], chunk_size=16, show_progress=False, shard=Shard(0, 2))
    assert sum(ranks[0].seen) == n - n // 2 and s0["described"] == n
    done = Workspace.load(ws.root).cells
    assert (done["text_generated"].str.startswith("A tile of brightness")).sum() == n
    assert (done["text_origin"] == MeanCaptioner.provenance).sum() == n
    assert not any((ws.root / "cache" / "describe").iterdir())  # the chunk store is gone after the merge


def test_an_interrupted_rank_resumes_from_its_chunks(tiny_workspace_copy):
    ws = Workspace.load(tiny_workspace_copy)
    n = int(ws.cells["image"].notna().sum())
    with pytest.raises(KeyboardInterrupt):
        describe_workspace(ws, MeanCaptioner(stop_after=2), chunk_size=8, show_progress=False, shard=Shard(1, 2))
    again = MeanCaptioner()
    describe_workspace(Workspace.load(ws.root), again, chunk_size=8, show_progress=False, shard=Shard(1, 2))
    assert sum(again.seen) == n // 2 - 16  # two chunks of 8 were already saved
    # a single process then picks up everything else from the same chunk store
    rest = MeanCaptioner()
    stats = describe_workspace(Workspace.load(ws.root), rest, chunk_size=8, show_progress=False, shard=Shard(0, 2))
    assert sum(rest.seen) == n - n // 2 and stats["described"] == n


def test_sharded_embedding_fills_the_cache_the_probes_read(tiny_workspace_copy):
    ws = Workspace.load(tiny_workspace_copy)
    enc = MeanEncoder()
    assert embed_sharded(ws, enc, Shard(1, 2), chunk_size=50) is None
    table = embed_sharded(ws, enc, Shard(0, 2), chunk_size=50)
    assert sorted(enc.calls) == sorted([50] * (len(table) // 50) + ([len(table) % 50] if len(table) % 50 else []))
    vec, ids = cache_paths(ws, enc)
    assert vec.is_file() and ids.is_file() and not vec.with_suffix(".parts").exists()

    class Refuses(MeanEncoder):
        def embed(self, workspace, cell_ids):
            raise AssertionError("the cache should have been read")

    again = cached_embeddings(ws, Refuses())
    assert again.cell_ids == table.cell_ids and np.allclose(again.vectors, table.vectors)
    assert np.allclose(table.vectors, MeanEncoder().embed(ws, table.cell_ids))


def test_embed_refuses_encoders_that_fit_on_all_cells(tiny_workspace_path, capsys):
    from urbanclip.cli import main

    assert main(["embed", "-w", str(tiny_workspace_path), "-e", "pca"]) == 2
    assert "frozen encoder" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not installed")
def test_describe_and_embed_under_torchrun(tiny_workspace_copy):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    model = REPO / "assets" / "model"
    base = ["torchrun", "--standalone", "--nproc_per_node", "2", "-m", "urbanclip"]
    run = subprocess.run([*base, "embed", "-w", str(tiny_workspace_copy), "-e", f"urbanclip:{model}",
                          "--chunk-size", "40"], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "cells embedded" in run.stdout
    from urbanclip.evaluation.encoders import make_encoder

    ws = Workspace.load(tiny_workspace_copy)
    enc = make_encoder(f"urbanclip:{model}", ws)
    table = cached_embeddings(ws, enc)
    assert np.allclose(table.vectors, enc.embed(ws, table.cell_ids), atol=1e-5)
    # the shipped checkpoint stores its lead sentences: the look-alikes' readings were filled too
    from urbanclip.evaluation.encoders import ModelReadingEncoder

    assert "cells read" in run.stdout
    reader = ModelReadingEncoder(model)
    readings = cached_embeddings(ws, reader)  # from the cache the ranks wrote
    assert readings.cell_ids == table.cell_ids
    assert np.allclose(readings.vectors[:20], reader.embed(ws, readings.cell_ids[:20]), atol=1e-4)
    run = subprocess.run([*base, "describe", "-w", str(tiny_workspace_copy), "--backend", "urbanclip", "--model",
                          str(model), "--limit", "12", "--chunk-size", "3", "--max-new-tokens", "8"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    cells = Workspace.load(tiny_workspace_copy).cells
    assert (cells["text_generated"] != "").sum() == 12


def test_rank_0_stops_waiting_when_no_rank_writes_any_more(tmp_path):
    from urbanclip.data.shards import ChunkStore
    from urbanclip.errors import UserError

    store = ChunkStore(tmp_path / "store")
    store.write_json("a", {"c1": 1})
    with pytest.raises(UserError, match="another rank has stopped.*1 finished chunks are kept"):
        store.wait(lambda: False, poll_s=0.01, stall_s=0.2)
    polls = []
    store.wait(lambda: len(polls) > 3, poll_s=0.01, on_wait=lambda: polls.append(1), stall_s=5)  # done: returns
    assert len(polls) == 4
