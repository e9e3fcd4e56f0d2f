"""No cdlib module reaches into another module's private names: what one module needs of another is public."""

from __future__ import annotations

import ast
from pathlib import Path

import cdlib

PACKAGE = Path(cdlib.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _package(module: str) -> str:
    return module.rsplit(".", 1)[0]


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_uses(path: Path, source: str) -> list[str]:
    """``module.name`` of every private name of another cdlib module that the ``source`` of the module at ``path``
    imports or reads. A package's ``__init__`` may gather its own modules' names."""
    this = _module_name(path)

    def foreign(module: str) -> bool:
        return module != this and not (path.name == "__init__.py" and _package(module) == this)

    aliases: dict[str, str] = {}  # local name -> the cdlib module it is bound to
    found = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cdlib"):
            for alias in node.names:
                if _is_module(f"{node.module}.{alias.name}"):
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                elif _private(alias.name) and foreign(node.module):
                    found.append(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            aliases.update({alias.asname: alias.name for alias in node.names
                            if alias.name.startswith("cdlib") and alias.asname})
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases \
                and _private(node.attr) and foreign(aliases[node.value.id]):
            found.append(f"{aliases[node.value.id]}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names():
    uses = {str(path.relative_to(PACKAGE.parent)): private_uses(path, path.read_text())
            for path in sorted(PACKAGE.rglob("*.py"))}
    assert {path: names for path, names in uses.items() if names} == {}


def test_the_check_finds_private_names_used_outside_their_module():
    probes, models = PACKAGE / "experiment" / "probes.py", PACKAGE / "models" / "__init__.py"
    assert private_uses(probes, "from cdlib.experiment import clips\nstore = clips._store(None)\n") == [
        "cdlib.experiment.clips._store"]
    assert private_uses(probes, "from cdlib.models.small import _cheap_view\n") == ["cdlib.models.small._cheap_view"]
    assert private_uses(probes, "from cdlib.experiment import clips\nstore = clips.resolve_store(None)\n") == []
    assert private_uses(models, "from cdlib.models.small import _cheap_view\n") == []  # its package's __init__
    clips = PACKAGE / "experiment" / "clips.py"
    assert private_uses(clips, "from cdlib.experiment import clips\nclips._store(None)\n") == []  # its own module
