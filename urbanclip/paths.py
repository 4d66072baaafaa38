"""Where urbanclip keeps caches, runs and the embedded demo, and where its shipped assets are: one place.

`URBANCLIP_HOME` overrides the default `~/.cache/urbanclip`, so tests and CI can
point everything at a temporary folder. The shipped assets (demo model, vendored
Leaflet, favicon) are the package data `urbanclip.assets` (the repo's `assets/`
folder, see pyproject.toml); `URBANCLIP_ASSETS` points at another copy.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

HOME_ENV = "URBANCLIP_HOME"
ASSETS_ENV = "URBANCLIP_ASSETS"


def home() -> Path:
    """Root folder for caches, the demo workspace and runs."""
    env = os.environ.get(HOME_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "urbanclip"


def assets_dir() -> Path:
    """The shipped assets: $URBANCLIP_ASSETS, else the installed package data `urbanclip.assets`."""
    env = os.environ.get(ASSETS_ENV)
    if env:
        return Path(env).expanduser()
    return Path(str(importlib.resources.files("urbanclip.assets")))


def shipped_model_dir() -> Path:
    """The small checkpoint trained on the demo (assets/model/)."""
    return assets_dir() / "model"


def demo_workspace_dir() -> Path:
    """Where `python -m urbanclip demo` builds the synthetic demo workspace."""
    return home() / "workspaces" / "demo"


def runs_dir() -> Path:
    """Default parent folder of training / probe runs launched from the app."""
    return home() / "runs"


def tile_cache_dir() -> Path:
    """Disk cache for tiles fetched from XYZ providers."""
    return home() / "tile-cache"
