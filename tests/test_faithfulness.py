"""Caption faithfulness: diversity metrics on crafted caption sets, grounding on a tiny real model,
the `faithfulness` command, the side panel's grounding field and `refine --grounding-threshold`."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from app_helpers import tiny_checkpoint

from urbanclip.cli import main
from urbanclip.data.workspace import Workspace, split_sentences
from urbanclip.errors import UserError
from urbanclip.text.faithfulness import (
    FaithfulnessReport,
    GroundingConfig,
    assess,
    distinct_ratio,
    ground_sentences,
    grounding_scores,
    image_embeddings,
    mean_pairwise_similarity,
    write_report,
)
from urbanclip.text.refine import drop_ungrounded

# ---------------------------------------------------------------------------------
# diversity


@pytest.mark.parametrize("n", [1, 2, 7])
def test_all_identical_captions_have_distinct_ratio_one_over_n(n):
    caps = ["The area is moderately built up."] * n
    assert distinct_ratio(caps) == pytest.approx(1 / n)


def test_all_distinct_captions_have_distinct_ratio_one():
    assert distinct_ratio(["a river.", "a park.", "dense housing.", "an airport."]) == 1.0


def test_case_spacing_and_final_period_do_not_make_a_caption_new():
    assert distinct_ratio(["A park", "a  park.", "A PARK!", "a river"]) == pytest.approx(2 / 4)


def test_distinct_ratio_of_nothing_is_a_user_error():
    with pytest.raises(UserError, match="no captions"):
        distinct_ratio([])


def test_pairwise_similarity_extremes_and_brute_force():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity

    assert mean_pairwise_similarity(["dense housing blocks"] * 5) == pytest.approx(1.0)
    assert mean_pairwise_similarity(["river water", "factory sheds", "golf course"]) == pytest.approx(0.0)
    assert math.isnan(mean_pairwise_similarity(["only one"]))
    caps = ["a river with a bridge", "a wide river", "dense housing by a river", "industrial sheds", "a park"]
    x = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit_transform(caps)
    s = cosine_similarity(x)
    brute = s[~np.eye(len(caps), dtype=bool)].mean()
    assert mean_pairwise_similarity(caps) == pytest.approx(brute)


def test_grounding_scores_rank_own_similarity_among_reference():
    ref = np.array([[0.1, 0.5, 0.3], [0.2, 0.5, 0.3], [0.3, 0.5, 0.3], [0.4, 0.5, 0.3]])
    pct, z = grounding_scores(np.array([0.9, 0.5, -1.0]), ref)
    assert pct.tolist() == [1.0, 0.5, 0.0]  # above all, tied with all, below all
    assert z[0] > 0 and z[2] < 0 and np.isfinite(z).all()


def test_drop_ungrounded_keeps_nan_and_never_empties():
    kept, dropped = drop_ungrounded(["a", "b", "c"], [0.9, 0.1, float("nan")], 0.5)
    assert kept == ["a", "c"] and dropped == ["b"]
    kept, dropped = drop_ungrounded(["a", "b"], [0.2, 0.3], 0.5)
    assert kept == ["b"] and dropped == ["a"]  # the best-grounded sentence stays
    assert drop_ungrounded([], [], 0.5) == ([], [])
    with pytest.raises(ValueError):
        drop_ungrounded(["a"], [], 0.5)


# ---------------------------------------------------------------------------------
# grounding with a tiny real model


@pytest.fixture(scope="module")
def ckpt(tiny_workspace_path, tmp_path_factory) -> Path:
    return tiny_checkpoint(Workspace.load(tiny_workspace_path), tmp_path_factory.mktemp("ckpt") / "model.pt")


@pytest.fixture(scope="module")
def model(ckpt):
    from urbanclip.model.checkpoint import load_model

    return load_model(ckpt)


def test_grounding_on_a_tiny_model_has_one_finite_score_per_sentence(tiny_workspace_copy, model):
    ws = Workspace.load(tiny_workspace_copy)
    city = ws.cities[0]
    ids = list(ws.city_cells(city)["cell_id"][:10])
    sents = {c: split_sentences(ws.cell(c)["text_raw"]) for c in ids}
    cfg = GroundingConfig(n_reference=16, seed=3)
    g = ground_sentences(model, ws, sents, cfg)
    assert len(g) == sum(len(s) for s in sents.values())
    assert list(g.columns) == ["cell_id", "city", "sentence_index", "sentence", "similarity", "percentile", "z"]
    assert np.isfinite(g[["similarity", "percentile", "z"]].to_numpy()).all()
    assert g["percentile"].between(0, 1).all() and (g["city"] == city).all()
    again = ground_sentences(model, ws, sents, cfg, images=image_embeddings(model, ws))
    assert np.allclose(again["percentile"], g["percentile"])  # seeded: same reference tiles
    with pytest.raises(UserError, match="n_reference"):
        ground_sentences(model, ws, sents, GroundingConfig(n_reference=1))


def test_assess_generated_and_column_and_report(tiny_workspace_copy, model, tmp_path):
    ws = Workspace.load(tiny_workspace_copy)
    city = ws.cities[1]
    cfg = GroundingConfig(n_reference=16)
    live = assess(model, ws, city, "generated", cfg, max_cells=5)  # an untrained model: often junk
    assert live.cells + live.empty_captions == 5
    caps = ["A park. Trees.", "a park.  trees", "Dense housing.", "A river. A bridge.", "\ufffd\ufffd"]
    gen = assess(model, ws, city, "generated", cfg, max_cells=5, captions=caps)
    raw = assess(model, ws, city, "text_raw", cfg)
    assert (gen.cells, gen.empty_captions, gen.distinct_captions) == (4, 1, 3)
    assert gen.distinct_ratio == pytest.approx(3 / 4) and gen.sentences == 7
    assert raw.cells == len(ws.city_cells(city)) and raw.empty_captions == 0
    for r in (gen, raw):
        assert 0 <= r.grounding_mean <= 1 and 0 <= r.mean_pairwise_similarity <= 1
        assert r.sentences >= r.cells and r.frequent_sentences
    assert raw.distinct_ratio == 1.0  # the demo's descriptions differ tile to tile
    report = FaithfulnessReport("tiny", str(ws.root), True, cfg, [gen, raw])
    md = report.markdown()
    assert f"| {city} | generated | 4 (1) |" in md and "text_raw" in md
    paths = write_report(report, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert [r["source"] for r in data["results"]] == ["generated", "text_raw"]
    with pytest.raises(UserError, match="neither 'generated' nor a column"):
        assess(model, ws, city, "text_nope", cfg)
    with pytest.raises(UserError, match="not in workspace"):
        assess(model, ws, "Atlantis", "text_raw", cfg)


def test_faithfulness_command(tiny_workspace_copy, ckpt, tmp_path, capsys):
    ws = Workspace.load(tiny_workspace_copy)
    out = tmp_path / "faith"
    rc = main(["faithfulness", "-w", str(tiny_workspace_copy), "-c", str(ckpt), "--city", ws.cities[0],
               "--source", "generated,text_raw", "--max-cells", "4", "--max-len", "23", "--n-reference", "8",
               "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "distinct ratio" in text and "faithfulness.json" in text
    data = json.loads((out / "faithfulness.json").read_text())
    assert data["grounding"]["n_reference"] == 8 and len(data["results"]) == 2
    assert main(["faithfulness", "-w", str(tiny_workspace_copy), "-c", str(ckpt), "--city", "Nowhere"]) == 2
    assert "Nowhere" in capsys.readouterr().err


def test_profile_carries_grounding_with_a_model(tiny_workspace_copy, model):
    from urbanclip.services.context import AppContext
    from urbanclip.services.profile import profile_cell

    ws = Workspace.load(tiny_workspace_copy)
    table = image_embeddings(model, ws)
    ctx = AppContext(workspace=ws, model=model, encoder_key="urbanclip-tiny", cell_ids=table.cell_ids,
                     vectors=table.vectors)
    cid = ws.city_cells(ws.cities[0])["cell_id"].iloc[3]
    ctx._generated[cid] = "a park with trees. dense housing."  # the untrained model writes junk; memo a caption
    prof = profile_cell(ctx, cid, generate=True)
    assert prof.grounding is not None and prof.grounding.sentences == ["a park with trees.", "dense housing."]
    assert len(prof.grounding.percentiles) == 2 and prof.grounding.n_reference == len(ws.city_cells(ws.cities[0])) - 1
    assert prof.source_grounding is not None
    assert len(prof.source_grounding.sentences) == len(split_sentences(prof.source_description))
    assert isinstance(prof.grounding.low, bool) and "random tiles" in prof.grounding.message()
    # the captioner's support: one probability per sentence (no reference: this checkpoint was not trained)
    assert len(prof.grounding.support) == 2 and all(0 < p < 1 for p in prof.grounding.support)
    # the workspace's own text is judged by the contrastive check only: the captioner's support is ranked
    # against the model's own wording (on the demo it badged 57% of the true source descriptions weak)
    assert prof.source_grounding.support is None
    # no model: no grounding, and no error
    bare = profile_cell(AppContext(workspace=ws), cid)
    assert bare.grounding is None and bare.source_grounding is None


def test_refine_grounding_filter_needs_a_checkpoint_and_thins_descriptions(tiny_workspace_copy, ckpt, capsys):
    w = str(tiny_workspace_copy)
    assert main(["refine", "-w", w, "--grounding-threshold", "0.5"]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    assert main(["refine", "-w", w, "--checkpoint", str(ckpt)]) == 2
    assert main(["refine", "-w", w, "--grounding-threshold", "1.5", "--checkpoint", str(ckpt)]) == 2
    assert "within [0, 1]" in capsys.readouterr().err
    # threshold 1: only sentences that beat every reference tile stay, and each description keeps at least one
    assert main(["refine", "-w", w, "--grounding-threshold", "1.0", "--checkpoint", str(ckpt),
                 "--n-reference", "16"]) == 0
    assert "grounding filter (threshold 1)" in capsys.readouterr().out
    ws = Workspace.load(w)
    for rules, refined, dropped in zip(ws.cells["text_refined_rules"], ws.cells["text_refined"],
                                       ws.cells["text_ungrounded"]):
        r, k, d = split_sentences(rules), split_sentences(refined), split_sentences(dropped)
        assert (len(k) >= 1 if r else not k) and sorted(k + d) == sorted(r)
    g = ws.manifest.extra["refine"]["grounding"]
    assert g["threshold"] == 1.0 and g["sentences_dropped"] > 0
    assert ws.manifest.extra["refine"]["counts"]["removed"]["ungrounded"] == g["sentences_dropped"]
    # threshold 0: nothing is dropped
    assert main(["refine", "-w", w, "--grounding-threshold", "0", "--checkpoint", str(ckpt), "--n-reference", "16"]) == 0
    ws = Workspace.load(w)
    assert (ws.cells["text_refined"] == ws.cells["text_refined_rules"]).all()
    assert (ws.cells["text_ungrounded"] == "").all()


def test_map_page_flags_a_weakly_grounded_description(tiny_workspace_path, monkeypatch):

    import streamlit as st
    from app_helpers import pixel_context
    from streamlit.testing.v1 import AppTest

    import urbanclip.ui as shared
    from urbanclip.text.faithfulness import DescriptionGrounding

    repo = Path(__file__).resolve().parents[1]

    monkeypatch.setenv("URBANCLIP_WORKSPACE", str(tiny_workspace_path))
    ws = Workspace.load(tiny_workspace_path)
    ctx = pixel_context(ws)
    monkeypatch.setattr(shared, "load_context", lambda root, progress=None: ctx)
    weak = DescriptionGrounding(["A river.", "A park."], [0.1, 0.3], [-1.2, -0.4], 0.5, 63)
    monkeypatch.setattr("urbanclip.services.profile.description_grounding",
                        lambda c, cid, sents, cfg=None, captioner=True: weak)
    st.cache_resource.clear()
    at = AppTest.from_file(str(repo / "app.py"), default_timeout=60)
    at.session_state["selected_cell"] = ws.cells["cell_id"].iloc[5]
    at.run()
    assert not at.exception
    text = "\n".join(str(e.value) for e in list(at.markdown) + list(at.caption))
    text = re.sub(r"\\(.)", r"\1", text)  # descriptions are shown Markdown-escaped (ui.plain)
    assert "Weakly grounded" in text and "20% of 63 random tiles" in text and "“A river.”" in text
    st.cache_resource.clear()


class _Captioner:
    """A stand-in with known answers: log P(sentence | tile) and text-tower vectors per sentence."""

    has_text = True
    tokenizer = object()

    class config:
        image_size = 8

    def __init__(self, logp: dict[str, float], vec: dict[str, list[float]]):
        self.logp, self.vec = logp, vec

    def first_sentence_logprobs(self, images, sentences):
        import torch

        assert images.shape[0] == 1  # one tile, read once, for every candidate
        return torch.tensor([[self.logp[s] for s in sentences]])

    def encode_text(self, texts):
        import torch

        return torch.nn.functional.normalize(torch.tensor([self.vec[t] for t in texts]), dim=-1)


def test_meaning_share_adds_up_the_captioners_weight_on_wordings_of_the_same_reading():
    import torch

    from urbanclip.text.faithfulness import meaning_share

    fields, crops, houses = "Farmland with fields.", "Fields of crops.", "Suburban houses."
    m = _Captioner({fields: math.log(0.3), crops: math.log(0.3), houses: math.log(0.4)},
                   {fields: [1.0, 0.1], crops: [1.0, 0.3], houses: [0.0, 1.0]})
    share, alt = meaning_share(m, torch.zeros(3, 8, 8), fields, [crops, houses, fields], same_meaning=0.6)
    # "houses" is the likeliest single sentence, but the two farmland wordings together outweigh it
    assert share == pytest.approx(0.6) and alt == houses
    share, alt = meaning_share(m, torch.zeros(3, 8, 8), houses, [fields, crops], same_meaning=0.6)
    assert share == pytest.approx(0.4) and alt in (fields, crops)
    # with the references' text vectors known beforehand (model.lead_embeddings): the same answer
    refs = [crops, houses, fields]
    vecs = m.encode_text(refs).numpy()
    assert meaning_share(m, torch.zeros(3, 8, 8), fields, refs, 0.6, vecs) == pytest.approx((0.6, houses))
    # a sentence the captioner was never shown still counts itself; nothing else alike: no alternative
    share, alt = meaning_share(m, torch.zeros(3, 8, 8), fields, [crops], same_meaning=0.6)
    assert share == pytest.approx(1.0) and alt is None


def test_badge_by_meaning_share():
    from urbanclip.text.faithfulness import DescriptionGrounding

    mixed = DescriptionGrounding(["Suburban houses.", "A river."], [0.9, 0.8], [1.0, 0.8], 0.5, 63,
                                 meaning_share=0.35, alternative="Farmland with fields.")
    assert mixed.low and mixed.score == pytest.approx(0.35) and mixed.weak_sentences == ["Suburban houses."]
    assert mixed.message().startswith("Weakly grounded: the captioner gives 35% of its weight")
    assert "“Farmland with fields.”" in mixed.message()
    sure = DescriptionGrounding(["Farmland."], [0.8], [1.0], 0.5, 63, [0.01], [0.05, 0.5], meaning_share=0.9)
    assert not sure.low and sure.score == pytest.approx(0.9)  # the share decides, not the wording's support rank
    off = DescriptionGrounding(["Water."], [0.3], [-0.5], 0.5, 63, meaning_share=0.95)
    assert off.low  # the captioner is sure, but the sentence fits its tile worse than chance
    # more likely than not is not enough: the badge wants MEANING_SHARE_THRESHOLD (0.7) of the weight
    assert DescriptionGrounding(["Parkland."], [0.8], [1.0], 0.5, 63, meaning_share=0.6).low


def test_badge_ranks_the_first_sentence_against_the_captioners_own_first_sentences():
    from urbanclip.text.faithfulness import DescriptionGrounding

    ref = [0.05, 0.1, 0.2, 0.3, 0.5]  # quantiles 0, .25, .5, .75, 1 of held-out first-sentence support
    unsure = DescriptionGrounding(["Farmland.", "A river."], [0.9, 0.8], [1.0, 0.8], 0.5, 63, [0.075, 0.6], ref)
    assert unsure.support_rank == pytest.approx(0.125) and unsure.low and unsure.weak_sentences == ["Farmland."]
    assert "12% of the first sentences" in unsure.message() and unsure.message().startswith("Weakly grounded")
    sure = DescriptionGrounding(["Farmland.", "A river."], [0.72, 0.3], [0.5, -0.5], 0.5, 63, [0.2, 0.6], ref)
    assert not sure.low and sure.score == pytest.approx(0.6) and sure.weak_sentences == ["A river."]
    off = DescriptionGrounding(["Water."], [0.2], [-1.0], 0.5, 63, [0.4], ref)  # sure, but fits worse than chance
    assert off.low
    no_reference = DescriptionGrounding(["Farmland."], [0.3], [-0.5], 0.5, 63, [0.4])
    assert no_reference.low and no_reference.score == 0.3  # an older checkpoint: the mean percentile, as before
