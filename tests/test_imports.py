"""The audio_thinker modules import each other without cycles.

The graph is built with :mod:`ast` from the source: every ``import`` and ``from … import`` of an
audio_thinker module counts, also those inside functions (a lazy import still makes two modules depend on
each other), and importing ``a.b.c`` also imports the package ``a.b`` (its ``__init__``), unless the
importer lives inside that package (which is then already being imported). Imports under
``if TYPE_CHECKING:`` count too: they never run, but a module that names another's type in its signatures
depends on it all the same (the two cannot be read, moved or type-checked apart), so a config a trainer and
its helpers share lives in a module of its own (``grpo_config``), not in the trainer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import audio_thinker

ROOT = Path(audio_thinker.__file__).resolve().parent
PACKAGE = "audio_thinker"


def module_names(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> source file, for every ``.py`` file under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is an audio_thinker module."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in modules:
            return ".".join(parts)
        parts.pop()
    return None


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the audio_thinker modules it imports (see the module docstring)."""
    modules = module_names(root)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        package = module if is_package else module.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    stem = ".".join([*base, node.module] if node.module else base)
                else:
                    stem = node.module or ""
                # "from p import m": the module p.m when there is one, else a name from p itself
                names = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in modules else stem for a in node.names]
            for name in names:
                target = _resolve(name, modules)
                if target is None:
                    continue
                targets.add(target)
                parts = target.split(".")
                for k in range(1, len(parts)):  # the packages above the target run first ...
                    parent = ".".join(parts[:k])
                    if not module.startswith(parent + "."):  # ... unless they hold the importer
                        targets.add(parent)
        graph[module] = targets - {module}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycles():
    assert find_cycles(import_graph()) == []


def test_the_graph_sees_lazy_imports_and_packages(tmp_path):
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("from . import b\n")
    (pkg / "sub" / "b.py").write_text("from .. import c\n")
    (pkg / "c.py").write_text("import audio_thinker.sub.b\n")
    graph = import_graph(pkg)
    assert graph["audio_thinker.a"] == {"audio_thinker.sub", "audio_thinker.sub.b"}
    assert graph["audio_thinker.sub.b"] == {"audio_thinker.c"}
    assert graph["audio_thinker.c"] == {"audio_thinker.sub", "audio_thinker.sub.b"}
    assert graph["audio_thinker.sub"] == {"audio_thinker.sub.b"}
    assert find_cycles(graph) == [["audio_thinker.c", "audio_thinker.sub", "audio_thinker.sub.b"]]


def test_the_graph_counts_type_checking_imports(tmp_path):
    pkg = tmp_path / PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "trainer.py").write_text("from .helper import step\n")
    (pkg / "helper.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .trainer import Config\n"
    )
    graph = import_graph(pkg)
    assert graph["audio_thinker.helper"] == {"audio_thinker.trainer"}
    assert find_cycles(graph) == [["audio_thinker.helper", "audio_thinker.trainer"]]
