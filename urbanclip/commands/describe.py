"""`describe`: write descriptions for tiles with an image-to-text model.

Where the text goes:
  default         `text_generated` for every cell with an image, next to the
                  source `text_raw` (which is left untouched)
  --only-missing  `text_raw` of cells that have no description yet, so a
                  workspace without captions becomes trainable
Every generated cell gets `text_origin` = the captioner's provenance (model
path, prompt version), and the manifest records it for the column.

Progress: a terminal bar, and with --out RUN the standard RUN/metrics.jsonl
events (one step per saved chunk) so the app can follow the run.

Resumable: cells are processed in chunks and the workspace is saved after
each; cells already described are skipped on a rerun. Cells whose image is
unreadable are flagged `image_unreadable`, cells whose image file is gone get
`image` = None and `missing_image`; both are skipped. Cells the
model returned nothing for are flagged `describe_empty`; neither is retried
unless --retry-failed.
"""

from __future__ import annotations

import argparse

NAME = "describe"
HELP = "describe tiles with an image-to-text model (Hugging Face folder or an UrbanCLIP run)"

FAILED_FLAGS = ("image_unreadable", "describe_empty")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", "-w", required=True, help="workspace folder")
    p.add_argument("--backend", choices=("hf", "urbanclip"), default="hf",
                   help="hf: a local transformers image-to-text model; urbanclip: a pretrained UrbanCLIP run")
    p.add_argument("--model", required=True, help="local model folder (hf) or run folder / checkpoint (urbanclip)")
    p.add_argument("--only-missing", action="store_true",
                   help="describe only cells without text_raw and write into text_raw")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--chunk-size", type=int, default=64, help="cells per saved chunk (resume granularity)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="length limit of each description")
    p.add_argument("--limit", type=int, default=None, help="describe at most this many cells in this run")
    p.add_argument("--out", default=None, metavar="RUN",
                   help="also log progress events to RUN/metrics.jsonl (for the app's runs page)")
    p.add_argument("--retry-failed", action="store_true", help="retry cells flagged image_unreadable/describe_empty")


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


