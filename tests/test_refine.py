"""Refinement rules: each rule on crafted sentences, what must survive, idempotence, bad input."""

from __future__ import annotations

import json

import pytest

from urbanclip.text.refine import RULES, RuleCounts, coerce_text, refine_sentences, rules_markdown


def refine(*sentences):
    kept, counts = refine_sentences(list(sentences))
    return kept, counts.fired


def test_every_rule_has_a_unique_name_and_a_doc():
    names = [r.name for r in RULES]
    assert len(names) == len(set(names))
    assert all(r.doc for r in RULES)
    md = rules_markdown()
    assert all(f"| {n} |" in md for n in names)


def test_split_glued_sentences():
    kept, fired = refine("The city lies near a river, which runs east.A train track crosses the city")
    assert kept == ["The city lies near a river, which runs east.", "A train track crosses the city."]
    assert fired["split_glued"] == 1


def test_strip_preamble_keeps_the_viewpoint_and_content():
    kept, fired = refine("The image depicts a large residential area with apartment buildings",
                         "The image is an aerial view of a city street with an intersection")
    assert kept == ["A large residential area with apartment buildings.",
                    "An aerial view of a city street with an intersection."]
    assert fired["strip_preamble"] == 2


def test_count_vehicles_cuts_only_the_counting_clause():
    kept, fired = refine("The area is surrounded by a fence, and there are two trucks parked outside",
                         "There are at least 14 cars visible in the parking lot",
                         "The streets are filled with numerous cars, indicating heavy traffic")
    assert kept[0] == "The area is surrounded by a fence."
    assert "There are at least 14 cars visible in the parking lot." not in kept
    # vague amounts describe traffic (activity) and are kept
    assert kept[1].startswith("The streets are filled with numerous cars")
    assert fired["count_vehicles"] == 2


def test_count_people_and_time_and_weather():
    kept, fired = refine("A few people can be seen walking around the square",
                         "The photo was taken during the day under a clear sky",
                         "The surrounding area is covered in snow",
                         "A snow-covered mountain range with a river running through it",
                         "Dense apartment blocks line the main road")
    assert kept == ["A snow-covered mountain range with a river running through it.",
                    "Dense apartment blocks line the main road."]
    assert fired["count_people"] == 1 and fired["time_of_day"] == 1 and fired["weather"] == 1


def test_mood_is_cut_unless_a_land_use_is_named():
    kept, fired = refine("The overall scene gives off a sense of tranquility",
                         "The river is surrounded by trees, creating a picturesque landscape",
                         "The overall scene gives off a sense of a well-organized industrial area",
                         "The city is bustling with activity")
    assert kept == ["The river is surrounded by trees.",
                    "The overall scene gives off a sense of a well-organized industrial area.",
                    "The city is bustling with activity."]
    assert fired["mood"] == 2


def test_vague_filler_dropped_but_informative_sentence_kept():
    kept, fired = refine("The aerial view provides a comprehensive overview of the city's layout",
                         "The image provides a glimpse of the industrial zone along the canal")
    assert kept == ["A glimpse of the industrial zone along the canal."] or \
        kept == ["The image provides a glimpse of the industrial zone along the canal."]
    assert fired["vague_filler"] == 1


def test_duplicates_fragments_whitespace_and_casing():
    kept, fired = refine("  a   park with a  pond ,near the road ", "A park with a pond, near the road.", "Trees.")
    assert kept == ["A park with a pond, near the road."]
    assert fired["duplicate"] == 1 and fired["fragment"] == 1


def test_empty_and_non_utf8_input():
    assert refine_sentences([])[0] == []
    assert refine_sentences(["", "   ", None])[0] == []
    kept, counts = refine_sentences([b"Dense housing \xff\xfe beside a railway line"])
    assert kept == ["Dense housing beside a railway line."]
    assert counts.fired["invalid_chars"] == 1
    assert coerce_text("ok\x00 text") == ("ok text", True)


def test_counts_add_up_and_render():
    total = RuleCounts()
    for desc in (["The image shows a large park", "Two cars are parked"], ["A river with a bridge"]):
        total += refine_sentences(desc)[1]
    d = total.as_dict()
    assert d["sentences_in"] == 3 and d["sentences_out"] == 2
    assert d["removed"]["count_vehicles"] == 1
    assert "| count_vehicles | truncate | 1 | 1 |" in total.table()


CRAFTED = [
    "The image depicts a large, open field with a train track running through the middle of it",
    "The city is situated near a river, which adds to its charm.A train track runs through the city",
    "There are several cars parked nearby, and a few people are walking",
    "The scene captures the essence of a bustling industrial area with various vehicles and buildings.",
    "The image is a bird's eye view of a city at night, showcasing a large metropolitan area",
    "  ", "A park. A park.",
]


def test_idempotent_on_crafted_sentences():
    once, _ = refine_sentences(CRAFTED)
    twice, counts = refine_sentences(once)
    assert once and twice == once
    assert sum(counts.removed.values()) == 0


def test_idempotent_on_real_captions(release_dir):
    data = json.loads((release_dir / "captions" / "Guangzhou_captions.json").read_text("utf-8"))[0]
    by_image: dict[str, list[str]] = {}
    for item in data[:3000]:
        by_image.setdefault(item["image"], []).append(item["caption"])
    for sentences in by_image.values():
        once, _ = refine_sentences(sentences)
        assert refine_sentences(once)[0] == once


@pytest.mark.parametrize("action", ["nope"])
def test_rule_rejects_unknown_action(action):
    from urbanclip.text.refine import Rule

    with pytest.raises(ValueError):
        Rule("x", action, "a", "doc")  # type: ignore[arg-type]
