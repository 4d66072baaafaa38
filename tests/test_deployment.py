"""Deployment defaults: the app listens on this machine only unless an operator says otherwise."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_app_listens_on_localhost_by_default():
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text("utf-8"))
    assert config["server"]["address"] in ("localhost", "127.0.0.1")
    readme = (REPO / "README.md").read_text("utf-8")
    assert "## Sharing the app" in readme and "reverse proxy" in readme and "server.address" in readme
