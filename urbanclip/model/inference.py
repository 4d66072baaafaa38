"""The one inference path of a trained UrbanCLIP: embed tiles, encode texts, describe tiles,
score image-text pairs.

Every caller (the app's cell panel, grounding, the captioner backend, probes through
`ModelImageEncoder`, look-alikes through `ModelReadingEncoder`, text search) goes through these functions, so the image
transform, batching, no-grad mode and decoding defaults are defined once. Inputs are
PIL tiles or workspace cells; outputs are NumPy arrays (float32, L2-normalised rows)
or strings.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from urbanclip.data.workspace import Workspace
from urbanclip.errors import UserError

MODEL_KINDS = {"urbanclip": "UrbanCLIP", "urbanvit": "UrbanViT"}


def need_text_tower(model: Any, what: str = "this") -> None:
    """UserError unless `model` has a text tower (an image-only UrbanViT has none)."""
    if model is None or not getattr(model, "has_text", False):
        raise UserError(f"{what} needs an UrbanCLIP checkpoint with a text tower (an image-only UrbanViT run cannot "
                        "read or write text); pass a run of `python -m urbanclip pretrain`")


def _batches(n: int, size: int):
    for start in range(0, n, max(int(size), 1)):
        yield slice(start, min(start + size, n))


def image_batch(model: Any, images: Sequence[Image.Image]):
    """PIL tiles -> the model's input tensor [b, 3, S, S] (the one eval transform)."""
    import torch

    from urbanclip.model.transforms import eval_transform

    tf = eval_transform(int(model.config.image_size))
    return torch.stack([tf(im.convert("RGB")) for im in images]).to(model.device)


