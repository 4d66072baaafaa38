"""Sharded, resumable per-cell jobs (describe, embed) for national-scale grids.

Launched with `torchrun --nproc_per_node N -m urbanclip describe|embed ...`
(or any launcher that sets RANK and WORLD_SIZE), every process computes the
same work list from the workspace, takes every N-th item, and writes its results
chunk by chunk into a `ChunkStore` folder (one file per chunk, written
atomically, named by its content) instead of the workspace. A rerun skips the
chunks that exist, whatever the number of processes. Rank 0 waits until every
item has a result, merges them into the workspace once, and removes the store.

No process group is needed: the chunk files are the only shared state, so a
CPU box and a GPU cluster behave the same, and a killed run loses at most the
chunks in flight.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from urbanclip.data.workspace import atomic_write_bytes, atomic_write_json

STALL_ENV = "URBANCLIP_SHARD_STALL_S"
DEFAULT_STALL_S = 1800.0


@dataclass(frozen=True)
class Shard:
    """This process's share: items `rank`, `rank + world`, ..."""

    rank: int = 0
    world: int = 1

    @classmethod
    def from_env(cls) -> "Shard":
        """RANK / WORLD_SIZE as torchrun sets them (a single process without them)."""
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        rank = int(os.environ.get("RANK", "0") or 0)
        if world < 1 or not 0 <= rank < world:
            from urbanclip.errors import UserError

            raise UserError(f"RANK={rank} / WORLD_SIZE={world} are inconsistent; launch with torchrun")
        return cls(rank, world)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.world > 1

    def take(self, items: Sequence[Any]) -> list[Any]:
        return list(items[self.rank::self.world])


def chunks(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def content_key(ids: Sequence[str]) -> str:
    """A chunk's file name: a hash of the ids it holds (so any process count finds it again)."""
    return hashlib.sha256("\x00".join(ids).encode("utf-8")).hexdigest()[:20]


class ChunkStore:
    """A folder of per-chunk results (`<key>.json` or `<key>.npy`) shared by the ranks of one job."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, key: str, suffix: str = ".json") -> Path:
        return self.folder / f"{key}{suffix}"

    def has(self, key: str, suffix: str = ".json") -> bool:
        return self.path(key, suffix).is_file()

    def write_json(self, key: str, payload: Any) -> None:
        atomic_write_json(self.path(key), payload)

    def write_bytes(self, key: str, data: bytes, suffix: str) -> None:
        atomic_write_bytes(self.path(key, suffix), data)

    def read_json_all(self) -> dict[str, Any]:
        """Every JSON chunk's {item id: result}, merged."""
        out: dict[str, Any] = {}
        for p in sorted(self.folder.glob("*.json")):
            try:
                out.update(json.loads(p.read_text("utf-8")))
            except (OSError, ValueError):
                continue  # a chunk being replaced; it is read again on the next poll
        return out

    def wait(self, done, poll_s: float = 1.0, on_wait=None, stall_s: float | None = None) -> None:
        """Block until `done()` is true (rank 0 waiting for the other ranks' chunks).

        A rank that died (under a launcher that does not stop the job, unlike torchrun) would
        leave rank 0 waiting for ever: when no chunk has been written for `stall_s` seconds
        (default URBANCLIP_SHARD_STALL_S or 1800), it stops with a UserError; the chunks
        written so far stay, so a rerun does only the rest.
        """
        from urbanclip.errors import UserError

        stall_s = float(os.environ.get(STALL_ENV, DEFAULT_STALL_S)) if stall_s is None else stall_s
        seen, last_change = self._chunk_names(), time.monotonic()
        while not done():
            if on_wait is not None:
                on_wait()
            time.sleep(poll_s)
            now = self._chunk_names()
            if now != seen:
                seen, last_change = now, time.monotonic()
            elif time.monotonic() - last_change > stall_s:
                raise UserError(f"no rank wrote a result into {self.folder} for {stall_s:.0f} s, so another rank "
                                f"has stopped; rerun the same command (the {len(seen)} finished chunks are kept) "
                                f"or raise {STALL_ENV}")

    def _chunk_names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.folder.iterdir() if not p.name.startswith("."))

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
