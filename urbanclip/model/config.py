"""Model and training configuration as plain data (open_clip style: configs are data).

The shipped configs are JSON files loaded by name, as open_clip's model configs are:
`urbanclip/model/configs/{tiny,demo,default}.json` ("default" = the paper-sized model,
"demo" = the small CPU model the shipped checkpoint uses, "tiny" = tests). A user's
config file is the same JSON ``{"base": NAME, "model": {...}, "train": {...}}``; fields
left out keep the values of `base`. `--config demo` on the command line means the
shipped demo config.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from urbanclip.errors import UserError

TEXT_SAMPLING = ("sentence", "full", "topics")


@dataclass
class ModelConfig:
    """Shape of the UrbanCLIP network (docs/METHOD.md sections 3-5)."""

    image_size: int = 224
    patch_size: int = 16
    width: int = 512                # ViT width
    depth: int = 12                 # ViT blocks
    heads: int = 8                  # ViT heads
    mlp_ratio: float = 4.0
    embed_dim: int = 512            # shared contrastive embedding size
    n_visual_queries: int = 256     # queries of the attentional pooler feeding cross-attention
    text_width: int = 512
    text_depth: int = 12            # decoder layers; the first half is unimodal, the rest multimodal
    text_heads: int = 8
    vocab_size: int = 8000
    context_length: int = 64        # tokens incl. BOS/EOS (the text [CLS] comes on top)
    init_checkpoint: str | None = None  # local timm / open_clip state dict to start the ViT from
    # open_clip's attentional pooler (unit-scale normed queries, Xavier projections); False = the
    # degenerate legacy pooler whose queries all returned the same vector (see model.AttentionalPooler)
    pooler_query_norm: bool = True

    # Fields added after the first checkpoints, with the value that rebuilds those checkpoints'
    # architecture; `checkpoint.model_config_of` fills them in when a stored config lacks them.
    LEGACY: ClassVar[dict[str, Any]] = {"pooler_query_norm": False}

    @property
    def unimodal_depth(self) -> int:
        return self.text_depth // 2

    @property
    def multimodal_depth(self) -> int:
        return self.text_depth - self.text_depth // 2

    def validate(self, where: str = "model config") -> None:
        """Raise UserError naming the first field that cannot build a model."""
        positive = ["image_size", "patch_size", "width", "depth", "heads", "embed_dim", "n_visual_queries",
                    "text_width", "text_heads", "vocab_size", "context_length"]
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise UserError(f"{where}: field '{name}' must be a positive integer, got {value!r}")
        if self.image_size % self.patch_size:
            raise UserError(f"{where}: image_size {self.image_size} must be a multiple of patch_size {self.patch_size}")
        if self.width % self.heads:
            raise UserError(f"{where}: width {self.width} must be divisible by heads {self.heads}")
        if self.text_width % self.text_heads:
            raise UserError(f"{where}: text_width {self.text_width} must be divisible by text_heads {self.text_heads}")
        if not isinstance(self.text_depth, int) or self.text_depth < 2:
            raise UserError(f"{where}: field 'text_depth' must be >= 2 (half unimodal, half multimodal), got {self.text_depth!r}")
        if self.context_length < 3:
            raise UserError(f"{where}: field 'context_length' must be >= 3 (BOS, a token, EOS), got {self.context_length}")
        if not isinstance(self.pooler_query_norm, bool):
            raise UserError(f"{where}: field 'pooler_query_norm' must be true or false, got {self.pooler_query_norm!r}")
        if self.vocab_size < 300:
            raise UserError(f"{where}: field 'vocab_size' must be >= 300 (256 byte symbols + special tokens + merges), got {self.vocab_size}")


@dataclass
class TrainConfig:
    """How pretraining runs (docs/METHOD.md section 6)."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup: int = 100               # linear warm-up steps, then cosine decay to lr * min_lr_ratio
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    lambda_con: float = 1.0         # 0 = ablation "w/o L_con"
    lambda_lm: float = 1.0          # 0 = ablation "w/o L_lm"
    text_column: str | None = None  # None = workspace.text_column() (refined when present)
    text_sampling: str = "sentence"  # "sentence": one random sentence per step; "full": whole description, truncated;
                                     # "topics": whole description in topic order (refine.topic_order)
    image_only: bool = False        # UrbanViT: no text, image-image (SimCLR) contrast of two views
    balance: float = 0.0            # 0 = tiles drawn alike; >0: tile weight = count(lead-sentence concept) ** -balance
                                    # (training.dataset.BalancedSampler; MetaCLIP-style rebalancing of rare descriptions)
    checkpoint_every: int = 200     # steps between checkpoints (0 = only at the end)
    max_steps: int | None = None    # stop early after this many steps (smoke tests, budgets)
    device: str = "auto"            # auto | cpu | cuda | mps
    threads: int = 0                # CPU threads per process; 0 = half the usable cores (>= 1), see train.cpu_threads
    eval_cells: int = 400           # val cells used for retrieval recall in the summary
    eval_generate: int = 96         # val tiles captioned for the land-use word hit rate
    log_every: int = 1              # steps between step events in metrics.jsonl

    def validate(self, where: str = "train config") -> None:
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise UserError(f"{where}: field '{name}' must be a positive integer, got {value!r}")
        if not self.lr > 0:
            raise UserError(f"{where}: field 'lr' must be > 0, got {self.lr!r}")
        for name in ("lambda_con", "lambda_lm", "weight_decay", "warmup", "checkpoint_every", "grad_clip", "threads"):
            if getattr(self, name) < 0:
                raise UserError(f"{where}: field '{name}' must be >= 0, got {getattr(self, name)!r}")
        if not self.image_only and self.lambda_con == 0 and self.lambda_lm == 0:
            raise UserError(f"{where}: lambda_con and lambda_lm are both 0, so nothing would be learned")
        if not 0 <= self.balance <= 1:
            raise UserError(f"{where}: field 'balance' must be within [0, 1] (0 = off, 1 = every concept alike), "
                            f"got {self.balance!r}")
        if self.text_sampling not in TEXT_SAMPLING:
            raise UserError(f"{where}: field 'text_sampling' must be one of {TEXT_SAMPLING}, got {self.text_sampling!r}")
        if self.device not in ("auto", "cpu", "cuda", "mps"):
            raise UserError(f"{where}: field 'device' must be auto, cpu, cuda or mps, got {self.device!r}")
        if self.max_steps is not None and self.max_steps <= 0:
            raise UserError(f"{where}: field 'max_steps' must be positive or null, got {self.max_steps!r}")


