"""Describe a workspace's tiles with a captioner (`urbanclip describe`).

Where the text goes:
  default         `text_generated` for every cell with an image, next to the
                  source `text_raw` (which is left untouched)
  --only-missing  `text_raw` of cells that have no description yet, so a
                  workspace without captions becomes trainable
Every generated cell gets `text_origin` = the captioner's provenance (model
path, prompt version), and the manifest records it for the column.

Progress: a terminal bar, and the standard RUN/metrics.jsonl events (one step
per saved chunk) through the callbacks, so the app can follow the run.

Sharded: under `torchrun --nproc_per_node N -m urbanclip describe ...` each
process describes every N-th pending cell and writes its chunks to
`W/cache/describe/` (`urbanclip.data.shards`); rank 0 merges them into the
workspace once every cell has a result. Rerunning resumes from the chunks.

Resumable: cells are processed in chunks and the workspace is saved after
each; cells already described are skipped on a rerun. Cells whose image is
unreadable are flagged `image_unreadable`, cells whose image file is gone get
`image` = None and `missing_image`; both are skipped. Cells the
model returned nothing for are flagged `describe_empty`; neither is retried
unless --retry-failed.
"""

from __future__ import annotations

from urbanclip.data.shards import ChunkStore, Shard, chunks, content_key
from urbanclip.data.workspace import Workspace, join_sentences, load_rgb
from urbanclip.errors import UserError
from urbanclip.events import ProgressTracker, TqdmProgress
from urbanclip.text.captioners import Captioner

FAILED_FLAGS = ("image_unreadable", "describe_empty")


def _flags(value: object) -> list[str]:
    return [f for f in str(value or "").split(";") if f]


def pending_cells(ws, target: str, only_missing: bool, retry_failed: bool = False) -> list[int]:
    """Row positions still to describe: an image, no text in `target`, not failed before."""
    cells = ws.cells
    texts = cells[target].fillna("").astype(str) if target in cells.columns else None
    out = []
    for i, (img, flags) in enumerate(zip(cells["image"], cells["flags"])):
        if not isinstance(img, str) or not img:
            continue
        if texts is not None and texts.iat[i].strip():
            continue
        if not retry_failed and any(f in FAILED_FLAGS for f in _flags(flags)):
            continue
        out.append(i)
    return out


def _drop_missing_images(ws) -> int:
    """Cells whose image file is gone since import get image=None and the flag
    missing_image (the workspace cannot be saved pointing at a missing file)."""
    cells = ws.cells
    col_i, col_f = cells.columns.get_loc("image"), cells.columns.get_loc("flags")
    n = 0
    for i, rel in enumerate(cells["image"]):
        if isinstance(rel, str) and rel and not (ws.root / rel).is_file():
            cells.iat[i, col_i] = None
            flags = _flags(cells.iat[i, col_f])
            cells.iat[i, col_f] = ";".join(flags + ([] if "missing_image" in flags else ["missing_image"]))
            n += 1
    return n


def _prepare(ws, target: str) -> int:
    """Text columns present and clean; cells whose image file is gone marked. Returns how many were gone."""
    cells = ws.cells
    if target not in cells.columns:
        cells[target] = ""
    if "text_origin" not in cells.columns:
        cells["text_origin"] = ""
    cells[target] = cells[target].fillna("").astype(str)
    cells["text_origin"] = cells["text_origin"].fillna("").astype(str)
    return _drop_missing_images(ws)


