"""Background runs: detached start, one run per folder, progress, cancel, crash, active model."""

from __future__ import annotations

import json
import sys
import time

import pytest

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
    with pytest.raises(UserError, match="already writing"):
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


def test_set_active_model_needs_a_checkpoint(tmp_path):
    run = tmp_path / "pre"
    run.mkdir()
    with pytest.raises(UserError, match="no checkpoint"):
        runs.set_active_model(run)
    (run / "model.pt").write_bytes(b"x")
    runs.set_active_model(run)
    assert active_model_path() == run.resolve()
    runs.clear_active_model()
    assert active_model_path() != run.resolve()


def test_launch_run_builds_the_urbanclip_command(tmp_path):
    out = runs.launch_run("info", ["--workspace", str(tmp_path / "missing")], tmp_path / "r4")
    st = _wait(out, "failed")  # `info` has no --out: argparse exits 2, recorded as failed
    assert st.summary["returncode"] == 2
    argv = json.loads((out / runs.RUN_JSON).read_text())["argv"]
    assert argv[1:4] == ["-m", "urbanclip", "info"] and argv[-2:] == ["--out", str(out)]
