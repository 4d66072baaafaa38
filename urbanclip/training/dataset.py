"""A workspace's tiles and descriptions as training data: the in-memory tile set, the
per-step RNG and the text sampling that make `--resume` continue bit-for-bit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from urbanclip.data.workspace import Workspace, split_sentences
from urbanclip.errors import UserError
from urbanclip.model.transforms import to_uint8_tensor


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The RNG of one training step: depends only on (seed, step, rank), never on history."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 97 + rank)


@dataclass
class TileSet:
    """Tiles of one split held in memory as uint8 (decoded once; a demo split is a few MB)."""

    cell_ids: list[str]
    cities: list[str]
    images: torch.Tensor            # uint8 [n, 3, S, S]
    sentences: list[list[str]]      # per cell, may be empty when text is not required
    landuse: list[str] | None = None  # hidden demo label, for evaluation only

    def __len__(self) -> int:
        return len(self.cell_ids)


def load_tiles(workspace: Workspace, split: str | None, image_size: int, text_column: str | None = None,
               require_text: bool = True, max_cells: int | None = None, seed: int = 0) -> TileSet:
    """Cells of `split` (None = all) that have an image (and text when required), images resized.

    `max_cells` keeps a seeded random subset, for evaluation on big workspaces.
    """
    cells = workspace.cells
    column = text_column or workspace.text_column()
    if require_text and column not in cells.columns:
        raise UserError(f"text column {column!r} is not in workspace {workspace.root}; "
                        f"it has {[c for c in cells.columns if c.startswith('text_')]}")
    keep = cells["image"].notna()
    if split is not None:
        keep &= cells["split"] == split
    if require_text:
        keep &= cells[column].fillna("").astype(str).str.strip() != ""
    sub = cells[keep]
    if max_cells is not None and len(sub) > max_cells:
        pick = np.sort(np.random.default_rng(seed).choice(len(sub), max_cells, replace=False))
        sub = sub.iloc[pick]
    ids = sub["cell_id"].tolist()
    images = torch.stack([to_uint8_tensor(workspace.load_image(cid), image_size) for cid in ids]) if ids \
        else torch.zeros(0, 3, image_size, image_size, dtype=torch.uint8)
    sentences = [split_sentences(t) for t in sub[column]] if column in sub.columns else [[] for _ in ids]
    landuse = sub["demo_landuse"].astype(str).tolist() if "demo_landuse" in sub.columns else None
    return TileSet(ids, sub["city"].astype(str).tolist(), images, sentences, landuse)


def pick_texts(sentences: list[list[str]], mode: str, generator: torch.Generator) -> list[str]:
    """One description per cell: a random sentence ("sentence"), all sentences joined ("full"),
    or all sentences in topic order ("topics", `refine.topic_order`).

    "sentence" is the default: the paper keeps one short summary per image, and a
    random sentence per step uses every sentence while keeping each caption short
    enough for the context length.
    """
    if mode in ("full", "topics"):
        return eval_texts(sentences, mode)
    picks = torch.randint(0, 1 << 30, (len(sentences),), generator=generator).tolist()
    return [s[p % len(s)] if s else "" for s, p in zip(sentences, picks)]


class TileDataset(Dataset):
    """Index -> (uint8 image [3, S, S], index); the sampler decides order, the step RNG augments."""

    def __init__(self, tiles: TileSet):
        self.tiles = tiles

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.tiles.images[i], i


def eval_texts(sentences: list[list[str]], mode: str) -> list[str]:
    """Deterministic text per cell: the whole description ("full"), in topic order ("topics"),
    or its first sentence ("sentence")."""
    if mode == "topics":
        from urbanclip.data.topics import topic_order

        return [" ".join(topic_order(s)) for s in sentences]
    return [" ".join(s) if mode == "full" else (s[0] if s else "") for s in sentences]


def concept_key(sentences: list[str]) -> str:
    """What a description is mainly about, for balancing: the land-use and water words of its lead
    sentence (`data.topics.TOPICS`), sorted ("" when it names none)."""
    from urbanclip.data.topics import TOPICS

    lead = sentences[0] if sentences else ""
    words = {w.lower() for _, rx in TOPICS[:2] for w in rx.findall(lead)}
    return " ".join(sorted(words))


class BalancedSampler:
    """An epoch of `len(keys)` draws with replacement, each tile weighted by count(key) ** -power.

    Rebalances a skewed mix of descriptions so rare ones are seen more often, the way
    MetaCLIP balances image-text pairs over concept entries and XLM samples languages
    (q ~ p^alpha with alpha = 1 - power). power 0 = every tile alike; 1 = every concept alike.
    The order depends only on (seed, epoch), the same on every rank, each rank taking its
    stride of it (drop_last), so `--resume` continues bit-for-bit as with DistributedSampler.
    """

    def __init__(self, keys: list[str], power: float, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        from collections import Counter

        counts = Counter(keys)
        self.weights = torch.tensor([counts[k] ** -float(power) for k in keys], dtype=torch.double)
        self.num_replicas, self.rank, self.seed, self.epoch = num_replicas, rank, seed, 0
        self.per_rank = len(keys) // num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.multinomial(self.weights, self.per_rank * self.num_replicas, replacement=True, generator=gen)
        return iter(order[self.rank::self.num_replicas].tolist())

