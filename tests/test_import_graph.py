"""The package's modules all import, and their imports form no cycle.

The graph is read from the source with ``ast`` and includes imports made inside functions:
a function-local import hides a cycle from Python's import machinery but still couples
the two modules both ways. ``import escmvq.runtime`` is an edge to the package's
``__init__`` (which runs its imports); ``from escmvq.runtime import soft`` is an edge to the
submodule ``escmvq.runtime.soft``.
"""
from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import escmvq

PKG = Path(escmvq.__file__).resolve().parent


def package_modules(root: Path = PKG, name: str = "escmvq") -> dict[str, tuple[Path, bool]]:
    """``{module name: (file, is_package)}`` for every ``.py`` file below ``root``."""
    mods = {}
    for p in root.rglob("*.py"):
        parts = [name, *p.relative_to(root).with_suffix("").parts]
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)
    return mods


def import_graph(mods: dict[str, tuple[Path, bool]]) -> dict[str, set[str]]:
    """Edges ``module -> modules of ``mods`` it imports`` (anywhere in the file)."""
    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for mod, (path, is_pkg) in mods.items():
        here = mod if is_pkg else mod.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges.update(resolve(a.name) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    edges.add(sub if sub in mods else resolve(base))
        edges.discard(None)
        edges.discard(mod)
        graph[mod] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_cycle_finder_sees_function_local_and_package_cycles(tmp_path):
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sub" / "__init__.py").write_text("from pkg.sub.b import B\n")
    (root / "a.py").write_text("def f():\n    from pkg.sub import b\n")
    (root / "sub" / "b.py").write_text("B = 1\ndef g():\n    from .. import a\n")
    (root / "c.py").write_text("from pkg.sub import B\n")
    (root / "sub" / "d.py").write_text("from pkg import c\n")
    graph = import_graph(package_modules(root, "pkg"))
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.a"}
    assert graph["pkg.c"] == {"pkg.sub"} and graph["pkg.sub.d"] == {"pkg.c"}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b"]]
    (root / "sub" / "b.py").write_text("B = 1\n")
    assert cycles(import_graph(package_modules(root, "pkg"))) == []


def test_no_import_cycles_in_the_package():
    found = cycles(import_graph(package_modules()))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_every_module_imports():
    pytest.importorskip("torch")
    names = [m.name for m in pkgutil.walk_packages(escmvq.__path__, "escmvq.")]
    assert len(names) == len(package_modules()) - 1  # all but escmvq itself
    for name in names:
        importlib.import_module(name)
