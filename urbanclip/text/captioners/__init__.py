"""Captioners: models that write descriptions for tiles that have none.

`base.Captioner` is the interface (`describe(images) -> sentences per image`);
`hf.HFCaptioner` runs any local Hugging Face image-to-text model with our
urban-infrastructure prompt; `urbanclip.UrbanCLIPCaptioner` uses the decoder
of a pretrained UrbanCLIP run. `make_captioner` picks one by name.
"""

from urbanclip.text.captioners.base import BACKENDS, Captioner, make_captioner, split_generated

__all__ = ["BACKENDS", "Captioner", "make_captioner", "split_generated"]