def config_names() -> list[str]:
    """The named configs shipped with the package (urbanclip/model/configs/<name>.json)."""
    folder = importlib.resources.files("urbanclip.model") / "configs"
    return sorted(p.name[:-len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def named_config(name: str) -> tuple[ModelConfig, TrainConfig]:
    """A shipped config by name ("tiny", "demo", "default"), loaded like open_clip's model configs."""
    names = config_names()
    if name not in names:
        raise UserError(f"no config named {name!r}; shipped configs: {names} (or pass a JSON file)")
    text = (importlib.resources.files("urbanclip.model") / "configs" / f"{name}.json").read_text("utf-8")
    return configs_from_dict(json.loads(text), where=f"config {name!r}", base_allowed=False)


def demo_config() -> tuple[ModelConfig, TrainConfig]:
    """Small model that pretrains on the embedded demo (1,200 cells) on 2 CPU cores in minutes."""
    return named_config("demo")


def tiny_config() -> tuple[ModelConfig, TrainConfig]:
    """The smallest sensible model, for tests."""
    return named_config("tiny")


def _from_dict(cls: type, data: Any, base: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise UserError(f"{where} must be a JSON object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"{where}: unknown field(s) {unknown}; known fields are {sorted(known)}")
    return dataclasses.replace(base, **data)


def configs_from_dict(data: dict, where: str = "config", base_allowed: bool = True) -> tuple[ModelConfig, TrainConfig]:
    """Build both configs from ``{"base": ..., "model": {...}, "train": {...}}`` and validate them.

    Fields left out keep the values of `base` (a shipped config's name; default: the dataclass
    defaults). "about" is free text saying why the config is what it is.
    """
    if not isinstance(data, dict):
        raise UserError(f"{where} must be a JSON object with 'model' and/or 'train' entries")
    extra = sorted(set(data) - {"base", "model", "train", "about"})
    if extra:
        raise UserError(f"{where}: unknown top-level key(s) {extra}; expected 'base', 'model', 'train', 'about'")
    if "base" in data and base_allowed:
        if data["base"] not in config_names():
            raise UserError(f"{where}: 'base' must be one of {config_names()} (the shipped configs), got {data['base']!r}")
        model0, train0 = named_config(str(data["base"]))
    elif "base" in data:
        raise UserError(f"{where}: a shipped config cannot have a 'base'")
    else:
        model0, train0 = ModelConfig(), TrainConfig()
    model = _from_dict(ModelConfig, data.get("model", {}), model0, f"{where}: 'model'")
    train = _from_dict(TrainConfig, data.get("train", {}), train0, f"{where}: 'train'")
    model.validate(f"{where}: 'model'")
    train.validate(f"{where}: 'train'")
    return model, train


def load_config(path: str | Path) -> tuple[ModelConfig, TrainConfig]:
    """A shipped config by name ("demo", "tiny", "default"; see `config_names`) or a JSON config file."""
    if str(path) in config_names():
        return named_config(str(path))
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"config file {path} does not exist; pass a JSON file or one of {config_names()}")
    try:
        data = json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"config file {path} is not valid JSON ({e})") from None
    return configs_from_dict(data, where=f"config file {path}")


def save_config(path: str | Path, model: ModelConfig, train: TrainConfig) -> None:
    """Write both configs as a complete JSON file that `load_config` reads back."""
    from urbanclip.data.workspace import atomic_write_json

    atomic_write_json(Path(path), {"model": asdict(model), "train": asdict(train)})
