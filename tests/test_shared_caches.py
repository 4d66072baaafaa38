"""Shared caches under concurrent builders: five sessions on one cold cache, and every cache writer
(embeddings, probe heads, tile digests, tile downloads) writing by unique temp file + rename."""

from __future__ import annotations

import threading
import time
import traceback
from pathlib import Path

import numpy as np
import streamlit as st
from app_helpers import tiny_checkpoint, tiny_workspace
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]


def _in_threads(fn, n: int = 5) -> list[str]:
    """Run fn(i) in n threads released at once; the tracebacks of those that raised."""
    errors: list[str] = []
    gate = threading.Barrier(n)

    def run(i: int) -> None:
        gate.wait()
        try:
            fn(i)
        except BaseException:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return errors


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith((".tmp", ".part")) or ".tmp." in p.name]


def test_five_sessions_on_one_cold_cache_see_no_error(tmp_path):
    from urbanclip.services.context import load_context
    from urbanclip.services.export import export_cells
    from urbanclip.services.profile import profile_cell

    ws = tiny_workspace(tmp_path / "ws")
    ckpt = tiny_checkpoint(ws, tmp_path / "model.pt")
    cells = list(ws.cells["cell_id"])
    contexts = {}

    def session(i: int) -> None:
        # embeddings, probe heads, tile digests: all cold (min_probe_train: the tiny workspace is small)
        ctx = load_context(tmp_path / "ws", model_path=ckpt, min_probe_train=10)
        prof = profile_cell(ctx, cells[7 * i], generate=True)
        assert prof.similar and prof.indicators[0].predicted is not None
        assert export_cells(ctx, "csv", city=ws.cities[i % len(ws.cities)])
        contexts[i] = ctx

    errors = _in_threads(session)
    assert errors == [], errors[0]
    first = contexts[0]
    assert [n for n in first.notes if n != first.model_note] == [] and len(first.cell_ids) == len(cells)
    for ctx in contexts.values():
        assert ctx.cell_ids == first.cell_ids and np.array_equal(ctx.vectors, first.vectors)
        assert ctx.predictions.keys() == first.predictions.keys()
    assert _leftovers(tmp_path / "ws") == []


def test_five_app_sessions_open_the_compare_page_on_a_cold_cache(tmp_path, monkeypatch):
    ws = tiny_workspace(tmp_path / "ws")
    ckpt = tiny_checkpoint(ws, tmp_path / "model.pt")
    monkeypatch.setenv("URBANCLIP_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("URBANCLIP_MODEL", str(ckpt))
    st.cache_resource.clear()
    cells = list(ws.cells["cell_id"])
    apps = [AppTest.from_file(str(REPO / "pages" / "compare.py"), default_timeout=240) for _ in range(5)]
    for i, at in enumerate(apps):
        at.session_state["selected_cell"] = cells[11 * i]

    errors = _in_threads(lambda i: apps[i].run())
    assert errors == [], errors[0]
    for at in apps:
        assert not at.exception, at.exception
        assert not at.error and "similarity" in "\n".join(e.value for e in at.markdown)
    assert _leftovers(tmp_path / "ws") == []
    st.cache_resource.clear()


def test_concurrent_embedding_and_probe_head_writers_leave_whole_files(tmp_path):
    from urbanclip.data.embeddings import cache_paths, cached_embeddings
    from urbanclip.data.workspace import Workspace
    from urbanclip.evaluation.encoders import make_encoder
    from urbanclip.evaluation.probe import ProbeConfig, ProbeHeads, fit_probes

    tiny_workspace(tmp_path / "ws")
    tables = {}

    def embed(i: int) -> None:
        w = Workspace.load(tmp_path / "ws")  # each writer its own instance, like separate processes
        tables[i] = cached_embeddings(w, make_encoder("pca", w), refresh=True)

    assert _in_threads(embed) == []
    w = Workspace.load(tmp_path / "ws")
    vec_path, _ = cache_paths(w, make_encoder("pca", w))
    assert np.array_equal(np.load(vec_path), tables[0].vectors)
    heads = fit_probes(w, tables[0], ["population"], ProbeConfig(max_epochs=5, ensemble=2)).heads
    assert _in_threads(lambda i: heads.save(tmp_path / "heads")) == []
    assert ProbeHeads.load(tmp_path / "heads").indicators == ["population"]
    assert _leftovers(tmp_path) == []


def test_xyz_tile_downloads_share_the_cache_safely(tmp_path, monkeypatch):
    import urbanclip.data.importers.xyz as xyz

    def get(self, url):
        time.sleep(0.01)  # the downloads of one tile by the five importers finish together
        return b"tile-bytes " + url.encode() * 2000, 200, ""

    monkeypatch.setattr(xyz.TileFetcher, "_get", get)
    bbox = (116.30, 39.90, 116.31, 39.91)
    results = {}

    def fetch(i: int) -> None:
        results[i] = xyz.fetch_tiles("https://tiles.example/{z}/{y}/{x}.jpg", bbox, 15, cache_dir=tmp_path,
                                     rate_limit_per_s=1000)

    assert _in_threads(fetch) == []
    for path in results[0].tiles.values():
        assert path.read_bytes().startswith(b"tile-bytes https://tiles.example/15/")
    assert _leftovers(tmp_path) == []


def test_the_tile_digest_memo_is_shared_by_concurrent_scans(tmp_path):
    from urbanclip.data import imagecheck
    from urbanclip.data.workspace import Workspace

    tiny_workspace(tmp_path / "ws")
    imagecheck._MEMO.clear()
    fps = {}

    def fp(i: int) -> None:
        fps[i] = Workspace.load(tmp_path / "ws").fingerprint()

    assert _in_threads(fp) == []
    assert len(set(fps.values())) == 1
    assert (tmp_path / "ws" / "cache" / imagecheck.CACHE_FILE).is_file() and _leftovers(tmp_path) == []
