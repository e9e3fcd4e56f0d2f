"""Data sources: the strings that name a data set (``--data``, ``data.source``), checked before any work.

Forms (:data:`SOURCE_FORMS`)::

    synthetic                                   the embedded generator (default)
    ucf101:<root>[:fold]                        split files in <root>/ucfTrainTestlist/ or <root>/splits/
    ucf101:<root>:<annotation_dir>[:fold]       split files in a folder of their own
    hmdb51:<root>:<split_dir>[:fold]
    kinetics:<root>

``fold`` is a positive integer (default 1) or ``all``: every fold whose split files
exist, run one by one and aggregated (:mod:`cdlib.folds`). Paths may be relative
to the working directory and cannot contain ``:``.

A source a user names is used or refused, never replaced: :func:`check_source`
looks at the folders and split files without decoding anything and raises a
:class:`~cdlib.errors.DataError` that names the path, says what was expected there
and lists the accepted forms. The layouts (:mod:`cdlib.data.layouts`) find their
files with the same functions. This module imports no video or tensor library.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from cdlib.errors import ConfigError, DataError

__all__ = [
    "ALL_FOLDS", "SOURCE_FORMS", "DefaultSource", "check_source", "describe_source", "fold_sources", "hmdb51_split_files", "kinetics_split_folders",
    "normalize_source", "parse_source", "refuse", "ucf101_annotation_dir",
]

SOURCE_FORMS = (
    "synthetic",
    "ucf101:<root>[:fold]",
    "ucf101:<root>:<annotation_dir>[:fold]",
    "hmdb51:<root>:<split_dir>[:fold]",
    "kinetics:<root>",
)

#: the fold field that means "every fold"
ALL_FOLDS = "all"
_FOLD_NOTE = f"(fold: 1, 2, ... or {ALL_FOLDS!r} for every fold)"

UCF101_LAYOUT = "a UCF101 tree: <root>/<Class>/*.avi and <root>/ucfTrainTestlist/{classInd,trainlist0F,testlist0F}.txt"
HMDB51_LAYOUT = "an HMDB51 tree: <root>/<class>/*.avi (splits in <split_dir>/<class>_test_split{F}.txt)"
KINETICS_LAYOUT = "a Kinetics tree: <root>/{train,val,test}/<class>/*.mp4"
_FOLDED = ("ucf101", "hmdb51")


def abspath(path) -> Path:
    """Absolute and normalised (``..`` resolved textually, symlinks kept): relative paths
    are taken from the working directory."""
    return Path(os.path.abspath(os.path.expanduser(path)))


def _source_error(source: str, why: str) -> ConfigError:
    return ConfigError(f"data.source: {why} in {source!r}; accepted forms: {', '.join(SOURCE_FORMS)} {_FOLD_NOTE}")


def refuse(path, problem: str, expected: str) -> DataError:
    """The error for a named path that cannot be used: the path, what is wrong, what was expected, the forms."""
    return DataError(f"{path}: {problem}; expected {expected}. Accepted data sources: {', '.join(SOURCE_FORMS)} "
                     f"{_FOLD_NOTE}")


def require_folder(path, what: str, expected: str) -> Path:
    """``path`` made absolute, if it is a folder; else :func:`refuse` it."""
    folder = abspath(path)
    if not folder.is_dir():
        raise refuse(folder, f"{what} {'is not a folder' if folder.exists() else 'does not exist'}", expected)
    return folder


def parse_source(source: str) -> tuple[str, dict]:
    """``data.source`` → ``(layout, keyword arguments)``, e.g.
    ``"ucf101:data/ucf:2"`` → ``("ucf101", {"root": "data/ucf", "annotation_dir": None, "fold": 2})``.

    Fields are separated by ``:``, so paths cannot contain one. A trailing field of
    digits, or ``all``, is the fold: ``ucf101:<root>:<annotation_dir>`` needs an
    annotation folder whose name is neither (write ``./all`` for a folder named ``all``).
    Only the form is checked here; :func:`check_source` looks at the folders.
    """
    if not isinstance(source, str) or ":" not in source:
        raise _source_error(str(source), "no layout prefix")
    kind, rest = source.split(":", 1)
    parts = rest.split(":")
    if any(not p.strip() for p in parts):
        raise _source_error(source, "an empty field")
    fold = None
    if kind in _FOLDED and len(parts) > 1 and (parts[-1].strip().isdigit() or parts[-1].strip() == ALL_FOLDS):
        last = parts.pop().strip()
        fold = ALL_FOLDS if last == ALL_FOLDS else int(last)
        if fold != ALL_FOLDS and fold < 1:
            raise _source_error(source, f"fold {fold} (folds start at 1)")
    if kind == "ucf101" and len(parts) in (1, 2):
        kwargs = {"root": parts[0], "annotation_dir": parts[1] if len(parts) == 2 else None}
    elif kind == "hmdb51" and len(parts) == 2:
        kwargs = {"root": parts[0], "split_dir": parts[1]}
    elif kind == "kinetics" and len(parts) == 1:
        kwargs = {"root": parts[0]}
    elif kind in ("ucf101", "hmdb51", "kinetics"):
        raise _source_error(source, f"the wrong number of fields for {kind}")
    else:
        raise _source_error(source, f"unknown layout {kind!r}")
    if fold is not None:
        kwargs["fold"] = fold
    return kind, kwargs


def _format(kind: str, kwargs: dict) -> str:
    paths = [str(kwargs[name]) for name in ("root", "annotation_dir", "split_dir") if kwargs.get(name)]
    fold = [str(kwargs["fold"])] if "fold" in kwargs else []
    return ":".join([kind, *paths, *fold])


def normalize_source(source: str) -> str:
    """``data.source`` with its paths made absolute (from the working directory), so that the same data
    set named from two working directories keys the same artifacts; ``synthetic`` is returned as is."""
    if source == "synthetic":
        return source
    kind, kwargs = parse_source(source)
    for name in ("root", "annotation_dir", "split_dir"):
        if kwargs.get(name):
            kwargs[name] = abspath(kwargs[name])
    return _format(kind, kwargs)


_LAYOUT_NAMES = {"ucf101": "UCF101-layout", "hmdb51": "HMDB51-layout", "kinetics": "Kinetics-layout"}


def describe_source(source: str) -> str:
    """The data ``source`` names, in words (for pages, captions and logs)."""
    if source == "synthetic":
        return "the embedded synthetic videos"
    kind, kwargs = parse_source(source)
    text = f"the {_LAYOUT_NAMES[kind]} videos at {kwargs['root']}"
    fold = kwargs.get("fold")
    if fold == ALL_FOLDS:
        return text + ", every fold"
    return text + (f", fold {fold or 1}" if kind in _FOLDED else "")


@dataclasses.dataclass(frozen=True)
class DefaultSource:
    """A data source chosen for a run, with what it is in words (:func:`cdlib.data.export.default_real_source`)."""

    source: str  # the data.source
    description: str  # the data in words, for pages, captions and logs
    fallback: bool = False  # True: a stand-in chosen because the shipped real set is missing
    reason: str = ""  # why the fallback applies


# ----------------------------------------------------------------------------- where each layout keeps its files


def _ucf101_names(fold: int) -> tuple[str, str]:
    return f"trainlist{fold:02d}.txt", f"testlist{fold:02d}.txt"


def _ucf101_candidates(root: Path, annotation_dir) -> list[Path]:
    if annotation_dir is not None:
        folder = abspath(annotation_dir)
        if not folder.is_dir():
            raise refuse(folder, "UCF101 annotation folder " + ("is not a folder" if folder.exists() else "does not exist"),
                         "a folder holding classInd.txt, trainlist0F.txt and testlist0F.txt")
        return [folder]
    return [root / "ucfTrainTestlist", root / "splits"]


def ucf101_annotation_dir(root, fold: int, annotation_dir=None) -> Path:
    """The folder holding fold ``fold``'s UCF101 split files: ``annotation_dir`` if given, else the first of
    ``<root>/ucfTrainTestlist`` and ``<root>/splits`` that holds them. Refused (:func:`refuse`) if none does."""
    root = abspath(root)
    train_name, test_name = _ucf101_names(fold)
    candidates = _ucf101_candidates(root, annotation_dir)
    for folder in candidates:
        if (folder / train_name).is_file() and (folder / test_name).is_file():
            return folder
    found = sorted({p.name for folder in candidates if folder.is_dir() for p in folder.glob("*list0*.txt")})
    where = " and ".join(str(f) for f in candidates)
    hint = f"; found only: {', '.join(found)}" if found else ""
    raise refuse(
        root,
        f"no UCF101 split files for fold {fold}: looked for {train_name} and {test_name} (and classInd.txt) "
        f"in {where}{hint}. Give the annotation folder explicitly with ucf101:<root>:<annotation_dir>[:fold]",
        UCF101_LAYOUT,
    )


def _ucf101_folds(root: Path, annotation_dir) -> list[int]:
    for folder in _ucf101_candidates(root, annotation_dir):
        folds = sorted(int(m.group(1)) for p in folder.glob("trainlist*.txt")
                       if (m := re.fullmatch(r"trainlist(\d+)\.txt", p.name)) and int(m.group(1)) >= 1
                       and (folder / f"testlist{m.group(1)}.txt").is_file())
        if folds:
            return folds
    return []


def hmdb51_split_files(split_dir, fold: int) -> list[Path]:
    """The ``<class>_test_split{fold}.txt`` files of ``split_dir``, sorted; refused if there are none."""
    folder = require_folder(split_dir, "HMDB51 split folder",
                            f"a folder of <class>_test_split{fold}.txt files")
    suffix = f"_test_split{fold}.txt"
    files = sorted(p for p in folder.glob(f"*{suffix}") if p.is_file())
    if not files:
        others = _hmdb51_folds(folder)
        hint = f"; split files exist for fold(s) {', '.join(map(str, others))}" if others else ""
        raise refuse(folder, f"no HMDB51 split files for fold {fold}: looked for <class>{suffix}{hint}",
                     HMDB51_LAYOUT)
    return files


def _hmdb51_folds(split_dir: Path) -> list[int]:
    return sorted({int(m.group(1)) for p in split_dir.glob("*_test_split*.txt")
                   if (m := re.search(r"_test_split(\d+)\.txt$", p.name))})


def _has_class_folders(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in folder.iterdir())


def kinetics_split_folders(root) -> dict[str, Path]:
    """``{split: folder}`` for the split folders (``train``, ``val``, ``test``) of ``root`` that hold class
    folders; refused if there are none."""
    root = require_folder(root, "data root", KINETICS_LAYOUT)
    folders = {name: root / name for name in ("train", "val", "test") if _has_class_folders(root / name)}
    if not folders:
        raise refuse(root, f"no Kinetics split folders: looked for {root}/train, {root}/val and {root}/test "
                           "holding one folder of videos per class", KINETICS_LAYOUT)
    return folders


# ----------------------------------------------------------------------------- checking and folds


def fold_sources(source: str) -> list[str]:
    """The sources of the runs ``source`` stands for: itself, or one per fold when its fold is ``all``
    (the folds whose split files exist, in order). Paths are kept as given."""
    if source == "synthetic":
        return [source]
    kind, kwargs = parse_source(source)
    if kwargs.get("fold") != ALL_FOLDS:
        return [source]
    if kind == "ucf101":
        root = require_folder(kwargs["root"], "data root", UCF101_LAYOUT)
        folds = _ucf101_folds(root, kwargs["annotation_dir"])
        where = kwargs["annotation_dir"] or f"{root}/ucfTrainTestlist or {root}/splits"
        expected = f"trainlist0F.txt and testlist0F.txt in {where}"
    else:
        require_folder(kwargs["root"], "data root", HMDB51_LAYOUT)
        folds = _hmdb51_folds(require_folder(kwargs["split_dir"], "HMDB51 split folder", HMDB51_LAYOUT))
        expected = f"<class>_test_splitF.txt files in {kwargs['split_dir']}"
    if not folds:
        raise refuse(kwargs["root"], "fold 'all': no fold has split files", expected)
    return [_format(kind, {**kwargs, "fold": fold}) for fold in folds]


def check_source(source: str) -> None:
    """Refuse (:class:`~cdlib.errors.DataError`) a real source whose folders or split files are missing.

    Looks only at folders and annotation files (the videos are checked when a split
    is built, and broken ones are skipped and listed). ``synthetic`` always passes.
    """
    for one in fold_sources(source):
        if one == "synthetic":
            continue
        kind, kwargs = parse_source(one)
        if kind == "ucf101":
            root = require_folder(kwargs["root"], "data root", UCF101_LAYOUT)
            ucf101_annotation_dir(root, kwargs.get("fold", 1), kwargs["annotation_dir"])
        elif kind == "hmdb51":
            require_folder(kwargs["root"], "data root", HMDB51_LAYOUT)
            hmdb51_split_files(kwargs["split_dir"], kwargs.get("fold", 1))
        else:
            kinetics_split_folders(kwargs["root"])
