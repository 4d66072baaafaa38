"""Background runs: detached start, one run per folder, progress, cancel, crash, containment under the runs
root, CPU priority and thread cap, resume, charts, active model."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from urbanclip import paths
from urbanclip.errors import UserError
from urbanclip.services import runs
from urbanclip.services.context import active_model_path

# A stand-in command that follows the metrics.jsonl protocol (start/step/end) and sleeps between steps.
FAKE = r"""
import json, sys, time
out, n, pause, crash = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "crash"
def ev(**e):
    e["time"] = time.time()
    with open(out + "/metrics.jsonl", "a") as f:
        f.write(json.dumps(e) + "\n")
ev(event="start", command="fake", total_steps=n)
for i in range(1, n + 1):
    ev(event="step", step=i, total_steps=n, epoch=0, eta_s=(n - i) * pause, items_per_s=10.0, loss=1.0 / i)
    if crash and i == 2:
        raise SystemExit(3)
    time.sleep(pause)
ev(event="end", status="completed", summary={"final_loss": 1.0 / n})
"""


def _launch(out, n=3, pause=0.05, mode="ok"):
    return runs.launch_argv([sys.executable, "-c", FAKE, str(out), str(n), str(pause), mode], out, "fake")


def _wait(out, state, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = runs.run_status(out)
        if st.state == state:
            return st
        time.sleep(0.1)
    raise AssertionError(f"run never reached {state!r}: {runs.run_status(out)} log={runs.log_tail(out)}")


def test_run_completes_and_reports_progress(tmp_path):
    out = _launch(tmp_path / "r1", n=3)
    st = _wait(out, "completed")
    assert st.step == 3 and st.total_steps == 3 and st.fraction == 1.0
    assert [e["loss"] for e in st.steps] == pytest.approx([1.0, 0.5, 1 / 3])
    assert st.summary == {"final_loss": pytest.approx(1 / 3)}
    assert not (out / runs.LOCK).exists()
    assert json.loads((out / runs.RUN_JSON).read_text())["status"] == "completed"


def test_second_run_on_same_folder_is_refused_then_cancel_interrupts(tmp_path):
    out = _launch(tmp_path / "r2", n=200, pause=0.1)
    _wait(out, "running")
    holder = runs.run_status(out).holder
    with pytest.raises(UserError, match=rf"is busy: process {holder} \(fake\)"):
        _launch(out)
    assert runs.cancel_run(out)
    st = _wait(out, "interrupted")
    assert st.state == "interrupted"
    assert runs.read_events(out)[-1]["event"] == "end"
    _launch(out, n=1)  # the folder is free again
    _wait(out, "completed")


def test_crash_without_end_event_is_recorded_as_failed(tmp_path):
    out = _launch(tmp_path / "r3", n=5, mode="crash")
    st = _wait(out, "failed")
    assert st.summary["returncode"] == 3
    assert runs.cancel_run(out) is False


def test_list_runs_and_partial_lines(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    (root / "a").mkdir(parents=True)
    (root / "a" / runs.METRICS).write_text('{"event":"start","total_steps":4,"time":1}\n{"event":"step","step":1,"tot')
    (root / "notarun").mkdir()
    listed = runs.list_runs(root)
    assert [r.path.name for r in listed] == ["a"]
    assert listed[0].total_steps == 4 and listed[0].step == 0


def test_set_active_model_needs_a_loadable_pretraining_checkpoint(tmp_path):
    from app_helpers import tiny_checkpoint, tiny_workspace

    run = tmp_path / "pre"
    run.mkdir()
    with pytest.raises(UserError, match="no model.pt"):
        runs.set_active_model(run)
    (run / "checkpoint.pt").write_bytes(b"interrupted run: training state only")
    (run / "heads.pt").write_bytes(b"a probe report's heads")
    with pytest.raises(UserError, match="no model.pt.*resume it first"):
        runs.set_active_model(run)
    (run / "model.pt").write_bytes(b"x")
    with pytest.raises(UserError, match="cannot be read"):
        runs.set_active_model(run)
    assert active_model_path() != run.resolve()  # nothing was activated
    ws = tiny_workspace(tmp_path / "ws")
    tiny_checkpoint(ws, run / "model.pt")
    runs.set_active_model(run)
    assert active_model_path() == run.resolve()
    runs.clear_active_model()
    assert active_model_path() != run.resolve()


def test_launch_run_keeps_runs_under_the_runs_root(tmp_path, monkeypatch):
    monkeypatch.setenv("URBANCLIP_WORKSPACE", str(tmp_path / "ws"))
    root = runs.runs_root()
    for bad in ["/abs/path", "../../x", str(tmp_path / "elsewhere"), "", " ", ".", "a/../.."]:
        with pytest.raises(UserError, match="runs root|empty"):
            runs.resolve_out(bad)
    (root / "inside").mkdir(parents=True)
    (root / "link").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(UserError, match="outside the runs root"):
        runs.resolve_out("link/x")  # a symlink out of the root is followed, then refused
    assert runs.resolve_out("probe-1") == root / "probe-1"
    assert runs.resolve_out(str(root / "inside" / "r")) == root / "inside" / "r"
    with pytest.raises(UserError, match="outside the runs root"):
        runs.launch_run("info", [], "../../x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(UserError, match="not one the app serves"):
        runs.launch_run("info", [], "r4", workspace=tmp_path / "other-ws")
    assert not (root / "r4" / runs.RUN_JSON).exists()


def test_launch_run_builds_the_urbanclip_command(tmp_path, monkeypatch):
    monkeypatch.setenv("URBANCLIP_WORKSPACE", str(tmp_path / "missing"))
    out = runs.launch_run("info", [], "r4", workspace=tmp_path / "missing", pass_out=False)
    st = _wait(out, "failed")  # the workspace does not exist: `info` exits 2, recorded as failed
    assert st.summary["returncode"] == 2 and out.parent == runs.runs_root()
    argv = json.loads((out / runs.RUN_JSON).read_text())["argv"]
    assert argv[1:4] == ["-m", "urbanclip", "info"]
    assert argv[4:] == ["--workspace", str((tmp_path / "missing").resolve())]
    assert "error: workspace folder" in runs.log_tail(out)


PROBE_LIMITS = r"""
import json, os, sys
import torch
from urbanclip.training.train import cpu_threads
json.dump({"nice": os.nice(0), "omp": os.environ.get("OMP_NUM_THREADS"), "torch": torch.get_num_threads(),
           "train": cpu_threads(0), "train4": cpu_threads(4)}, open(sys.argv[1] + "/limits.json", "w"))
