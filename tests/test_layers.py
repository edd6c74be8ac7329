"""The layering of the tree, read from the source: who may import whom, and no import circles.

    launcher        the CLI and the embedded chain: may use everything
    gateway         tabagent only (the services are reached through generated stubs)
    *_svc           tabagent only, never another service
    tabagent        the core: nothing above it
    evalkit         tests and bench only (it may drive the transcriber offline)

Every import counts: at module level, inside a function (a lazy import is still a
dependency) or under `if TYPE_CHECKING:` (a circle of types is still a circle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tabagent", "separator_svc", "transcriber_svc", "video_svc", "gateway", "launcher", "evalkit")
MAY_IMPORT = {
    "tabagent": {"tabagent"},
    "separator_svc": {"tabagent", "separator_svc"},
    "transcriber_svc": {"tabagent", "transcriber_svc"},
    "video_svc": {"tabagent", "video_svc"},
    "gateway": {"tabagent", "gateway"},
    "evalkit": {"tabagent", "evalkit", "transcriber_svc"},
    "launcher": set(PACKAGES),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The project modules a file imports, wherever the import statement is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] in PACKAGES}


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for pkg in PACKAGES if (ROOT / pkg).is_dir() for p in (ROOT / pkg).rglob("*.py")
             if "v1" not in p.relative_to(ROOT).parts}
    edges = {}
    for name, path in files.items():
        # "from pkg import module" names a module when there is one; else the package.
        edges[name] = {dep if dep in files else dep.rsplit(".", 1)[0] for dep in imports(path)} - {name}
        edges[name] = {dep for dep in edges[name] if dep in files}
    return edges


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_only_what_it_may(package: str) -> None:
    wrong = {(mod, dep) for mod, deps in graph().items() if mod.split(".")[0] == package
             for dep in deps if dep.split(".")[0] not in MAY_IMPORT[package]}
    assert not wrong, f"{package} reaches above its layer: {sorted(wrong)}"


def test_no_import_circles() -> None:
    edges = graph()
    # Package __init__ files re-export their modules; a module importing its own
    # package's API is not a circle in the sense that matters here.
    edges = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in edges.items()}
    circles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                circles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)
