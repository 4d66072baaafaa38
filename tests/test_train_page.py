"""The Train page in AppTest: launching under the runs root from known workspaces with checked arguments,
a typed Output folder that stays, Resume, live progress, charts, and only loadable checkpoints activated."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
import streamlit as st
from app_helpers import tiny_checkpoint, tiny_workspace
from streamlit.testing.v1 import AppTest

from urbanclip.services import runs
from urbanclip.services.context import active_model_path

REPO = Path(__file__).resolve().parents[1]
PAGE = str(REPO / "pages" / "train.py")
TIMEOUT = 60


@pytest.fixture(scope="module")
def ws_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trainpage") / "ws"
    tiny_workspace(root)
    return root


@pytest.fixture
def env(ws_root, monkeypatch):
    monkeypatch.setenv("URBANCLIP_WORKSPACE", str(ws_root))
    monkeypatch.delenv("URBANCLIP_MODEL", raising=False)
    monkeypatch.setenv(runs.THREADS_ENV, "1")
    st.cache_resource.clear()
    yield ws_root
    for r in runs.list_runs():  # never leave a launched run behind
        if r.state == "running" and r.holder != os.getpid():  # (some tests fake a lock held by pytest itself)
            runs.cancel_run(r.path)
            _wait(r.path, "interrupted", timeout=60)


def _un(text: str) -> str:
    """Markdown source -> the text it shows (user text is backslash-escaped by ui.plain)."""
    return re.sub(r"\\(.)", r"\1", str(text))


def _text(at) -> str:
    parts = [e.value for e in at.markdown] + [e.value for e in at.caption] + [e.value for e in at.info]
    parts += [e.value for e in at.warning] + [e.value for e in at.error] + [e.value for e in at.success]
    return _un("\n".join(str(p) for p in parts))


def _events(run: Path, events: list[dict]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps({"time": 1, **e}) + "\n" for e in events))


def _submit(at, resume: bool | None = None, **fields):
    """Fill the launch form (text fields by key, the Resume box) and press Start run."""
    for key, value in fields.items():
        at.text_input(key=key).set_value(value)
    if resume is not None:
        at.checkbox(key="resume").set_value(resume)
    at.button(key="FormSubmitter:launch-Start run").click().run()
    assert not at.exception


def _wait(out: Path, state: str, timeout: float = 240.0) -> runs.RunStatus:
    deadline = time.time() + timeout
    while time.time() < deadline:
        s = runs.run_status(out)
        if s.state == state:
            return s
        time.sleep(0.2)
    raise AssertionError(f"{out} never reached {state}: {runs.run_status(out)}\n{runs.log_tail(out)}")


def test_finished_runs_offer_only_loadable_pretraining_checkpoints(env, ws_root, capfd):
    from urbanclip.data.workspace import Workspace

    root = runs.runs_root()
    done = [{"event": "start", "command": "pretrain", "total_steps": 2},
            {"event": "step", "step": 1, "loss": 2.0, "lr": 1e-4, "grad_norm": 9.0},
            {"event": "step", "step": 2, "loss": 1.0, "lr": 2e-4, "grad_norm": 7.0},
            {"event": "end", "status": "completed", "summary": {"final_loss": 1.0}}]
    _events(root / "pretrain-ok", done)
    tiny_checkpoint(Workspace.load(ws_root), root / "pretrain-ok" / "model.pt")
    _events(root / "pretrain-6-steps", [*done[:2], {"event": "end", "status": "interrupted"}])
    (root / "pretrain-6-steps" / "checkpoint.pt").write_bytes(b"state")
    _events(root / "probe-x", [{"event": "start", "command": "probe pca", "total_steps": 1},
                               {"event": "step", "step": 1, "population_R2": 0.8},
                               {"event": "end", "status": "completed", "summary": {}}])
    (root / "probe-x" / "heads").mkdir()
    (root / "probe-x" / "heads" / "heads.pt").write_bytes(b"probe heads")
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception
    labels = [_un(e.label) for e in at.expander]
    assert any("pretrain-ok" in label for label in labels) and any("probe-x" in label for label in labels)
    use = [b for b in at.button if b.label == "Use this checkpoint on the Map page"]
    assert len(use) == 1 and use[0].key.endswith("pretrain-ok")  # not the probe run, not the interrupted run
    assert [b.key for b in at.button if b.label == "Resume this run"] == [f"resume-{root / 'pretrain-6-steps'}"]
    titles = [c.proto.spec and json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert {"Losses", "Gradient norm (before clipping)", "Learning rate"} <= set(titles)
    assert "Test R² per indicator (log1p targets)" in titles and "one point per encoder" in _text(at)
    use[0].click().run()
    assert not at.exception and active_model_path() == (root / "pretrain-ok").resolve()
    err = capfd.readouterr().err
    assert "use_container_width" not in err and "deprecat" not in err.lower()  # no deprecation warnings


def test_a_busy_output_folder_is_refused_naming_the_pid(env):
    busy = runs.runs_root() / "busy"
    busy.mkdir(parents=True)
    (busy / ".lock").write_text(f"{os.getpid()}\nsomeone\n")  # this live process "owns" the folder
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    _submit(at, out_pretrain="busy")
    assert f"is busy: process {os.getpid()} (someone)" in _text(at)
    assert not (busy / "run.json").exists()


def test_output_folders_outside_the_runs_root_are_refused(env, tmp_path):
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    for bad in ["../../x", str(tmp_path / "abs")]:
        _submit(at, out_pretrain=bad)
        assert "outside the runs root" in _text(at)
    assert not (tmp_path / "abs").exists() and not (runs.runs_root().parent.parent / "x").exists()


def test_the_workspace_is_picked_from_known_workspaces(env, ws_root, tmp_path):
    from urbanclip.services.workspaces import register_workspace

    other = tiny_workspace(tmp_path / "other", n=3).root
    register_workspace(other)
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    box = at.selectbox(key="train_ws")
    assert box.options == [str(ws_root.resolve()), str(other.resolve())]
    assert not [t for t in at.text_input if t.label == "Workspace"]  # no free path


def test_the_typed_output_folder_survives_reruns_and_submits(env):
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    default = at.text_input(key="out_pretrain").value
    assert default.startswith("pretrain-")
    time.sleep(1.1)  # the default name holds the time: a new second must not replace it
    at.run()
    assert at.text_input(key="out_pretrain").value == default
    _submit(at, out_pretrain="my-run", extra_pretrain="--workspace /etc")
    assert at.text_input(key="out_pretrain").value == "my-run"
    assert "option --workspace cannot be passed to `pretrain`" in _text(at)
    _submit(at, resume=True, extra_pretrain="")
    assert "cannot resume" in _text(at) and at.text_input(key="out_pretrain").value == "my-run"


@pytest.mark.parametrize("extra, refusal", [
    ("--encoder pca --template http://x/{z}/{x}/{y}", "unrecognized arguments"),
    ("--encoder urbanclip:/etc", "a model must be a run under the runs root"),
    ("--encoder resnet18:/tmp/w.pt", "weight files cannot be passed"),
    ("--encoder pca --opt weights=/tmp/w.pt", "weight files cannot be passed"),
    ("--encoder pca --workspace /tmp/other", "option --workspace cannot be passed"),
    ("--encoder pca --out /tmp/x", "option --out cannot be passed"),
    ("--encoder 'pca", "check the quotes"),
])
def test_extra_arguments_are_checked_against_the_commands_parser_and_policy(env, extra, refusal):
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    at.radio(key="run_kind").set_value("other command").run()
    at.selectbox(key="command").set_value("probe").run()
    _submit(at, out_other="probe-1", extra_other=extra)
    assert refusal in _text(at)
    assert not (runs.runs_root() / "probe-1" / "run.json").exists()


def test_commands_without_out_get_no_out_and_run(env, ws_root):
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    at.radio(key="run_kind").set_value("other command").run()
    assert "import" not in at.selectbox(key="command").options and "export" not in at.selectbox(key="command").options
    at.selectbox(key="command").set_value("refine").run()
    _submit(at, out_other="refine-1", extra_other="--json")
    out = runs.runs_root() / "refine-1"
    assert "Started `refine`" in _text(at)
    st_ = _wait(out, "completed", timeout=120)
    argv = json.loads((out / "run.json").read_text())["argv"]
    assert argv[3:] == ["refine", "--workspace", str(ws_root.resolve()), "--json"] and st_.summary["returncode"] == 0


def test_live_progress_and_a_refresh_when_the_run_ends(env):
    run = runs.runs_root() / "live"
    _events(run, [{"event": "start", "command": "pretrain", "total_steps": 4},
                  {"event": "step", "step": 1, "eta_s": 90, "loss": 2.0}])
    (run / ".lock").write_text(f"{os.getpid()}\npretrain\n")
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception
    bars = at.get("progress")
    assert bars and bars[0].value == 25  # AppTest reports percent
    assert any(b.label == "Cancel" for b in at.button)
    assert not any("live" in _un(e.label) for e in at.expander)
    seen = at.session_state["runs_seen"]
    (run / ".lock").unlink()  # the run ended
    assert runs.runs_signature(runs.list_runs()) != seen  # what makes the live fragment rerun the page
    at.run()
    assert any("live" in _un(e.label) for e in at.expander) and not at.get("progress")


def test_resume_from_the_page_continues_a_cancelled_pretraining_run(env, ws_root):
    from urbanclip.model.checkpoint import TRAIN_STATE_FILE, read_checkpoint

    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    at.number_input[0].set_value(60)  # epochs: long enough to cancel it midway
    at.number_input[1].set_value(8)   # batch size
    _submit(at, out_pretrain="resumable")
    out = runs.runs_root() / "resumable"
    assert "Started `pretrain`" in _text(at), _text(at)
    deadline = time.time() + 240
    while not runs.run_status(out).steps and time.time() < deadline:
        time.sleep(0.2)
    assert runs.cancel_run(out)
    first = _wait(out, "interrupted")
    step = read_checkpoint(out / TRAIN_STATE_FILE)["step"]
    assert step >= 1 and first.can_resume
    at.run()
    assert at.text_input(key="out_pretrain").value == "resumable"
    _submit(at, resume=True, extra_pretrain=f"--max-steps {step + 2}")
    assert "Started `pretrain`" in _text(at), _text(at)
    done = _wait(out, "completed")
    starts = [e for e in runs.read_events(out) if e["event"] == "start"]
    assert len(starts) == 2 and starts[1]["resumed"] is True and starts[1]["start_step"] == step
    assert done.step == step + 2 and read_checkpoint(out / TRAIN_STATE_FILE)["step"] == step + 2
    argv = json.loads((out / "run.json").read_text())["argv"]
    assert "--resume" in argv and "--config" not in argv
