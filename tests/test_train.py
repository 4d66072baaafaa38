"""Pretraining: run folder contents, measured summary, bit-for-bit resume, interrupt, errors."""

from __future__ import annotations

import dataclasses
import json
import os
import signal

import numpy as np
import pytest
import torch

from urbanclip.cli import main
from urbanclip.data.grid import square_grid
from urbanclip.data.indicators import STANDARD
from urbanclip.data.workspace import Manifest, WorkspaceBuilder, join_sentences
from urbanclip.errors import UserError
from urbanclip.events import read_events
from urbanclip.model.checkpoint import MODEL_FILE, TRAIN_STATE_FILE, load_model, read_checkpoint
from urbanclip.model.config import save_config, tiny_config
from urbanclip.training.train import pretrain, warmup_cosine

# three visually distinct classes with their own descriptions
CLASSES = {"park": ((40, 140, 40), ["A green park with trees.", "Lawns and a pond."]),
           "water": ((30, 60, 160), ["A wide river with water.", "Blue water of a lake."]),
           "industrial": ((150, 150, 150), ["Grey industrial warehouses.", "Factories with large roofs."])}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("train") / "ws"
    grid = square_grid("Testville", 116.3, 39.9, 6, 6, 1000.0)
    rng = np.random.default_rng(0)
    names = [list(CLASSES)[i % 3] for i in range(len(grid))]
    for k in STANDARD:
        grid[k] = rng.random(len(grid)) * 100
    grid["text_raw"] = [join_sentences(CLASSES[n][1]) for n in names]
    with WorkspaceBuilder(root) as b:
        grid["image"] = [b.write_image("Testville", f"{i}.png", np.clip(
            np.array(CLASSES[n][0])[None, None] + rng.normal(0, 20, (16, 16, 3)), 0, 255).astype(np.uint8))
            for i, n in enumerate(names)]
        b.finish(grid, Manifest(name="t", indicators=dict(STANDARD), source="test"))
    return root


def _cfg(**train):
    m, t = tiny_config()
    return m, dataclasses.replace(t, **{"epochs": 2, "batch_size": 6, "eval_generate": 3, **train})


def test_pretrain_writes_a_complete_run(workspace, tmp_path):
    m, t = _cfg()
    summary = pretrain(workspace, tmp_path / "run", m, t)
    run = tmp_path / "run"
    for name in ("metrics.jsonl", "summary.json", "config.json", "tokenizer.json", TRAIN_STATE_FILE, MODEL_FILE):
        assert (run / name).is_file(), name
    events = read_events(run)
    assert events[0]["event"] == "start" and events[-1]["event"] == "end"
    assert events[-1]["status"] == "completed"
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, summary["total_steps"] + 1))
    assert all({"loss", "con", "lm", "eta_s", "items_per_s", "epoch", "time"} <= set(e) for e in steps)
    assert "val_loss" in steps[-1]
    ev = json.loads((run / "summary.json").read_text())["eval"]
    assert 0 <= ev["i2t_recall@1"] <= 1 and ev["chance_recall@1"] == pytest.approx(1 / ev["n_val"])
    assert ev["n_generated"] == 3 and len(ev["examples"]) == 3
    model = load_model(run)
    assert model.kind == "urbanclip" and model.encode_text(["a park"]).shape == (1, m.embed_dim)


def test_resume_is_bit_for_bit(workspace, tmp_path):
    m, t = _cfg(epochs=3, checkpoint_every=0)
    straight = pretrain(workspace, tmp_path / "a", m, dataclasses.replace(t, max_steps=8))
    pretrain(workspace, tmp_path / "b", m, dataclasses.replace(t, max_steps=5))  # crosses an epoch boundary
    resumed = pretrain(workspace, tmp_path / "b", m, dataclasses.replace(t, max_steps=8), resume=True)
    assert straight["step"] == resumed["step"] == 8
    assert straight["final_losses"] == resumed["final_losses"]
    a, b = read_checkpoint(tmp_path / "a" / TRAIN_STATE_FILE), read_checkpoint(tmp_path / "b" / TRAIN_STATE_FILE)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    step_a = [e for e in read_events(tmp_path / "a") if e["event"] == "step"][-3:]
    step_b = [e for e in read_events(tmp_path / "b") if e["event"] == "step"][-3:]
    assert [e["loss"] for e in step_a] == [e["loss"] for e in step_b]


