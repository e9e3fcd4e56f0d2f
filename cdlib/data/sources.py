"""Data sources: the strings that name a data set (``--data``, ``data.source``), checked before any work.

Forms (:func:`source_forms`)::

    synthetic                                   the embedded generator (default)
    ucf101:<root>[:fold]                        split files in <root>/ucfTrainTestlist/ or <root>/splits/
    ucf101:<root>:<annotation_dir>[:fold]       split files in a folder of their own
    hmdb51:<root>:<split_dir>[:fold]
    kinetics:<root>

``fold`` is a positive integer (default 1) or ``all``: every fold whose split files
exist, run one by one and aggregated (:mod:`cdlib.experiment.folds`). Paths may be relative
to the working directory and cannot contain ``:``.

Each real layout is a :class:`Layout` in the registry :data:`LAYOUTS`
(``register_layout``): its name, path fields and folds, how its folders are
checked, and the data set class that opens it (:mod:`cdlib.data.layouts`). Parsing,
describing and checking a source, and listing its folds, go through it.

A source a user names is used or refused, never replaced: :func:`check_source`
looks at the folders and split files without decoding anything and raises a
:class:`~cdlib.runtime.errors.DataError` that names the path, says what was expected there
and lists the accepted forms. The layouts (:mod:`cdlib.data.layouts`) find their
files with the same functions. This module imports no video or tensor library.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
from collections.abc import Callable
from pathlib import Path

from cdlib.runtime.errors import ConfigError, DataError
from cdlib.runtime.registry import Registry

__all__ = [
    "ALL_FOLDS", "LAYOUTS", "DefaultSource", "Layout", "check_source", "describe_source", "fold_sources",
    "hmdb51_split_files", "kinetics_split_folders", "normalize_source", "parse_source", "refuse", "register_layout",
    "source_forms", "ucf101_annotation_dir",
]

#: the fold field that means "every fold"
ALL_FOLDS = "all"
_FOLD_NOTE = f"(fold: 1, 2, ... or {ALL_FOLDS!r} for every fold)"

UCF101_LAYOUT = "a UCF101 tree: <root>/<Class>/*.avi and <root>/ucfTrainTestlist/{classInd,trainlist0F,testlist0F}.txt"
HMDB51_LAYOUT = "an HMDB51 tree: <root>/<class>/*.avi (splits in <split_dir>/<class>_test_split{F}.txt)"
KINETICS_LAYOUT = "a Kinetics tree: <root>/{train,val,test}/<class>/*.mp4"


@dataclasses.dataclass(frozen=True)
class Layout:
    """A folder layout of real videos, named in ``data.source`` as ``<name>:<path>[:<path>...][:fold]``.

    ``paths``: the path fields after the name, in order, the first ``root`` (the data
    root); the first ``required`` must be given, the others may be left out (None
    once parsed).
    ``title`` names it in words ("the UCF101-layout videos at ..."). ``description``:
    the tree it expects, quoted when a folder is refused. ``check(fields)`` refuses
    (:func:`refuse`) a parsed source whose folders or split files are missing,
    without decoding anything. ``folds(fields)``, for a layout with numbered folds
    (then the last field may be a fold, or ``all``), returns the folds whose split
    files exist and, for the error when there are none, what was expected where.
    ``dataset`` is the :class:`~cdlib.data.base.ClipDataset` class that opens the
    videos (called with ``split``, the data settings and the parsed fields), or its
    import path ``"module:Class"``: imported only when a data set is opened, so that
    parsing and checking a source need no video library.
    """

    name: str
    paths: tuple[str, ...]
    required: int
    title: str
    description: str
    check: Callable[[dict], None]
    dataset: type | str
    folds: Callable[[dict], tuple[list[int], str]] | None = None

    @property
    def folded(self) -> bool:
        return self.folds is not None

    def forms(self) -> list[str]:
        """The source forms this layout accepts, e.g. ``ucf101:<root>[:fold]``."""
        fold = "[:fold]" if self.folded else ""
        return [":".join([self.name, *(f"<{p}>" for p in self.paths[:n])]) + fold
                for n in range(self.required, len(self.paths) + 1)]

    def dataset_class(self) -> type:
        """The data set class, imported from its path if it was given as one."""
        if not isinstance(self.dataset, str):
            return self.dataset
        module, _, name = self.dataset.partition(":")
        return getattr(importlib.import_module(module), name)


#: every real layout ``data.source`` can name (:class:`~cdlib.runtime.registry.Registry`), added by
#: :func:`register_layout`
LAYOUTS: Registry[Layout] = Registry("data layout")


def register_layout(layout: Layout) -> Layout:
    """Add ``layout`` to :data:`LAYOUTS` under its name, with its description; returns it.

    ``data.source`` then accepts its forms everywhere: config checks, ``--data``,
    :func:`check_source`, :func:`fold_sources` and the data set builders.
    """
    return LAYOUTS.register(layout.name, layout, layout.description)


def source_forms() -> list[str]:
    """The accepted forms of ``data.source``: ``synthetic``, then every registered layout's (:meth:`Layout.forms`)."""
    return ["synthetic", *(form for layout in LAYOUTS.values() for form in layout.forms())]


