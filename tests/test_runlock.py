"""One writer per run folder (urbanclip.runlock), for CLI commands and app-launched runs alike;
stale locks, orphaned temp files of a killed save, and a full disk."""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from urbanclip import runlock
from urbanclip.cli import main

REPO = Path(__file__).resolve().parents[1]
HOLD = ("import sys, time; from urbanclip import runlock; runlock.acquire(sys.argv[1], 'holder'); "
        "print('held', flush=True); time.sleep(120)")


@pytest.fixture
def holder_process(tmp_path):
    """Start a separate process holding a folder; yields (folder, process)."""
    procs = []

    def start(folder: Path) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
        assert p.stdout.readline().strip() == "held"
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait()


def test_a_held_folder_is_refused_with_the_holders_pid(tmp_path, holder_process):
    p = holder_process(tmp_path / "run")
    assert runlock.holder(tmp_path / "run") == p.pid
    with pytest.raises(runlock.RunBusy, match=rf"is busy: process {p.pid} \(holder\) is writing to it"):
        runlock.acquire(tmp_path / "run", "second")


def test_the_lock_is_reentrant_in_its_thread_and_refused_in_another(tmp_path):
    with runlock.hold(tmp_path / "run", "outer") as outer:
        with runlock.hold(tmp_path / "run", "inner") as inner:
            assert inner is outer
        assert runlock.holder(tmp_path / "run") == os.getpid()  # still held by the outer block
        errors = []
        t = threading.Thread(target=lambda: errors.append(pytest.raises(runlock.RunBusy, runlock.acquire,
                                                                        tmp_path / "run")))
        t.start()
        t.join()
        assert errors and "another thread" in str(errors[0].value)
    assert runlock.holder(tmp_path / "run") is None and not (tmp_path / "run" / runlock.LOCK_FILE).exists()


def test_a_killed_writers_stale_lock_is_taken_over_and_its_temp_files_removed(tmp_path, holder_process):
    run = tmp_path / "run"
    p = holder_process(run)
    orphan = run / ".checkpoint.pt.k2j3h4x9.tmp"
    orphan.write_bytes(b"x" * 1000)  # what a kill during a checkpoint save leaves
    (run / "sub").mkdir()
    (run / "sub" / ".probe_heads.pt.abc_1234.tmp").write_bytes(b"y")
    (run / ".notes.tmp").write_text("not ours: other names are left alone")
    p.kill()
    p.wait()
    assert (run / runlock.LOCK_FILE).exists() and runlock.holder(run) is None  # stale: its process is dead
    with runlock.hold(run, "next") as lock:
        assert lock.stale_pid == p.pid
        assert set(lock.orphans) == {orphan, run / "sub" / ".probe_heads.pt.abc_1234.tmp"}
        assert not orphan.exists() and (run / ".notes.tmp").exists()
        assert runlock.read_lock(run) == (os.getpid(), "next")


