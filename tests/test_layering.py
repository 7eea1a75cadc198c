"""The subpackages of esgd_asr import each other without cycles.

The graph is read from the source with ast, imports inside functions included. Run as a script
(`python tests/test_layering.py`) it prints every subpackage edge with the modules that make it, and the cycles.
"""
import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "esgd_asr"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Absolute names of everything `module` imports anywhere in its `source` (functions included), with every
    name a `from` import takes (which may be a submodule)."""
    package = module if is_package else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _subpackage(module: str) -> str | None:
    """The subpackage (or top-level module: errors, atomic) of esgd_asr that `module` belongs to."""
    parts = module.split(".")
    return parts[1] if parts[0] == "esgd_asr" and len(parts) > 1 else None


def subpackage_graph() -> dict[tuple[str, str], set[str]]:
    """(importer, imported) subpackage edges, each with the importing modules that make it."""
    nodes = {path.stem for path in PACKAGE.iterdir()
             if not path.name.startswith("__") and (path.is_dir() or path.suffix == ".py")}
    edges = defaultdict(set)
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _subpackage(_module_name(path))
        for name in imported_modules(path.read_text(), _module_name(path), path.name == "__init__.py"):
            target = _subpackage(name)
            if source and target and target != source and target in nodes:
                edges[source, target].add(f"{_module_name(path)} -> {name}")
    return edges


def cycles(edges) -> list[list[str]]:
    """Strongly connected components of more than one subpackage (Tarjan), each sorted."""
    graph = defaultdict(set)
    for source, target in edges:
        graph[source].add(target)
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_no_subpackage_cycles():
    edges = subpackage_graph()
    found = cycles(edges)
    detail = [
        f"{a} -> {b}: {', '.join(sorted(edges[a, b]))}"
        for component in found for a in component for b in component if (a, b) in edges
    ]
    assert not found, f"subpackage import cycles {found}:\n" + "\n".join(detail)


def test_graph_sees_lazy_and_relative_imports():
    source = "from .frames import FrameSet\nfrom .. import errors\n\ndef f():\n    import esgd_asr.gmm.align\n"
    names = imported_modules(source, "esgd_asr.hybrid.prepare")
    assert {"esgd_asr.hybrid.frames", "esgd_asr.errors", "esgd_asr.gmm.align"} <= names
    assert "esgd_asr.hybrid" in imported_modules("from . import frames", "esgd_asr.hybrid", is_package=True)
    assert cycles({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == [["a", "b", "c"]]
    assert cycles({("a", "b"), ("b", "c")}) == []


if __name__ == "__main__":
    edges = subpackage_graph()
    for (source, target), modules in sorted(edges.items()):
        print(f"{source} -> {target}  ({len(modules)})")
        if "-v" in sys.argv:
            for line in sorted(modules):
                print(f"    {line}")
    print("cycles:", cycles(edges) or "none")
