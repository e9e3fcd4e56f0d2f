import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import cdlib
from cdlib.runtime.artifacts import ArtifactStore, atomic_save, code_version, verified_load
from cdlib.runtime.errors import ArtifactError


def test_get_or_create_builds_once_then_loads(tmp_path):
    store = ArtifactStore(tmp_path)
    calls = []

    def build(work_dir):
        calls.append(work_dir)
        return {"w": torch.arange(4.0)}

    first = store.get_or_create("thing", {"a": 1}, build)
    second = store.get_or_create("thing", {"a": 1}, build)
    assert len(calls) == 1 and torch.equal(first["w"], second["w"])
    store.get_or_create("thing", {"a": 2}, build)
    assert len(calls) == 2  # another spec is another artifact


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete_checksum"])
def test_damaged_artifact_is_rebuilt_never_loaded(tmp_path, damage):
    store = ArtifactStore(tmp_path)
    store.get_or_create("thing", {"a": 1}, lambda _: {"w": torch.arange(1000.0)})
    payload = store.directory("thing", {"a": 1}) / "payload.pt"
    if damage == "truncate":
        payload.write_bytes(payload.read_bytes()[:100])
    elif damage == "flip":
        data = bytearray(payload.read_bytes())
        data[len(data) // 2] ^= 0xFF
        payload.write_bytes(bytes(data))
    else:
        payload.with_name("payload.pt.sha256").unlink()
    rebuilt = store.get_or_create("thing", {"a": 1}, lambda _: {"w": torch.zeros(3)})
    assert torch.equal(rebuilt["w"], torch.zeros(3))


def test_verified_load_rejects_a_file_without_its_checksum(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"a": 1}, path)
    with pytest.raises(ArtifactError, match="x.pt"):
        verified_load(path)


def test_atomic_save_leaves_old_file_intact_when_writing_fails(tmp_path):
    path = tmp_path / "x.pt"
    atomic_save({"v": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_save({"v": Unpicklable()}, path)
    assert verified_load(path) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_code_version_depends_on_the_modules():
    assert code_version("cdlib.models") != code_version("cdlib.experiment.train")
    assert code_version("cdlib.models", "cdlib.experiment.train") == code_version("cdlib.experiment.train", "cdlib.models")


def _load_variant(tmp_path, name: str, source: str):
    """Import ``source`` as a fresh module ``name`` from its own file."""
    import importlib.util

    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_code_fingerprint_ignores_docstrings_comments_and_layout_but_not_code(tmp_path):
    import ast
    from pathlib import Path

    import cdlib.experiment.train
    from cdlib.runtime.artifacts import source_fingerprint

    original = Path(cdlib.experiment.train.__file__).read_text()
    lines = original.splitlines(keepends=True)
    function = next(n for n in ast.parse(original).body if isinstance(n, ast.FunctionDef) and ast.get_docstring(n))
    docstring_line = function.body[0].lineno - 1  # the line that opens the function's docstring
    assert '"""' in lines[docstring_line]
    docstring_edit = lines.copy()
    docstring_edit[docstring_line] = lines[docstring_line].replace('"""', '"""Reworded. ', 1)
    comment_and_layout = lines.copy()
    comment_and_layout[function.lineno - 1] = "# a comment\n\n" + lines[function.lineno - 1]
    variants = {
        "original": original,
        "docstring": "".join(docstring_edit),
        "comment_and_layout": "".join(comment_and_layout),
        "code": original + "\nEXTRA_CONSTANT = 1\n",
    }
    assert len(set(variants.values())) == 4
    fingerprints = {what: source_fingerprint(_load_variant(tmp_path, f"train_{what}", text))
                    for what, text in variants.items()}
    assert fingerprints["original"] == source_fingerprint(cdlib.experiment.train)
    assert fingerprints["docstring"] == fingerprints["original"]  # a docstring edit retrains nothing
    assert fingerprints["comment_and_layout"] == fingerprints["original"]
    assert fingerprints["code"] != fingerprints["original"]  # new code makes new artifacts


def test_a_relabelled_table_or_a_training_docstring_keeps_every_key_and_changed_code_does_not(tmp_path):
    """Copies of cdlib, each with its edits, give the benchmark's and the teacher's artifact keys: a table column
    relabelled (cdlib.experiment.tables) or a docstring of cdlib.experiment.train or of a benchmark module changed
    re-times and retrains nothing; changed code in any module that computes the benchmark's numbers makes a new
    benchmark key."""
    script = ("from cdlib.experiment.bench import benchmark_spec; from cdlib.runtime.artifacts import config_hash; "
              "from cdlib.experiment.config import profile_config; "
              "from cdlib.experiment.students import teacher_spec; cfg = profile_config('ci'); "
              "print(config_hash(benchmark_spec(cfg)), config_hash(teacher_spec(cfg)))")

    def keys(name, *edits):
        """The two keys from a copy of cdlib with each ``(path, old, new)`` of ``edits`` made."""
        root = tmp_path / name
        shutil.copytree(Path(cdlib.__file__).parent, root / "cdlib", ignore=shutil.ignore_patterns("__pycache__"))
        for path, old, new in edits:
            source = root / "cdlib" / path
            text = source.read_text()
            assert old in text
            source.write_text(text.replace(old, new, 1))
        env = {**os.environ, "PYTHONPATH": str(root)}
        run = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-2000:]
        return run.stdout.split()

    bench_key, teacher_key = keys("unchanged")
    relabelled = ("experiment/tables.py", '"best accuracy": best', '"best test accuracy": best')
    assert keys("label", relabelled) == [bench_key, teacher_key]
    reworded = [("experiment/train.py", "The training loop:", "The loop that trains:"),
                ("experiment/evaluation.py", "Evaluating the teacher", "Evaluation of the teacher")]
    assert keys("docstrings", *reworded) == [bench_key, teacher_key]
    code_edits = {
        "experiment/bench.py": ("VERSION = 2", "VERSION = 3"),  # the JSON's assembly
        "experiment/evaluation.py": ('flops.get("cd")', 'flops.get("kd")'),  # the numbers
        "method/selection.py": ("_TOLERANCE = 1e-12", "_TOLERANCE = 1e-9"),  # the chosen points
        "experiment/timing.py": ("return tuple(value) if", "return list(value) if"),  # the timed pipeline
    }
    for path, (old, new) in code_edits.items():
        changed_bench, same_teacher = keys(f"code_{path.replace('/', '_')}", (path, old, new))
        assert changed_bench != bench_key and same_teacher == teacher_key, path
