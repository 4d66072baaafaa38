"""The workspaces a page user may pick: the app's active one, the ones under the workspaces root,
and the ones an operator registered with `python -m urbanclip workspaces add PATH`.

The Train page offers only these (never a free path), and `runs.launch_run` checks the
choice again, so a page user cannot make the server read or rewrite any other folder.
The registry is `<home>/workspaces.json` ({"registered": [absolute paths]}).
"""

from __future__ import annotations

import json
from pathlib import Path

from urbanclip import paths
from urbanclip.data.workspace import MANIFEST, atomic_write_json
from urbanclip.errors import UserError
from urbanclip.services.context import workspace_dir

REGISTRY_FILE = "workspaces.json"


def registry_file() -> Path:
    return paths.home() / REGISTRY_FILE


def registered_workspaces() -> list[Path]:
    """Workspaces registered with `workspaces add` (absolute paths, in registration order)."""
    f = registry_file()
    if not f.is_file():
        return []
    try:
        data = json.loads(f.read_text("utf-8"))
        return [Path(p) for p in data.get("registered", []) if isinstance(p, str)]
    except (OSError, ValueError, AttributeError):
        raise UserError(f"{f} is not valid JSON ({{\"registered\": [paths]}}); fix or delete it") from None


def _is_workspace(p: Path) -> bool:
    return (p / MANIFEST).is_file()


def known_workspaces() -> list[Path]:
    """Resolved workspace folders a page may use, the active one first (deduplicated)."""
    found: list[Path] = [workspace_dir()]
    root = paths.workspaces_dir()
    if root.is_dir():
        found += sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and _is_workspace(d))
    try:
        found += registered_workspaces()
    except UserError:
        pass  # a damaged registry: `python -m urbanclip workspaces` reports it; the page offers the rest
    out: list[Path] = []
    for p in found:
        r = p.expanduser().resolve()
        if r not in out and (r == found[0].expanduser().resolve() or _is_workspace(r)):
            out.append(r)
    return out


def check_known_workspace(path: Path | str) -> Path:
    """`path` resolved when it is a known workspace, else UserError listing the known ones."""
    p = Path(path).expanduser().resolve()
    known = known_workspaces()
    if p not in known:
        raise UserError(f"workspace {p} is not one the app serves ({', '.join(str(k) for k in known)}); "
                        "an operator can add it with `python -m urbanclip workspaces add PATH`")
    return p


def register_workspace(path: Path | str) -> Path:
    """Add a workspace to the registry (it must be a workspace: a folder with manifest.json)."""
    p = Path(path).expanduser().resolve()
    if not _is_workspace(p):
        raise UserError(f"{p} is not an urbanclip workspace (no {MANIFEST}); import or build one first")
    reg = [r for r in registered_workspaces() if r.resolve() != p]
    atomic_write_json(registry_file(), {"registered": [str(r) for r in [*reg, p]]})
    return p


def unregister_workspace(path: Path | str) -> bool:
    """Remove a workspace from the registry; False when it was not registered."""
    p = Path(path).expanduser().resolve()
    reg = registered_workspaces()
    kept = [r for r in reg if r.resolve() != p]
    if len(kept) == len(reg):
        return False
    atomic_write_json(registry_file(), {"registered": [str(r) for r in kept]})
    return True
