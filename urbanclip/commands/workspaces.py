"""`workspaces`: list the workspaces the app's Train page offers, register or unregister one."""

from __future__ import annotations

import argparse

NAME = "workspaces"
HELP = "list / add / remove the workspaces the app's Train page may use"
DESCRIPTION = (HELP + ". The page offers the app's own workspace, every workspace under the workspaces root "
               "($URBANCLIP_WORKSPACES, default <urbanclip home>/workspaces) and the ones added here.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("list", "add", "remove"), nargs="?", default="list")
    p.add_argument("path", nargs="?", help="workspace folder (add / remove)")


def run(args: argparse.Namespace) -> int:
    from urbanclip.errors import UserError
    from urbanclip.services.workspaces import known_workspaces, register_workspace, unregister_workspace

    if args.action in ("add", "remove") and not args.path:
        raise UserError(f"`workspaces {args.action}` needs a PATH, e.g. `python -m urbanclip workspaces "
                        f"{args.action} /data/my-workspace`")
    if args.action == "add":
        print(f"registered {register_workspace(args.path)}")
    elif args.action == "remove":
        print(("unregistered " if unregister_workspace(args.path) else "was not registered: ") + args.path)
    for p in known_workspaces():
        print(p)
    return 0
