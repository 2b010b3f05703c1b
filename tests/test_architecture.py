"""How the library's modules depend on each other: imports run one way (docs/architecture.md).

Read from the source, every import counts, the ones inside functions too (they run when the function does);
only those under `if TYPE_CHECKING:` are left out, because they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "forecaster"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The modules `path` imports when it runs (`from a.b import c` counts as a.b.c when that is a module)."""
    tree = ast.parse(path.read_text())
    type_only = {id(node) for block in ast.walk(tree)
                 if isinstance(block, ast.If) and getattr(block.test, "id", None) == "TYPE_CHECKING"
                 for node in ast.walk(block)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


def library_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in LIBRARY.rglob("*.py")}
    return {name: {m for m in imports(path) if m in modules and m != name} for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_library_module_imports_one_that_imports_it_back():
    graph = library_graph()
    assert len(graph) > 40  # the walk found the library
    assert "forecaster.predictor" in graph["forecaster.bundle"]  # and reads imports (a check that cannot pass empty)
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x\ndef f():\n    from y import z\n"
    path = ROOT / "tests" / ".architecture-probe.py"
    path.write_text(source)
    try:
        assert imports(path) == {"typing", "typing.TYPE_CHECKING", "y", "y.z"}
    finally:
        path.unlink()


def test_the_library_never_imports_a_job():
    for path in LIBRARY.rglob("*.py"):
        jobs = {m for m in imports(path) if m.split(".")[0] in ("forecaster_pipelines", "pipelines")}
        assert not jobs, f"{path.relative_to(ROOT)} imports {sorted(jobs)}"


def test_the_old_serving_path_still_imports_and_says_where_things_went():
    import subprocess
    import sys

    code = "from forecaster.serving.spark import predict_spark; print(predict_spark.__module__)"
    moved = subprocess.run([sys.executable, "-W", "always::DeprecationWarning", "-c", code], capture_output=True,
                           text=True, timeout=120)
    assert moved.returncode == 0 and moved.stdout.strip() == "forecaster.spark"
    assert "forecaster.serving is deprecated: use forecaster.spark and forecaster.mlflow_model" in moved.stderr
