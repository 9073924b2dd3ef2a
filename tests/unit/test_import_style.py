"""One import style per name. A package's facade (its ``__init__``) re-exports names from its modules: code outside
the package imports such a name from the facade, code inside it from the module that defines it (a facade imported
from inside its own package is an import cycle waiting to happen). import-linter checks the layers; this checks
the style, so a name is never imported two ways."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("server", "tools", "storage", "notifiers")


def _exporting(body: list[ast.stmt]) -> list[ast.stmt]:
    """A facade's top-level statements, with those under ``if TYPE_CHECKING:`` (names it loads on first use)."""
    found: list[ast.stmt] = []
    for node in body:
        lazy = isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        found.extend(node.body if lazy else [node])
    return found


def facades() -> dict[str, tuple[str, dict[str, str]]]:
    """Each facade module, with its folder and the defining module of every name it re-exports."""
    found = {}
    for init in sorted(p for package in PACKAGES for p in (ROOT / package).rglob("__init__.py")):
        exported = {
            alias.asname or alias.name: node.module
            for node in _exporting(ast.parse(init.read_text()).body)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("signoff.")
            for alias in node.names
        }
        if exported:
            folder = init.parent.relative_to(ROOT).as_posix()
            found["signoff." + folder.replace("/", ".")] = (folder, exported)
    return found


def expected_module(path: str, module: str, name: str, known: dict[str, tuple[str, dict[str, str]]]) -> str:
    defining = known[module][1].get(name, module) if module in known else module
    for facade in sorted((f for f, (_, names) in known.items() if names.get(name) == defining), key=len):
        if not path.startswith(known[facade][0] + "/"):
            return facade  # the outermost facade the file is not inside
    return defining


def test_each_name_is_imported_from_its_facade_outside_its_package_and_from_its_module_inside() -> None:
    known = facades()
    assert "signoff.storage" in known and "signoff.notifiers" in known
    files = [p for folder in (*PACKAGES, "tests", "bench", "examples") for p in (ROOT / folder).rglob("*.py")]
    wrong = []
    for file in files:
        path = file.relative_to(ROOT).as_posix()
        if file.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("signoff."):
                for alias in node.names:
                    want = expected_module(path, node.module, alias.name, known)
                    if want != node.module:
                        wrong.append(f"{path}:{node.lineno}: import {alias.name} from {want}, not {node.module}")
    assert not wrong, "\n".join(wrong)
