"""Background runs launched from the app: where they live, start, list, follow, cancel, resume, activate.

A run is `python -m urbanclip <command> ... [--out RUN]`, started detached
(`start_new_session=True`) through `urbanclip.services.supervisor`, so it outlives
the Streamlit script rerun or browser tab that launched it. Files in RUN/:

  metrics.jsonl  progress events written by the command (docs/METHOD.md, "Run files")
  run.json       what was launched (command, argv, supervisor pid, priority, start time, exit status)
  run.log        stdout + stderr
  .lock          held by the one process writing to RUN (urbanclip.runlock): a second launch on RUN,
                 from the app or the command line, is refused with the holder's pid

Containment: every run the app launches lives under the runs root (`paths.runs_dir()`,
$URBANCLIP_RUNS); `resolve_out` refuses output folders that resolve outside it, and
`launch_run` accepts only known workspaces (services.workspaces). Runs start at a lower
CPU priority with a thread cap (`RunLimits`), so the map stays responsive while they train.

The app follows a run only by reading these files, so any tab (or a restarted app)
sees the same state.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from urbanclip import paths, runlock
from urbanclip.data.workspace import atomic_write_json
from urbanclip.errors import UserError
from urbanclip.events import read_events
from urbanclip.services.context import active_model_file, clear_active_model  # noqa: F401 (the Train page's)
from urbanclip.services.supervisor import BUSY_EXIT, LOCK, LOG, METRICS, RUN_JSON  # noqa: F401 (LOCK: for readers)
from urbanclip.services.workspaces import check_known_workspace

NICE_ENV = "URBANCLIP_RUN_NICE"         # CPU priority offset of app-launched runs (default 10)
THREADS_ENV = "URBANCLIP_RUN_THREADS"   # thread cap of app-launched runs (default half the cores)
HANDSHAKE_S = 30.0                      # how long a launch waits for the supervisor to hold the folder

pid_alive = runlock.pid_alive


# ---------------------------------------------------------------------------------
# where runs live


def runs_root() -> Path:
    """The folder every app-launched run lives under (resolved)."""
    return paths.runs_dir().expanduser().resolve()


def resolve_out(name: str | Path) -> Path:
    """An Output folder typed on the Train page -> a folder under the runs root (relative names are
    taken from the root); UserError for empty names and for anything resolving outside the root."""
    text = str(name).strip()
    root = runs_root()
    if not text:
        raise UserError(f"Output folder is empty: type a folder name; it is created under the runs root {root}")
    p = Path(text).expanduser()
    p = (p if p.is_absolute() else root / p).resolve()
    if p == root or not p.is_relative_to(root):
        raise UserError(f"Output folder {text!r} resolves to {p}, outside the runs root {root}: type a folder name "
                        "such as pretrain-2 (runs live under the runs root; an operator moves it with URBANCLIP_RUNS)")
    return p


def new_run_name(kind: str) -> str:
    """A fresh folder name for the form's default: `<kind>-<YYYYmmdd-HHMMSS>`."""
    return f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"


def assert_free(out_dir: Path | str) -> None:
    """Raise UserError when a run is writing to out_dir."""
    out = Path(out_dir).expanduser().resolve()
    got = runlock.read_lock(out)
    if got is not None and runlock.pid_alive(got[0]):
        raise UserError(runlock.busy_message(out, *got))


# ---------------------------------------------------------------------------------
# launching


