"""Hugging Face `transformers` image-to-text models from a local folder.

Any model whose config type is in transformers' image-text-to-text mapping
works: captioners (BLIP, GIT, ViT+GPT2 VisionEncoderDecoder) and instruction
following vision-language models (LLaVA-style). Instruction models get our
urban-infrastructure prompt (`urbanclip.text.prompts`) through their chat template;
plain captioners have no instruction input, so they caption unprompted and the
provenance says so. Nothing is ever downloaded: the folder must hold the
weights, config and processor (`save_pretrained` output), and loading runs
with `local_files_only=True` and HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from urbanclip.text.captioners.base import Captioner, split_generated
from urbanclip.errors import UserError
from urbanclip.text.prompts import PROMPT_VERSION, get_prompt


@dataclass
class HFCaptionerConfig:
    """Generation settings. `max_new_tokens` bounds the length of each description."""

    batch_size: int = 4
    max_new_tokens: int = 96
    num_beams: int = 1
    prompt_version: str = PROMPT_VERSION
    device: str = "cpu"


class HFCaptioner(Captioner):
    """A local transformers image-to-text model, run in batches."""

    name = "hf"

    def __init__(self, model_path: str | Path, cfg: HFCaptionerConfig | None = None):
        self.cfg = cfg or HFCaptionerConfig()
        self.batch_size = self.cfg.batch_size
        self.path = Path(model_path).expanduser()
        self._load()

    # -- loading ------------------------------------------------------------------
    def _load(self) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"  # a local path must never turn into a download
        import transformers
        from transformers import AutoConfig, AutoModelForImageTextToText
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

        transformers.logging.set_verbosity_error()
        if not self.path.is_dir():
            raise UserError(f"captioner model folder {self.path} does not exist; pass --model with the folder a "
                            "transformers model was saved to (save_pretrained), e.g. a downloaded BLIP or LLaVA")
        if not (self.path / "config.json").is_file():
            raise UserError(f"{self.path / 'config.json'} is missing: {self.path} is not a transformers model folder")
        try:
            config = AutoConfig.from_pretrained(self.path, local_files_only=True)
        except Exception as e:
            raise UserError(f"{self.path / 'config.json'} cannot be read as a transformers config ({e})") from None
        if config.model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
            raise UserError(f"{self.path} holds a {config.model_type!r} model, which is not an image-to-text model; "
                            "use a captioning or vision-language model (BLIP, GIT, VisionEncoderDecoder, LLaVA, ...)")
        try:
            self.model = AutoModelForImageTextToText.from_pretrained(self.path, local_files_only=True)
        except Exception as e:
            raise UserError(f"cannot load the model weights in {self.path} ({e})") from None
        self.model.to(self.cfg.device).eval()
        self.model_type = config.model_type
        self._processor, self._image_processor, self._tokenizer = self._load_processor()
        chat = getattr(self._processor, "chat_template", None) if self._processor is not None else None
        self.prompt = get_prompt(self.cfg.prompt_version) if chat else None

    def _load_processor(self):
        """(processor, image_processor, tokenizer): a joint processor when the folder has one, else the pair."""
        from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

        proc = None
        try:
            proc = AutoProcessor.from_pretrained(self.path, local_files_only=True)
        except Exception:
            proc = None
        if proc is not None and hasattr(proc, "image_processor") and hasattr(proc, "tokenizer"):
            return proc, proc.image_processor, proc.tokenizer
        try:
            image_proc = AutoImageProcessor.from_pretrained(self.path, local_files_only=True)
            tok = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        except Exception as e:
            raise UserError(f"{self.path} has no usable image processor and tokenizer ({e}); save them next to the "
                            "model with processor.save_pretrained(folder)") from None
        return None, image_proc, tok

    # -- generation ----------------------------------------------------------------
    @property
    def provenance(self) -> str:
        prompt = f"prompt={self.cfg.prompt_version}" if self.prompt else "prompt=none (captioner without instruction input)"
        return f"hf:{self.path.resolve()} ({self.model_type}); {prompt}; max_new_tokens={self.cfg.max_new_tokens}"

    def _inputs(self, images: list[Image.Image]):
        if self.prompt is not None:
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt}]}]
            text = self._processor.apply_chat_template(messages, add_generation_prompt=True)
            return self._processor(images=images, text=[text] * len(images), return_tensors="pt", padding=True)
        return self._image_processor(images=images, return_tensors="pt")

    def describe(self, images: list[Image.Image]) -> list[list[str]]:
        import torch

        out: list[list[str]] = []
        for start in range(0, len(images), self.batch_size):
            batch = [im.convert("RGB") for im in images[start:start + self.batch_size]]
            inputs = self._inputs(batch).to(self.cfg.device)
            with torch.no_grad():
                ids = self.model.generate(**inputs, max_new_tokens=self.cfg.max_new_tokens,
                                          num_beams=self.cfg.num_beams, do_sample=False)
            if "input_ids" in inputs and not self.model.config.is_encoder_decoder:
                ids = ids[:, inputs["input_ids"].shape[1]:]  # decoder-only models echo the prompt
            texts = self._tokenizer.batch_decode(ids, skip_special_tokens=True)
            out.extend(split_generated(t) for t in texts)
        return out
