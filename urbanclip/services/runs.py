"""Background runs launched from the app: start, list, follow, cancel, activate.

A run is `python -m urbanclip <command> ... --out RUN`, started detached
(`start_new_session=True`) through `urbanclip.services.supervisor`, so it outlives
the Streamlit script rerun or browser tab that launched it. Files in RUN/:

  metrics.jsonl  progress events written by the command (see interfaces: start/step/message/end)
  run.json       what was launched (command, pid = process group, start time, exit status)
  run.log        stdout + stderr
  .lock          exists while a run writes to RUN; a second launch on RUN is refused

The app follows a run only by reading these files, so any tab (or a restarted app)
sees the same state.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from urbanclip import paths
from urbanclip.errors import UserError
from urbanclip.services.context import active_model_file
from urbanclip.data.workspace import atomic_write_json

from urbanclip.services.supervisor import LOCK, METRICS, RUN_JSON  # noqa: E402  (one definition of the files)

LOG = "run.log"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors")


def pid_alive(pid: int) -> bool:
    """True when `pid` runs and is not a zombie (reaps our own finished children)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def _lock_owner(run_dir: Path) -> int | None:
    """PID holding RUN/.lock if that process is alive, else None (stale locks are removed)."""
    lock = run_dir / LOCK
    if not lock.exists():
        return None
    try:
        pid = int(lock.read_text().strip() or 0)
    except (OSError, ValueError):
        pid = 0
    if pid and pid_alive(pid):
        return pid
    if not pid and time.time() - lock.stat().st_mtime < 10:  # being created right now
        return -1
    lock.unlink(missing_ok=True)
    return None


def assert_free(out_dir: Path | str) -> None:
    """Raise UserError when a run is writing to out_dir."""
    out = Path(out_dir).expanduser().resolve()
    owner = _lock_owner(out) if out.is_dir() else None
    if owner is not None:
        raise UserError(f"another run is already writing to {out} (process {owner}); wait for it, cancel it, "
                        "or choose a different output folder")


def pretrain_defaults() -> dict[str, float | int]:
    """The Train form's defaults: the demo config's training settings (what assets/model used)."""
    from urbanclip.model.config import demo_config

    _, t = demo_config()
    return {"epochs": t.epochs, "batch_size": t.batch_size, "lr": t.lr, "seed": t.seed}


def write_pretrain_config(out_dir: Path | str, **train_overrides) -> Path:
    """Write RUN/app-config.json: the demo config with the form's overrides."""
    import dataclasses

    from urbanclip.model.config import demo_config, save_config

    model_cfg, train_cfg = demo_config()
    known = {f.name for f in dataclasses.fields(train_cfg)}
    unknown = sorted(set(train_overrides) - known)
    if unknown:
        raise UserError(f"training option(s) {unknown} are not TrainConfig fields ({sorted(known)})")
    train_cfg = dataclasses.replace(train_cfg, **train_overrides)
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "app-config.json"
    save_config(path, model_cfg, train_cfg)
    return path


def available_commands() -> list[str]:
    """CLI subcommands installed right now (`python -m urbanclip <name>`)."""
    from urbanclip.cli import _command_modules

    return [m.NAME for m in _command_modules()]


def launch_run(command: str, args: list[str], out_dir: Path | str) -> Path:
    """Start `python -m urbanclip <command> *args --out out_dir` in the background.

    Refuses (UserError) when another run is writing to out_dir.
    """
    out = Path(out_dir).expanduser().resolve()
    argv = [sys.executable, "-m", "urbanclip", command, *[str(a) for a in args], "--out", str(out)]
    return launch_argv(argv, out, command)


