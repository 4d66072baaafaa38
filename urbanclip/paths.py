"""Where urbanclip keeps caches and the embedded demo, in one place.

`URBANCLIP_HOME` overrides the default `~/.cache/urbanclip`, so tests and CI can
point everything at a temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
ASSETS_DIR = REPO_DIR / "assets"


def home() -> Path:
    """Root folder for caches, the demo workspace and runs."""
    env = os.environ.get("URBANCLIP_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "urbanclip"


def demo_workspace_dir() -> Path:
    """Where `python -m urbanclip demo` builds the synthetic demo workspace."""
    return home() / "workspaces" / "demo"


def runs_dir() -> Path:
    """Default parent folder of training / probe runs launched from the app."""
    return home() / "runs"


def tile_cache_dir() -> Path:
    """Disk cache for tiles fetched from XYZ providers."""
    return home() / "tile-cache"
