"""Device choice, DDP set-up when launched by `torchrun`, and the autocast policy.

One training script serves a laptop CPU and a multi-GPU box: torchrun sets
RANK / WORLD_SIZE / LOCAL_RANK, and everything else follows from them.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from urbanclip.errors import UserError


@dataclass
class DistEnv:
    """Where this process runs and which rank it is."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    """cuda > mps > cpu for "auto"; a clear error when an explicit device is absent."""
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was requested but no CUDA GPU is available; use device 'auto' or 'cpu'")
    if preference == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("device 'mps' was requested but Apple MPS is not available; use device 'auto' or 'cpu'")
    return torch.device("cuda", local_rank) if preference == "cuda" else torch.device(preference)


def init_distributed(preference: str = "auto") -> DistEnv:
    """Join the torchrun process group when WORLD_SIZE > 1, else a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistEnv(device=pick_device(preference))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(preference, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistEnv(device=device, rank=rank, world_size=world_size, local_rank=local_rank)


def shutdown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA only; CPU/MPS run in float32 (bf16 on CPU is slower and less exact)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()