def test_sigterm_saves_and_ends_interrupted(workspace, tmp_path):
    m, t = _cfg(epochs=4)

    def kill_at_step_2(event):
        if event.event == "step" and event.data["step"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    summary = pretrain(workspace, tmp_path / "run", m, t, callbacks=[kill_at_step_2])
    assert summary["status"] == "interrupted" and summary["step"] == 2
    assert read_checkpoint(tmp_path / "run" / TRAIN_STATE_FILE)["step"] == 2
    assert read_events(tmp_path / "run")[-1] | {"time": 0} == {"event": "end", "status": "interrupted",
                                                              "summary": summary, "time": 0}
    assert not list((tmp_path / "run").glob(".*tmp"))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored
    again = pretrain(workspace, tmp_path / "run", m, t, resume=True)
    assert again["status"] == "completed" and again["step"] == again["total_steps"]


def test_image_only_trains_urbanvit(workspace, tmp_path):
    m, t = _cfg(image_only=True, epochs=1)
    summary = pretrain(workspace, tmp_path / "vit", m, t)
    assert summary["kind"] == "urbanvit" and "eval" not in summary
    model = load_model(tmp_path / "vit")
    assert model.kind == "urbanvit" and model.tokenizer is None
    assert model.encode_image(torch.zeros(1, 3, 32, 32)).shape == (1, m.embed_dim)


def test_resume_and_overwrite_errors(workspace, tmp_path):
    m, t = _cfg(max_steps=2)
    with pytest.raises(UserError, match="cannot resume.*does not exist"):
        pretrain(workspace, tmp_path / "run", m, t, resume=True)
    pretrain(workspace, tmp_path / "run", m, t)
    with pytest.raises(UserError, match="already holds a trained run"):
        pretrain(workspace, tmp_path / "run", m, t)
    with pytest.raises(UserError, match=r"train\.seed=0 in the checkpoint but 5"):
        pretrain(workspace, tmp_path / "run", m, dataclasses.replace(t, seed=5), resume=True)
    with pytest.raises(UserError, match=r"model\.depth"):
        pretrain(workspace, tmp_path / "run", dataclasses.replace(m, depth=2), t, resume=True)


def test_cli_pretrain(workspace, tmp_path, capsys):
    m, t = _cfg(max_steps=2)
    save_config(tmp_path / "c.json", m, t)
    assert main(["pretrain", "-w", str(workspace), "--out", str(tmp_path / "r"), "--config",
                 str(tmp_path / "c.json"), "--quiet", "--inference-only"]) == 0
    out = capsys.readouterr().out
    assert "recall@1" in out and "chance" in out
    assert (tmp_path / "r" / MODEL_FILE).is_file() and not (tmp_path / "r" / TRAIN_STATE_FILE).exists()
    assert main(["pretrain", "-w", str(tmp_path / "missing"), "--out", str(tmp_path / "r2"), "--quiet"]) == 2


def test_warmup_then_cosine():
    f = warmup_cosine(warmup=4, total=20, min_ratio=0.1)
    values = [f(s) for s in range(20)]
    assert values[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in zip(values[3:], values[4:]))
    assert values[-1] >= 0.1 and f(100) == pytest.approx(0.1)


def test_pretrain_on_the_demo_reports_landuse_hits(tiny_workspace_path, tmp_path):
    pytest.importorskip("urbanclip.data.demo")
    m, t = _cfg(max_steps=2, eval_generate=4)
    summary = pretrain(tiny_workspace_path, tmp_path / "run", m, t)
    ev = summary["eval"]
    assert 0 <= ev["landuse_hit_rate"] <= 1 and 0 <= ev["landuse_hit_rate_chance"] <= 1
    # the grounding badge's reference travels in the checkpoint: quantiles of first-sentence support
    q = ev["lead_support_quantiles"]
    assert len(q) == 21 and q == sorted(q) and 0 < q[0] and q[-1] <= 1
    assert load_model(tmp_path / "run").lead_support_reference == q
    # ... and the first sentences it wrote (the candidates of the badge's meaning share), once each
    leads = ev["lead_sentences"]
    loaded = load_model(tmp_path / "run")
    assert leads and leads == sorted(set(leads)) and loaded.lead_sentences == leads
    assert loaded.lead_embeddings.shape == (len(leads), loaded.config.embed_dim)  # encoded once, at load


def test_torchrun_two_processes_on_cpu(workspace, tmp_path):
    """The same script under `torchrun` (gloo on CPU): both ranks train, rank 0 alone writes the run."""
    import subprocess
    import sys
    from pathlib import Path

    m, t = _cfg(max_steps=3)
    save_config(tmp_path / "c.json", m, t)
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(repo), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "urbanclip", "pretrain", "-w", str(workspace), "--out", str(tmp_path / "ddp"),
                           "--config", str(tmp_path / "c.json"), "--quiet"],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = read_events(tmp_path / "ddp")
    assert events[0]["world_size"] == 2
    total = events[0]["total_steps"]
    assert total >= 2 and [e["step"] for e in events if e["event"] == "step"] == list(range(1, total + 1))  # one writer
    assert events[-1]["event"] == "end" and events[-1]["status"] == "completed"
    assert load_model(tmp_path / "ddp").encode_image(torch.zeros(2, 3, m.image_size, m.image_size)).shape == (2, m.embed_dim)


def test_pretrain_without_descriptions_points_to_describe_and_image_only(workspace, tmp_path, capsys):
    import shutil

    from urbanclip.data.workspace import Workspace

    root = tmp_path / "ws"
    shutil.copytree(workspace, root)
    ws = Workspace.load(root)  # what `import geotiff` / `import xyz` make: imagery, no text
    ws.cells["text_raw"] = ""
    ws.save()
    m, t = _cfg(max_steps=1)
    save_config(tmp_path / "c.json", m, t)
    assert main(["pretrain", "-w", str(root), "--out", str(tmp_path / "r"), "--config", str(tmp_path / "c.json"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "error: " in err and "have no descriptions" in err and "--image-only" in err and "describe" in err
