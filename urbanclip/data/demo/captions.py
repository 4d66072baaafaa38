"""Descriptions of synthetic tiles, written from what was actually drawn there.

Each tile gets several sentences (one per line) built from its measured content
(`render.CellStats`): the dominant land use, secondary uses, water, bridges,
roads, buildings and greenery, each with varied wording. About one sentence in
five is *noise* of the kinds an image-to-text model produces and UrbanCLIP's
refinement removes: "The image shows ...", counts of cars or people, guesses
about the time of day or weather, feelings, and vague filler. That gives the
`refine` stage something real to remove on the demo.
"""

from __future__ import annotations

import numpy as np

from urbanclip.data.demo.landuse import (COMMERCIAL, DENSE_RESIDENTIAL, FARMLAND, INDUSTRIAL, PARK, SUBURBAN, WATER,
                                    CityProfile)
from urbanclip.data.demo.render import CellStats

# Words a correct description of each class mentions (used to score generated captions).
LANDUSE_KEYWORDS: dict[str, list[str]] = {
    COMMERCIAL: ["commercial", "downtown", "high-rise", "office", "business"],
    DENSE_RESIDENTIAL: ["apartment", "residential", "housing"],
    SUBURBAN: ["houses", "suburban", "detached", "gardens"],
    INDUSTRIAL: ["industrial", "warehouses", "factory", "factories", "sheds"],
    PARK: ["park", "trees", "green space", "lawns"],
    FARMLAND: ["farmland", "fields", "crops", "agricultural"],
    WATER: ["water", "river", "lake", "sea", "coast"],
}

_OVERVIEW = {
    COMMERCIAL: [
        "This is a dense downtown district of high-rise office towers.",
        "A commercial core with tall office buildings packed along a tight street grid.",
        "The area is a busy business district dominated by high-rise buildings.",
        "Large commercial blocks and office towers fill the downtown area.",
    ],
    DENSE_RESIDENTIAL: [
        "This is a dense residential neighbourhood of apartment blocks.",
        "Rows of mid-rise apartment buildings form a compact housing estate.",
        "The area is mostly high-density residential housing arranged in long slabs.",
        "Closely spaced apartment blocks dominate this residential district.",
    ],
    SUBURBAN: [
        "This is a suburban neighbourhood of detached houses with gardens.",
        "Small single-family houses with red and grey roofs line quiet suburban streets.",
        "The area is low-density suburban housing with private gardens.",
        "Detached houses on small lots make up this suburban residential area.",
    ],
    INDUSTRIAL: [
        "This is an industrial zone with large warehouses and factory sheds.",
        "Big industrial sheds with flat metal roofs occupy wide paved lots.",
        "The area is dominated by warehouses, factories and storage yards.",
        "Large industrial buildings and logistics sheds fill this district.",
    ],
    PARK: [
        "This is a large park with trees, lawns and footpaths.",
        "A green space of woodland and open lawns dominates the area.",
        "Most of the area is parkland covered with trees.",
        "The tile is mainly a public park with clusters of trees.",
    ],
    FARMLAND: [
        "This is farmland divided into rectangular fields of crops.",
        "Agricultural fields with striped crop rows cover the area.",
        "The area is rural farmland with a patchwork of cultivated fields.",
        "Open agricultural land with fields separated by hedgerows.",
    ],
    WATER: [
        "Most of the area is open water.",
        "The tile is largely covered by water.",
        "Water fills most of the scene.",
    ],
}

_SECONDARY = {
    COMMERCIAL: ["Some high-rise commercial buildings stand nearby.", "Part of the area has office towers.",
                 "A few large commercial blocks appear at one side."],
    DENSE_RESIDENTIAL: ["There are also apartment blocks.", "Part of the area is dense residential housing.",
                        "Some mid-rise apartment buildings are present."],
    SUBURBAN: ["Some detached houses with gardens are also present.", "Part of the area is suburban housing.",
               "A few streets of small houses appear."],
    INDUSTRIAL: ["There are also some industrial warehouses.", "Part of the area holds factory sheds.",
                 "A few large industrial buildings are visible."],
    PARK: ["A park with trees occupies part of the area.", "There is also a green space with trees.",
           "Some parkland with lawns appears."],
    FARMLAND: ["Farmland fields cover part of the area.", "Some agricultural fields lie at the edge.",
               "There are also cultivated fields of crops."],
}

_WATER = {
    "river": ["A river flows through the area.", "A winding river crosses the scene.",
              "The area lies along the banks of a river."],
    "coast": ["The coast meets the open sea here.", "Part of the area is sea along the coastline.",
              "The shoreline of the sea runs through the area."],
    "lake": ["Part of a lake is visible.", "The shore of a lake runs through the area.",
             "A lake occupies part of the scene."],
}
_BRIDGE = ["A bridge carries the main road across the water.", "A road bridge spans the water.",
           "The main road crosses the water on a bridge."]
_ROADS = {
    "dense": ["A dense grid of streets covers the area.", "Streets form a tight, regular grid.",
              "The road network is dense, with many intersections."],
    "medium": ["A regular network of streets connects the blocks.", "Local streets run between the blocks.",
               "The street network is moderately dense."],
    "sparse": ["Only a few roads cross the area.", "The road network is sparse.",
               "Roads are few and far apart."],
}
_MAJOR = ["A wide arterial road crosses the area.", "A major road runs through the tile.",
          "A main road cuts straight across the area."]