def embed_images(model: Any, images: Sequence[Image.Image], batch_size: int = 64) -> np.ndarray:
    """Global image embeddings [n, D], float32, L2-normalised."""
    import torch

    out = [np.zeros((0, int(model.config.embed_dim)), np.float32)]
    with torch.inference_mode():
        for sl in _batches(len(images), batch_size):
            out.append(model.encode_image(image_batch(model, images[sl])).float().cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def read_images(model: Any, images: Sequence[Image.Image], batch_size: int = 16) -> np.ndarray:
    """What the captioner reads in each tile: [n, k] = sqrt of its probability of starting the
    description with each of its own first sentences (`model.lead_sentences`, renormalised).

    The square root makes the rows unit vectors whose dot product is the Bhattacharyya
    coefficient of two readings, so cosine look-alikes compare the readings' overlap. Why:
    the captioner names a tile's land use more reliably than the contrastive embedding places
    it (demo: first sentence right for 85% of tiles, look-alike agreement of the embedding 82%),
    so look-alikes add it (search.index).
    """
    import torch

    need_text_tower(model, "reading tiles")
    leads = list(getattr(model, "lead_sentences", None) or [])
    if not leads:
        raise UserError("this checkpoint stores no lead sentences (it predates them); retrain it to get readings")
    out = [np.zeros((0, len(leads)), np.float32)]
    with torch.inference_mode():
        for sl in _batches(len(images), batch_size):
            lp = model.first_sentence_logprobs(image_batch(model, images[sl]), leads)
            out.append(lp.softmax(dim=-1).sqrt().numpy().astype(np.float32))
    return np.concatenate(out)


def load_cell_images(workspace: Workspace, cell_ids: Sequence[str]) -> list[Image.Image]:
    """The tiles of `cell_ids`; UserError naming the first cell without imagery."""
    images = []
    for cid in cell_ids:
        img = workspace.load_image(cid)
        if img is None:
            raise UserError(f"cell {cid!r} has no image; only cells with imagery can be embedded or described")
        images.append(img)
    return images


def _over_cells(workspace: Workspace, cell_ids: Sequence[str], chunk: int, width: int, fn) -> np.ndarray:
    """`fn(tiles) -> [n, width]` over workspace cells, `chunk` tiles read at a time (memory stays flat)."""
    out = [np.zeros((0, width), np.float32)]
    for sl in _batches(len(cell_ids), chunk):
        out.append(fn(load_cell_images(workspace, list(cell_ids[sl]))))
    return np.concatenate(out)


def embed_cells(model: Any, workspace: Workspace, cell_ids: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Image embeddings [n, D] of workspace cells, read and embedded batch by batch."""
    return _over_cells(workspace, cell_ids, batch_size, int(model.config.embed_dim),
                       lambda tiles: embed_images(model, tiles, batch_size))


def encode_texts(model: Any, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Text-tower embeddings [n, D] of `texts`, float32, L2-normalised, in the image embedding space."""
    import torch

    need_text_tower(model, "encoding text")
    out = [np.zeros((0, int(model.config.embed_dim)), np.float32)]
    with torch.inference_mode():
        for sl in _batches(len(texts), batch_size):
            out.append(model.encode_text(list(texts[sl])).float().cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def describe_images(model: Any, images: Sequence[Image.Image], decoding: Any = None,
                    batch_size: int = 16) -> list[str]:
    """The model's description of each tile (the multimodal decoder, `UrbanCLIP.generate`);
    `decoding` is a `model.decoding.DecodeConfig`, None = its defaults (beam search)."""
    import torch

    need_text_tower(model, "describing tiles")
    out: list[str] = []
    with torch.inference_mode():
        for sl in _batches(len(images), batch_size):
            out += model.generate(image_batch(model, images[sl]), decoding)
    return out


def describe_cells(model: Any, workspace: Workspace, cell_ids: Sequence[str], decoding: Any = None,
                   batch_size: int = 16) -> list[str]:
    """Descriptions of workspace cells, in order; "" for a cell without imagery."""
    out = {cid: "" for cid in cell_ids}
    with_image = [c for c in cell_ids if workspace.image_path(c) is not None]
    for sl in _batches(len(with_image), batch_size):
        ids = with_image[sl]
        for cid, text in zip(ids, describe_images(model, load_cell_images(workspace, ids), decoding,
                                                  batch_size)):
            out[cid] = text
    return [out[c] for c in cell_ids]


def pair_scores(image_vectors: np.ndarray, text_vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity [n_images, n_texts] of L2-normalised image and text embeddings (CLIP's score)."""
    return np.asarray(image_vectors, dtype=np.float32) @ np.asarray(text_vectors, dtype=np.float32).T


# ---------------------------------------------------------------------------------
# a saved run as a frozen image encoder (for the embedding cache, probes, search)


def checkpoint_stamp(path: Path) -> str:
    """Hash of the checkpoint file a run resolves to (path, size, mtime): the cache-key part
    that changes whenever the weights do."""
    from urbanclip.model.checkpoint import resolve

    file = resolve(path).resolve()  # UserError when missing
    st = file.stat()
    return hashlib.sha256(f"{file}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]


class ModelImageEncoder:
    """`UrbanCLIP.encode_image` of a saved run (UrbanCLIP or UrbanViT) as an encoder with a stable cache key."""

    def __init__(self, path: Path, kind: str = "urbanclip", batch_size: int = 64, model: Any = None):
        self.path = Path(path)
        self.kind = kind
        self.batch_size = int(batch_size)
        self._model = model
        self.key = f"{kind}-{self.path.resolve().name}-{checkpoint_stamp(self.path)}"
        self.label = f"{MODEL_KINDS.get(kind, kind)} ({self.path.name})"

    @property
    def model(self) -> Any:
        if self._model is None:
            from urbanclip.model.checkpoint import load_model

            self._model = load_model(self.path)
        return self._model

    def embed(self, workspace: Workspace, cell_ids: Sequence[str]) -> np.ndarray:
        return embed_cells(self.model, workspace, list(cell_ids), self.batch_size)


class ModelReadingEncoder(ModelImageEncoder):
    """`read_images` of a saved UrbanCLIP run as an encoder with its own cache key (the look-alikes'
    second half; see search.index)."""

    def __init__(self, path: Path, batch_size: int = 16, model: Any = None):
        super().__init__(path, "urbanclip", batch_size, model)
        self.key = f"{self.key}-reading"
        self.label = f"{self.label}, captioner readings"

    def embed(self, workspace: Workspace, cell_ids: Sequence[str]) -> np.ndarray:
        return _over_cells(workspace, cell_ids, 256, len(self.model.lead_sentences or []),
                           lambda tiles: read_images(self.model, tiles, self.batch_size))


def reads_tiles(model: Any) -> bool:
    """Whether `model` can give readings (a text tower and stored lead sentences)."""
    return bool(getattr(model, "has_text", False) and getattr(model, "lead_sentences", None))
