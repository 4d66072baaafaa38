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
