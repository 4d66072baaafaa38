"""Tile files as the caches see them: a digest of each image's bytes, and whether it decodes.

`Workspace.fingerprint()` (the key of every derived cache: embeddings, probe heads, map
mosaics) hashes these digests, so a tile replaced by other bytes, even of the same size,
changes the key and is embedded again. A tile that does not decode is *unreadable*: the
embeddings skip it (the rest of the workspace keeps embeddings, predictions and look-alikes),
the pages show it as missing, and the app names it in a note.

Reading every tile is a cost paid once: results are memoised by the file's (size, mtime_ns,
ctime_ns, inode), in memory per process and in W/cache/images.json across processes, so only
new or changed files are read again (a copied workspace re-reads its tiles once and, its bytes
being the same, keeps its caches). The cache file is written atomically (unique temp + rename),
so processes that scan at once never see a torn file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from PIL import Image

CACHE_FILE = "images.json"
VERSION = 2


@dataclass(frozen=True)
class ImageRecord:
    """One tile file: sha256 of its bytes (first 16 hex digits) and whether PIL decodes it."""

    digest: str
    readable: bool
    error: str = ""


_MEMO: dict[str, tuple[tuple[int, ...], ImageRecord]] = {}
_MEMO_LOCK = threading.Lock()


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    """What changes whenever a file's bytes can have changed: size, mtime, and ctime + inode (which a
    writer cannot set back, unlike mtime)."""
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def inspect_bytes(data: bytes) -> ImageRecord:
    """Digest and decode check of an image's bytes."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.width < 1 or im.height < 1:
                raise ValueError("empty image")
    except Exception as e:  # PIL raises many kinds for broken files
        return ImageRecord(digest, False, f"{type(e).__name__}: {e}"[:200])
    return ImageRecord(digest, True)


def _load_disk_memo(cache_file: Path | None) -> dict[str, list]:
    if cache_file is None or not cache_file.is_file():
        return {}
    try:
        data = json.loads(cache_file.read_text("utf-8"))
        return data["files"] if data.get("version") == VERSION and isinstance(data.get("files"), dict) else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # a damaged cache is rebuilt


def _save_disk_memo(cache_file: Path, files: dict[str, list]) -> None:
    from urbanclip.data.workspace import atomic_write_bytes

    try:
        atomic_write_bytes(cache_file, json.dumps({"version": VERSION, "files": files}).encode("utf-8"))
    except OSError:
        pass  # a read-only workspace: the memo stays in memory


def scan_images(root: Path, rels: Iterable[str], cache_file: Path | None = None) -> dict[str, ImageRecord | None]:
    """{relative path: record, or None when the file does not exist} for the tiles under `root`."""
    root = Path(root)
    disk = _load_disk_memo(cache_file)
    changed = False
    out: dict[str, ImageRecord | None] = {}
    for rel in dict.fromkeys(rels):
        path = root / rel
        try:
            st = path.stat()
        except OSError:
            out[rel] = None
            continue
        key = _stat_key(st)
        with _MEMO_LOCK:
            hit = _MEMO.get(str(path))
        if hit is not None and hit[0] == key:
            rec = hit[1]
        else:
            d = disk.get(rel)
            if isinstance(d, list) and len(d) == len(key) + 3 and tuple(d[:len(key)]) == key:
                rec = ImageRecord(*d[len(key):])
            else:
                try:
                    rec = inspect_bytes(path.read_bytes())
                except OSError as e:
                    rec = ImageRecord("unreadable-" + str(key), False, f"{type(e).__name__}: {e.strerror or e}")
            with _MEMO_LOCK:
                _MEMO[str(path)] = (key, rec)
        entry = [*key, rec.digest, rec.readable, rec.error]
        if disk.get(rel) != entry:
            disk[rel] = entry
            changed = True
        out[rel] = rec
    if changed and cache_file is not None:
        _save_disk_memo(cache_file, disk)
    return out