def test_a_supervised_child_writes_under_its_supervisors_lock(tmp_path, holder_process):
    run = (tmp_path / "run").resolve()
    p = holder_process(run)
    env = {**os.environ, "PYTHONPATH": str(REPO), runlock.ENV: f"{p.pid}:{run}"}
    code = "import sys; from urbanclip import runlock; l = runlock.acquire(sys.argv[1]); print(l.inherited)"
    out = subprocess.run([sys.executable, "-c", code, str(run)], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "True"
    # the same variable naming another pid (not the holder) does not let a process in
    env[runlock.ENV] = f"{os.getpid()}:{run}"
    out = subprocess.run([sys.executable, "-c", code, str(run)], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and f"process {p.pid}" in out.stderr


@pytest.mark.parametrize("command", ["pretrain", "probe"])
def test_a_second_command_into_a_busy_folder_exits_2_naming_the_pid(command, tmp_path, holder_process,
                                                                      tiny_workspace_path, capsys):
    p = holder_process(tmp_path / "run")
    args = {"pretrain": ["--config", "tiny"], "probe": ["--encoder", "pca"]}[command]
    rc = main([command, "--workspace", str(tiny_workspace_path), "--out", str(tmp_path / "run"), *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and f"process {p.pid}" in err and "is busy" in err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # nothing written by the refused command


def _train_cfg(**kw):
    from urbanclip.model.config import tiny_config

    m, t = tiny_config()
    return m, dataclasses.replace(t, **{"epochs": 2, "batch_size": 8, "eval_generate": 0, **kw})


def test_pretrain_removes_the_temp_file_of_a_killed_save(tmp_path, tiny_workspace_path):
    from urbanclip.training.train import pretrain

    run = tmp_path / "run"
    run.mkdir()
    orphan = run / ".checkpoint.pt.q8w7e6r5.tmp"
    orphan.write_bytes(os.urandom(4096))
    (run / runlock.LOCK_FILE).write_text("999999999\npretrain\n")  # its writer was killed
    m, t = _train_cfg(max_steps=2)
    pretrain(tiny_workspace_path, run, m, t)
    assert not orphan.exists()
    assert not list(run.glob(".*.tmp")) and not (run / runlock.LOCK_FILE).exists()


def test_a_full_disk_during_a_checkpoint_save_is_an_error_exit_2_and_leaves_nothing_broken(
        tmp_path, tiny_workspace_path, monkeypatch, capsys):
    from urbanclip.model.checkpoint import TRAIN_STATE_FILE, read_checkpoint
    from urbanclip.model.config import save_config

    run = tmp_path / "run"
    m, t = _train_cfg(checkpoint_every=2, max_steps=6)
    save_config(tmp_path / "cfg.json", m, t)
    real_fsync = os.fsync
    saves = []

    def fsync(fd):  # the disk fills up during the second checkpoint save
        if ".checkpoint.pt." in os.readlink(f"/proc/self/fd/{fd}"):
            saves.append(fd)
            if len(saves) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    rc = main(["pretrain", "--workspace", str(tiny_workspace_path), "--out", str(run), "--config",
               str(tmp_path / "cfg.json"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and len(saves) == 2
    assert err.startswith("error: cannot write checkpoint") and "No space left on device" in err and "--resume" in err
    assert not list(run.glob(".*.tmp"))  # the torn temp file is gone
    assert read_checkpoint(run / TRAIN_STATE_FILE)["step"] == 2  # the checkpoint before is intact
    assert not (run / runlock.LOCK_FILE).exists()
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert main(["pretrain", "--workspace", str(tiny_workspace_path), "--out", str(run), "--resume", "--quiet"]) == 0


def test_other_environment_oserrors_are_errors_not_tracebacks(tmp_path, capsys, monkeypatch):
    import urbanclip.commands.info as info

    def boom(args):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "cells.parquet"))

    monkeypatch.setattr(info, "run", boom)
    assert main(["info", "--workspace", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert re.match(r"error: cannot read or write \S+cells\.parquet: Permission denied", err)


def test_app_runs_and_cli_runs_interlock(tmp_path, tiny_workspace_path, capsys):
    """A run launched by the app (supervisor + child) holds its folder against the command line."""
    from urbanclip.services import runs

    out = runs.launch_argv([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "app-run", "sleeper")
    try:
        sup = runs.run_status(out).holder
        assert sup is not None
        rc = main(["pretrain", "--workspace", str(tiny_workspace_path), "--out", str(out), "--config", "tiny"])
        assert rc == 2 and f"process {sup} (sleeper)" in capsys.readouterr().err
    finally:
        runs.cancel_run(out)
    deadline = time.time() + 20
    while runs.run_status(out).state == "running" and time.time() < deadline:
        time.sleep(0.1)
    assert runs.run_status(out).state == "interrupted"


def test_the_command_line_says_what_it_cleaned_up(tmp_path, tiny_workspace_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / runlock.LOCK_FILE).write_text("999999999\nprobe\n")
    (run / ".report.json.x1y2z3w4.tmp").write_text("{")
    assert main(["probe", "--workspace", str(tiny_workspace_path), "--out", str(run), "--encoder", "pca",
                 "--splits", "random", "--max-epochs", "5", "--ensemble", "2"]) == 0
    err = capsys.readouterr().err
    assert "took over the stale lock of process 999999999" in err and ".report.json.x1y2z3w4.tmp" in err
    assert not (run / ".report.json.x1y2z3w4.tmp").exists() and (run / "report.json").is_file()


def test_commands_that_rewrite_a_workspace_take_turns(tiny_workspace_copy, holder_process, capsys):
    p = holder_process(tiny_workspace_copy)
    assert main(["refine", "--workspace", str(tiny_workspace_copy)]) == 2
    assert f"is busy: process {p.pid} (holder)" in capsys.readouterr().err
    p.kill()
    p.wait()
    cache = tiny_workspace_copy / "cache" / "embeddings"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / ".x.npy.abcd1234.tmp").write_bytes(b"another process's cache write in progress")
    assert main(["refine", "--workspace", str(tiny_workspace_copy)]) == 0
    assert (cache / ".x.npy.abcd1234.tmp").exists()  # a workspace's caches are not the command's to clean
    assert not (tiny_workspace_copy / runlock.LOCK_FILE).exists()
