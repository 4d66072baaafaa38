"""`info`: summarise a workspace (cities, cells, images, descriptions, indicators)."""

from __future__ import annotations

import argparse

NAME = "info"
HELP = "summarise a workspace"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", "-w", required=True, help="workspace folder")


def run(args: argparse.Namespace) -> int:
    from urbanclip.data.workspace import Workspace

    print(Workspace.load(args.workspace).summary())
    return 0
