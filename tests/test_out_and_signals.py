"""Where imports write: every `--out` problem is `error:` + exit 2, and a cancelled import leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from test_importers_release import _baidu_tiles, _release
from tile_server import TileServer

from urbanclip.cli import main
from urbanclip.data.workspace import WorkspaceBuilder, check_out_dir, remove_stale_staging
from urbanclip.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def _import(tmp_path, out) -> list[str]:
    return ["import", "release", str(_release(tmp_path / "rel")), "--out", str(out)]


def test_out_that_is_a_file_or_lies_under_a_file_is_an_error(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(_import(tmp_path, tmp_path / "f")) == 2
    assert "error: --out" in (err := capsys.readouterr().err) and "is a file, not a folder" in err
    assert main(_import(tmp_path, tmp_path / "f" / "sub" / "w")) == 2
    assert f"{tmp_path / 'f'} is a file, so no folder can be created under it" in capsys.readouterr().err
    assert (tmp_path / "f").read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; permissions cannot be tested")
def test_unwritable_out_is_an_error(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main(_import(tmp_path, ro / "w")) == 2
        assert "permission denied" in capsys.readouterr().err
    finally:
        ro.chmod(0o700)


def test_check_out_dir_accepts_new_and_overwritable_folders(tmp_path):
    assert check_out_dir(tmp_path / "a" / "b") == (tmp_path / "a" / "b").resolve()
    (tmp_path / "w").mkdir()
    with pytest.raises(UserError, match="already exists; choose another folder or pass --overwrite"):
        check_out_dir(tmp_path / "w")
    assert check_out_dir(tmp_path / "w", overwrite=True)  # empty folder


def test_staging_left_by_a_killed_process_is_removed_by_the_next_import(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".w.staging-{int(dead.stdout)}-0123abcd"
    stale.mkdir()
    (stale / "cells.parquet").write_bytes(b"half")
    alive = tmp_path / f".w.staging-{os.getpid()}-4567abcd"  # this very process: not stale
    alive.mkdir()
    assert remove_stale_staging(tmp_path / "w") == [stale]
    assert not stale.exists() and alive.exists()
    alive.rmdir()
    with WorkspaceBuilder(tmp_path / "w"):
        assert len(list(tmp_path.glob(".w.staging-*"))) == 1


@pytest.mark.parametrize("sig,rc", [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 130)])
def test_sigterm_or_sigint_during_an_import_leaves_no_staging_folder(tmp_path, sig, rc):
    """The app cancels runs with SIGTERM: the import stops inside the staging phase (a fetch that hangs)."""
    tiles = _baidu_tiles(tmp_path / "tiles")
    hold = threading.Event()
    out = tmp_path / "w"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with TileServer(tiles, hold=hold, order="{z}/{x}/{y}", suffix=".jpg") as srv:
        proc = subprocess.Popen([sys.executable, "-m", "urbanclip", *_import(tmp_path, out), "--tiles-template",
                                 srv.template, "--cache-dir", str(tmp_path / "c"), "--rate-limit", "1000"],
                                env=env, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            assert srv.waiting.wait(120), "the import never asked for a tile"
            assert list(tmp_path.glob(".w.staging-*")), "the import should be inside its staging phase"
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=120)
        finally:
            hold.set()
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == rc, err
    assert "interrupted" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".w.*"))


@pytest.mark.parametrize("argv", [["compare", "-w", "{W}", "-o", "{F}", "--seeds", "1"],
                                  ["probe", "-w", "{W}", "-e", "pca", "-o", "{F}"],
                                  ["transfer", "-w", "{W}", "-e", "pca", "-o", "{F}"],
                                  ["pretrain", "-w", "{W}", "--out", "{F}/run"],
                                  ["faithfulness", "-w", "{W}", "-c", "assets/model", "--out", "{F}"],
                                  ["describe", "-w", "{W}", "--backend", "urbanclip", "--model", "m", "--out", "{F}"],
                                  ["export", "-w", "{W}", "-o", "{F}/cells.csv"],
                                  ["export", "-w", "{W}", "-o", "{D}"],
                                  ["demo", "--out", "{F}/demo", "--size", "tiny"]])
def test_every_command_refuses_a_bad_out_with_exit_2(tiny_workspace_path, tmp_path, capsys, argv):
    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir()
    args = [a.format(W=tiny_workspace_path, F=tmp_path / "f", D=tmp_path / "d") for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out ") and ("is a file" in err or "is a folder" in err)
    assert (tmp_path / "f").read_text() == "x"
