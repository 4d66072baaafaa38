"""Captioners: models that write descriptions for tiles that have none.

`base.Captioner` is the interface (`describe(images) -> sentences per image`);
`hf.HFCaptioner` runs any local Hugging Face image-to-text model with our
urban-infrastructure prompt; `urbanclip.UrbanCLIPCaptioner` uses the decoder
of a pretrained UrbanCLIP run. `make_captioner` picks one by name.
"""

from __future__ import annotations

from typing import Any

from urbanclip.errors import UserError
from urbanclip.text.captioners.base import Captioner, split_generated

BACKENDS = ("hf", "urbanclip")

__all__ = ["BACKENDS", "Captioner", "make_captioner", "split_generated"]


def make_captioner(backend: str, model_path: str, **opts: Any) -> Captioner:
    """The captioner of `backend` ("hf" or "urbanclip") loaded from a local `model_path`."""
    if backend == "hf":
        from urbanclip.text.captioners.hf import HFCaptioner, HFCaptionerConfig

        return HFCaptioner(model_path, HFCaptionerConfig(**opts))
    if backend == "urbanclip":
        from urbanclip.text.captioners.urbanclip import UrbanCLIPCaptioner, UrbanCLIPCaptionerConfig

        return UrbanCLIPCaptioner(model_path, UrbanCLIPCaptionerConfig(**opts))
    raise UserError(f"unknown captioner backend {backend!r}; choose one of {BACKENDS}")
