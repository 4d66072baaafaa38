"""The command line's commands: one module per command, and the public registry of them.

A command module exposes `NAME`, `HELP`, optional `DESCRIPTION`, `add_arguments(parser)`
and `run(args) -> int`. Commands are thin: parse arguments, call one library function,
print. Modules whose name starts with "_" are shared helpers, not commands. The CLI
(`urbanclip.cli`) and the app's Train page both use this registry: the page launches a
command by name and checks its arguments with the command's own parser before launch.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import pkgutil
from types import ModuleType

from urbanclip.errors import UserError


def command_modules() -> list[ModuleType]:
    """Every installed command module, by name."""
    mods = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    return mods


def command_names() -> list[str]:
    """Names of the installed commands (`urbanclip <name>`)."""
    return [m.NAME for m in command_modules()]


def command_parser(name: str, prog: str = "urbanclip") -> argparse.ArgumentParser:
    """The argument parser of one command, as the CLI builds it."""
    for mod in command_modules():
        if mod.NAME == name:
            p = argparse.ArgumentParser(prog=f"{prog} {name}", description=getattr(mod, "DESCRIPTION", mod.HELP))
            mod.add_arguments(p)
            return p
    raise UserError(f"unknown command {name!r}; commands: {', '.join(command_names())}")


def check_arguments(name: str, argv: list[str]) -> argparse.Namespace:
    """Parse `argv` with the command's own parser; a UserError quoting argparse's complaint when it fails."""
    parser = command_parser(name)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return parser.parse_args(argv)
    except SystemExit:
        msg = err.getvalue().strip().splitlines()
        raise UserError(f"arguments for `{name}` are not valid: {msg[-1] if msg else argv}") from None