def describe_workspace(ws, captioner, only_missing: bool = False, chunk_size: int = 64, limit: int | None = None,
                       retry_failed: bool = False, show_progress: bool = True, callbacks=()) -> dict:
    """Describe pending cells of `ws` chunk by chunk, saving after each chunk. Returns counts.

    Progress goes to `callbacks` (urbanclip.events: one step per saved chunk)
    and, with `show_progress`, to a terminal bar.
    """
    from urbanclip.errors import UserError
    from urbanclip.events import ProgressTracker, TqdmProgress

    target = "text_raw" if only_missing else "text_generated"
    if chunk_size < 1:
        raise UserError("--chunk-size must be at least 1")
    cells = ws.cells
    if target not in cells.columns:
        cells[target] = ""
    if "text_origin" not in cells.columns:
        cells["text_origin"] = ""
    cells[target] = cells[target].fillna("").astype(str)
    cells["text_origin"] = cells["text_origin"].fillna("").astype(str)
    n_missing = _drop_missing_images(ws)
    todo = pending_cells(ws, target, only_missing, retry_failed)
    n_no_image = int(sum(1 for v in cells["image"] if not (isinstance(v, str) and v)))
    if limit is not None:
        todo = todo[:max(limit, 0)]
    stats = {"target": target, "pending": len(todo), "described": 0, "empty": 0, "unreadable": 0, "missing": n_missing,
             "no_image": n_no_image, "provenance": captioner.provenance}
    todo_ids = [str(c) for c in cells["cell_id"].to_numpy()[todo]]
    tracker = ProgressTracker([*callbacks, *([TqdmProgress(keys=())] if show_progress else [])])
    n_chunks = -(-len(todo_ids) // chunk_size)
    tracker.start(f"describe -> {target}", n_chunks, cells=len(todo_ids), provenance=captioner.provenance)
    try:
        _describe_chunks(ws, captioner, todo_ids, target, only_missing, chunk_size, stats, tracker)
    except KeyboardInterrupt:
        tracker.end("interrupted", stats)
        raise
    except BaseException:
        tracker.end("failed", stats)
        raise
    if not todo_ids and n_missing:
        ws.save()
    tracker.end("completed", stats)
    return stats


def _describe_chunks(ws, captioner, todo_ids: list[str], target: str, only_missing: bool, chunk_size: int,
                     stats: dict, tracker) -> None:
    from urbanclip.errors import UserError
    from urbanclip.data.workspace import join_sentences, load_rgb

    for k, start in enumerate(range(0, len(todo_ids), chunk_size)):
        cells = ws.cells  # save() replaces the frame; address cells by id
        col_t, col_o, col_f = (cells.columns.get_loc(c) for c in (target, "text_origin", "flags"))
        chunk = [ws.index_of(cid) for cid in todo_ids[start:start + chunk_size]]
        images, rows = [], []
        for i in chunk:
            flags = [f for f in _flags(cells.iat[i, col_f]) if f not in FAILED_FLAGS]
            path = ws.root / cells["image"].iat[i]
            try:
                images.append(load_rgb(path))
                rows.append(i)
                cells.iat[i, col_f] = ";".join(flags)
            except UserError:
                cells.iat[i, col_f] = ";".join(flags + ["image_unreadable"])
                stats["unreadable"] += 1
        sentences = captioner.describe(images) if images else []
        if len(sentences) != len(images):
            raise RuntimeError(f"captioner returned {len(sentences)} descriptions for {len(images)} images")
        for i, sents in zip(rows, sentences):
            text = join_sentences(sents)
            flags = _flags(cells.iat[i, col_f])
            if text:
                cells.iat[i, col_t] = text
                cells.iat[i, col_o] = captioner.provenance
                if only_missing:
                    flags = [f for f in flags if f != "missing_text"]
                stats["described"] += 1
            else:
                flags.append("describe_empty")
                stats["empty"] += 1
            cells.iat[i, col_f] = ";".join(flags)
        ws.manifest.provenance[target] = _merge_provenance(ws.manifest.provenance.get(target, ""), captioner.provenance,
                                                          only_missing)
        ws.manifest.provenance["text_origin"] = "urbanclip describe: captioner of each generated description"
        ws.save()
        tracker.step(k + 1, 0, len(chunk), described=float(stats["described"]))


def _merge_provenance(old: str, new: str, only_missing: bool) -> str:
    """Column provenance: text_raw keeps its source and adds the generator for missing cells."""
    tag = f"generated for cells without text by {new}" if only_missing else f"generated by {new}"
    if tag in old:
        return old
    return f"{old}; {tag}" if old else tag


def run(args: argparse.Namespace) -> int:
    from urbanclip.text.captioners import make_captioner
    from urbanclip.data.workspace import Workspace

    ws = Workspace.load(args.workspace)
    opts = {"batch_size": args.batch_size}
    if args.max_new_tokens is not None:
        opts["max_new_tokens"] = args.max_new_tokens
    target = "text_raw" if args.only_missing else "text_generated"
    if not pending_cells(ws, target, args.only_missing, args.retry_failed):
        print(f"nothing to describe: every cell with an image already has {target}")
        return 0
    captioner = make_captioner(args.backend, args.model, **opts)
    from urbanclip.events import JsonlLogger

    callbacks = [JsonlLogger(args.out)] if args.out else []
    stats = describe_workspace(ws, captioner, args.only_missing, args.chunk_size, args.limit, args.retry_failed,
                               callbacks=callbacks)
    print(f"described {stats['described']} of {stats['pending']} pending cells into {stats['target']} "
          f"({stats['empty']} empty, {stats['unreadable']} unreadable images, {stats['missing']} image files missing, "
          f"{stats['no_image']} cells without image)")
    print(f"provenance: {stats['provenance']}")
    return 0
