"""Errors a user can cause, with a message that names the file/field and what to do.

Everything raised as `UserError` is printed by the CLI and shown by the app as
is (no traceback), so the message must be complete on its own.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or files, not a bug in urbanclip."""


class ValidationError(UserError):
    """A workspace or imported table breaks the data model; nothing was written."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (how the app cancels a run), raised like Ctrl-C so `with` blocks and
    `finally` clauses clean up (staging folders, temp files) before the process exits."""

    def __init__(self, signum: int = 15):
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum
