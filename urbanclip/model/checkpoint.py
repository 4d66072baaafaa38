"""Self-describing checkpoints: everything needed to rebuild the model travels with it.

A checkpoint is one `torch.save` dict: format/version, kind (urbanclip | urbanvit),
model and train config, the tokenizer (JSON string), weights, optionally the
optimizer/scheduler state and step for `--resume`, the urbanclip version and git
commit, and the fingerprint of the workspace it was trained on.

A run folder holds `checkpoint.pt` (full training state, for resume) and
`model.pt` (weights only, fp16, what the app loads). Writes are atomic
(temp file + os.replace), so an interrupted save never leaves a torn file.
"""

from __future__ import annotations

import dataclasses
import io
import subprocess
from pathlib import Path
from typing import Any

import torch

from urbanclip import __version__
from urbanclip.data.workspace import atomic_write_bytes
from urbanclip.errors import UserError
from urbanclip.model.config import ModelConfig, TrainConfig

FORMAT = "urbanclip-checkpoint"
VERSION = 1
TRAIN_STATE_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"


def git_commit() -> str | None:
    """The repository's commit, when urbanclip runs from a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def code_version() -> dict[str, str | None]:
    return {"urbanclip": __version__, "git": git_commit(), "torch": str(torch.__version__)}


def unwrap(model: torch.nn.Module) -> Any:
    """The UrbanCLIP inside a DDP / training wrapper."""
    while hasattr(model, "module"):
        model = model.module
    return model


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save through the workspace's atomic writer (temp file + fsync + rename)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def save_checkpoint(path: str | Path, model: torch.nn.Module, *, step: int = 0, epoch: int = 0,
                    train_cfg: TrainConfig | None = None, workspace_fingerprint: str | None = None,
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
                    extra: dict[str, Any] | None = None, half: bool = False) -> Path:
    """Atomically write a checkpoint; `half=True` stores float weights as fp16 (inference exports)."""
    m = unwrap(model)
    state = m.state_dict()
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    ckpt = {
        "format": FORMAT,
        "version": VERSION,
        "kind": m.kind,
        "model_config": dataclasses.asdict(m.config),
        "train_config": dataclasses.asdict(train_cfg) if train_cfg is not None else None,
        "tokenizer": m.tokenizer.to_str() if m.tokenizer is not None else None,
        "state_dict": {k: v.detach().cpu() for k, v in state.items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "step": int(step),
        "epoch": int(epoch),
        "code": code_version(),
        "workspace_fingerprint": workspace_fingerprint,
        "extra": extra or {},
    }
    try:
        atomic_torch_save(ckpt, Path(path))
    except OSError as e:  # disk full, read-only folder: the temp file is gone, the previous checkpoint intact
        raise UserError(f"cannot write checkpoint {path}: {e.strerror or e}; free disk space (or choose a writable "
                        "folder) and run again; the checkpoint saved before is intact (a training run continues "
                        "from it with --resume)") from None
    return Path(path)


def resolve(path: str | Path, prefer: tuple[str, ...] = (MODEL_FILE, TRAIN_STATE_FILE)) -> Path:
    """A checkpoint file, or the preferred checkpoint inside a run folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        for name in prefer:
            if (path / name).is_file():
                return path / name
        raise UserError(f"run folder {path} holds no checkpoint ({' or '.join(prefer)}); "
                        "train one with `python -m urbanclip pretrain --workspace W --out RUN`")
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; train one with "
                        "`python -m urbanclip pretrain --workspace W --out RUN`")
    return path


def read_checkpoint(path: str | Path, prefer: tuple[str, ...] = (MODEL_FILE, TRAIN_STATE_FILE)) -> dict[str, Any]:
    """Load and check a checkpoint dict (UserError when it is not one of ours, or is damaged)."""
    file = resolve(path, prefer)
    try:
        ckpt = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle / zip errors of many kinds
        raise UserError(f"checkpoint {file} cannot be read ({type(e).__name__}: {e}); it is damaged or not a "
                        "torch file; retrain or copy it again") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{file} is not an urbanclip checkpoint (no format {FORMAT!r}); pass a run folder or "
                        "a file written by `python -m urbanclip pretrain`")
    if int(ckpt.get("version", 0)) > VERSION:
        raise UserError(f"checkpoint {file} has format version {ckpt['version']}, newer than this urbanclip "
                        f"understands ({VERSION}); upgrade urbanclip")
    ckpt["_path"] = str(file)
    return ckpt


