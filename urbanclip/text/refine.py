"""Rule-based refinement of generated descriptions (UrbanCLIP Sec. 3.2, "text refinement").

Image-to-text models describe a nadir satellite tile with things no one can
check from above (how many people, the weather, the mood, "the image shows")
and with vague filler. The paper removes unfactual or vague sentences and
rewrites others; we do the same with a small table of named rules, so every
removal is explainable and counted.

Each `Rule` has a name, a regex `pattern`, an `action` and a doc line:

  split    cut the sentence where `pattern` matches (glued "charm.A train")
  rewrite  replace matches of `pattern` by `replacement` (preambles, spacing)
  truncate cut the sentence before the clause holding the match ("The area is
           fenced, and two trucks are parked" -> "The area is fenced."); when
           the match is in the first clause the whole sentence goes
  drop     remove the sentence when `pattern` matches
  keep_if  (truncate/drop) spare the text when what would be removed names a
           land use: "a sense of an *industrial area*" still says "industrial area"

What we learned measuring the rules on the real captions (text-only TF-IDF
probe, raw vs refined): dropping whole sentences about cars, mood or weather
cost 0.02-0.04 R², because those sentences also carry the captioner's read of
density ("numerous cars on the streets", "bustling") and land cover
("snow-covered mountains with a river"). Cutting clauses instead of sentences,
removing only exact vehicle counts, and sparing land-use words brought the
loss down to about the split-to-split noise; see README for the table.

`refine_sentences` runs the table in order over the sentences of one
description, then removes duplicates and fragments, and returns the kept
sentences with a `RuleCounts` (how often each rule fired). It is idempotent:
refining refined text changes nothing (tested on the real captions).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Literal, Sequence

import numpy as np

from urbanclip.data.topics import LAND_USE_TERMS, TOPICS, sentence_topic, strip_control, topic_order  # noqa: F401 (re-exported)

RULES_VERSION = "rules-v3"  # bump when the table changes; recorded in the workspace manifest

Action = Literal["split", "rewrite", "truncate", "drop"]

_KEEP_LAND_USE = rf"\b(?:{LAND_USE_TERMS})\b"
# Weather words often sit beside land cover ("snow-covered mountains"); that part is kept.
_KEEP_LAND_COVER = rf"\b(?:{LAND_USE_TERMS}|mountains?|hills?|fields?|crops?|trees|water|buildings?|roads?|streets?)\b"

# Exact counts ("at least 14 cars", "a truck", "two buses"); vague amounts ("numerous cars
# on the streets") describe traffic, i.e. activity, and are kept (measured: cutting them cost R²).
_COUNT = (r"(?:a|an|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|\d+|a single|a couple of|"
          r"a few|a pair of|at least (?:\w+|\d+))")
_VEHICLES = r"(?:cars?|vehicles?|trucks?|bus(?:es)?|motorcycles?|bicycles?|bikes?|boats?|airplanes?|planes?|taxis?|vans?)"
_PEOPLE = r"(?:people|persons?|pedestrians?|crowds?|tourists?|visitors?|players?|men|women|man|woman|children|kids|residents? (?:walking|enjoying))"


# Where a sentence may be cut: a comma or semicolon that opens a new clause
# (", indicating ...", ", and there are ...", ", while ..."); list commas
# ("houses, shops, and parks") are not boundaries.
_CLAUSE_BOUNDARY = re.compile(
    r"\s*(?:;|,\s*(?=(?:and (?:there|a few|several|some|many|numerous|the \w+ (?:is|are))|while|whereas|but|which|where|"
    r"with (?:a few|several|some|many|numerous|people|cars|vehicles)|as|possibly|likely|indicating|suggesting|creating|"
    r"making|providing|offering|giving|adding|contributing|highlighting|showcasing|emphasizing|reflecting|"
    r"allowing|enhancing)\b))", re.IGNORECASE)


@dataclass(frozen=True)
class Rule:
    """One refinement rule; `doc` says what it removes or rewrites and why."""

    name: str
    action: Action
    pattern: str
    doc: str
    replacement: str = ""
    keep_if: str | None = None  # drop/truncate: spare the text when what would be removed matches this

    def __post_init__(self) -> None:
        if self.action not in ("split", "rewrite", "truncate", "drop"):
            raise ValueError(f"rule {self.name!r}: unknown action {self.action!r}")
        object.__setattr__(self, "_rx", re.compile(self.pattern, re.IGNORECASE))
        object.__setattr__(self, "_keep", re.compile(self.keep_if, re.IGNORECASE) if self.keep_if else None)

    @property
    def regex(self) -> re.Pattern:
        return self._rx  # type: ignore[attr-defined]

    def _spared(self, removed: str) -> bool:
        keep = self._keep  # type: ignore[attr-defined]
        return keep is not None and keep.search(removed) is not None

    def drops(self, sentence: str) -> bool:
        """drop: does the rule remove this sentence?"""
        return self.regex.search(sentence) is not None and not self._spared(sentence)

    def truncate(self, sentence: str) -> str | None:
        """truncate: the sentence cut before the clause holding the first match
        ("" = nothing left, drop it), or None when the rule does not fire."""
        m = self.regex.search(sentence)
        if m is None:
            return None
        cut = 0
        for b in _CLAUSE_BOUNDARY.finditer(sentence, 0, m.start()):
            cut = b.start()
        if self._spared(sentence[cut:]):
            return None
        return sentence[:cut]


# The rule table, applied top to bottom. Names are stable: counts and reports use them.
RULES: tuple[Rule, ...] = (
    Rule("split_glued", "split", r"(?<=[a-z]{2}[.!?])(?=[A-Z])|(?<=[.!?])\s+(?=[A-Z])",
         "Split sentences glued together ('adds to its charm.A train track runs ...')."),
    Rule("strip_preamble", "rewrite",
         r"^(?:in (?:this|the) (?:image|picture|photo|scene),?\s+|"
         r"(?:the|this) (?:image|picture|photo(?:graph)?)\s+"
         r"(?:is|shows|depicts|features|displays|captures|presents|contains|portrays|showcases)\s+)",
         "Rewrite 'The image shows/depicts/is X' to 'X'. The viewpoint that follows ('an aerial view of', "
         "'a satellite view of') is kept: measured on the real captions, the captioner's choice of viewpoint "
         "carries scene information (removing it cost 0.004 R²)."),
    Rule("count_vehicles", "truncate",
         rf"\b{_COUNT}\s+(?:\w+\s+){{0,2}}{_VEHICLES}\b[^,;]*",
         "Cut the clause counting vehicles: single cars are not resolvable at ~13 m/px, so counts are guesses. "
         "'The area is fenced, and there are two trucks parked' keeps 'The area is fenced'.",
         keep_if=_KEEP_LAND_USE),
    Rule("count_people", "truncate", rf"\b{_PEOPLE}\b",
         "Cut the clause about people (counts, activities): people are invisible in a ~1 km² nadir tile.",
         keep_if=_KEEP_LAND_USE),
    Rule("time_of_day", "truncate",
         r"\b(?:night(?:time)?|daytime|during the day|morning|evening|sunset|sunrise|dusk|dawn|midday|afternoon)\b",
         "Cut times of day: a mosaic tile carries no reliable time.", keep_if=_KEEP_LAND_USE),
    Rule("weather", "truncate",
         r"\b(?:sunny|cloudy|overcast|rain(?:y|ing)?|snow(?:y|ing|-covered)?|fog(?:gy)?|misty|clear sky|blue sky|"
         r"wintery|wintry|weather)\b",
         "Cut weather and season: not a property of the place, and often hallucinated; land cover in the same "
         "clause ('a snow-covered mountain range with a river') is kept.", keep_if=_KEEP_LAND_COVER),
    Rule("mood", "truncate",
         r"\b(?:serene|serenity|tranquil(?:ity)?|peaceful|picturesque|charm(?:ing)?|beautiful|beauty|stunning|"
         r"breathtaking|pleasant|cozy|idyllic|scenic|enjoy(?:ing|able)?|relaxing|calm|mystery|nice|lovely|interesting|"
         r"(?:sense|impression|feeling|essence) of)\b",
         "Cut emotions and mood ('creating a serene atmosphere'), unless the clause also names a land use. "
         "Activity words ('bustling', 'busy') are kept: activity is part of what we describe.",
         keep_if=_KEEP_LAND_USE),
    Rule("vague_filler", "drop",
         r"\b(?:comprehensive (?:over)?view|glimpse|provides an? (?:clear |good |detailed )?(?:view|overview)|"
         r"showcas(?:es|ing) the (?:city'?s )?(?:diversity|beauty|growth)|ideal (?:place|location|spot)|"
         r"(?:overall|in summary|in conclusion),? the (?:image|scene|view)|captured from an? \w+ (?:view|perspective)|"
         r"clear perspective|a lot (?:going on|to see))\b",
         "Drop filler that holds for any tile ('provides a comprehensive overview of the city's layout'), "
         "unless it names a land use.",
         keep_if=_KEEP_LAND_USE),
)

_WORD = re.compile(r"[A-Za-z]+")
UNGROUNDED = "ungrounded"  # the grounding filter's name in counts (not a text rule: it needs a model)
MIN_WORDS = 3  # a kept sentence needs at least this many words ("Trees." says little)


@dataclass
class RuleCounts:
    """How often each rule fired (changed or removed a sentence), how many sentences
    it removed outright, plus sentences in and out."""

    fired: Counter = field(default_factory=Counter)
    removed: Counter = field(default_factory=Counter)
    sentences_in: int = 0
    sentences_out: int = 0

    def __iadd__(self, other: "RuleCounts") -> "RuleCounts":
        self.fired.update(other.fired)
        self.removed.update(other.removed)
        self.sentences_in += other.sentences_in
        self.sentences_out += other.sentences_out
        return self

    def as_dict(self) -> dict:
        names = [r.name for r in RULES] + ["duplicate", "fragment", "invalid_chars"]
        if self.fired.get(UNGROUNDED):  # only with `refine --grounding-threshold`
            names.append(UNGROUNDED)
        return {"sentences_in": self.sentences_in, "sentences_out": self.sentences_out,
                "fired": {n: int(self.fired.get(n, 0)) for n in names},
                "removed": {n: int(self.removed.get(n, 0)) for n in names}}

    def table(self) -> str:
        """Markdown table of rule -> times fired, for reports."""
        lines = ["| rule | action | fired | sentences removed | removed, share of input |", "|---|---|---:|---:|---:|"]
        actions = {r.name: r.action for r in RULES} | {"duplicate": "drop", "fragment": "drop",
                                                        "invalid_chars": "rewrite", UNGROUNDED: "drop"}
        d = self.as_dict()
        for name, n in d["fired"].items():
            rm = d["removed"][name]
            share = rm / self.sentences_in if self.sentences_in else 0.0
            lines.append(f"| {name} | {actions[name]} | {n} | {rm} | {share:.1%} |")
        lines.append(f"| all (sentences in -> out) | | | {self.sentences_in} -> {self.sentences_out} | |")
        return "\n".join(lines)


def coerce_text(value: object) -> tuple[str, bool]:
    """Text from str or bytes; returns (text, had_invalid_chars).

    Bytes that are not UTF-8 and control characters are removed rather than
    crashing a whole refinement run over one bad caption.
    """
    if value is None:
        return "", False
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode("utf-8", errors="replace")
    else:
        text = str(value)
    cleaned = strip_control(text)
    return cleaned, cleaned != text


def _normalise(sentence: str) -> str:
    """Collapse whitespace, fix spaces before punctuation, capitalise, end with one period."""
    s = re.sub(r"\s+", " ", sentence).strip()
    s = re.sub(r"\s+([,.;:!?])", r"\1", s)
    s = re.sub(r"([,;:])(?=[A-Za-z])", r"\1 ", s)
    s = re.sub(r"^[\s,.;:!?'\"-]+", "", s)
    s = re.sub(r"[\s,;:]+$", "", s)
    if not s:
        return ""
    s = s[0].upper() + s[1:]
    if s[-1] not in ".!?":
        s += "."
    return s


def _dedupe_key(sentence: str) -> str:
    return " ".join(w.lower() for w in _WORD.findall(sentence))


def refine_sentences(sentences: Iterable[object], rules: tuple[Rule, ...] = RULES) -> tuple[list[str], RuleCounts]:
    """Apply the rule table to the sentences of one description.

    Returns the kept sentences (normalised, in order, duplicates removed) and
    the counts. A sentence counts towards the first drop rule that removes it.
    """
    counts = RuleCounts()
    pieces: list[str] = []
    for raw in sentences:
        text, bad = coerce_text(raw)
        if bad:
            counts.fired["invalid_chars"] += 1
        for line in text.split("\n"):
            line = _normalise(line)
            if line:
                pieces.append(line)
    counts.sentences_in = len(pieces)

    for rule in rules:
        nxt: list[str] = []
        for s in pieces:
            if rule.action == "split":
                parts = [p for p in rule.regex.split(s) if p and p.strip()]
                if len(parts) > 1:
                    counts.fired[rule.name] += 1
                nxt.extend(parts)
            elif rule.action == "rewrite":
                new = s
                while True:  # repeat to a fixpoint so a second refinement finds nothing
                    cand = rule.regex.sub(rule.replacement, new.strip())
                    if cand == new.strip():
                        break
                    new = cand
                if new.strip() != s.strip():
                    counts.fired[rule.name] += 1
                nxt.append(new)
            elif rule.action == "truncate":
                cut = rule.truncate(s)
                if cut is None:
                    nxt.append(s)
                else:
                    counts.fired[rule.name] += 1
                    if cut.strip():
                        nxt.append(cut)
                    else:
                        counts.removed[rule.name] += 1
            elif rule.drops(s):
                counts.fired[rule.name] += 1
                counts.removed[rule.name] += 1
            else:
                nxt.append(s)
        pieces = nxt

    kept: list[str] = []
    seen: set[str] = set()
    for s in pieces:
        s = _normalise(s)
        if len(_WORD.findall(s)) < MIN_WORDS:
            if s:
                counts.fired["fragment"] += 1
                counts.removed["fragment"] += 1
            continue
        key = _dedupe_key(s)
        if key in seen:
            counts.fired["duplicate"] += 1
            counts.removed["duplicate"] += 1
            continue
        seen.add(key)
        kept.append(s)
    counts.sentences_out = len(kept)
    return kept, counts


def drop_ungrounded(sentences: Sequence[str], percentiles: Sequence[float],
                    threshold: float) -> tuple[list[str], list[str]]:
    """Self-calibration: drop sentences a model finds weakly grounded in their own tile.

    `percentiles`: each sentence's grounding (urbanclip.text.faithfulness: own-tile similarity
    ranked among random tiles, 0.5 = chance). Sentences below `threshold` go; NaN (no
    tile to check) is kept. The best-grounded sentence is always kept, so a description
    is thinned, never emptied. Returns (kept, dropped), both in input order.
    """
    if len(sentences) != len(percentiles):
        raise ValueError(f"{len(sentences)} sentences but {len(percentiles)} grounding scores")
    p = np.asarray(percentiles, dtype=np.float64)
    drop = np.isfinite(p) & (p < threshold)
    if len(p) and drop.all():
        drop[int(np.nanargmax(p))] = False
    kept = [s for s, d in zip(sentences, drop) if not d]
    dropped = [s for s, d in zip(sentences, drop) if d]
    return kept, dropped


def rules_markdown(rules: tuple[Rule, ...] = RULES) -> str:
    """The rule table as documentation (name, action, what and why)."""
    lines = ["| rule | action | what and why |", "|---|---|---|"]
    lines += [f"| {r.name} | {r.action} | {r.doc} |" for r in rules]
    lines += ["| duplicate | drop | Drop a sentence already present in the description (case and punctuation ignored). |",
              f"| fragment | drop | Drop what is left with fewer than {MIN_WORDS} words. |",
              "| invalid_chars | rewrite | Remove undecodable bytes and control characters. |",
              f"| {UNGROUNDED} | drop | Only with `refine --grounding-threshold T --checkpoint RUN`: drop a sentence "
              "whose grounding percentile (own tile vs random tiles, urbanclip.text.faithfulness) is below T; the "
              "best-grounded sentence of a description is always kept. |"]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------
# topic order: one fixed sequence of topics per description

# What a sentence is about, by the first topic word it uses (ties: the earlier topic here).