def launch_argv(argv: list[str], out_dir: Path | str, label: str) -> Path:
    """Run any argv detached under the supervisor, with the lock/run.json/run.log protocol."""
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    assert_free(out)
    try:
        fd = os.open(out / LOCK, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        raise UserError(f"another run is starting in {out}; choose a different output folder") from None
    os.close(fd)
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    atomic_write_json(out / RUN_JSON, {"command": label, "argv": argv, "started": time.time(), "status": "running"})
    try:
        with open(out / LOG, "ab") as log:
            subprocess.Popen([sys.executable, "-m", "urbanclip.services.supervisor", str(out), "--", *argv],
                                    cwd=os.getcwd(), env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError:
        (out / LOCK).unlink(missing_ok=True)
        raise
    # the supervisor writes its pid into the lock once its SIGTERM handler is installed
    return out


def cancel_run(run_dir: Path | str) -> bool:
    """Send SIGTERM to the run's process group; False when it is not running."""
    run_dir = Path(run_dir)
    owner = _lock_owner(run_dir)
    deadline = time.time() + 10
    while owner == -1 and time.time() < deadline:  # still starting: wait until it can handle SIGTERM
        time.sleep(0.05)
        owner = _lock_owner(run_dir)
    if owner is None or owner < 0:
        return False
    try:
        os.killpg(owner, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


# ---------------------------------------------------------------------------------
# reading progress


def read_events(run_dir: Path | str) -> list[dict]:
    """Events of RUN/metrics.jsonl; a partial last line (being written) is skipped."""
    f = Path(run_dir) / METRICS
    if not f.is_file():
        return []
    events = []
    for line in f.read_text("utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(ev, dict):
            events.append(ev)
    return events


@dataclass
class RunStatus:
    """What the Train page shows for one run folder."""

    path: Path
    command: str
    state: str                      # running | completed | interrupted | failed | unknown
    step: int = 0
    total_steps: int | None = None
    eta_s: float | None = None
    started: float | None = None
    last: dict = field(default_factory=dict)      # last step event
    summary: dict = field(default_factory=dict)   # end event summary
    messages: list[str] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)

    @property
    def fraction(self) -> float | None:
        if not self.total_steps:
            return None
        return min(1.0, self.step / self.total_steps)

    @property
    def has_checkpoint(self) -> bool:
        return has_checkpoint(self.path)


def has_checkpoint(run_dir: Path) -> bool:
    return any(p.suffix in CHECKPOINT_SUFFIXES for p in Path(run_dir).rglob("*") if p.is_file())


def run_status(run_dir: Path | str) -> RunStatus:
    """Status of a run from its files (works for runs started from the CLI too)."""
    run_dir = Path(run_dir)
    meta = {}
    if (run_dir / RUN_JSON).is_file():
        try:
            meta = json.loads((run_dir / RUN_JSON).read_text("utf-8"))
        except ValueError:
            meta = {}
    events = read_events(run_dir)
    st = RunStatus(path=run_dir, command=str(meta.get("command", "")), state="unknown", started=meta.get("started"))
    for ev in events:
        kind = ev.get("event")
        if kind == "start":
            st.command = st.command or str(ev.get("command", ""))
            st.total_steps = ev.get("total_steps") or st.total_steps
            st.started = st.started or ev.get("time")
        elif kind == "step":
            st.steps.append(ev)
            st.last = ev
            st.step = int(ev.get("step", st.step))
            st.total_steps = ev.get("total_steps") or st.total_steps
            st.eta_s = ev.get("eta_s")
        elif kind == "message":
            st.messages.append(str(ev.get("text", "")))
        elif kind == "end":
            st.state = str(ev.get("status", "completed"))
            st.summary = ev.get("summary") or {}
    running = _lock_owner(run_dir) is not None
    if running:
        st.state = "running"
    elif st.state == "unknown" and meta.get("status") and meta.get("status") != "running":
        st.state = str(meta["status"])
    elif st.state == "unknown" and meta.get("status") == "running":
        st.state = "failed"  # launched by the app, gone without an end event
    return st


def list_runs(root: Path | None = None) -> list[RunStatus]:
    """Run folders under `root` (default: paths.runs_dir()), newest first."""
    root = Path(root) if root is not None else paths.runs_dir()
    if not root.is_dir():
        return []
    dirs = [d for d in root.iterdir() if d.is_dir() and ((d / METRICS).exists() or (d / RUN_JSON).exists())]
    dirs.sort(key=lambda d: max((d / f).stat().st_mtime for f in (METRICS, RUN_JSON) if (d / f).exists()), reverse=True)
    return [run_status(d) for d in dirs]


def log_tail(run_dir: Path | str, n: int = 30) -> str:
    f = Path(run_dir) / LOG
    if not f.is_file():
        return ""
    return "\n".join(f.read_text("utf-8", errors="replace").splitlines()[-n:])


# ---------------------------------------------------------------------------------
# which checkpoint the Map page uses


def set_active_model(run_dir: Path | str) -> Path:
    """Make a run's checkpoint the one the Map page loads (writes active_model.json)."""
    run_dir = Path(run_dir).expanduser().resolve()
    if not run_dir.exists():
        raise UserError(f"{run_dir} does not exist; pick a finished pretraining run")
    if run_dir.is_dir() and not has_checkpoint(run_dir):
        raise UserError(f"{run_dir} holds no checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}); "
                        "only finished pretraining runs can be used on the Map page")
    f = active_model_file()
    atomic_write_json(f, {"path": str(run_dir), "set": time.time()})
    return f


def clear_active_model() -> None:
    """Go back to the shipped model (assets/model/)."""
    active_model_file().unlink(missing_ok=True)
