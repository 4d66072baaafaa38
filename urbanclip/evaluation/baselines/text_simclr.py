"""Text-SimCLR (paper ablation): image-image contrast whose positives are the cells with
the most similar descriptions. Text only chooses pairs; the encoder sees images only.

Description similarity: TF-IDF cosine by default; `similarity="minilm"` uses the frozen
all-MiniLM-L6-v2 sentence encoder (urbanclip.text.sentence_encoder), and any
`similarity_fn(texts) -> [N, N]` can be passed instead without touching the training loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from urbanclip.evaluation.baselines.common import (BaselineConfig, few_threads, StepCallback, embed_in_batches, fit_subset, load_pixels,
                                        text_neighbours, train_pairs)
from urbanclip.data.workspace import Workspace, split_sentences


@dataclass
class TextSimCLRConfig(BaselineConfig):
    temperature: float = 0.2
    text_neighbours: int = 5
    text_column: str = ""  # "" = the workspace's training column (refined when present)
    similarity: str = "tfidf"  # description similarity choosing positives: "tfidf" | "minilm"


class TextSimCLREncoder:
    label = "Text-SimCLR"

    def __init__(self, cfg: TextSimCLRConfig | None = None,
                 similarity_fn: Callable[[Sequence[str]], np.ndarray] | None = None):
        from urbanclip.text.sentence_encoder import similarity_function

        self.cfg = cfg or TextSimCLRConfig()
        # a given function wins over the config's name; the name is part of the digest anyway
        self.similarity_fn = similarity_fn if similarity_fn is not None else similarity_function(self.cfg.similarity)
        sim = self.cfg.similarity if similarity_fn is None else getattr(similarity_fn, "__name__", "custom")
        self.key = f"text-simclr-{sim}-{self.cfg.digest()}"
        if sim != "tfidf":
            self.label = f"Text-SimCLR ({sim} positives)"
        self.on_step: StepCallback | None = None

    @few_threads
    def embed(self, workspace: Workspace, cell_ids: Sequence[str]) -> np.ndarray:
        c = self.cfg
        col = c.text_column or workspace.text_column()
        fit = fit_subset(workspace, cell_ids, c.fit_on)
        fit_ids = [cell_ids[i] for i in fit]
        texts = [" ".join(split_sentences(t)) for t in workspace.cells.set_index("cell_id").loc[fit_ids, col]]
        pos = text_neighbours(texts, c.text_neighbours, self.similarity_fn)
        pixels = load_pixels(workspace, cell_ids, c.image_size)
        enc = train_pairs(pixels[fit], pos, c, temperature=c.temperature, on_step=self.on_step)
        return embed_in_batches(enc, pixels)
