"""The small real data sets shipped with the study in ``data/``, and their checksums.

``data/README.md`` is the registry: what each set is, where it comes from, its
terms of use. Each shipped folder holds a ``SHA256SUMS`` file (``sha256sum -c``
format); :func:`verify_checksums` checks every file it lists, so a damaged or
altered file is found by name (``python -m cdlib data verify``, and the tests).
"""

from __future__ import annotations

from pathlib import Path

from cdlib.runtime.artifacts import file_sha256
from cdlib.runtime.errors import DataError

__all__ = ["SHIPPED", "WEIZMANN", "check_shipped", "shipped_path", "verify_checksums"]

#: the real set the real-data chapter and the documentation use by default
WEIZMANN = "weizmann-rgb"
#: folder under ``data/`` -> what it holds
SHIPPED = {
    WEIZMANN: "72 Weizmann action videos (4 classes, 64x64) in the UCF101 layout, 3 folds",
    "samples": "one real UCF101 clip (320x240, 164 frames)",
}
CHECKSUMS = "SHA256SUMS"


def shipped_path(name: str) -> Path:
    """``<checkout>/data/<name>``: where the shipped set ``name`` lives (whether or not it is there).

    Raises :class:`~cdlib.runtime.errors.DataError` when cdlib does not run from a source
    checkout (a wheel install ships no data).
    """
    from cdlib.runtime.artifacts import project_root

    if name not in SHIPPED:
        raise DataError(f"{name!r}: not a shipped data set; shipped: {', '.join(SHIPPED)}")
    root = project_root()
    if root is None:
        raise DataError(f"the shipped data set {name!r} lives in the data/ folder of a source checkout of cdlib, "
                        "and cdlib does not run from one")
    return root / "data" / name


def verify_checksums(folder) -> list[str]:
    """Problems with the files ``folder/SHA256SUMS`` lists, one line each naming the file (``[]``: all good).

    A problem is a listed file that is missing or whose SHA-256 differs, or a
    malformed line. Files the list does not name are not checked.
    """
    folder = Path(folder)
    sums = folder / CHECKSUMS
    if not sums.is_file():
        return [f"{sums}: no checksum file"]
    problems = []
    for number, line in enumerate(sums.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        name = name.removeprefix("*")
        if len(digest) != 64 or not name:
            problems.append(f"{sums}:{number}: expected '<sha256>  <file>', got {line!r}")
            continue
        path = folder / name
        if not path.is_file():
            problems.append(f"{path}: listed in {CHECKSUMS} but missing")
        elif file_sha256(path) != digest.lower():
            problems.append(f"{path}: checksum mismatch (the file differs from the one shipped)")
    return problems


def check_shipped(names=None) -> dict[str, int]:
    """Verify the shipped sets ``names`` (default: all); ``{name: files checked}``, or :class:`DataError`
    listing every problem."""
    problems, counted = [], {}
    for name in names or tuple(SHIPPED):
        folder = shipped_path(name)
        problems += verify_checksums(folder)
        sums = folder / CHECKSUMS
        counted[name] = sum(1 for line in sums.read_text().splitlines() if line.strip()) if sums.is_file() else 0
    if problems:
        raise DataError("shipped data damaged or missing:\n  " + "\n  ".join(problems))
    return counted
