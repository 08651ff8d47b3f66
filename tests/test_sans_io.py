"""dtls/ is sans-I/O: no sockets, clocks, OS randomness or event loops (checked by AST)."""

from __future__ import annotations

import ast
from pathlib import Path

import dtls

FORBIDDEN_MODULES = {
    "socket",
    "time",
    "random",
    "secrets",
    "asyncio",
    "anyio",
    "trio",
    "selectors",
    "threading",
    "subprocess",
    "select",
    "ssl",
    "datetime",
}
FORBIDDEN_CALLS = {("os", "urandom"), ("os", "getrandom")}
PACKAGE = Path(dtls.__file__).parent


def _modules() -> list[Path]:
    """Every module of dtls/ except dtls/aio/, the one I/O layer, and __main__, which
    only hands over to the tool."""
    return [
        p
        for p in PACKAGE.rglob("*.py")
        if p.name != "__main__.py" and "aio" not in p.relative_to(PACKAGE).parts[:-1]
    ]


def test_no_io_imports() -> None:
    offenders = []
    for path in _modules():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in FORBIDDEN_MODULES:
                    offenders.append(f"{path.name}: import {name}")
            if isinstance(node, ast.ImportFrom) and node.module == "os":
                offenders.append(f"{path.name}: from os import ...")
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and (node.value.id, node.attr) in FORBIDDEN_CALLS
            ):
                offenders.append(f"{path.name}: {node.value.id}.{node.attr}")
    assert offenders == []
    assert len(_modules()) >= 10  # the check really looked at the package


def test_main_is_only_a_shim() -> None:
    tree = ast.parse((PACKAGE / "__main__.py").read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [getattr(n, "module", None) for n in imports] == ["dtls.aio.tool"]


def _called(call: ast.Call) -> str | None:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def test_nothing_in_dtls_imports_dtlspipe() -> None:
    """dtls/ is the library, dtlspipe/ an application of it: the tunnel may import the
    library, never the other way round (every module of dtls/, dtls/aio/ and the tool
    included; relative imports cannot leave the package)."""
    offenders = []
    paths = sorted(PACKAGE.rglob("*.py"))
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Call) and _called(node) in {"import_module", "__import__"}:
                names = [a.value for a in node.args[:1] if isinstance(a, ast.Constant)]
            offenders += [
                f"{path.relative_to(PACKAGE)}: {name}"
                for name in names
                if isinstance(name, str) and name.split(".")[0] == "dtlspipe"
            ]
    assert offenders == []
    assert any(p.parts[-3:-1] == ("aio", "tool") for p in paths)  # the tool was looked at
