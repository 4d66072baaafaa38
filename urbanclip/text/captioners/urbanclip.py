"""Describe tiles with the multimodal decoder of a pretrained UrbanCLIP run.

Lets a workspace without descriptions be described by a model trained
elsewhere (e.g. on the UrbanCLIP release). The decoder was trained on refined
descriptions, so it needs no instruction prompt; the provenance records the
run and the decoding strategy instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from urbanclip.errors import UserError
from urbanclip.text.captioners.base import Captioner, split_generated


@dataclass
class UrbanCLIPCaptionerConfig:
    """Decoding settings for `UrbanCLIP.generate`; None = the default of `urbanclip.model.decoding.DecodeConfig`
    (beam search, no repeated sentence or n-gram, up to the model's context length)."""

    batch_size: int = 16
    max_new_tokens: int | None = None
    strategy: str | None = None  # "beam" | "greedy" | "top-p"
    device: str = "cpu"


class UrbanCLIPCaptioner(Captioner):
    """Our own model's `generate`, images prepared by the one `eval_transform`."""

    name = "urbanclip"

    def __init__(self, run_path: str | Path, cfg: UrbanCLIPCaptionerConfig | None = None):
        from urbanclip.model.checkpoint import load_model

        self.cfg = cfg or UrbanCLIPCaptionerConfig()
        self.batch_size = self.cfg.batch_size
        self.path = Path(run_path).expanduser()
        if not self.path.exists():
            raise UserError(f"UrbanCLIP run {self.path} does not exist; pass --model with a run folder or checkpoint "
                            "written by `python -m urbanclip pretrain`")
        self.model = load_model(self.path, device=self.cfg.device)

    @property
    def provenance(self) -> str:
        d = self._decoding()
        return (f"urbanclip:{self.path.resolve()}; decoder generate strategy={d.strategy}"
                + (f" (beam {d.beam_size})" if d.strategy == "beam" else "")
                + f", no_repeat_ngram={d.no_repeat_ngram}, no_repeat_sentence={d.no_repeat_sentence}, "
                f"max_len={min(d.max_len, self.model.config.context_length - 1)}")

    def _decoding(self):
        from urbanclip.model.decoding import DecodeConfig

        cfg = DecodeConfig.overriding(strategy=self.cfg.strategy, max_len=self.cfg.max_new_tokens)
        cfg.validate("urbanclip captioner")
        return cfg

    def describe(self, images: list[Image.Image]) -> list[list[str]]:
        from urbanclip.model.inference import describe_images

        texts = describe_images(self.model, images, self._decoding(), batch_size=self.batch_size)
        return [split_generated(t) for t in texts]