def describe_workspace(ws: Workspace, captioner: Captioner, only_missing: bool = False, chunk_size: int = 64, limit: int | None = None,
                       retry_failed: bool = False, show_progress: bool = True, callbacks=(), shard=None) -> dict:
    """Describe pending cells of `ws` chunk by chunk, saving after each chunk. Returns counts.

    Progress goes to `callbacks` (urbanclip.events: one step per saved chunk)
    and, with `show_progress`, to a terminal bar. `shard` (a `urbanclip.data.shards.Shard`,
    default from RANK / WORLD_SIZE): with several processes, see `describe_sharded`.
    """
    target = "text_raw" if only_missing else "text_generated"
    if chunk_size < 1:
        raise UserError("--chunk-size must be at least 1")
    shard = shard or Shard.from_env()
    n_missing = _prepare(ws, target)
    cells = ws.cells
    todo = pending_cells(ws, target, only_missing, retry_failed)
    n_no_image = int(sum(1 for v in cells["image"] if not (isinstance(v, str) and v)))
    if limit is not None:
        todo = todo[:max(limit, 0)]
    stats = {"target": target, "pending": len(todo), "described": 0, "empty": 0, "unreadable": 0, "missing": n_missing,
             "no_image": n_no_image, "provenance": captioner.provenance}
    todo_ids = [str(c) for c in cells["cell_id"].to_numpy()[todo]]
    callbacks = list(callbacks) if shard.is_main else []
    tracker = ProgressTracker([*callbacks, *([TqdmProgress(keys=())] if show_progress else [])])
    if shard.sharded:
        return describe_sharded(ws, captioner, shard, todo_ids, target, only_missing, chunk_size, stats, tracker)
    n_chunks = -(-len(todo_ids) // chunk_size)
    tracker.start(f"describe -> {target}", n_chunks, cells=len(todo_ids), provenance=captioner.provenance)
    with tracker.ends_on_error(stats):
        for k, start in enumerate(range(0, len(todo_ids), chunk_size)):
            chunk = todo_ids[start:start + chunk_size]
            _apply(ws, describe_cells(ws, captioner, chunk), target, only_missing, captioner.provenance, stats)
            ws.save()
            tracker.step(k + 1, 0, len(chunk), described=float(stats["described"]))
    if not todo_ids and n_missing:
        ws.save()
    tracker.end("completed", stats)
    return stats


def describe_sharded(ws, captioner, shard, todo_ids: list[str], target: str, only_missing: bool, chunk_size: int,
                     stats: dict, tracker) -> dict:
    """This rank's share of `todo_ids` into the chunk store; rank 0 then merges every rank's chunks and saves."""
    key = content_key([target, captioner.provenance, *todo_ids])
    store = ChunkStore(ws.cache_dir / "describe" / f"{target}-{key}")
    done = set(store.read_json_all())
    mine = [c for c in shard.take(todo_ids) if c not in done]
    parts = list(chunks(mine, chunk_size))
    tracker.start(f"describe -> {target} (rank {shard.rank} of {shard.world})", len(parts), cells=len(mine),
                  provenance=captioner.provenance)
    with tracker.ends_on_error(stats):
        for k, chunk in enumerate(parts):
            store.write_json(content_key(chunk), describe_cells(ws, captioner, chunk))
            tracker.step(k + 1, 0, len(chunk))
        if shard.is_main:  # wait for the other ranks' chunks, then write the workspace once
            wanted = set(todo_ids)
            store.wait(lambda: wanted <= set(store.read_json_all()))
            results = store.read_json_all()
            _apply(ws, {c: results[c] for c in todo_ids}, target, only_missing, captioner.provenance, stats)
            ws.save()
            store.remove()
    stats["rank"], stats["world"] = shard.rank, shard.world
    tracker.end("completed", stats)
    return stats


def describe_cells(ws, captioner, cell_ids: list[str]) -> dict[str, dict]:
    """Describe the tiles of `cell_ids`: {cell_id: {"text": ...}} or {cell_id: {"failed": flag}} per cell."""
    images, ok, out = [], [], {}
    for cid in cell_ids:
        try:
            images.append(load_rgb(ws.root / ws.cell(cid)["image"]))
            ok.append(cid)
        except UserError:
            out[cid] = {"failed": "image_unreadable"}
    sentences = captioner.describe(images) if images else []
    if len(sentences) != len(images):
        raise RuntimeError(f"captioner returned {len(sentences)} descriptions for {len(images)} images")
    for cid, sents in zip(ok, sentences):
        text = join_sentences(sents)
        out[cid] = {"text": text} if text else {"failed": "describe_empty"}
    return out


def _apply(ws, results: dict[str, dict], target: str, only_missing: bool, provenance: str, stats: dict) -> None:
    """Write described texts (and failure flags) into the workspace's cells, in memory."""
    cells = ws.cells
    col_t, col_o, col_f = (cells.columns.get_loc(c) for c in (target, "text_origin", "flags"))
    for cid, r in results.items():
        i = ws.index_of(cid)
        flags = [f for f in _flags(cells.iat[i, col_f]) if f not in FAILED_FLAGS]
        if "text" in r:
            cells.iat[i, col_t] = r["text"]
            cells.iat[i, col_o] = provenance
            if only_missing:
                flags = [f for f in flags if f != "missing_text"]
            stats["described"] += 1
        else:
            flags.append(r["failed"])
            stats["empty" if r["failed"] == "describe_empty" else "unreadable"] += 1
        cells.iat[i, col_f] = ";".join(flags)
    ws.manifest.provenance[target] = _merge_provenance(ws.manifest.provenance.get(target, ""), provenance, only_missing)
    ws.manifest.provenance["text_origin"] = "urbanclip describe: captioner of each generated description"


def _merge_provenance(old: str, new: str, only_missing: bool) -> str:
    """Column provenance: text_raw keeps its source and adds the generator for missing cells."""
    tag = f"generated for cells without text by {new}" if only_missing else f"generated by {new}"
    if tag in old:
        return old
    return f"{old}; {tag}" if old else tag
