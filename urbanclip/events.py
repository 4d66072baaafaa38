"""Progress of long-running commands, as events any listener can follow: the ONE event writer.

Events: start / step / message / end, each a JSON object with "event" and "time"
(a step also has step, total_steps, eta_s, items_per_s and the run's metrics; an
end has status in END_STATUSES and a summary). `JsonlLogger` appends them to
RUN/metrics.jsonl (the app's Train page and the run supervisor read that file),
`TqdmProgress` draws a bar in the terminal, and `ProgressTracker` turns "step i
done" into events with ETA and throughput. Pretraining, probes, comparisons,
transfer and describe all report through `ProgressTracker` (`tracker_for`).

Standard library only at import time: the run supervisor imports this module and
must start in milliseconds.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol

METRICS_FILE = "metrics.jsonl"
EVENTS = ("start", "step", "message", "end")
END_STATUSES = ("completed", "interrupted", "failed")


@dataclass
class ProgressEvent:
    """One line of metrics.jsonl."""

    event: str
    data: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ValueError(f"event must be one of {EVENTS}, got {self.event!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.event, "time": self.time, **self.data}


class ProgressCallback(Protocol):
    def __call__(self, event: ProgressEvent) -> None: ...


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf
    if hasattr(value, "item") and callable(value.item):
        return _jsonable(value.item())
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class JsonlLogger:
    """Appends each event as one JSON line to RUN/metrics.jsonl, flushed at once."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, event: ProgressEvent) -> None:
        line = json.dumps(_jsonable(event.to_dict()), ensure_ascii=False)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()


class TqdmProgress:
    """A terminal progress bar showing the latest losses."""

    def __init__(self, keys: Iterable[str] = ("loss", "con", "lm")):
        self.keys = tuple(keys)
        self.bar = None

    def __call__(self, event: ProgressEvent) -> None:
        from tqdm.auto import tqdm

        d = event.data
        if event.event == "start":
            self.bar = tqdm(total=d.get("total_steps"), initial=d.get("start_step", 0), desc=d.get("command", "run"),
                            unit="step", dynamic_ncols=True)
        elif event.event == "step" and self.bar is not None:
            self.bar.update(d["step"] - self.bar.n)
            self.bar.set_postfix({k: f"{d[k]:.3f}" for k in self.keys if isinstance(d.get(k), float)}, refresh=False)
        elif event.event == "message":
            (self.bar.write if self.bar is not None else print)(d.get("text", ""))
        elif event.event == "end" and self.bar is not None:
            self.bar.close()
            self.bar = None


def read_events(run_dir: str | Path) -> list[dict[str, Any]]:
    """All events of RUN/metrics.jsonl; a torn last line (a run being written) or a line that is
    not a JSON object is skipped."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    events = []
    for line in path.read_text("utf-8", errors="replace").splitlines():
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(ev, dict):
            events.append(ev)
    return events


class ProgressTracker:
    """Emits events to callbacks, computing ETA and items/s from wall-clock time."""

    def __init__(self, callbacks: Iterable[ProgressCallback] = ()):
        self.callbacks = list(callbacks)
        self._t0 = time.time()
        self._first_step = 0
        self._last_time = self._t0
        self.total_steps = 0

    def emit(self, event: str, **data: Any) -> None:
        ev = ProgressEvent(event, data)
        for cb in self.callbacks:
            cb(ev)

    def start(self, command: str, total_steps: int, start_step: int = 0, **data: Any) -> None:
        self.total_steps = total_steps
        self._t0 = self._last_time = time.time()
        self._first_step = start_step
        self.emit("start", command=command, total_steps=total_steps, start_step=start_step, **data)

    def step(self, step: int, epoch: int = 0, items: int = 1, **metrics: Any) -> None:
        """Report that `step` (1-based, global) finished after processing `items` items."""
        now = time.time()
        done = max(step - self._first_step, 1)
        per_step = (now - self._t0) / done
        items_per_s = items / max(now - self._last_time, 1e-9)
        self._last_time = now
        self.emit("step", step=step, total_steps=self.total_steps, epoch=epoch,
                  eta_s=round(per_step * max(self.total_steps - step, 0), 1),
                  items_per_s=round(items_per_s, 2), **metrics)

    def message(self, text: str) -> None:
        self.emit("message", text=text)

    def end(self, status: str, summary: dict[str, Any] | None = None) -> None:
        if status not in END_STATUSES:
            raise ValueError(f"status must be one of {END_STATUSES}, got {status!r}")
        self.emit("end", status=status, summary=summary or {})

    @contextlib.contextmanager
    def ends_on_error(self, summary: dict[str, Any]) -> Iterator[None]:
        """An exception in the block ends the run ("interrupted" on Ctrl-C, else "failed") with
        `summary` as it is then, and propagates."""
        try:
            yield
        except KeyboardInterrupt:
            self.end("interrupted", summary)
            raise
        except BaseException:
            self.end("failed", summary)
            raise


def tracker_for(run_dir: str | Path | None, bar: bool = False, keys: Iterable[str] = ()) -> ProgressTracker:
    """A tracker writing RUN/metrics.jsonl (when `run_dir` is given) and, with `bar`, a terminal bar."""
    callbacks: list[ProgressCallback] = []
    if run_dir:
        callbacks.append(JsonlLogger(run_dir))
    if bar:
        callbacks.append(TqdmProgress(keys))
    return ProgressTracker(callbacks)
