"""A content-addressed artifact store: trained models and evaluations keyed by config hash.

Every artifact lives in ``<root>/<kind>/<key>/`` where ``key`` is a hash of the
spec that made it (model, data, loss, seed and a hash of what the code of the
modules involved computes, :func:`source_fingerprint`). Files are written atomically (temporary file in the same
folder, then :func:`os.replace`) next to a ``.sha256`` sidecar; a file whose
checksum does not match (truncated, damaged, or half-written by a killed run) is
reported, deleted and rebuilt, never loaded.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import importlib
import inspect
import json
import os
import shutil
import tempfile
import textwrap
from pathlib import Path
from typing import Any, Callable

import torch

from cdlib.runtime.errors import ArtifactError
from cdlib.runtime.progress import log

PAYLOAD = "payload.pt"


def config_hash(obj: Any, length: int = 16) -> str:
    """Stable hash of a config (dataclass or JSON-able value): what keys an artifact (:class:`ArtifactStore`)."""
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def project_root() -> Path | None:
    """The source checkout cdlib runs from (the folder holding pyproject.toml), if any."""
    candidate = Path(__file__).resolve().parents[2]  # <checkout>/cdlib/runtime/artifacts.py
    return candidate if (candidate / "pyproject.toml").is_file() else None


def default_root() -> Path:
    """``$CDLIB_ARTIFACTS``, else ``<checkout>/artifacts``, else ``~/.cache/cdlib``."""
    env = os.environ.get("CDLIB_ARTIFACTS")
    if env:
        return Path(env).expanduser().resolve()
    root = project_root()
    return root / "artifacts" if root is not None else Path.home() / ".cache" / "cdlib"


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (:func:`hashlib.file_digest`)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it to ``path``: readers see
    the old file or the complete new one, never half a file (the temporary file is removed on failure)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically, with a ``.sha256`` sidecar written last."""
    path = Path(path)
    atomic_write(path, lambda handle: torch.save(obj, handle))
    atomic_write(path.with_name(path.name + ".sha256"), lambda h: h.write(file_sha256(path)), mode="w")


def verified_load(path: str | os.PathLike) -> Any:
    """Load a file written by :func:`atomic_save`; :class:`ArtifactError` if it cannot be trusted."""
    path = Path(path)
    sidecar = path.with_name(path.name + ".sha256")
    if not path.is_file() or not sidecar.is_file():
        raise ArtifactError(f"{path}: missing file or checksum")
    expected = sidecar.read_text().strip()
    if file_sha256(path) != expected:
        raise ArtifactError(f"{path}: checksum mismatch (truncated or damaged)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a file that matches its checksum but does not unpickle
        raise ArtifactError(f"{path}: cannot be loaded ({exc})") from exc


def discard(path: str | os.PathLike) -> None:
    """Remove a file written by :func:`atomic_save` and its sidecar."""
    path = Path(path)
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".sha256").unlink(missing_ok=True)


def _without_docstrings(tree: ast.AST) -> ast.AST:
    """``tree`` with the docstring of every module, class and function removed (in place)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def source_fingerprint(*objects) -> str:
    """Hash of what the source of modules, classes or functions *computes*: their syntax tree without
    docstrings, comments, line numbers or formatting.

    Artifact keys use it (:func:`code_version`, :func:`cdlib.models.model_fingerprint`), so that a
    docstring edit or a reformatted line retrains and re-evaluates nothing, while any change to the code
    itself (a constant, an operator, a renamed variable) makes new artifacts.
    """
    digest = hashlib.sha256()
    for obj in objects:
        digest.update(_syntax_dump(textwrap.dedent(inspect.getsource(obj))))
    return digest.hexdigest()[:12]


@functools.lru_cache(maxsize=None)
def _syntax_dump(source: str) -> bytes:
    # Cached by the source text itself, which is read anew on every call: an edited file still changes the key,
    # while a benchmark computing ~300 keys parses each module once instead of each time (about 14 s here).
    return ast.dump(_without_docstrings(ast.parse(source)), annotate_fields=False).encode()


def code_version(*modules: str) -> str:
    """:func:`source_fingerprint` of the named modules, so that changed code makes new artifacts."""
    return source_fingerprint(*(importlib.import_module(name) for name in sorted(modules)))


class ArtifactStore:
    """Artifacts under ``root`` (default :func:`default_root`), built on first use, loaded after."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser().resolve() if root is not None else default_root()

    def key(self, spec: dict) -> str:
        return config_hash(spec)

    def directory(self, kind: str, spec: dict) -> Path:
        return self.root / kind / self.key(spec)

    def load(self, kind: str, spec: dict) -> Any | None:
        """The stored payload of ``spec``, or None if absent; a damaged one is deleted."""
        path = self.directory(kind, spec) / PAYLOAD
        if not path.exists():
            return None
        try:
            return verified_load(path)
        except ArtifactError as exc:
            log(f"artifact {kind}/{path.parent.name} is damaged, rebuilding: {exc}")
            discard(path)
            return None

    def save(self, kind: str, spec: dict, payload: Any) -> Path:
        directory = self.directory(kind, spec)
        atomic_save(payload, directory / PAYLOAD)
        text = json.dumps({"kind": kind, "spec": spec}, indent=1, sort_keys=True, default=str)
        atomic_write(directory / "spec.json", lambda h: h.write(text), mode="w")
        return directory

    def get_or_create(self, kind: str, spec: dict, build: Callable[[Path], Any]) -> Any:
        """Load the artifact of ``spec``, or call ``build(work_dir)`` and store its result.

        ``work_dir`` is the artifact's own folder, where ``build`` may keep
        resumable state (e.g. per-epoch checkpoints) that survives an interruption.
        """
        payload = self.load(kind, spec)
        if payload is not None:
            return payload
        directory = self.directory(kind, spec)
        directory.mkdir(parents=True, exist_ok=True)
        payload = build(directory)
        self.save(kind, spec, payload)
        return payload

    def remove(self, kind: str, spec: dict) -> None:
        shutil.rmtree(self.directory(kind, spec), ignore_errors=True)
