"""cdlib's packages are layers, bottom-up: runtime, data, models, method, experiment, book, cli, and
``cdlib/__main__.py`` on top. A module may import from its own layer and the layers below, never from one above,
and no modules (nor packages) import each other in a circle. Imports inside functions count: they are
dependencies too. Read from the source with :mod:`ast`, so that nothing is imported to check it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "cdlib"
ROOT = Path(__file__).resolve().parents[1]
#: bottom-up; a module belongs to the first layer it is, or is inside
LAYERS = ("runtime", "data", "models", "method", "experiment", "book", "cli", "__main__")


def modules(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Every module under ``root/package`` by dotted name (a package by its own name, for its ``__init__``)."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that module ``name`` (at ``path``) imports anywhere in its source, each import
    resolved to the longest known module it names (``from a.b import c`` is ``a.b.c`` if that is a module, else
    ``a.b``)."""
    base = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                anchor = base.split(".")[: len(base.split(".")) - (node.level - 1)]
                module = ".".join(anchor + ([module] if module else []))
            # a name imported from a package is its module when it is one, else the package's own name
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(root: Path, package: str = PACKAGE) -> dict[str, set[str]]:
    """Module -> the modules it imports. A package's ``__init__`` gathering its own modules, and an import of
    the top package (its ``__init__`` holds the version only), are no dependencies."""
    found = modules(root, package)
    graph = {name: imports_of(name, path, set(found)) for name, path in found.items()}
    return {name: {t for t in targets if not t.startswith(name + ".") and t != package}
            for name, targets in graph.items()}


def layer_of(module: str, package: str = PACKAGE) -> int | None:
    """Index in :data:`LAYERS` of ``module`` (None for one in no layer)."""
    for index, layer in enumerate(LAYERS):
        prefix = f"{package}.{layer}"
        if module == prefix or module.startswith(prefix + "."):
            return index
    return None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``"a imports b"`` for every import from a higher layer than the importer's."""
    return [f"{name} ({LAYERS[layer_of(name)]}) imports {target} ({LAYERS[layer_of(target)]})"
            for name, targets in sorted(graph.items()) for target in sorted(targets)
            if layer_of(name) is not None and layer_of(target) is not None and layer_of(target) > layer_of(name)]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted: every import circle."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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
    return found


def package_graph(graph: dict[str, set[str]], package: str = PACKAGE) -> dict[str, set[str]]:
    """The graph between the top package's subpackages (and top-level modules): ``cdlib.x.y`` counts as ``cdlib.x``."""
    def top(module):
        return ".".join(module.split(".")[:2])

    out: dict[str, set[str]] = {}
    for name, targets in graph.items():
        out.setdefault(top(name), set()).update(top(t) for t in targets if top(t) != top(name))
    return out


def problems(root: Path, package: str = PACKAGE) -> list[str]:
    graph = import_graph(root, package)
    return ([f"not in any layer: {m}" for m in sorted(graph) if m != package and layer_of(m, package) is None]
            + upward_imports(graph)
            + [f"module cycle: {' <-> '.join(c)}" for c in cycles(graph)]
            + [f"package cycle: {' <-> '.join(c)}" for c in cycles(package_graph(graph, package))])


# ----------------------------------------------------------------------------- cdlib itself

def test_every_module_is_in_a_layer_and_imports_only_its_own_and_lower_layers_without_cycles():
    assert problems(ROOT) == []


def test_every_layer_is_a_package_with_a_docstring():
    for layer in LAYERS[:-1]:
        init = ROOT / PACKAGE / layer / "__init__.py"
        assert init.is_file(), layer
        assert ast.get_docstring(ast.parse(init.read_text())), f"{layer}/__init__.py has no docstring"
    assert (ROOT / PACKAGE / "__main__.py").is_file()


# ----------------------------------------------------------------------------- the check finds what it should

def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for relative, source in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    for layer in LAYERS[:-1]:
        (tmp_path / PACKAGE / layer).mkdir(parents=True, exist_ok=True)
        (tmp_path / PACKAGE / layer / "__init__.py").touch()
    (tmp_path / PACKAGE / "__init__.py").touch()
    return tmp_path


def test_the_check_passes_a_clean_tree_and_a_package_gathering_its_own_modules(tmp_path):
    root = _tree(tmp_path, {
        "cdlib/runtime/errors.py": "class CdlibError(Exception):\n    pass\n",
        "cdlib/method/loss.py": "from cdlib.runtime.errors import CdlibError\nfrom . import other\n",
        "cdlib/method/other.py": "import cdlib.runtime.errors\nfrom cdlib import __version__\n",
        "cdlib/method/__init__.py": "from cdlib.method import loss, other\n",
        "cdlib/__main__.py": "from cdlib.cli import x\n",
        "cdlib/cli/x.py": "def main():\n    from cdlib.method.loss import CdlibError\n",
    })
    assert problems(root) == []


def test_the_check_finds_an_upward_import_even_inside_a_function(tmp_path):
    root = _tree(tmp_path, {
        "cdlib/runtime/errors.py": "def describe():\n    from cdlib.experiment.config import Config\n",
        "cdlib/experiment/config.py": "class Config:\n    pass\n",
        "cdlib/data/base.py": "from ..book import viz\n",  # relative, two levels up
        "cdlib/book/viz.py": "",
    })
    assert problems(root) == [
        "cdlib.data.base (data) imports cdlib.book.viz (book)",
        "cdlib.runtime.errors (runtime) imports cdlib.experiment.config (experiment)",
    ]


def test_the_check_finds_cycles_between_modules_and_between_packages(tmp_path):
    root = _tree(tmp_path, {
        "cdlib/method/a.py": "from cdlib.method import b\n",
        "cdlib/method/b.py": "def f():\n    from cdlib.method.a import g\n",
    })
    assert problems(root) == ["module cycle: cdlib.method.a <-> cdlib.method.b"]
    # a layer not in LAYERS' order cannot hide a circle either: two packages that import each other
    graph = {"cdlib.x.a": {"cdlib.y.b"}, "cdlib.y.b": {"cdlib.x.c"}, "cdlib.x.c": set()}
    assert cycles(graph) == [] and cycles(package_graph(graph)) == [["cdlib.x", "cdlib.y"]]


def test_the_check_finds_a_module_outside_the_layers(tmp_path):
    root = _tree(tmp_path, {"cdlib/loose.py": ""})
    assert problems(root) == ["not in any layer: cdlib.loose"]


def test_a_bad_edge_added_to_cdlibs_own_graph_is_found():
    graph = import_graph(ROOT)
    assert "cdlib.experiment.config" in graph["cdlib.book.chapter"]  # the real graph is read: a real edge
    graph["cdlib.runtime.errors"] = graph["cdlib.runtime.errors"] | {"cdlib.experiment.config"}
    assert upward_imports(graph) == ["cdlib.runtime.errors (runtime) imports cdlib.experiment.config (experiment)"]
    assert any("cdlib.runtime.errors" in c for c in cycles(graph))  # config imports errors