def model_config_of(ckpt: dict[str, Any]) -> ModelConfig:
    where = ckpt.get("_path", "checkpoint")
    data = ckpt.get("model_config")
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    if not isinstance(data, dict):
        raise UserError(f"checkpoint {where} has no model config; it is damaged")
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"checkpoint {where} has model config field(s) {unknown} this urbanclip does not know; "
                        "it was written by a newer version")
    return ModelConfig(**{**ModelConfig.LEGACY, **data})


def check_compatible(ckpt: dict[str, Any], model_cfg: ModelConfig) -> None:
    """UserError naming every model config field where `model_cfg` differs from the checkpoint's."""
    stored = dataclasses.asdict(model_config_of(ckpt))
    wanted = dataclasses.asdict(model_cfg)
    diff = [f"model.{k}={stored[k]!r} in the checkpoint but {wanted[k]!r} in the config"
            for k in stored if k != "init_checkpoint" and stored[k] != wanted[k]]
    if diff:
        raise UserError(f"checkpoint {ckpt.get('_path', '')} is incompatible with the requested config: "
                        + "; ".join(diff) + ". Use the checkpoint's config or start a new run folder")


def build_model(ckpt: dict[str, Any]) -> Any:
    """Rebuild the model a checkpoint describes and load its weights (float32)."""
    from urbanclip.model.model import UrbanCLIP
    from urbanclip.model.tokenizer import UrbanTokenizer

    where = ckpt.get("_path", "checkpoint")
    cfg = model_config_of(ckpt)
    kind = ckpt.get("kind")
    if kind not in ("urbanclip", "urbanvit"):
        raise UserError(f"checkpoint {where} has unknown kind {kind!r}; expected 'urbanclip' or 'urbanvit'")
    try:
        cfg.validate(f"checkpoint {where}: model config")
        model = UrbanCLIP(cfg, with_text=kind == "urbanclip")
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"checkpoint {where}: its model config cannot build a model ({e})") from None
    state = ckpt.get("state_dict") or {}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise UserError(f"checkpoint {where} does not match the {kind} architecture of this urbanclip: "
                        f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                        f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise UserError(f"checkpoint {where}: weight {k!r} has shape {tuple(v.shape)} but its model config "
                            f"builds {tuple(own[k].shape)}; the checkpoint is inconsistent or damaged")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    if ckpt.get("tokenizer"):
        model.attach_tokenizer(UrbanTokenizer.from_str(ckpt["tokenizer"]))
    elif kind == "urbanclip":
        raise UserError(f"checkpoint {where} has no tokenizer; it is damaged")
    return model


def load_model(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """The model of a run folder or checkpoint file, in eval mode with its tokenizer attached."""
    ckpt = read_checkpoint(path)
    model = build_model(ckpt)
    model.checkpoint_path = resolve(path)
    # where it was trained (the app notes a model from another workspace or domain)
    model.train_provenance = {"workspace_fingerprint": ckpt.get("workspace_fingerprint"), **(ckpt.get("extra") or {})}
    # the grounding badge's reference (train.evaluate); None for checkpoints written before it existed
    grounding = (ckpt.get("extra") or {}).get("grounding") or {}
    model.lead_support_reference = grounding.get("lead_support_quantiles")
    model.lead_sentences = grounding.get("lead_sentences")  # None before they were stored
    model = model.to(device).eval()
    # ... and their text-tower embeddings, encoded once here instead of on every click
    model.lead_embeddings = None
    if model.lead_sentences and getattr(model, "has_text", False):
        with torch.inference_mode():
            model.lead_embeddings = model.encode_text(list(model.lead_sentences)).float().cpu().numpy()
    return model


def export_for_inference(src: str | Path, dst: str | Path, half: bool = True) -> Path:
    """Write a small copy of a checkpoint for inference: weights (fp16), configs, tokenizer; no optimizer."""
    ckpt = read_checkpoint(src, prefer=(TRAIN_STATE_FILE, MODEL_FILE))
    model = build_model(ckpt)
    train_cfg = TrainConfig(**ckpt["train_config"]) if ckpt.get("train_config") else None
    return save_checkpoint(dst, model, step=ckpt.get("step", 0), epoch=ckpt.get("epoch", 0), train_cfg=train_cfg,
                           workspace_fingerprint=ckpt.get("workspace_fingerprint"),
                           extra={**ckpt.get("extra", {}), "exported_from": str(ckpt["_path"])}, half=half)
