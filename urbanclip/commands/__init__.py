"""The command line's commands: one module per command, and the public registry of them.

A command module exposes `NAME`, `HELP`, optional `DESCRIPTION`, `add_arguments(parser)`
and `run(args) -> int`, and `RUN_FOLDER` (the argument naming the run folder it writes,
held by urbanclip.runlock while it runs) when it writes one, `WRITES_WORKSPACE = True` when
it rewrites its --workspace (held the same way). Commands are thin: parse arguments, call one library function,
print. Modules whose name starts with "_" are shared helpers, not commands. The CLI
(`urbanclip.cli`) and the app's Train page both use this registry: the page launches a
command by name (`page_commands`) and checks its arguments with the command's own parser
and the page's policy (`check_page_arguments`, urbanclip.commands._page) before launch.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import pkgutil
from types import ModuleType
from typing import Any

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


def accepts(name: str, option: str) -> bool:
    """True when the command's parser has `option` (e.g. "--out")."""
    return option in command_parser(name)._option_string_actions


def given_options(name: str, argv: list[str]) -> dict[str, Any]:
    """{dest: value} of only the options present in `argv`, parsed by the command's own parser (required
    options relaxed, abbreviations and `--opt=value` forms resolved); UserError when argv does not parse."""
    parser = command_parser(name)
    parser._defaults.clear()  # parser-level defaults (set_defaults) are not options the user gave
    for action in parser._actions:
        if not isinstance(action, argparse._HelpAction):
            action.default = argparse.SUPPRESS
            if action.option_strings:
                action.required = False
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return vars(parser.parse_args(argv))
    except SystemExit:
        msg = err.getvalue().strip().splitlines()
        raise UserError(f"arguments for `{name}` are not valid: {msg[-1] if msg else argv}") from None


def page_commands() -> list[str]:
    """Commands the app's Train page may launch (see urbanclip.commands._page)."""
    from urbanclip.commands._page import PAGE_OPTIONS

    installed = set(command_names())
    return [c for c in PAGE_OPTIONS if c in installed]


def page_options(name: str) -> list[str]:
    """The options of `name` a Train-page user may pass, as flags (e.g. --encoder)."""
    from urbanclip.commands._page import PAGE_OPTIONS

    actions = {a.dest: a for a in command_parser(name)._actions}
    return [max(actions[d].option_strings, key=len) for d in PAGE_OPTIONS.get(name, {}) if d in actions]


def check_page_arguments(name: str, extra: list[str], form: list[str]) -> list[str]:
    """Check a Train-page launch: `extra` (the user's Extra arguments) may hold only the command's allowed
    options, with values that pass their checks; `form` (--workspace, --out the page sets) is added.
    Returns the extra arguments to launch with: the allowed options rebuilt from what was parsed (paths
    made absolute); UserError naming the refused option otherwise."""
    from urbanclip.commands._page import ALWAYS_CHECKED, PAGE_OPTIONS

    if name not in PAGE_OPTIONS:
        raise UserError(f"`{name}` cannot be launched from the Train page; launchable: {', '.join(page_commands())}")
    allowed = PAGE_OPTIONS[name]
    given = given_options(name, extra)
    actions = {a.dest: a for a in command_parser(name)._actions}

    def flag(dest: str) -> str:
        a = actions.get(dest)
        return max(a.option_strings, key=len) if a is not None and a.option_strings else dest

    refused = [flag(d) for d in given if d not in allowed]
    if refused:
        raise UserError(f"option {', '.join(refused)} cannot be passed to `{name}` from the Train page (the form "
                        f"sets --workspace and --out); allowed: {', '.join(flag(d) for d in allowed) or 'none'}")
    args = check_arguments(name, [*extra, *form])
    argv: list[str] = []
    for dest, value in given.items():
        check = allowed[dest]
        if check is not None:
            value = check(flag(dest), value)
        action = actions[dest]
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            argv.append(flag(dest))
        elif isinstance(value, list):
            for v in value:
                argv += [flag(dest), str(v)]
        else:
            argv += [flag(dest), str(value)]
    for dest in allowed:
        if (name, dest) in ALWAYS_CHECKED and dest not in given and allowed[dest] is not None:
            allowed[dest](flag(dest), getattr(args, dest, None))
    return argv


def launch_from_page(command: str, workspace, out: str, extra: str = "", pretrain: dict | None = None):
    """Check and start a Train-page launch (see urbanclip.commands._page.launch_from_page)."""
    from urbanclip.commands._page import launch_from_page as launch

    return launch(command, workspace, out, extra, pretrain)
