"""Supervisor of one background run:
`python -m urbanclip.services.supervisor RUN --label L [--nice N] [--threads T] -- CMD...`.

Started by `runs.launch_argv` in its own session (it leads the process group). It
takes RUN's lock (urbanclip.runlock) and holds it for CMD, which it starts with
URBANCLIP_RUN_LOCK naming itself so the command writes under that lock instead of
refusing. Before CMD starts it lowers its own CPU priority (`--nice`, inherited by
CMD) and caps CMD's threads (`--threads`: OMP_NUM_THREADS, URBANCLIP_MAX_THREADS), so
a run launched from the app leaves the map responsive.

Handshake with the launcher, on stdout: one line `locked <pid>` once RUN is held and
run.json written (then stdout/stderr go to RUN/run.log), or `busy <message>` and exit
75 when another process writes to RUN. It forwards SIGTERM (cancel) to CMD; when CMD
exits it records the exit in run.json, appends an `end` event to metrics.jsonl if
the command died without writing one (crash, kill), and frees RUN. Standard library
only (urbanclip.events and urbanclip.runlock are too): it must start in milliseconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from urbanclip import runlock
from urbanclip.errors import UserError
from urbanclip.events import METRICS_FILE as METRICS

LOCK = runlock.LOCK_FILE
RUN_JSON = "run.json"
LOG = "run.log"
MAX_THREADS_ENV = "URBANCLIP_MAX_THREADS"  # honoured by urbanclip.training.train.cpu_threads
BUSY_EXIT = 75


def last_event(run_dir: Path) -> dict | None:
    f = run_dir / METRICS
    if not f.is_file():
        return None
    for line in reversed(f.read_text("utf-8", errors="replace").splitlines()):
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(ev, dict):
            return ev
    return None


def _write_json(path: Path, obj: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def finish(run_dir: Path, returncode: int, cancelled: bool, started: float = 0.0) -> None:
    """Record the end of a run (idempotent with an `end` event the command wrote itself since `started`;
    an older `end`, from the run a resume continues, does not count)."""
    status = "interrupted" if cancelled else ("completed" if returncode == 0 else "failed")
    last = last_event(run_dir)
    if not last or last.get("event") != "end" or float(last.get("time") or 0) < started:
        with open(run_dir / METRICS, "a", encoding="utf-8") as f:
            f.write(json.dumps({"event": "end", "time": time.time(), "status": status,
                                "summary": {"returncode": returncode,
                                            "note": "recorded by the app's run supervisor"}}) + "\n")
    meta = {}
    try:
        meta = json.loads((run_dir / RUN_JSON).read_text("utf-8"))
    except (OSError, ValueError):
        pass
    meta.update({"status": status, "returncode": returncode, "finished": time.time()})
    _write_json(run_dir / RUN_JSON, meta)


def limited_env(env: dict[str, str], threads: int) -> dict[str, str]:
    """`env` with every thread pool of the child capped at `threads` (0 = leave as is)."""
    env = dict(env)
    if threads > 0:
        for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", MAX_THREADS_ENV):
            env[key] = str(threads)
    return env


def _options(argv: list[str]) -> tuple[Path, dict[str, str], list[str]]:
    if "--" not in argv or argv.index("--") < 1:
        raise SystemExit("usage: python -m urbanclip.services.supervisor RUN [--label L] [--nice N] [--threads T] "
                         "-- CMD...")
    head, cmd = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    opts = dict(zip(head[1::2], head[2::2]))
    return Path(head[0]), opts, cmd


def main(argv: list[str]) -> int:
    run_dir, opts, cmd = _options(argv)
    label = opts.get("--label", cmd[0] if cmd else "run")
    state = {"cancelled": False, "child": None}

    def on_term(signum, frame):
        state["cancelled"] = True
        child = state["child"]
        if child is not None:
            try:
                child.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        lock = runlock.acquire(run_dir, label)
    except UserError as e:
        print(f"busy {e}", flush=True)
        return BUSY_EXIT
    run_dir = lock.run_dir
    rc = -signal.SIGTERM
    started = time.time()
    try:
        nice = int(opts.get("--nice", 0))
        threads = int(opts.get("--threads", 0))
        if nice > 0:
            os.nice(nice)  # inherited by the command
        _write_json(run_dir / RUN_JSON, {"command": label, "argv": cmd, "started": started, "status": "running",
                                         "supervisor": os.getpid(), "nice": os.nice(0), "threads": threads or None})
        log = os.open(run_dir / LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        print(f"locked {os.getpid()}", flush=True)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        if not state["cancelled"]:
            env = {**limited_env(dict(os.environ), threads), **lock.child_env()}
            env.setdefault("PYTHONUNBUFFERED", "1")
            state["child"] = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
            if state["cancelled"]:
                state["child"].send_signal(signal.SIGTERM)
            rc = state["child"].wait()
    except OSError as e:
        print(f"error: cannot start {cmd[:1]} in {run_dir}: {e}", file=sys.stderr, flush=True)
        rc = 2
    finally:
        try:
            finish(run_dir, rc, state["cancelled"], started)
        finally:
            lock.release()
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