@dataclass
class RunLimits:
    """CPU limits of runs the app launches: niceness added to the run, and its thread cap (0 = none)."""

    nice: int = 10
    threads: int = 1

    @classmethod
    def from_env(cls) -> "RunLimits":
        """$URBANCLIP_RUN_NICE (default 10) and $URBANCLIP_RUN_THREADS (default half the usable cores)."""
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        try:
            nice = int(os.environ.get(NICE_ENV, "10"))
            threads = int(os.environ.get(THREADS_ENV, str(max(1, cores // 2))))
        except ValueError:
            raise UserError(f"{NICE_ENV} and {THREADS_ENV} must be integers") from None
        return cls(nice=max(0, nice), threads=max(0, threads))


def pretrain_defaults() -> dict[str, float | int]:
    """The Train form's defaults: the demo config's training settings (what assets/model used)."""
    from urbanclip.model.config import demo_config

    _, t = demo_config()
    return {"epochs": t.epochs, "batch_size": t.batch_size, "lr": t.lr, "seed": t.seed}


def pretrain_args(out_dir: Path, *, epochs: int, batch_size: int, lr: float, seed: int, resume: bool) -> list[str]:
    """Arguments of `pretrain` from the Train form (no --workspace/--out). Resume continues the folder's
    checkpoint with the run's own config (the form's settings are not used then)."""
    from urbanclip.model.checkpoint import MODEL_FILE, TRAIN_STATE_FILE

    out = Path(out_dir)
    if resume:
        if not (out / TRAIN_STATE_FILE).is_file():
            raise UserError(f"cannot resume: {out / TRAIN_STATE_FILE} does not exist; pick the Output folder of an "
                            "interrupted pretraining run, or untick Resume to start a new run")
        return ["--resume"]
    if (out / TRAIN_STATE_FILE).exists() or (out / MODEL_FILE).exists():
        raise UserError(f"{out} already holds a trained run: tick Resume to continue it, or type a new Output folder")
    return ["--config", "demo", "--epochs", str(int(epochs)), "--batch-size", str(int(batch_size)),
            "--lr", repr(float(lr)), "--seed", str(int(seed))]


def launch_run(command: str, args: list[str], out_dir: Path | str, *, workspace: Path | str | None = None,
               pass_out: bool = True, limits: RunLimits | None = None) -> Path:
    """Start `python -m urbanclip <command> [--workspace W] *args [--out RUN]` in the background.

    RUN must lie under the runs root and W must be a known workspace (UserError otherwise);
    refuses (UserError naming the pid) when another process writes to RUN.
    """
    out = resolve_out(out_dir)
    argv = [sys.executable, "-m", "urbanclip", command]
    if workspace is not None:
        argv += ["--workspace", str(check_known_workspace(workspace))]
    argv += [str(a) for a in args]
    if pass_out:
        argv += ["--out", str(out)]
    return launch_argv(argv, out, command, limits if limits is not None else RunLimits.from_env())


def launch_argv(argv: list[str], out_dir: Path | str, label: str, limits: RunLimits | None = None) -> Path:
    """Run any argv detached under the supervisor (lock, run.json, run.log, priority); returns once the
    supervisor holds the folder, or raises UserError when it is busy or the run cannot start."""
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    limits = limits or RunLimits(nice=0, threads=0)
    assert_free(out)
    cmd = [sys.executable, "-m", "urbanclip.services.supervisor", str(out), "--label", label,
           "--nice", str(limits.nice), "--threads", str(limits.threads), "--", *argv]
    proc = subprocess.Popen(cmd, cwd=os.getcwd(), env=dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    line, deadline = b"", time.time() + HANDSHAKE_S
    try:
        while not line.endswith(b"\n") and time.time() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                line += chunk
        text = line.decode("utf-8", "replace").strip()
        if text.startswith("locked"):
            return out
        if proc.poll() is None and not text:
            raise UserError(f"the run in {out} did not start within {HANDSHAKE_S:.0f} s; see {out / LOG}")
        try:
            rest = proc.communicate(timeout=5)[0].decode("utf-8", "replace")
        except subprocess.TimeoutExpired:
            rest = ""
        if proc.returncode == BUSY_EXIT:
            raise UserError(text.removeprefix("busy").strip())
        raise UserError(f"the run in {out} could not start: {(text + rest).strip()[-500:]}")
    finally:
        proc.stdout.close()


def cancel_run(run_dir: Path | str) -> bool:
    """Send SIGTERM to the run (the supervisor's process group, or a CLI writer); False when none runs."""
    got = runlock.read_lock(Path(run_dir).expanduser().resolve())
    if got is None or not runlock.pid_alive(got[0]):
        return False
    pid = got[0]
    try:
        if os.getpgid(pid) == pid:  # a supervisor leads its own process group
            os.killpg(pid, signal.SIGTERM)
        else:
            os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


# ---------------------------------------------------------------------------------
# reading progress


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
    workspace: str | None = None    # the workspace it ran on (from its start event or run.json)
    holder: int | None = None       # pid writing to it, while running

    @property
    def fraction(self) -> float | None:
        if not self.total_steps:
            return None
        return min(1.0, self.step / self.total_steps)

    @property
    def is_pretrain(self) -> bool:
        return self.command.split(" ")[0] == "pretrain"

    @property
    def can_activate(self) -> bool:
        """A completed pretraining run with its inference weights: what the Map page can load."""
        from urbanclip.model.checkpoint import MODEL_FILE

        return self.is_pretrain and self.state == "completed" and (self.path / MODEL_FILE).is_file()

    @property
    def can_resume(self) -> bool:
        """An interrupted or failed pretraining run with its training state."""
        from urbanclip.model.checkpoint import TRAIN_STATE_FILE

        return self.is_pretrain and self.state in ("interrupted", "failed") and (self.path / TRAIN_STATE_FILE).is_file()


def _argv_value(argv: list, flag: str) -> str | None:
    for i, a in enumerate(argv[:-1]):
        if a == flag:
            return str(argv[i + 1])
    return None


def run_status(run_dir: Path | str) -> RunStatus:
    """Status of a run from its files (works for runs started from the CLI too)."""
    run_dir = Path(run_dir)
    meta = {}
    if (run_dir / RUN_JSON).is_file():
        try:
            meta = json.loads((run_dir / RUN_JSON).read_text("utf-8"))
        except (OSError, ValueError):
            meta = {}
    events = read_events(run_dir)
    st = RunStatus(path=run_dir, command=str(meta.get("command", "")), state="unknown", started=meta.get("started"))
    st.workspace = _argv_value(meta.get("argv") or [], "--workspace")
    for ev in events:
        kind = ev.get("event")
        if kind == "start":
            st.command = st.command or str(ev.get("command", ""))
            st.total_steps = ev.get("total_steps") or st.total_steps
            st.started = st.started or ev.get("time")
            st.workspace = st.workspace or ev.get("workspace")
            st.state = "unknown"
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
    st.holder = runlock.holder(run_dir)
    if st.holder is not None:
        st.state = "running"
    elif st.state == "unknown" and meta.get("status") and meta.get("status") != "running":
        st.state = str(meta["status"])
    elif st.state == "unknown" and meta.get("status") == "running":
        st.state = "failed"  # launched by the app, gone without an end event
    return st


def list_runs(root: Path | None = None) -> list[RunStatus]:
    """Run folders under `root` (default: the runs root), newest first."""
    root = Path(root) if root is not None else runs_root()
    if not root.is_dir():
        return []
    dirs = [d for d in root.iterdir() if d.is_dir() and ((d / METRICS).exists() or (d / RUN_JSON).exists())]
    dirs.sort(key=lambda d: max((d / f).stat().st_mtime for f in (METRICS, RUN_JSON) if (d / f).exists()), reverse=True)
    return [run_status(d) for d in dirs]


def runs_signature(statuses: list[RunStatus]) -> tuple:
    """Changes when a run starts, ends or is cancelled: the Train page reruns fully when it does."""
    return tuple(sorted((str(r.path), r.state) for r in statuses))


def log_tail(run_dir: Path | str, n: int = 30) -> str:
    f = Path(run_dir) / LOG
    if not f.is_file():
        return ""
    return "\n".join(f.read_text("utf-8", errors="replace").splitlines()[-n:])


def resume_run(run_dir: Path | str, limits: RunLimits | None = None) -> Path:
    """Continue an interrupted pretraining run in its own folder, on the workspace it was trained on."""
    st = run_status(Path(run_dir).expanduser().resolve())
    if not st.can_resume:
        raise UserError(f"{st.path} is not an interrupted pretraining run with a checkpoint.pt; nothing to resume")
    if not st.workspace:
        raise UserError(f"{st.path}: cannot tell which workspace the run used (no run.json or start event)")
    return launch_run("pretrain", ["--resume"], st.path, workspace=st.workspace, limits=limits)


# ---------------------------------------------------------------------------------
# charts of a run's step events


@dataclass
class Chart:
    """One line chart: `frame` has a `step` column and one column per series."""

    title: str
    y_label: str
    frame: pd.DataFrame
    x_label: str = "step"
    note: str = ""

    @property
    def series(self) -> list[str]:
        return [c for c in self.frame.columns if c != "step"]


LOSS_KEYS = ("loss", "con", "lm", "val_loss", "val_con", "val_lm")
NOT_SERIES = {"event", "time", "step", "total_steps", "epoch", "eta_s", "items_per_s"}


def charts(status: RunStatus) -> list[Chart]:
    """Charts with sensible axes for a run's step events: pretraining gets losses, gradient norm and
    learning rate apart (their scales differ by orders of magnitude); a probe/compare run gets the
    test R² per indicator; anything else one chart of its numeric metrics."""
    if not status.steps:
        return []
    df = pd.DataFrame(status.steps)
    if "step" not in df:
        return []
    numeric = [c for c in df.columns if c not in NOT_SERIES and pd.api.types.is_numeric_dtype(df[c])]

    def chart(cols, title, y_label, **kw) -> Chart | None:
        cols = [c for c in cols if c in numeric and df[c].notna().any()]
        return Chart(title, y_label, df[["step", *cols]], **kw) if cols else None

    out: list[Chart | None]
    r2 = [c for c in numeric if "_R2" in c]
    if r2:
        out = [chart(r2, "Test R² per indicator (log1p targets)", "R²", x_label="encoder #",
                     note="R² of each encoder's probe on the test split (1 = perfect, 0 = predicting the mean); "
                          "one point per encoder or method, in the order they ran.")]
    elif any(k in numeric for k in LOSS_KEYS):
        out = [chart(LOSS_KEYS, "Losses", "loss"), chart(["grad_norm"], "Gradient norm (before clipping)", "L2 norm"),
               chart(["lr"], "Learning rate", "lr"), chart(["logit_scale"], "Contrastive logit scale (1/temperature)",
                                                            "scale")]
    else:
        out = [chart(numeric, "Metrics", "value")]
    return [c for c in out if c is not None]


# ---------------------------------------------------------------------------------
# which checkpoint the Map page uses


def set_active_model(run_dir: Path | str) -> Path:
    """Make a completed pretraining run the model the Map page loads (writes active_model.json).

    The run's model.pt is loaded first: a probe report, an interrupted run (only checkpoint.pt) or
    a damaged file is refused with a UserError, so the Map page never loses its model."""
    from urbanclip.model.checkpoint import MODEL_FILE, load_model

    run_dir = Path(run_dir).expanduser().resolve()
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} does not exist; pick a completed pretraining run")
    if not (run_dir / MODEL_FILE).is_file():
        raise UserError(f"{run_dir} holds no {MODEL_FILE}: only a completed pretraining run can be used on the Map "
                        "page (an interrupted run has only checkpoint.pt: resume it first)")
    load_model(run_dir)  # UserError naming the file when it is not a loadable UrbanCLIP checkpoint
    f = active_model_file()
    atomic_write_json(f, {"path": str(run_dir), "set": time.time()})
    return f
