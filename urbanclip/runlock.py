"""One writer per run folder: RUN/.lock, taken by CLI commands and app-launched runs alike.

Protocol (standard library only: the run supervisor imports it and must start in milliseconds):

  RUN/.lock    "<pid>\\n<label>\\n" of the process writing to RUN; that process also holds an
               exclusive `flock` on the file for as long as it writes. The kernel drops a flock
               when its process dies, so the lock of a killed writer is stale and the next
               writer takes it over (and says so); a live holder makes `acquire` refuse with
               an error naming its pid.
  URBANCLIP_RUN_LOCK="<pid>:<RUN>"
               set by the app's run supervisor (urbanclip.services.supervisor) for the command it
               starts: the supervisor holds RUN for its child, and the child, finding its own
               supervisor's pid in RUN/.lock, writes under that lock instead of refusing itself.

Re-entrant within a process (a command that holds RUN may call a library writer that takes
it again). Ranks > 0 of a `torchrun` job write nothing to the run folder and take no lock.
On acquiring, temp files a killed writer left behind (`.<name>.<random>.tmp` from the atomic
writers) are removed: nobody else can be writing them while we hold the folder.

Readers (the Train page) only read the pid: `holder(run_dir)`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from urbanclip.errors import UserError

LOCK_FILE = ".lock"
ENV = "URBANCLIP_RUN_LOCK"
# what the atomic writers (tempfile.mkstemp(prefix=".<name>.", suffix=".tmp")) leave when killed mid-write
ORPHAN = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
ORPHAN_DEPTH = 2  # RUN, RUN/heads, RUN/heads/<encoder>: where run writers put files


class RunBusy(UserError):
    """Another live process writes to the run folder."""


def pid_alive(pid: int) -> bool:
    """True when `pid` runs and is not a zombie (reaps our own finished children)."""
    if pid <= 0:
        return False
    try:
        os.waitpid(pid, os.WNOHANG)
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


def read_lock(run_dir: Path | str) -> tuple[int, str] | None:
    """(pid, label) written in RUN/.lock, or None when there is no (readable) lock file."""
    try:
        lines = (Path(run_dir) / LOCK_FILE).read_text("utf-8").splitlines()
        return int(lines[0].strip()), (lines[1].strip() if len(lines) > 1 else "")
    except (OSError, ValueError, IndexError):
        return None


def holder(run_dir: Path | str) -> int | None:
    """PID of the live process writing to RUN, else None (no lock, or a dead writer's stale lock)."""
    got = read_lock(run_dir)
    return got[0] if got and pid_alive(got[0]) else None


def busy_message(run_dir: Path, pid: int, label: str) -> str:
    what = f"process {pid}" + (f" ({label})" if label else "")
    return (f"{run_dir} is busy: {what} is writing to it (lock {run_dir / LOCK_FILE}); wait for it to finish, "
            "cancel it, or choose a different output folder")


def remove_orphans(run_dir: Path) -> list[Path]:
    """Delete temp files of interrupted atomic writes in RUN and its sub-folders up to ORPHAN_DEPTH (not in
    sub-folders that another live writer holds). Call only while holding RUN."""
    removed = []
    for folder, dirs, files in os.walk(run_dir):
        here = Path(folder)
        depth = len(here.relative_to(run_dir).parts)
        if depth >= ORPHAN_DEPTH:
            dirs[:] = []
        if here != run_dir and holder(here) is not None:
            dirs[:] = []
            continue
        for name in files:
            if ORPHAN.match(name):
                with contextlib.suppress(OSError):
                    (here / name).unlink()
                    removed.append(here / name)
    return removed


@dataclass
class RunLock:
    """A held run folder; `release()` (or leaving the `with` block) frees it."""

    run_dir: Path
    pid: int
    label: str = ""
    fd: int | None = None           # our flock'd descriptor; None when inherited / re-entered
    inherited: bool = False         # held by our supervisor (or the torchrun rank 0) for us
    stale_pid: int | None = None    # a dead writer whose lock we took over
    orphans: tuple[Path, ...] = ()  # temp files of a killed save we removed
    thread: int = 0                 # the thread that holds it (re-entrant in that thread only)
    _depth: int = 1

    def release(self) -> None:
        with _LOCK:
            self._depth -= 1
            if self._depth > 0:
                return
            _HELD.pop(self.run_dir, None)
        if self.fd is None:
            return
        try:
            if read_lock(self.run_dir) == (self.pid, self.label):
                with contextlib.suppress(OSError):
                    os.unlink(self.run_dir / LOCK_FILE)
        finally:
            os.close(self.fd)  # drops the flock
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def cleanup_note(self) -> str:
        """What taking the folder cleaned up: a dead writer's lock, temp files of its interrupted saves."""
        parts = []
        if self.stale_pid:
            parts.append(f"took over the stale lock of process {self.stale_pid}, which is no longer running")
        if self.orphans:
            parts.append(f"removed {len(self.orphans)} temp file(s) of an interrupted save "
                         f"({', '.join(p.name for p in self.orphans[:3])})")
        return f"{self.run_dir}: " + "; ".join(parts)

    def child_env(self) -> dict[str, str]:
        """Environment entries that let a child process write under this lock."""
        return {ENV: f"{self.pid}:{self.run_dir}"}


_HELD: dict[Path, RunLock] = {}
_LOCK = threading.Lock()


def _secondary_rank() -> bool:
    """A torchrun rank > 0: rank 0 holds the run folder and is the only rank that writes to it."""
    return os.environ.get("RANK") not in (None, "", "0")


def _inherited(run_dir: Path) -> bool:
    """True when our supervisor (named in $URBANCLIP_RUN_LOCK) holds RUN for us."""
    pid_s, sep, where = os.environ.get(ENV, "").partition(":")
    if not sep or not pid_s.isdigit():
        return False
    try:
        same = Path(where).resolve() == run_dir
    except OSError:
        return False
    got = read_lock(run_dir)
    return same and got is not None and got[0] == int(pid_s) and pid_alive(int(pid_s))


def acquire(run_dir: Path | str, label: str = "", clean: bool = True) -> RunLock:
    """Hold RUN (created if missing) for this process; RunBusy (a UserError) naming the holder's pid when
    another live process writes to it. `clean=False` leaves temp files alone (a workspace, whose caches
    other processes write without holding it)."""
    run_dir = Path(run_dir).expanduser().resolve()
    label = " ".join(str(label).split())
    with _LOCK:
        held = _HELD.get(run_dir)
        if held is not None:
            if held.thread != threading.get_ident():
                raise RunBusy(busy_message(run_dir, os.getpid(), f"another thread: {held.label}"))
            held._depth += 1
            return held
    if _secondary_rank():
        return RunLock(run_dir, os.getpid(), label, inherited=True)  # not registered: nothing to free
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the run folder {run_dir} ({e.strerror or e}); "
                        "choose a folder you can write to") from None
    if _inherited(run_dir):
        lock = RunLock(run_dir, os.getpid(), label, inherited=True)
    else:
        lock = _take(run_dir, label)
    lock.thread = threading.get_ident()
    lock.orphans = tuple(remove_orphans(run_dir)) if clean else ()
    with _LOCK:
        _HELD[run_dir] = lock
    return lock


def _take(run_dir: Path, label: str) -> RunLock:
    path = run_dir / LOCK_FILE
    for _ in range(50):
        before = read_lock(run_dir)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                raise
            got = read_lock(run_dir)
            if got is not None and pid_alive(got[0]):
                raise RunBusy(busy_message(run_dir, got[0], got[1])) from None
            time.sleep(0.02)  # the holder is writing its pid, or just released: look again
            continue
        # the file we locked must still be the one at `path` (a releasing holder unlinks it)
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        stale = before[0] if before and before[0] != os.getpid() else None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n{label}\n".encode("utf-8"))
        return RunLock(run_dir, os.getpid(), label, fd=fd, stale_pid=stale)
    got = read_lock(run_dir)
    raise RunBusy(busy_message(run_dir, got[0] if got else 0, got[1] if got else ""))


@contextlib.contextmanager
def hold(run_dir: Path | str, label: str = "", clean: bool = True) -> Iterator[RunLock]:
    """`with hold(RUN, "pretrain"):` write to RUN as its only writer."""
    lock = acquire(run_dir, label, clean)
    try:
        yield lock
    finally:
        lock.release()
