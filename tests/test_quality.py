"""Quality filter decisions and the choice of one summary per description; the refine command."""

from __future__ import annotations

import numpy as np
import pytest

from urbanclip.text.quality import QualityConfig, assess, bow_cosine, choose_summary

GOOD = ["Dense residential blocks with apartment buildings line a wide road.",
        "A railway runs along the river, next to several warehouses.",
        "A small park with trees sits between the apartment buildings."]


def test_good_description_has_no_flags_and_a_summary():
    rep = assess(GOOD, is_urban=True)
    assert rep.ok and rep.flags_text == ""
    assert 0 <= rep.summary_index < len(GOOD)


def test_empty_and_too_short():
    assert assess([]).flags == ["empty"]
    assert assess(["", "  "]).flags == ["empty"]
    assert assess(["A park."]).flags == ["too_short"]
    assert "too_short" not in assess(["A park."], QualityConfig(min_words=2)).flags


def test_off_topic_only_when_the_cell_is_known_urban():
    ocean = ["A vast ocean with waves stretching to the horizon and a small island."]
    assert "off_topic" in assess(ocean, is_urban=True).flags
    assert "off_topic" not in assess(ocean, is_urban=False).flags
    assert "off_topic" not in assess(ocean, is_urban=None).flags
    # mentioning the city as well is not off-topic
    assert "off_topic" not in assess(ocean + ["Apartment buildings line the beach road."], is_urban=True).flags
    # the keyword list is configurable
    cfg = QualityConfig(off_topic_keywords=("lagoon",))
    assert "off_topic" not in assess(ocean, cfg, is_urban=True).flags
    assert "off_topic" in assess(["A quiet lagoon surrounded by reeds and shallow water."], cfg, is_urban=True).flags


def test_repetitive():
    same = ["The area has many tall buildings and roads.", "The area has many tall buildings and roads nearby."]
    assert "repetitive" in assess(same).flags
    loop = ["buildings buildings buildings buildings buildings buildings roads roads roads roads"]
    assert "repetitive" in assess(loop).flags
    assert "repetitive" not in assess(GOOD).flags


def test_summary_is_the_medoid_with_keyword_bonus():
    sents = ["A large industrial area with factories and warehouses.",
             "Factories and warehouses stand beside a railway.",
             "The sky is blue today and clear."]
    sim = bow_cosine(sents)
    assert sim.shape == (3, 3) and np.allclose(np.diag(sim), 1.0)
    assert choose_summary(sents, sim) in (0, 1)
    assert choose_summary([], np.zeros((0, 0))) == -1


def test_similarity_hook_is_used_and_checked():
    calls = []

    def prefer_last(sentences):
        calls.append(len(sentences))
        n = len(sentences)
        sim = np.eye(n)
        sim[:, -1] = sim[-1, :] = 0.5
        sim[-1, -1] = 1.0
        return sim

    rep = assess(GOOD, similarity_fn=prefer_last, cfg=QualityConfig(summary_keyword_bonus=0.0))
    assert calls == [3] and rep.summary_index == 2
    with pytest.raises(ValueError):
        assess(GOOD, similarity_fn=lambda s: np.eye(2))


def _tiny_text_workspace(root):
    import geopandas as gpd
    from shapely.geometry import box

    from urbanclip.data.indicators import STANDARD
    from urbanclip.data.workspace import Manifest, WorkspaceBuilder

    texts = ["The image depicts dense apartment buildings along a road\nThere are at least 12 cars parked nearby",
             "A vast ocean with waves and a small island, creating a serene atmosphere",
             "",
             "The image shows farmland with crops and a village\nThe image shows farmland with crops and a village"]
    rows = [dict(cell_id=f"T/{i}", city="T", row=0, col=i, geometry=box(i * .01, 0, i * .01 + .01, .01),
                 text_raw=t, population=[5000.0, 3000.0, 10.0, 50.0][i]) for i, t in enumerate(texts)]
    with WorkspaceBuilder(root) as b:
        return b.finish(gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326"),
                        Manifest(name="t", indicators={"population": STANDARD["population"]}))


def test_refine_command_writes_columns_side_by_side(tmp_path, capsys):
    from urbanclip.cli import main
    from urbanclip.data.workspace import Workspace

    _tiny_text_workspace(tmp_path / "ws")
    assert main(["refine", "--workspace", str(tmp_path / "ws")]) == 0
    out = capsys.readouterr().out
    assert "| count_vehicles | truncate | 1 | 1 |" in out
    ws = Workspace.load(tmp_path / "ws")
    c = ws.cells.set_index("cell_id")
    assert c.loc["T/0", "text_raw"].startswith("The image depicts")  # raw untouched
    assert c.loc["T/0", "text_refined"] == "Dense apartment buildings along a road."
    assert c.loc["T/0", "text_summary"] == "Dense apartment buildings along a road."
    assert c.loc["T/1", "text_quality"] == "off_topic"
    assert c.loc["T/2", "text_quality"] == "empty" and c.loc["T/2", "text_summary"] == ""
    assert c.loc["T/3", "text_refined"] == "Farmland with crops and a village."
    assert ws.text_column() == "text_refined"
    assert "refine" in ws.manifest.provenance["text_refined"]
    assert ws.manifest.extra["refine"]["counts"]["removed"]["duplicate"] == 1
    # rerunning the command reproduces the same columns
    assert main(["refine", "--workspace", str(tmp_path / "ws")]) == 0
    again = Workspace.load(tmp_path / "ws").cells.set_index("cell_id")
    assert (again["text_refined"] == c["text_refined"]).all()


def test_refine_command_bad_column(tmp_path, capsys):
    from urbanclip.cli import main

    _tiny_text_workspace(tmp_path / "ws")
    assert main(["refine", "--workspace", str(tmp_path / "ws"), "--column", "text_nope"]) == 2
    assert "no column 'text_nope'" in capsys.readouterr().err
