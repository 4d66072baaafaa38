"""Command line: `python -m urbanclip <command> ...`.

Each subcommand is one module in `urbanclip/commands/` (the registry in
`urbanclip.commands`); they are found automatically, so adding a command never
edits this file. Imports of heavy libraries (torch) happen inside `run`,
keeping `--help` fast. Installed as the console script `urbanclip` too.

A command that writes a run folder names its argument in `RUN_FOLDER`; the folder is
held (urbanclip.runlock) while the command runs, so a second writer is refused with
`error:` naming the holder's pid. A command that rewrites its workspace (`WRITES_WORKSPACE`)
holds the workspace folder the same way. User errors, and I/O errors of the machine (disk
full, permission denied), print `error: ...` and exit 2. SIGTERM unwinds like Ctrl-C, so
no command leaves staging folders or temp files behind.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import signal
import sys
import threading
from pathlib import Path

from urbanclip import __version__, runlock
from urbanclip.commands import command_modules
from urbanclip.errors import Terminated, UserError
from urbanclip.paths import check_out_folder

# OSErrors a user fixes on their machine (not bugs): reported as `error:` + exit 2, no traceback
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m urbanclip",
        description="UrbanCLIP / Urban Insights: workspaces, pretraining, probes, search, text.")
    parser.add_argument("--version", action="version", version=f"urbanclip {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for mod in command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run, _name=mod.NAME, _run_folder=getattr(mod, "RUN_FOLDER", None),
                       _writes_workspace=getattr(mod, "WRITES_WORKSPACE", False))
    return parser


def os_error_message(e: OSError) -> str:
    where = f" {e.filename}" if e.filename else ""
    hint = {errno.ENOSPC: "free disk space", errno.EDQUOT: "free disk space (quota)",
            errno.EROFS: "choose a writable folder"}.get(e.errno, "check the path's permissions and free space")
    return (f"cannot read or write{where}: {e.strerror or e}; {hint} and run again "
            "(files are written atomically: nothing written before is damaged)")


def _raise_terminated(signum: int, frame: object = None) -> None:
    raise Terminated(signum)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    folder = getattr(args, args._run_folder, None) if args._run_folder else None
    workspace = getattr(args, "workspace", None) if args._writes_workspace else None
    # (pretrain installs its own SIGTERM handler while it trains: it checkpoints first)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        with contextlib.ExitStack() as held:
            if workspace and Path(workspace).is_dir():  # one command rewriting a workspace at a time
                held.enter_context(runlock.hold(workspace, args._name, clean=False))
            if folder:
                check_out_folder(folder)  # a file, a path under a file, unwritable: the one message for --out
                lock = held.enter_context(runlock.hold(folder, args._name))
                if lock.stale_pid or lock.orphans:
                    print(f"note: {lock.cleanup_note()}", file=sys.stderr)
            return int(args._run(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in ENVIRONMENT_ERRNOS:
            raise
        print(f"error: {os_error_message(e)}", file=sys.stderr)
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
