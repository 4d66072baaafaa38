"""Command line: `python -m urbanclip <command> ...`.

Each subcommand is one module in `urbanclip/commands/` (the registry in
`urbanclip.commands`); they are found automatically, so adding a command never
edits this file. Imports of heavy libraries (torch) happen inside `run`,
keeping `--help` fast. Installed as the console script `urbanclip` too.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from urbanclip import __version__
from urbanclip.commands import command_modules
from urbanclip.errors import Terminated, UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m urbanclip",
        description="UrbanCLIP / Urban Insights: workspaces, pretraining, probes, search, text.")
    parser.add_argument("--version", action="version", version=f"urbanclip {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for mod in command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _raise_terminated(signum: int, frame: object = None) -> None:
    raise Terminated(signum)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    # SIGTERM unwinds like Ctrl-C, so no command leaves staging folders or temp files behind
    # (pretrain installs its own handler while it trains: it checkpoints first)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return int(args._run(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Terminated as e:
        print(f"interrupted ({e})", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
