"""Shared fixtures: an isolated URBANCLIP_HOME, small torch thread counts, and the
optional reference data in ../shared/data (tests that need it skip when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("URBANCLIP_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("urbanclip-home")
    monkeypatch.setenv("URBANCLIP_HOME", str(home))
    return home


@pytest.fixture(scope="session", autouse=True)
def _small_threads():
    try:
        import torch

        torch.set_num_threads(2)
    except ImportError:
        pass


@pytest.fixture(scope="session")
def release_dir() -> Path:
    """../shared/data/urbanclip (the public UrbanCLIP release copy); skip when absent."""
    d = SHARED_DATA / "urbanclip"
    if not (d / "indicators.csv").is_file():
        pytest.skip(f"reference data not found at {d}")
    return d


@pytest.fixture(scope="session")
def tiny_workspace_path(tmp_path_factory) -> Path:
    """A tiny synthetic demo workspace (3 cities x 8x8 cells, 64 px tiles), built once.

    Do not modify it; use `tiny_workspace_copy` for a private, writable copy.
    """
    from urbanclip.data.demo import build_demo

    root = tmp_path_factory.mktemp("tiny") / "ws"
    build_demo(root, seed=0, n_cities=3, rows=8, cols=8, tile_px=64)
    return root


@pytest.fixture
def tiny_workspace_copy(tiny_workspace_path, tmp_path) -> Path:
    import shutil

    dest = tmp_path / "ws"
    shutil.copytree(tiny_workspace_path, dest)
    return dest
