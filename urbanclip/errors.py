"""Errors a user can cause, with a message that names the file/field and what to do.

Everything raised as `UserError` is printed by the CLI and shown by the app as
is (no traceback), so the message must be complete on its own.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or files, not a bug in urbanclip."""


class ValidationError(UserError):
    """A workspace or imported table breaks the data model; nothing was written."""
