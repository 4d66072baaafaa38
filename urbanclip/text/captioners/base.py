"""The captioner interface, shared sentence splitting, and the backend factory."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Any

from PIL import Image

from urbanclip.errors import UserError

BACKENDS = ("hf", "urbanclip")

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def split_generated(text: str) -> list[str]:
    """Split one generated text into sentences (the workspace stores one per line),
    without control characters a byte-level decoder can emit."""
    from urbanclip.text.refine import coerce_text

    clean, _ = coerce_text(text or "")
    return [s.strip() for s in _SENTENCE_END.split(clean) if s and s.strip()]


class Captioner(ABC):
    """Writes sentences for a batch of RGB tiles.

    `provenance` says which model and prompt produced the text; `describe`
    stores it next to every generated description.
    """

    name: str = "captioner"
    batch_size: int = 8

    @property
    @abstractmethod
    def provenance(self) -> str: ...

    @abstractmethod
    def describe(self, images: list[Image.Image]) -> list[list[str]]:
        """One list of sentences per image, in order (an empty list when nothing was generated)."""


def make_captioner(backend: str, model_path: str, **opts: Any) -> Captioner:
    """The captioner of `backend` ("hf" or "urbanclip") loaded from a local `model_path`."""
    if backend == "hf":
        from urbanclip.text.captioners.hf import HFCaptioner, HFCaptionerConfig

        return HFCaptioner(model_path, HFCaptionerConfig(**opts))
    if backend == "urbanclip":
        from urbanclip.text.captioners.urbanclip import UrbanCLIPCaptioner, UrbanCLIPCaptionerConfig

        return UrbanCLIPCaptioner(model_path, UrbanCLIPCaptionerConfig(**opts))
    raise UserError(f"unknown captioner backend {backend!r}; choose one of {BACKENDS}")
