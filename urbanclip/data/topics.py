"""What each sentence of a tile description is about (land use, water, transport, buildings,
greenery) and the fixed topic order descriptions are trained in.

Shared by training (topic-ordered text, balanced sampling by the lead sentence's concept) and
the text layer (refinement rules, captioners), so it lives in the data layer, below both.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Sequence

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")

# Words that name land use or infrastructure: a sentence holding one carries
# information a probe can use, so the "soft" drop rules (mood, filler) spare it.
LAND_USE_TERMS = (
    r"industrial|commercial|residential|agricultur\w*|farm\w*|factor(?:y|ies)|warehouses?|"
    r"apartments?|houses|housing|villages?|suburb\w*|rural|downtown|business|office|"
    r"high-rise|skyscrapers?|construction|parks?|golf|forest|lakes?|rivers?|ports?|airport|"
    r"railways?|train|highways?|stadium|campus|school|university|hospital|zone|district"
)

TOPICS: tuple[tuple[str, re.Pattern], ...] = tuple((name, re.compile(rx, re.IGNORECASE)) for name, rx in (
    ("land use", rf"\b(?:{LAND_USE_TERMS}|parkland|green space|farmland|fields?|crops?)\b"),
    ("water", r"\b(?:water\w*|rivers?|lakes?|sea|seaside|coast\w*|shore\w*|bridges?|canals?|harbou?rs?)\b"),
    ("transport", r"\b(?:roads?|streets?|highways?|railways?|intersections?|traffic|avenues?|parking)\b"),
    ("buildings", r"\b(?:buildings?|built(?:-up)?|roofs?|towers?)\b"),
    ("greenery", r"\b(?:trees?|greenery|vegetation|green|lawns?|grass\w*|forests?|woodland)\b"),
))


def sentence_topic(sentence: str) -> int:
    """Index into TOPICS of what `sentence` is about; len(TOPICS) when it names none (viewpoint, filler)."""
    best, where = len(TOPICS), len(sentence) + 1
    for i, (_, rx) in enumerate(TOPICS):
        m = rx.search(sentence)
        if m is not None and m.start() < where:
            best, where = i, m.start()
    return best


def topic_order(sentences: Sequence[str]) -> list[str]:
    """The sentences of one description in a fixed topic order: the lead sentence (the overview)
    stays first when it has a topic, then land use, water, transport, buildings, greenery, and
    sentences with no topic last; the original order is kept within a topic.

    The demo's and the captioner's descriptions list their detail sentences in random order.
    A decoder trained on them must spread its probability over every order, so beam search
    keeps the order-free parts (land use, roads) and drops the rest; in a fixed order, whether
    a water or a bridge sentence follows is a question about the image alone. No sentence is
    added, removed or changed.
    """
    sents = list(sentences)
    if not sents:
        return []
    lead = sents[:1] if sentence_topic(sents[0]) < len(TOPICS) else []
    rest = sents[len(lead):]
    return lead + sorted(rest, key=sentence_topic)  # sorted() is stable


def strip_control(text: str) -> str:
    """`text` without control characters (line breaks and tabs kept) and Unicode replacement marks."""
    return "".join(ch for ch in text if ch != "\ufffd" and (ch in "\n\t" or unicodedata.category(ch)[0] != "C"))


def split_generated(text: str) -> list[str]:
    """Split one generated text into sentences (ends at . ! ? or a line break; the workspace stores
    one per line), without the control characters a byte-level decoder can emit."""
    return [s.strip() for s in _SENTENCE_END.split(strip_control(text or "")) if s and s.strip()]