def abspath(path) -> Path:
    """Absolute and normalised (``..`` resolved textually, symlinks kept): relative paths
    are taken from the working directory."""
    return Path(os.path.abspath(os.path.expanduser(path)))


def _source_error(source: str, why: str) -> ConfigError:
    return ConfigError(f"data.source: {why} in {source!r}; accepted forms: {', '.join(source_forms())} {_FOLD_NOTE}")


def refuse(path, problem: str, expected: str) -> DataError:
    """The error for a named path that cannot be used: the path, what is wrong, what was expected, the forms."""
    return DataError(f"{path}: {problem}; expected {expected}. Accepted data sources: {', '.join(source_forms())} "
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

    Fields are separated by ``:``, so paths cannot contain one. In a layout with folds,
    a trailing field of digits, or ``all``, is the fold: ``ucf101:<root>:<annotation_dir>``
    needs an annotation folder whose name is neither (write ``./all`` for a folder named
    ``all``). The fields are the layout's :attr:`Layout.paths`, None where left out.
    Only the form is checked here; :func:`check_source` looks at the folders.
    """
    if not isinstance(source, str) or ":" not in source:
        raise _source_error(str(source), "no layout prefix")
    kind, rest = source.split(":", 1)
    parts = rest.split(":")
    if any(not p.strip() for p in parts):
        raise _source_error(source, "an empty field")
    if kind not in LAYOUTS:
        raise _source_error(source, f"unknown layout {kind!r}")
    layout = LAYOUTS[kind]
    fold = None
    if layout.folded and len(parts) > 1 and (parts[-1].strip().isdigit() or parts[-1].strip() == ALL_FOLDS):
        last = parts.pop().strip()
        fold = ALL_FOLDS if last == ALL_FOLDS else int(last)
        if fold != ALL_FOLDS and fold < 1:
            raise _source_error(source, f"fold {fold} (folds start at 1)")
    if not layout.required <= len(parts) <= len(layout.paths):
        raise _source_error(source, f"the wrong number of fields for {kind}")
    kwargs = {field: parts[i] if i < len(parts) else None for i, field in enumerate(layout.paths)}
    if fold is not None:
        kwargs["fold"] = fold
    return kind, kwargs


def _format(kind: str, kwargs: dict) -> str:
    paths = [str(kwargs[name]) for name in LAYOUTS[kind].paths if kwargs.get(name)]
    fold = [str(kwargs["fold"])] if "fold" in kwargs else []
    return ":".join([kind, *paths, *fold])


def normalize_source(source: str) -> str:
    """``data.source`` with its paths made absolute (from the working directory), so that the same data
    set named from two working directories keys the same artifacts; ``synthetic`` is returned as is."""
    if source == "synthetic":
        return source
    kind, kwargs = parse_source(source)
    for name in LAYOUTS[kind].paths:
        if kwargs.get(name):
            kwargs[name] = abspath(kwargs[name])
    return _format(kind, kwargs)


def describe_source(source: str) -> str:
    """The data ``source`` names, in words (for pages, captions and logs)."""
    if source == "synthetic":
        return "the embedded synthetic videos"
    kind, kwargs = parse_source(source)
    layout = LAYOUTS[kind]
    text = f"the {layout.title}-layout videos at {kwargs['root']}"
    fold = kwargs.get("fold")
    if fold == ALL_FOLDS:
        return text + ", every fold"
    return text + (f", fold {fold or 1}" if layout.folded else "")


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


def _check_ucf101(fields: dict) -> None:
    root = require_folder(fields["root"], "data root", UCF101_LAYOUT)
    ucf101_annotation_dir(root, fields.get("fold", 1), fields["annotation_dir"])


def _ucf101_source_folds(fields: dict) -> tuple[list[int], str]:
    root = require_folder(fields["root"], "data root", UCF101_LAYOUT)
    folds = _ucf101_folds(root, fields["annotation_dir"])
    where = fields["annotation_dir"] or f"{root}/ucfTrainTestlist or {root}/splits"
    return folds, f"trainlist0F.txt and testlist0F.txt in {where}"


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


def _check_hmdb51(fields: dict) -> None:
    require_folder(fields["root"], "data root", HMDB51_LAYOUT)
    hmdb51_split_files(fields["split_dir"], fields.get("fold", 1))


def _hmdb51_source_folds(fields: dict) -> tuple[list[int], str]:
    require_folder(fields["root"], "data root", HMDB51_LAYOUT)
    folds = _hmdb51_folds(require_folder(fields["split_dir"], "HMDB51 split folder", HMDB51_LAYOUT))
    return folds, f"<class>_test_splitF.txt files in {fields['split_dir']}"


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


def _check_kinetics(fields: dict) -> None:
    kinetics_split_folders(fields["root"])


# ----------------------------------------------------------------------------- checking and folds


def fold_sources(source: str) -> list[str]:
    """The sources of the runs ``source`` stands for: itself, or one per fold when its fold is ``all``
    (the folds whose split files exist, in order). Paths are kept as given."""
    if source == "synthetic":
        return [source]
    kind, kwargs = parse_source(source)
    if kwargs.get("fold") != ALL_FOLDS:
        return [source]
    folds, expected = LAYOUTS[kind].folds(kwargs)
    if not folds:
        raise refuse(kwargs["root"], "fold 'all': no fold has split files", expected)
    return [_format(kind, {**kwargs, "fold": fold}) for fold in folds]


def check_source(source: str) -> None:
    """Refuse (:class:`~cdlib.runtime.errors.DataError`) a real source whose folders or split files are missing.

    Looks only at folders and annotation files (the videos are checked when a split
    is built, and broken ones are skipped and listed). ``synthetic`` always passes.
    """
    for one in fold_sources(source):
        if one == "synthetic":
            continue
        kind, kwargs = parse_source(one)
        LAYOUTS[kind].check(kwargs)


# ----------------------------------------------------------------------------- the built-in layouts

register_layout(Layout("ucf101", paths=("root", "annotation_dir"), required=1, title="UCF101",
                       description=UCF101_LAYOUT, check=_check_ucf101, dataset="cdlib.data.layouts:UCF101Videos",
                       folds=_ucf101_source_folds))
register_layout(Layout("hmdb51", paths=("root", "split_dir"), required=2, title="HMDB51",
                       description=HMDB51_LAYOUT, check=_check_hmdb51, dataset="cdlib.data.layouts:HMDB51Videos",
                       folds=_hmdb51_source_folds))
register_layout(Layout("kinetics", paths=("root",), required=1, title="Kinetics",
                       description=KINETICS_LAYOUT, check=_check_kinetics, dataset="cdlib.data.layouts:KineticsVideos"))
