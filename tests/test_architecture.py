"""The package's layers, read from the source: imports run one way, downward.

    core (errors, paths, events, runlock) < data < search < model < training < text < evaluation
    < services < commands/cli < ui (Streamlit)

A module may import its own layer and the layers below it, never one above, lazy
imports inside functions included (they are real dependencies too). Only
`urbanclip.ui` imports Streamlit; only the CLI imports the commands.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "urbanclip"
LAYERS = ["core", "data", "search", "model", "training", "text", "evaluation", "services", "commands", "ui"]
CORE = {"urbanclip", "urbanclip.errors", "urbanclip.paths", "urbanclip.events", "urbanclip.runlock", "urbanclip.assets"}


def layer_of(module: str) -> str:
    """The layer a dotted module name belongs to."""
    if module in CORE:
        return "core"
    parts = module.split(".")
    if parts[1] in ("cli", "__main__", "commands"):
        return "commands"
    if parts[1] in LAYERS:
        return parts[1]
    raise AssertionError(f"{module} belongs to no layer; add it to a sub-package (or to CORE on purpose)")


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str) -> bool:
    """`urbanclip.<name>` is a module or package (not a name such as __version__)."""
    return (PACKAGE / f"{name}.py").is_file() or (PACKAGE / name).is_dir()


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import statement, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "urbanclip":  # `from urbanclip import paths` imports urbanclip.paths
                out += [(node.lineno, f"urbanclip.{a.name}" if is_module(a.name) else "urbanclip")
                        for a in node.names]
            else:
                out.append((node.lineno, node.module))
    return out


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    for path in SOURCES:
        layer_of(module_name(path))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_imports_point_downward(path):
    me = module_name(path)
    rank = LAYERS.index(layer_of(me))
    for line, target in imports(path):
        root = target.split(".")[0]
        if root == "streamlit" or root == "streamlit_folium":
            assert me == "urbanclip.ui", f"{me}:{line} imports {target}: only urbanclip.ui may import Streamlit"
        if root != "urbanclip":
            continue
        if target == "urbanclip.assets":
            continue
        there = layer_of(target)
        assert LAYERS.index(there) <= rank, (f"{me}:{line} ({layer_of(me)}) imports {target} ({there}), "
                                             "a higher layer; move the shared code down or invert the call")
        if there == "commands":
            assert layer_of(me) == "commands", f"{me}:{line} imports the CLI ({target}); only the CLI may"


def test_the_layer_rule_catches_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from urbanclip.services.context import AppContext\n")
    assert ("urbanclip.services.context" in [t for _, t in imports(bad)]
            and LAYERS.index(layer_of("urbanclip.services.context")) > LAYERS.index("model"))


def test_pyproject_lists_every_package():
    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]["packages"])
    found = {module_name(p) for p in PACKAGE.rglob("__init__.py")} | {"urbanclip.assets"}
    assert found == listed, f"pyproject.toml [tool.setuptools] packages differs: missing {found - listed}, extra {listed - found}"