"""


def test_launched_runs_get_a_lower_cpu_priority_and_a_thread_cap(tmp_path):
    out = runs.launch_argv([sys.executable, "-c", PROBE_LIMITS, str(tmp_path / "lim")], tmp_path / "lim", "limits",
                           runs.RunLimits(nice=7, threads=1))
    _wait(out, "completed")
    got = json.loads((out / "limits.json").read_text())
    assert got["nice"] == min(19, os.nice(0) + 7)
    assert got["omp"] == "1" and got["torch"] == 1 and got["train"] == 1 and got["train4"] == 1
    meta = json.loads((out / runs.RUN_JSON).read_text())
    assert meta["threads"] == 1 and meta["nice"] == got["nice"]


def test_run_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv(runs.NICE_ENV, "5")
    monkeypatch.setenv(runs.THREADS_ENV, "3")
    assert runs.RunLimits.from_env() == runs.RunLimits(nice=5, threads=3)
    monkeypatch.delenv(runs.NICE_ENV)
    monkeypatch.delenv(runs.THREADS_ENV)
    lim = runs.RunLimits.from_env()
    assert lim.nice == 10 and lim.threads == max(1, len(os.sched_getaffinity(0)) // 2)


def test_pretrain_args_from_the_form(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    args = runs.pretrain_args(run, epochs=3, batch_size=16, lr=1e-3, seed=4, resume=False)
    assert args == ["--config", "demo", "--epochs", "3", "--batch-size", "16", "--lr", "0.001", "--seed", "4"]
    with pytest.raises(UserError, match="cannot resume.*checkpoint.pt does not exist"):
        runs.pretrain_args(run, epochs=3, batch_size=16, lr=1e-3, seed=4, resume=True)
    (run / "checkpoint.pt").write_bytes(b"state")
    assert runs.pretrain_args(run, epochs=3, batch_size=16, lr=1e-3, seed=4, resume=True) == ["--resume"]
    with pytest.raises(UserError, match="already holds a trained run: tick Resume"):
        runs.pretrain_args(run, epochs=3, batch_size=16, lr=1e-3, seed=4, resume=False)


def _events(run: Path, events: list[dict]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / runs.METRICS).write_text("".join(json.dumps({"time": 1, **e}) + "\n" for e in events))


def test_charts_keep_losses_apart_from_grad_norm_and_lr(tmp_path):
    _events(tmp_path / "p", [{"event": "start", "command": "pretrain", "total_steps": 2},
                             {"event": "step", "step": 1, "loss": 5.0, "con": 2.0, "lm": 3.0, "lr": 1e-4,
                              "grad_norm": 40.0, "logit_scale": 14.3, "items_per_s": 9.0},
                             {"event": "step", "step": 2, "loss": 4.0, "con": 1.5, "lm": 2.5, "lr": 1e-3,
                              "grad_norm": 30.0, "logit_scale": 14.4, "val_loss": 4.5}])
    got = {c.title: c.series for c in runs.charts(runs.run_status(tmp_path / "p"))}
    assert got == {"Losses": ["loss", "con", "lm", "val_loss"], "Gradient norm (before clipping)": ["grad_norm"],
                   "Learning rate": ["lr"], "Contrastive logit scale (1/temperature)": ["logit_scale"]}


def test_a_probe_runs_chart_plots_r2_and_says_so(tmp_path):
    _events(tmp_path / "q", [{"event": "start", "command": "probe pca", "total_steps": 1},
                             {"event": "step", "step": 1, "population_R2": 0.8, "gdp_R2": 0.7, "gdp_R2_block": 0.6}])
    (chart,) = runs.charts(runs.run_status(tmp_path / "q"))
    assert chart.y_label == "R²" and "R²" in chart.title and "test split" in chart.note
    assert chart.series == ["population_R2", "gdp_R2", "gdp_R2_block"]


def test_resume_run_continues_an_interrupted_pretraining_run(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    monkeypatch.setenv("URBANCLIP_WORKSPACE", str(ws))
    run = runs.runs_root() / "pre"
    _events(run, [{"event": "start", "command": "pretrain", "total_steps": 9, "workspace": str(ws)},
                  {"event": "end", "status": "interrupted"}])
    with pytest.raises(UserError, match="not an interrupted pretraining run with a checkpoint.pt"):
        runs.resume_run(run)
    (run / "checkpoint.pt").write_bytes(b"state")
    st = runs.run_status(run)
    assert st.can_resume and not st.can_activate and st.workspace == str(ws)
    out = runs.resume_run(run)  # the workspace is missing: the command fails, but it was launched as asked
    st = _wait(out, "failed")
    argv = json.loads((out / runs.RUN_JSON).read_text())["argv"]
    assert argv[3:] == ["pretrain", "--workspace", str(ws.resolve()), "--resume", "--out", str(run)]


def test_runs_root_is_configurable(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.RUNS_ENV, str(tmp_path / "my-runs"))
    assert runs.runs_root() == (tmp_path / "my-runs").resolve()
    assert runs.resolve_out("a") == (tmp_path / "my-runs" / "a").resolve()
