"""Text-only probes: TF-IDF + ridge finds signal that is in the text and none that is not;
the encoder hook, shared splits, the command, and clear errors."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import box

from urbanclip.errors import UserError
from urbanclip.evaluation.text_probe import TextProbeConfig, comparison_table, probe_cells, run_text_probe

WORDS = {0: "farmland with crops and a small village", 1: "a park with trees beside low houses",
         2: "residential blocks with apartment buildings", 3: "dense high-rise towers and busy roads"}


def _workspace(root, n=160, seed=0):
    """Cells whose population follows a density class named in the text (+ noise);
    `text_shuffled` holds the same texts permuted, i.e. no signal."""
    from urbanclip.data.indicators import STANDARD
    from urbanclip.data.workspace import Manifest, WorkspaceBuilder

    rng = np.random.default_rng(seed)
    cls = rng.integers(0, 4, n)
    pop = np.expm1(4 + 1.5 * cls + rng.normal(0, 0.5, n))
    texts = [f"The image depicts {WORDS[c]}\nThe overall scene gives off a sense of calm" for c in cls]
    rows = [dict(cell_id=f"C/{i:03d}", city="C" if i % 2 else "D", row=i // 20, col=i % 20,
                 geometry=box(i * .01, 0, i * .01 + .01, .01), text_raw=t, population=p)
            for i, (t, p) in enumerate(zip(texts, pop))]
    with WorkspaceBuilder(root) as b:
        ws = b.finish(gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326"),
                      Manifest(name="t", indicators={"population": STANDARD["population"]}))
    ws.set_column("text_shuffled", list(rng.permutation(ws.cells["text_raw"].to_numpy())), "test: permuted")
    ws.save()
    return ws


CFG = TextProbeConfig(seeds=(None, 1, 2), min_df=1)


def test_tfidf_probe_finds_signal_only_where_it_is(tmp_path):
    ws = _workspace(tmp_path / "ws")
    scores = run_text_probe(ws, ["text_raw", "text_shuffled"], ["population"], [None], cfg=CFG)
    by = {s.column: s for s in scores}
    assert len(by["text_raw"].r2) == 3 and by["text_raw"].n_cells == 160
    assert by["text_raw"].mean > 0.6
    assert by["text_shuffled"].mean < 0.15
    table = comparison_table(scores, "text_raw", "text_shuffled")
    assert "| all | population | tfidf |" in table


def test_per_city_defaults_and_shared_cells(tmp_path):
    ws = _workspace(tmp_path / "ws")
    scores = run_text_probe(ws, ["text_raw"], cfg=CFG)
    assert [(s.city, s.indicator) for s in scores] == [("C", "population"), ("D", "population")]
    assert probe_cells(ws, "C", "population").size == 80


def test_encoder_hook(tmp_path):
    ws = _workspace(tmp_path / "ws")
    seen = []

    def encode_texts(texts):
        seen.append(len(texts))
        return np.array([[("dense" in t) * 3 + ("residential" in t) * 2 + ("park" in t) * 1.0, len(t) / 100]
                         for t in texts])

    scores = run_text_probe(ws, ["text_raw"], ["population"], [None], features=encode_texts, cfg=CFG,
                            features_name="toy")
    assert scores[0].features == "toy" and scores[0].mean > 0.6
    assert seen == [4]  # each distinct text encoded once, reused across splits

    with pytest.raises(UserError, match="one row per text"):
        run_text_probe(ws, ["text_raw"], ["population"], [None], features=lambda t: np.zeros((1, 2)), cfg=CFG)


def test_errors(tmp_path):
    ws = _workspace(tmp_path / "ws", n=30)
    with pytest.raises(UserError, match="refine"):
        run_text_probe(ws, ["text_refined"], ["population"], [None], cfg=CFG)
    with pytest.raises(UserError, match="at least 20"):
        run_text_probe(ws, ["text_raw"], ["population"], ["C"], cfg=CFG)
    with pytest.raises(UserError, match="indicator 'gdp'"):
        run_text_probe(ws, ["text_raw"], ["gdp"], [None], cfg=CFG)


def test_command_after_refine(tmp_path, capsys):
    from urbanclip.cli import main

    _workspace(tmp_path / "ws")
    w = str(tmp_path / "ws")
    assert main(["text-probe", "--workspace", w]) == 2
    assert "refine" in capsys.readouterr().err
    assert main(["refine", "--workspace", w]) == 0
    capsys.readouterr()
    assert main(["text-probe", "--workspace", w, "--cities", "all", "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| all | population | tfidf"))
    r2_raw, r2_ref = (float(cell.split("±")[0]) for cell in row.split("|")[4:6])
    # the mood sentence is noise here: refinement removes it and keeps the signal
    assert r2_raw > 0.6 and r2_ref > 0.6
    assert main(["text-probe", "--workspace", w, "--cities", "Nowhere"]) == 2
