"""Text-SimCLR (paper ablation): image-image contrast whose positives are the cells with
the most similar descriptions. Text only chooses pairs; the encoder sees images only.

Description similarity: TF-IDF cosine by default; `similarity="minilm"` uses the frozen
all-MiniLM-L6-v2 sentence encoder (urbanclip.text.sentence_encoder), and any
`similarity_fn(texts) -> [N, N]` can be passed instead without touching the training loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from urbanclip.data.workspace import Workspace, split_sentences
from urbanclip.evaluation.baselines.common import (
    BaselineConfig,
    SelfSupervisedEncoder,
    text_neighbours,
    train_pairs,
)


@dataclass
class TextSimCLRConfig(BaselineConfig):
    temperature: float = 0.2
    text_neighbours: int = 5
    text_column: str = ""  # "" = the workspace's training column (refined when present)
    similarity: str = "tfidf"  # description similarity choosing positives: "tfidf" | "minilm"


class TextSimCLREncoder(SelfSupervisedEncoder):
    name = "text-simclr"
    label = "Text-SimCLR"
    config_class = TextSimCLRConfig

    def __init__(self, cfg: TextSimCLRConfig | None = None,
                 similarity_fn: Callable[[Sequence[str]], np.ndarray] | None = None):
        from urbanclip.text.sentence_encoder import similarity_function

        super().__init__(cfg)
        # a given function wins over the config's name; the name is part of the digest anyway
        self.similarity_fn = similarity_fn if similarity_fn is not None else similarity_function(self.cfg.similarity)
        sim = self.cfg.similarity if similarity_fn is None else getattr(similarity_fn, "__name__", "custom")
        self.key = f"text-simclr-{sim}-{self.cfg.digest()}"
        if sim != "tfidf":
            self.label = f"Text-SimCLR ({sim} positives)"

    def learn(self, workspace: Workspace, fit_ids: list[str], pixels: torch.Tensor) -> nn.Module:
        c = self.cfg
        col = c.text_column or workspace.text_column()
        texts = [" ".join(split_sentences(t)) for t in workspace.cells.set_index("cell_id").loc[fit_ids, col]]
        pos = text_neighbours(texts, c.text_neighbours, self.similarity_fn)
        return train_pairs(pixels, pos, c, temperature=c.temperature, on_step=self.on_step)
