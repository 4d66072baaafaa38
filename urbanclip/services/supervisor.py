"""Supervisor of one background run: `python -m urbanclip.services.supervisor RUN -- CMD...`.

Started by `runs.launch_argv` in its own session (it leads the process group).
It runs CMD, forwards SIGTERM (cancel) to it, and when CMD exits it records the
exit in RUN/run.json, appends an `end` event to RUN/metrics.jsonl if the command
died without writing one (crash, kill), and removes RUN/.lock, so the app always
sees a final state. Standard library only: it must start (and install its
SIGTERM handler) in milliseconds.
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

LOCK = ".lock"
RUN_JSON = "run.json"
METRICS = "metrics.jsonl"


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
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def finish(run_dir: Path, returncode: int, cancelled: bool) -> None:
    """Record the end of a run (idempotent with an `end` event the command wrote itself)."""
    status = "interrupted" if cancelled else ("completed" if returncode == 0 else "failed")
    last = last_event(run_dir)
    if not last or last.get("event") != "end":
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


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m urbanclip.services.supervisor RUN -- CMD...", file=sys.stderr)
        return 2
    run_dir, cmd = Path(argv[0]), argv[2:]
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
    (run_dir / LOCK).write_text(f"{os.getpid()}\n")
    rc = -signal.SIGTERM
    try:
        if not state["cancelled"]:
            state["child"] = subprocess.Popen(cmd)
            if state["cancelled"]:
                state["child"].send_signal(signal.SIGTERM)
            rc = state["child"].wait()
    finally:
        try:
            finish(run_dir, rc, state["cancelled"])
        finally:
            (run_dir / LOCK).unlink(missing_ok=True)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
