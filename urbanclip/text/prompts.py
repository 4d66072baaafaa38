"""The instruction prompt that asks an image-to-text model about urban infrastructure.

Kept in one place and versioned: every generated description records
`PROMPT_VERSION`, so texts written with different prompts are never mixed
silently. Change the wording -> bump the version. The paper (UrbanCLIP, WWW
2024, Sec. 3.2) prompts LLaMA-Adapter V2 with a detailed request about urban
infrastructure, greenery, water and activity; this is our wording of that idea.
"""

from __future__ import annotations

PROMPT_VERSION = "urban-infra-v1"

URBAN_INFRASTRUCTURE_PROMPT = (
    "You are looking at a satellite image of about one square kilometre, seen from directly above. "
    "Describe the urban infrastructure you can see in several short factual sentences: "
    "the kind of land use (residential, commercial, industrial, agricultural, parks), "
    "the density, height and layout of buildings, the roads, railways and intersections, "
    "green space and trees, water bodies, bare land and construction sites. "
    "Only mention what is visible from above; do not guess the time of day, the weather, "
    "people's feelings, or counts of people and vehicles."
)

PROMPTS: dict[str, str] = {PROMPT_VERSION: URBAN_INFRASTRUCTURE_PROMPT}


def get_prompt(version: str = PROMPT_VERSION) -> str:
    """The prompt text of a recorded version (raises KeyError naming the known ones)."""
    try:
        return PROMPTS[version]
    except KeyError:
        raise KeyError(f"unknown prompt version {version!r}; known: {sorted(PROMPTS)}") from None
