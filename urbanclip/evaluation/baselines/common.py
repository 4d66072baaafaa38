"""Shared pieces of the trainable baselines: pixels, a small CNN, augmentations,
pair samplers from the grid / descriptions, and two training loops
(InfoNCE for the SimCLR-style encoders, triplet margin for Tile2Vec).

Tiles are fed as RGB in [0, 1] at a small size (64 px by default): the
baselines each learn their own input statistics (BatchNorm), so no dataset
normalisation constants are involved. CPU budgets are small by design.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from urbanclip.errors import UserError
from urbanclip.data.workspace import Workspace
from urbanclip.model.losses import contrastive_loss

# (step, total_steps, loss) -> None; used by the compare command's progress bar
StepCallback = Callable[[int, int, float], None]


@dataclass
class BaselineConfig:
    """Budget shared by the trainable baselines."""

    image_size: int = 64
    dim: int = 128          # embedding size
    width: int = 32         # channels of the first conv layer
    epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    fit_on: str = "train"   # "train": learn from train-split tiles only (like pretraining); "all": every tile

    def digest(self) -> str:
        """Short hash of the config: part of the encoder's cache key."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


def few_threads(fn: Callable) -> Callable:
    """Run a baseline's embed() with the probe's thread limit (see urbanclip.evaluation.probe.single_thread)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from urbanclip.evaluation.probe import single_thread

        with single_thread():
            return fn(*args, **kwargs)

    return wrapper


def fit_subset(workspace: Workspace, cell_ids: Sequence[str], fit_on: str) -> list[int]:
    """Indices (into cell_ids) of the tiles a baseline learns from; all cells are embedded afterwards.
    Learning from the train split only keeps val/test tiles unseen, as in pretraining."""
    if fit_on == "all":
        return list(range(len(cell_ids)))
    if fit_on != "train":
        raise UserError(f"baseline option fit_on must be 'train' or 'all', got {fit_on!r}")
    split = dict(zip(workspace.cells["cell_id"], workspace.cells["split"]))
    idx = [i for i, c in enumerate(cell_ids) if split.get(c) == "train"]
    if len(idx) < 4:
        raise UserError(f"only {len(idx)} train-split cells with images; baselines need at least 4 (or pass fit_on=all)")
    return idx


def seed_everything(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def load_pixels(workspace: Workspace, cell_ids: Sequence[str], size: int) -> torch.Tensor:
    """Tiles of `cell_ids` as a float tensor [N, 3, size, size] in [0, 1]."""
    out = torch.empty((len(cell_ids), 3, size, size), dtype=torch.float32)
    for i, cid in enumerate(cell_ids):
        img = workspace.load_image(cid, size)
        if img is None:
            raise UserError(f"cell {cid!r} has no image; image baselines can only embed cells with imagery")
        out[i] = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
    return out


class ConvEncoder(nn.Module):
    """Four stride-2 conv blocks, global average pooling, a linear layer: [N,3,S,S] -> [N,dim]."""

    def __init__(self, width: int = 32, dim: int = 128):
        super().__init__()
        chans = [3, width, width * 2, width * 4, width * 4]
        layers: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(chans[-1], dim)
        self.feature_channels = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x).mean(dim=(2, 3)))


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Satellite-friendly augmentations: flips, a random right-angle rotation, brightness/contrast jitter."""
    n = x.shape[0]
    flip_h = torch.rand(n, generator=gen) < 0.5
    flip_v = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip_h[:, None, None, None], x.flip(3), x)
    x = torch.where(flip_v[:, None, None, None], x.flip(2), x)
    k = int(torch.randint(0, 4, (1,), generator=gen))
    x = torch.rot90(x, k, dims=(2, 3))
    bright = (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.3
    contrast = 1.0 + (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.4
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contrast + mean + bright).clamp(0.0, 1.0)


@torch.no_grad()
def embed_in_batches(fn: Callable[[torch.Tensor], torch.Tensor], pixels: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    return torch.cat([fn(pixels[i:i + batch_size]) for i in range(0, len(pixels), batch_size)]).float().numpy()


# ---------------------------------------------------------------------------------
# who counts as a positive / negative


def grid_positions(workspace: Workspace, cell_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(city index, row, col) of each cell, for adjacency."""
    cells = workspace.cells.set_index("cell_id").loc[list(cell_ids)]
    cities = {c: i for i, c in enumerate(sorted(set(cells["city"])))}
    return (np.array([cities[c] for c in cells["city"]]), cells["row"].to_numpy(int), cells["col"].to_numpy(int))


def grid_neighbours(workspace: Workspace, cell_ids: Sequence[str], radius: int = 1) -> list[np.ndarray]:
    """For each cell, the indices (into cell_ids) of cells of the same city within `radius` rows/cols."""
    city, row, col = grid_positions(workspace, cell_ids)
    where = {(c, r, k): i for i, (c, r, k) in enumerate(zip(city, row, col))}
    out = []
    for c, r, k in zip(city, row, col):
        nb = [where[(c, r + dr, k + dc)] for dr in range(-radius, radius + 1) for dc in range(-radius, radius + 1)
              if (dr or dc) and (c, r + dr, k + dc) in where]
        out.append(np.array(nb, dtype=np.int64))
    return out


def distant_sampler(workspace: Workspace, cell_ids: Sequence[str], min_distance: int = 4) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    """Sampler of negatives: for each anchor, a random cell at least `min_distance` rows/cols away
    (or in another city), as Tile2Vec's distant tiles."""
    city, row, col = grid_positions(workspace, cell_ids)
    n = len(cell_ids)

    def far(i: int, j: int) -> bool:
        return city[i] != city[j] or max(abs(row[i] - row[j]), abs(col[i] - col[j])) >= min_distance

    def sample(anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = np.empty(len(anchors), dtype=np.int64)
        for t, i in enumerate(anchors):
            j = int(rng.integers(n))
            for _ in range(20):
                if far(i, j):
                    break
                j = int(rng.integers(n))
            out[t] = j
        return out

    return sample


def text_neighbours(texts: Sequence[str], k: int = 5,
                    similarity_fn: Callable[[Sequence[str]], np.ndarray] | None = None) -> list[np.ndarray]:
    """For each cell, the k cells whose descriptions are most similar (cells without text: none).

    similarity_fn(texts) -> [N, N] similarity matrix; default TF-IDF cosine (sklearn),
    so a sentence encoder can be plugged in later.
    """
    has = np.array([bool(t and t.strip()) for t in texts])
    out = [np.zeros(0, dtype=np.int64) for _ in texts]
    idx = np.flatnonzero(has)
    if len(idx) < 2:
        return out
    sub = [texts[i] for i in idx]
    if similarity_fn is None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        m = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1).fit_transform(sub)
        sim = (m @ m.T).toarray()
    else:
        sim = np.asarray(similarity_fn(sub), dtype=np.float64)
    np.fill_diagonal(sim, -np.inf)
    kk = min(k, len(idx) - 1)
    top = np.argpartition(-sim, kk - 1, axis=1)[:, :kk]
    for a, row in zip(idx, top):
        out[a] = idx[row]
    return out


def pick_positive(anchors: np.ndarray, positives: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """One positive per anchor; an anchor with no positive is paired with itself (two augmentations)."""
    return np.array([int(rng.choice(positives[i])) if len(positives[i]) else int(i) for i in anchors], dtype=np.int64)


# ---------------------------------------------------------------------------------
# training loops


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """SimCLR's NT-Xent with cross-view negatives: the model's one InfoNCE at a fixed temperature."""
    scale = torch.tensor(math.log(1.0 / temperature))
    return contrastive_loss(F.normalize(z1, dim=-1), F.normalize(z2, dim=-1), scale)


def _steps(n: int, cfg: BaselineConfig) -> int:
    return cfg.epochs * max(1, n // cfg.batch_size)


def _fit(enc: nn.Module, head: nn.Module | None, n: int, cfg: BaselineConfig, rng: np.random.Generator,
         batch_loss: Callable[[np.ndarray], torch.Tensor], on_step: StepCallback | None) -> ConvEncoder:
    """The loop every self-supervised baseline shares: seeded epochs of shuffled batches,
    AdamW + one-cycle LR, `batch_loss(anchor_indices)` per step."""
    params = list(enc.parameters()) + (list(head.parameters()) if head is not None else [])
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    total, step = _steps(n, cfg), 0
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.1)
    enc.train()
    bs = min(cfg.batch_size, n)
    while step < total:
        perm = rng.permutation(n)
        for b in range(0, n - bs + 1, bs):
            if step >= total:
                break
            loss = batch_loss(perm[b:b + bs])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if on_step:
                on_step(step, total, loss.item())
    return enc.eval()


def train_pairs(pixels: torch.Tensor, positives: list[np.ndarray], cfg: BaselineConfig, temperature: float = 0.2,
                on_step: StepCallback | None = None) -> ConvEncoder:
    """SimCLR-style training where the second view of a cell is (an augmentation of) one of its positives."""
    rng = seed_everything(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    n = len(pixels)
    if n < 4:
        raise UserError(f"contrastive baselines need at least 4 tiles, the workspace has {n}")
    enc = ConvEncoder(cfg.width, cfg.dim)
    head = nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.ReLU(), nn.Linear(cfg.dim, 64))  # SimCLR projection head

    def batch_loss(a: np.ndarray) -> torch.Tensor:
        p = pick_positive(a, positives, rng)
        z1 = head(enc(augment(pixels[a], gen)))
        z2 = head(enc(augment(pixels[p], gen)))
        return info_nce(z1, z2, temperature)

    return _fit(enc, head, n, cfg, rng, batch_loss, on_step)


def train_triplets(pixels: torch.Tensor, positives: list[np.ndarray],
                   negative_sampler: Callable[[np.ndarray, np.random.Generator], np.ndarray],
                   cfg: BaselineConfig, margin: float = 1.0, l2: float = 0.01,
                   on_step: StepCallback | None = None) -> ConvEncoder:
    """Tile2Vec's objective: max(0, d(a,p) - d(a,n) + margin) + l2 * (|z_a| + |z_p| + |z_n|)."""
    rng = seed_everything(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    n = len(pixels)
    if n < 4:
        raise UserError(f"Tile2Vec needs at least 4 tiles, the workspace has {n}")
    enc = ConvEncoder(cfg.width, cfg.dim)

    def batch_loss(a: np.ndarray) -> torch.Tensor:
        p = pick_positive(a, positives, rng)
        ng = negative_sampler(a, rng)
        za, zp, zn = (enc(augment(pixels[i], gen)) for i in (a, p, ng))
        loss = F.relu((za - zp).norm(dim=1) - (za - zn).norm(dim=1) + margin).mean()
        return loss + l2 * (za.norm(dim=1) + zp.norm(dim=1) + zn.norm(dim=1)).mean()

    return _fit(enc, None, n, cfg, rng, batch_loss, on_step)


def finite_or_raise(name: str, loss: float) -> None:
    if not math.isfinite(loss):
        raise UserError(f"{name} training diverged (loss={loss}); lower its learning rate")
