"""The captioner interface and the sentence splitting every backend shares."""

from __future__ import annotations

from abc import ABC, abstractmethod

from PIL import Image

from urbanclip.data.topics import split_generated  # noqa: F401 (every backend's sentence splitting)


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