_BUILDINGS = {
    "high": ["Buildings cover most of the ground.", "Built-up area covers most of the land.",
             "There is little open ground between the buildings."],
    "medium": ["Buildings cover a moderate share of the land.", "Built-up blocks alternate with open ground.",
               "The area is moderately built up."],
    "low": ["Buildings are sparse.", "There are only a few buildings.", "Most of the land is not built up."],
}
_GREEN = {
    "high": ["There is abundant vegetation with many trees.", "Trees cover a large part of the area.",
             "The area is very green, with dense tree cover."],
    "medium": ["Scattered trees line the streets and gardens.", "There is a moderate amount of greenery.",
               "Some trees are scattered across the area."],
    "low": ["There is little vegetation.", "Very few trees are visible.", "Greenery is scarce."],
}

# noise of the kinds refinement removes
_NOISE_VIEW = ["The image shows an aerial view of {what}.", "This image depicts {what} from above.",
               "The picture shows {what}."]
_NOISE_COUNT = ["There are {n} cars parked along the streets.", "About {n} people are walking on the sidewalks.",
                "I can count {n} vehicles on the road.", "{N} trucks are waiting in a parking lot.",
                "Around {n} pedestrians can be seen near the corner."]
_NOISE_TIME = ["The photo seems to be taken in the late afternoon.", "It appears to be a sunny day.",
               "The weather looks cloudy.", "It is probably early morning.", "The picture was likely taken at midday."]
_NOISE_FEEL = ["The atmosphere feels calm and peaceful.", "It looks like a pleasant place to live.",
               "The scene is quite beautiful.", "It gives a relaxing impression."]
_NOISE_FILLER = ["It is an interesting area.", "There is a lot going on in this picture.",
                 "Overall, the image provides a comprehensive overview of the area.", "It is a nice place."]
_WHAT = {COMMERCIAL: "a city centre", DENSE_RESIDENTIAL: "a residential area", SUBURBAN: "a neighbourhood",
         INDUSTRIAL: "an industrial area", PARK: "a green area", FARMLAND: "the countryside", WATER: "some water"}
_NUMBERS = ["two", "three", "five", "seven", "twelve", "15", "23", "40"]


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _level(x: float, low: float, high: float) -> str:
    return "high" if x >= high else "medium" if x >= low else "low"


def is_noise_sentence(sentence: str) -> bool:
    """True for sentences this generator wrote as noise (for tests and evaluation of refinement)."""
    templates = _NOISE_VIEW + _NOISE_COUNT + _NOISE_TIME + _NOISE_FEEL + _NOISE_FILLER
    heads = {t.split("{")[0] for t in templates if not t.startswith("{")}
    return any(sentence.startswith(h) for h in heads if h) or sentence.endswith("trucks are waiting in a parking lot.")


def describe(stats: CellStats, profile: CityProfile, rng: np.random.Generator, noise_rate: float = 0.2) -> list[str]:
    """Several sentences about one tile: facts from `stats`, shuffled, plus ~`noise_rate` noisy ones."""
    dom = stats.dominant
    facts = [_pick(rng, _OVERVIEW[dom])]
    others = sorted((c for c in stats.fractions if c not in (dom, WATER) and stats.fractions[c] >= 0.15),
                    key=lambda c: -stats.fractions[c])[:2]
    must = []  # water is always mentioned where there is some, and never where there is none
    if stats.fractions[WATER] >= 0.02:
        must.append(_pick(rng, _WATER[profile.water]))
        if stats.bridge:
            must.append(_pick(rng, _BRIDGE))
    rest = [_pick(rng, _SECONDARY[c]) for c in others]
    if stats.major_road and rng.random() < 0.7:
        rest.append(_pick(rng, _MAJOR))
    if dom != WATER:
        rest.append(_pick(rng, _ROADS["dense" if stats.road_cover > 0.2 else "medium" if stats.road_cover > 0.08
                                      else "sparse"]))
        rest.append(_pick(rng, _BUILDINGS[_level(stats.building_cover, 0.07, 0.25)]))
    rest.append(_pick(rng, _GREEN[_level(stats.tree_cover, 0.05, 0.22)]))
    rng.shuffle(rest)
    body = must + rest[:max(int(rng.integers(3, 6)) - len(must), 2)]
    rng.shuffle(body)
    sentences = facts + body

    # noise: expected share ~noise_rate of all sentences
    n_noise = int(rng.binomial(len(sentences), noise_rate / (1 - noise_rate))) if noise_rate > 0 else 0
    for _ in range(min(n_noise, 3)):
        kind = int(rng.integers(5))
        if kind == 0:
            s = _pick(rng, _NOISE_VIEW).format(what=_WHAT[dom])
            sentences.insert(0, s)
            continue
        if kind == 1:
            n = _pick(rng, _NUMBERS)
            s = _pick(rng, _NOISE_COUNT).format(n=n, N=n.capitalize())
        else:
            s = _pick(rng, [_NOISE_TIME, _NOISE_FEEL, _NOISE_FILLER][kind - 2])
        sentences.insert(int(rng.integers(1, len(sentences) + 1)), s)
    return sentences
