"""Where urbanclip keeps caches, runs and the embedded demo, and where its shipped assets are: one place.

`URBANCLIP_HOME` overrides the default `~/.cache/urbanclip`, so tests and CI can
point everything at a temporary folder; `URBANCLIP_RUNS` moves the runs root (where
the app puts every run it launches) and `URBANCLIP_WORKSPACES` the workspaces root
(whose workspaces the Train page offers). The shipped assets (demo model, vendored
Leaflet, favicon) are the package data `urbanclip.assets` (the repo's `assets/`
folder, see pyproject.toml); `URBANCLIP_ASSETS` points at another copy.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from urbanclip.errors import UserError

HOME_ENV = "URBANCLIP_HOME"
ASSETS_ENV = "URBANCLIP_ASSETS"
RUNS_ENV = "URBANCLIP_RUNS"
WORKSPACES_ENV = "URBANCLIP_WORKSPACES"


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


def workspaces_dir() -> Path:
    """The workspaces root: $URBANCLIP_WORKSPACES, else <home>/workspaces (the demo is built there)."""
    env = os.environ.get(WORKSPACES_ENV)
    return Path(env).expanduser() if env else home() / "workspaces"


def demo_workspace_dir() -> Path:
    """Where `python -m urbanclip demo` builds the synthetic demo workspace."""
    return home() / "workspaces" / "demo"


def runs_dir() -> Path:
    """The runs root: every run the app launches lives below it ($URBANCLIP_RUNS, else <home>/runs)."""
    env = os.environ.get(RUNS_ENV)
    return Path(env).expanduser() if env else home() / "runs"


def tile_cache_dir() -> Path:
    """Disk cache for tiles fetched from XYZ providers."""
    return home() / "tile-cache"


def check_out_folder(path: Path | str, flag: str = "--out") -> Path:
    """`path` resolved, when it is (or can become) a folder this process can write; else a UserError
    naming the problem. Commands call it before any work, so a bad `--out` never ends in a traceback."""
    p = Path(path).expanduser().resolve()
    if p.exists() and not p.is_dir():
        raise UserError(f"{flag} {p} is a file, not a folder; choose a folder path")
    parent = p
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{flag} {p}: {parent} is a file, so no folder can be created under it; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {p}: cannot write in {parent} (permission denied); choose a folder you can write to")
    return p


def check_out_file(path: Path | str, flag: str = "--out") -> Path:
    """Like `check_out_folder` for a file to (over)write."""
    p = Path(path).expanduser().resolve()
    if p.is_dir():
        raise UserError(f"{flag} {p} is a folder; give a file name inside it, e.g. {p / ('export' + (p.suffix or '.csv'))}")
    check_out_folder(p.parent, flag=f"{flag} {p}: its folder")
    if p.exists() and not os.access(p, os.W_OK):
        raise UserError(f"{flag} {p} cannot be overwritten (permission denied); choose another file")
    return p
