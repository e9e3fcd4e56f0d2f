"""Real video data sets in their standard folder layouts: UCF101, HMDB51, Kinetics.

Each class here is a :class:`~cdlib.data.base.ClipDataset`: item ``i`` is
``(clips uint8 [N, T, H, W, 3], label)`` with ``N`` non-overlapping ``T``-frame
clips (:func:`cdlib.data.video.cut_clips`, incomplete tail dropped), and
``meta(i).name`` is the video's path relative to the data root.

Layouts
-------
- UCF101 (:class:`UCF101Videos`): ``<root>/<Class>/*.avi`` and annotation files
  ``classInd.txt`` (``"1 ClassName"``), ``trainlist0F.txt`` (``"Class/v_x.avi [label]"``),
  ``testlist0F.txt`` in ``<root>/ucfTrainTestlist/``, ``<root>/splits/`` or a folder
  given explicitly.
- HMDB51 (:class:`HMDB51Videos`): ``<root>/<class>/*.avi`` and
  ``<split_dir>/<class>_test_split{F}.txt`` with lines ``"video.avi tag"``,
  tag 1 = train, 2 = test, 0 = unused.
- Kinetics (:class:`KineticsVideos`): ``<root>/<split>/<class>/*.mp4`` (or .avi,
  .mkv, .webm).

The validation split
--------------------
UCF101 and HMDB51 have only train and test lists (Kinetics may lack a test folder).
Their ``val`` split is held out of the train list by :func:`hold_out_val`: per class
(stratified), a fraction ``val_fraction`` of the *groups* of that class, drawn with
a generator seeded by ``(seed, class name)``. A group is the set of videos cut from
one recording (:func:`video_group`: UCF101's ``v_<Class>_gNN_cMM`` → ``gNN``;
HMDB51's source-movie prefix; Kinetics' YouTube id; otherwise the video alone), so
near-duplicate clips never straddle train and val. A class with at least two groups
gives at least one to val and keeps at least one in train; a class with a single
group stays wholly in train. The hold-out is computed from the lists before any
video is opened, so it does not change when a file turns out to be broken.
A UCF101 annotation folder may also hold ``vallist0F.txt`` (same format as
``trainlist0F.txt``; a cdlib extension written by :func:`cdlib.data.export.export_synthetic`):
then val is exactly that list, minus nothing, and train is the train list without it.

Scanning, skipping and strictness
---------------------------------
Building a split decodes every listed video once, through the decode cache
(:class:`cdlib.data.video.DecodeCache`), with a progress bar: these sets are small,
a full decode is the only check that catches a stream truncated half-way, and the
clips then load from the cache on access. A listed video that is missing, empty,
not a video, truncated or shorter than one clip is *skipped*: recorded in
``dataset.skipped`` as ``(path, reason)`` and listed by :meth:`report`, which goes
to stderr when the split is built; :func:`skipped_videos` collects them over the
splits for the benchmark JSON (``data.skipped``) and the command line, which prints
each by path and reason. Data-set-level findings that do not stop the build —
a class with no video in the split — go to ``dataset.issues`` and the report.
``strict=True`` turns the first skip or issue into an exception
(:class:`~cdlib.runtime.errors.VideoError` for one file, :class:`~cdlib.runtime.errors.DataError`
otherwise). Always fatal: a missing root or annotation folder, no split files,
a class index naming a folder that does not exist, unparsable annotation files,
a video listed in both train and test, and a split that ends up empty.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cdlib.data.base import SPLITS, ClipDataset, VideoMeta
from cdlib.data.sources import (
    ALL_FOLDS,
    HMDB51_LAYOUT,
    KINETICS_LAYOUT,
    LAYOUTS,
    UCF101_LAYOUT,
    hmdb51_split_files,
    kinetics_split_folders,
    normalize_source,
    parse_source,
    register_layout,
    require_folder,
    source_forms,
    ucf101_annotation_dir,
)
from cdlib.data.sources import abspath as _abspath
from cdlib.data.video import TAILS, DecodeCache, load_clips
from cdlib.runtime.errors import ConfigError, DataError, VideoError
from cdlib.runtime.progress import log, progress_bar

__all__ = [
    "HMDB51Videos",
    "KineticsVideos",
    "UCF101Videos",
    "VIDEO_EXTENSIONS",
    "build_layout_dataset",
    "hold_out_val",
    "normalize_source",
    "parse_source",
    "register_layout",
    "skipped_videos",
    "source_forms",
    "video_group",
]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm")


# ---------------------------------------------------------------------------
# groups and the validation hold-out

_UCF_NAME = re.compile(r"^v_(?P<cls>.+)_g(?P<group>\d+)_c(?P<clip>\d+)$", re.IGNORECASE)
_KINETICS_NAME = re.compile(r"^(?P<ytid>[A-Za-z0-9_-]{11})_\d{6}_\d{6}$")


def video_group(name: str, class_name: str = "") -> str:
    """The recording a video was cut from, so that its siblings stay in one split.

    ``name`` is a file name or relative path. UCF101 ``v_<Class>_gNN_cMM`` →
    ``<class>/gNN``; Kinetics ``<youtube id>_<start>_<end>`` → the YouTube id;
    HMDB51 ``<movie>_<class>_<tags>_<n>`` → the movie prefix; otherwise the video
    itself (its own group).
    """
    stem = Path(name).stem
    match = _UCF_NAME.match(stem)
    if match:
        return f"{match['cls'].lower()}/g{int(match['group'])}"
    match = _KINETICS_NAME.match(stem)
    if match:
        return f"yt:{match['ytid']}"
    if class_name and f"_{class_name}_" in stem:
        return f"{class_name}/{stem.split(f'_{class_name}_', 1)[0]}"
    return f"video:{Path(name).as_posix()}"


def hold_out_val(
    videos: list[tuple[str, int]], class_names: list[str], val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Split train-list indices into ``(train, val)``, grouped, stratified and seeded.

    ``videos`` are ``(relative path, label)`` pairs. Per class, the groups
    (:func:`video_group`) are shuffled by a generator seeded with ``(seed, crc32 of
    the class name)`` and the first ``round(val_fraction * groups)`` go to val, at
    least one and at most ``groups - 1`` when the class has two or more groups and
    ``val_fraction > 0``. Every video of a group goes where its group goes.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction: expected a number in [0, 1), got {val_fraction!r}")
    by_class: dict[int, dict[str, list[int]]] = {}
    for index, (rel, label) in enumerate(videos):
        group = video_group(rel, class_names[label])
        by_class.setdefault(label, {}).setdefault(group, []).append(index)
    train, val = [], []
    for label, groups in sorted(by_class.items()):
        keys = sorted(groups)
        n_val = int(math.floor(val_fraction * len(keys) + 0.5))
        if val_fraction > 0 and len(keys) >= 2:
            n_val = min(max(n_val, 1), len(keys) - 1)
        elif len(keys) < 2:
            n_val = 0
        rng = np.random.default_rng([seed, zlib.crc32(class_names[label].encode())])
        order = rng.permutation(len(keys))
        held = {keys[j] for j in order[:n_val]}
        for key in keys:
            (val if key in held else train).extend(groups[key])
    return sorted(train), sorted(val)


# ---------------------------------------------------------------------------
# the shared machinery


@dataclass(frozen=True)
class _Listed:
    """A video named by an annotation: path relative to the root, label, where it was named."""

    rel: str
    label: int
    where: str


def _resolve(root: Path, rel: str) -> Path | None:
    """``root/rel``, or a case-insensitive match of it (the official UCF101 lists spell
    ``HandstandPushups`` where the files say ``HandStandPushups``); ``None`` if absent."""
    path = root / rel
    if path.is_file():
        return path
    parent = path.parent
    if parent.is_dir():
        lowered = path.name.lower()
        for candidate in parent.iterdir():
            if candidate.name.lower() == lowered and candidate.is_file():
                return candidate
    return None


class _LayoutDataset(ClipDataset):
    """Scanning, skipping, reporting and item access shared by the layouts.

    Subclasses set ``self.class_names`` and call :meth:`_build` with the split's
    listed videos.
    """

    layout = "videos"

    def __init__(
        self,
        root,
        split: str,
        *,
        height: int = 32,
        width: int = 32,
        clip_length: int = 8,
        tail: str = "drop",
        max_clips: int = 0,
        val_fraction: float = 0.15,
        seed: int = 0,
        cache_dir=None,
        strict: bool = False,
        progress: bool = True,
    ):
        if split not in SPLITS:
            raise DataError(f"split: unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        for key, value in (("data.height", height), ("data.width", width), ("data.clip_length", clip_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{key}: expected a positive integer, got {value!r}")
        if isinstance(max_clips, bool) or not isinstance(max_clips, int) or max_clips < 0:
            raise ConfigError(f"data.max_clips: expected an integer >= 0 (0: all clips), got {max_clips!r}")
        if tail not in TAILS:
            raise ConfigError(f"tail: expected one of {', '.join(TAILS)}, got {tail!r}")
        if not isinstance(val_fraction, (int, float)) or not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction: expected a number in [0, 1), got {val_fraction!r}")
        self.root = _abspath(root)
        self.split = split
        self.height, self.width, self.clip_length = height, width, clip_length
        self.tail, self.max_clips = tail, max_clips
        self.val_fraction, self.seed = float(val_fraction), seed
        self.strict = strict
        self.progress = progress
        self.cache: DecodeCache | bool = False if cache_dir is False else DecodeCache(cache_dir)
        self.class_names: list[str] = []
        self.skipped: list[tuple[str, str]] = []
        self.issues: list[tuple[str, str]] = []
        self._videos: list[tuple[Path, str, int, int]] = []  # (path, rel, label, num_clips)
        require_folder(self.root, "data root", self.expected_layout())

    def _held_out(self, train: list[_Listed]) -> list[_Listed]:
        """This split's part of the listed train videos: the val hold-out (:func:`hold_out_val`) or the rest."""
        train_idx, val_idx = hold_out_val(
            [(v.rel, v.label) for v in train], self.class_names, self.val_fraction, self.seed
        )
        return [train[i] for i in (val_idx if self.split == "val" else train_idx)]

    # -- hooks ---------------------------------------------------------------

    def expected_layout(self) -> str:
        return "a folder of videos"

    def describe_source(self) -> str:
        return f"{self.layout} {self.root}"

    # -- problems ------------------------------------------------------------

    def _skip(self, path, reason: str) -> None:
        """A video that cannot be used: fatal in strict mode, else listed in the report."""
        if self.strict:
            raise VideoError(path, reason)
        self.skipped.append((str(path), reason))

    def _issue(self, subject, reason: str) -> None:
        """A data-set-level finding that does not stop the build (fatal in strict mode)."""
        if self.strict:
            raise DataError(f"{subject}: {reason}")
        self.issues.append((str(subject), reason))

    # -- building ------------------------------------------------------------

    def _build(self, listed: list[_Listed], class_folders: dict[str, Path] | None = None) -> None:
        """Decode every listed video through the cache; skip, check classes, refuse empty."""
        seen: set[str] = set()
        for item in progress_bar(listed, desc=f"scan {self.layout} {self.split}", disable=not self.progress):
            if item.rel in seen:  # a repeated line names the same video: keep one
                continue
            seen.add(item.rel)
            path = _resolve(self.root, item.rel)
            if path is None:
                self._skip(self.root / item.rel, f"listed in {item.where} but the file does not exist")
                continue
            try:
                clips = load_clips(
                    path, self.height, self.width, self.clip_length, self.tail, self.max_clips, cache=self.cache
                )
            except VideoError as exc:
                self._skip(path, exc.reason)
                continue
            self._videos.append((path, item.rel, item.label, int(clips.shape[0])))
        counts = np.bincount([label for _, _, label, _ in self._videos], minlength=len(self.class_names))
        for label, name in enumerate(self.class_names):
            if counts[label] == 0:
                folder = (class_folders or {}).get(name, self.root / name)
                self._issue(folder, f"class {name!r} has no usable video in the {self.split} split{self._fold_text()}")
        if not self._videos:
            lines = [f"{self.describe_source()}: the {self.split} split is empty: {len(seen)} videos listed, "
                     f"{len(self.skipped)} skipped{self._empty_hint()}"]
            lines += [f"  {path}: {reason}" for path, reason in self.skipped[:20]]
            if len(self.skipped) > 20:
                lines.append(f"  ... and {len(self.skipped) - 20} more")
            raise DataError("\n".join(lines))
        log(self.report())

    def _fold_text(self) -> str:
        fold = getattr(self, "fold", None)
        return f" (fold {fold})" if fold is not None else ""

    def _empty_hint(self) -> str:
        return ""

    # -- the ClipDataset interface ---------------------------------------------

    def __len__(self) -> int:
        return len(self._videos)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, _, label, _ = self._videos[index]
        clips = load_clips(path, self.height, self.width, self.clip_length, self.tail, self.max_clips, cache=self.cache)
        return clips, label

    def meta(self, index: int) -> VideoMeta:
        _, rel, label, n = self._videos[index]
        return VideoMeta(name=rel, label=label, num_clips=n, informative=None)

    def path(self, index: int) -> Path:
        """The file of video ``index``."""
        return self._videos[index][0]

    @property
    def labels(self) -> list[int]:
        return [label for _, _, label, _ in self._videos]

    def summary(self) -> str:
        """One line: source, split, videos, classes, skipped."""
        text = (
            f"{self.describe_source()}, {self.split} split: {len(self)} videos, {self.num_classes} classes, "
            f"{sum(n for *_, n in self._videos)} clips of {self.clip_length} frames at {self.height}x{self.width}; "
            f"{len(self.skipped)} skipped"
        )
        if self.issues:
            text += f", {len(self.issues)} issue(s)"
        return text

    def report(self) -> str:
        """The summary, then one line per skipped video and per issue, with its reason."""
        lines = [self.summary()]
        lines += [f"skipped {path}: {reason}" for path, reason in self.skipped]
        lines += [f"issue {subject}: {reason}" for subject, reason in self.issues]
        return "\n".join(lines)

    def describe(self) -> dict:
        out = super().describe()
        out.update(
            layout=self.layout,
            root=str(self.root),
            clips=sum(n for *_, n in self._videos),
            issues=len(self.issues),
        )
        return out


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines of a text annotation file with their 1-based numbers."""
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise DataError(f"{path}: cannot read the annotation file ({exc.strerror or exc})") from exc
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _check_fold(fold) -> int:
    if isinstance(fold, bool) or not isinstance(fold, int) or fold < 1:
        raise ConfigError(f"fold: expected a positive integer (UCF101 and HMDB51 have folds 1-3), got {fold!r}")
    return fold


# ---------------------------------------------------------------------------
# UCF101


class UCF101Videos(_LayoutDataset):
    """UCF101 layout: ``<root>/<Class>/*.avi`` with ``classInd.txt``, ``trainlist0F.txt``,
    ``testlist0F.txt``.

    The annotation folder is ``annotation_dir`` if given, else the first of
    ``<root>/ucfTrainTestlist`` and ``<root>/splits`` that holds the fold's files.
    Labels follow ``classInd.txt`` (``"1 ApplyEyeMakeup"`` → label 0); without it,
    the classes are the sorted class folders named in the two lists. The label
    column of ``trainlist0F.txt`` is optional and, when present, must agree with
    ``classInd.txt``. ``fold`` is any fold whose files exist (UCF101 has 1–3).
    ``val`` is held out of the train list (module docstring), or read from
    ``vallist0F.txt`` when the annotation folder has one.
    """

    layout = "ucf101"

    def __init__(self, root, split: str, fold: int = 1, annotation_dir=None, **kwargs):
        self.fold = _check_fold(fold)
        super().__init__(root, split, **kwargs)
        self.annotation_dir = self._find_annotations(annotation_dir)
        train, test, val = self._read_lists()
        if split == "test":
            listed = test
        elif val is not None:
            val_names = {v.rel for v in val}
            listed = val if split == "val" else [v for v in train if v.rel not in val_names]
        else:
            listed = self._held_out(train)
        self._build(listed)

    def expected_layout(self) -> str:
        return UCF101_LAYOUT

    def describe_source(self) -> str:
        return f"ucf101 {self.root} fold {self.fold}"

    def _empty_hint(self) -> str:
        if self.split == "val" and not (self.annotation_dir / f"vallist{self.fold:02d}.txt").is_file():
            return f" (val is held out of the train list: data.val_fraction={self.val_fraction})"
        return ""

    def _names(self) -> tuple[str, str, str]:
        return (f"trainlist{self.fold:02d}.txt", f"testlist{self.fold:02d}.txt", f"vallist{self.fold:02d}.txt")

    def _find_annotations(self, annotation_dir) -> Path:
        return ucf101_annotation_dir(self.root, self.fold, annotation_dir)

    def _read_class_index(self, lists: list[Path]) -> list[str]:
        class_file = self.annotation_dir / "classInd.txt"
        if not class_file.is_file():
            # No index: the classes are the folders the lists name, in sorted order (UCF101's own order).
            names = set()
            for list_file in lists:
                for _, line in _read_lines(list_file):
                    rel = line.split()[0].replace("\\", "/")
                    if "/" in rel:
                        names.add(rel.split("/", 1)[0])
            return sorted(names)
        entries: dict[int, str] = {}
        for number, line in _read_lines(class_file):
            parts = line.split()
            if len(parts) != 2 or not parts[0].isdigit():
                raise DataError(f"{class_file}:{number}: expected '<index> <ClassName>', got {line!r}")
            index = int(parts[0])
            if index in entries:
                raise DataError(f"{class_file}:{number}: class index {index} appears twice")
            entries[index] = parts[1]
        if sorted(entries) != list(range(1, len(entries) + 1)):
            raise DataError(f"{class_file}: class indices must be 1..{len(entries)} without gaps, got {sorted(entries)}")
        names = [entries[i] for i in range(1, len(entries) + 1)]
        if len(set(names)) != len(names):
            raise DataError(f"{class_file}: a class name appears twice")
        return names

    def _read_list(self, list_file: Path) -> tuple[list[_Listed], list[tuple[str, str]]]:
        """The videos a list names, and ``(path, reason)`` for the lines that cannot be used."""
        index = {name: i for i, name in enumerate(self.class_names)}
        check_labels = (self.annotation_dir / "classInd.txt").is_file()
        out, bad = [], []
        for number, line in _read_lines(list_file):
            where = f"{list_file.name}:{number}"
            parts = line.split()
            rel = parts[0].replace("\\", "/").removeprefix("./")
            if len(parts) > 2 or "/" not in rel:
                bad.append((f"{list_file}:{number}", f"expected '<Class>/<video>.avi [label]', got {line!r}"))
                continue
            class_name = rel.split("/", 1)[0]
            if class_name not in index:
                bad.append((str(self.root / rel), f"listed in {where} under class {class_name!r}, which classInd.txt lacks"))
                continue
            label = index[class_name]
            if len(parts) == 2 and check_labels and (not parts[1].isdigit() or int(parts[1]) != label + 1):
                bad.append(
                    (str(self.root / rel), f"{where} gives label {parts[1]!r} but classInd.txt numbers {class_name!r} {label + 1}")
                )
                continue
            out.append(_Listed(rel, label, where))
        return out, bad

    def _read_lists(self) -> tuple[list[_Listed], list[_Listed], list[_Listed] | None]:
        """Train, test and (if present) val lists; unusable lines of the lists feeding this split are skipped."""
        train_name, test_name, val_name = self._names()
        train_file, test_file = self.annotation_dir / train_name, self.annotation_dir / test_name
        val_file = self.annotation_dir / val_name
        self.class_names = self._read_class_index([train_file, test_file])
        if not self.class_names:
            raise DataError(f"{self.annotation_dir}: no classes found (classInd.txt missing and the lists are empty)")
        for name in self.class_names:
            if not (self.root / name).is_dir():
                raise DataError(
                    f"{self.root / name}: class folder does not exist, but "
                    f"{self.annotation_dir / 'classInd.txt'} names class {name!r}"
                )
        train, bad_train = self._read_list(train_file)
        test, bad_test = self._read_list(test_file)
        val, bad_val = self._read_list(val_file) if val_file.is_file() else (None, [])
        for path, reason in {"train": bad_train + bad_val, "val": bad_train + bad_val, "test": bad_test}[self.split]:
            self._skip(path, reason)
        both = sorted({v.rel for v in train} & {v.rel for v in test})
        if both:
            raise DataError(
                f"{self.annotation_dir}: {len(both)} video(s) listed in both {train_name} and {test_name} "
                f"(e.g. {both[0]}); train and test must not share videos"
            )
        return train, test, val


# ---------------------------------------------------------------------------
# HMDB51


class HMDB51Videos(_LayoutDataset):
    """HMDB51 layout: ``<root>/<class>/*.avi`` and ``<split_dir>/<class>_test_split{F}.txt``.

    Each split file line is ``"<video>.avi <tag>"``: tag 1 = train, 2 = test,
    0 = unused. The classes are the split files found for the fold, in sorted
    order (HMDB51 has no class index; sorted is the common convention). ``val`` is
    held out of the train videos, grouped by source movie (module docstring).
    """

    layout = "hmdb51"

    def __init__(self, root, split_dir, split: str, fold: int = 1, **kwargs):
        self.fold = _check_fold(fold)
        super().__init__(root, split, **kwargs)
        self.split_dir = _abspath(split_dir)
        suffix = f"_test_split{self.fold}.txt"
        files = hmdb51_split_files(self.split_dir, self.fold)
        self.class_names = [p.name[: -len(suffix)] for p in files]
        for name in self.class_names:
            if not (self.root / name).is_dir():
                raise DataError(
                    f"{self.root / name}: class folder does not exist, but {self.split_dir / (name + suffix)} "
                    f"lists videos of class {name!r}"
                )
        train, test = [], []
        for label, split_file in enumerate(files):
            for number, line in _read_lines(split_file):
                parts = line.split()
                where = f"{split_file.name}:{number}"
                if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                    self._skip(f"{split_file}:{number}", f"expected '<video>.avi <tag 0|1|2>', got {line!r}")
                    continue
                item = _Listed(f"{self.class_names[label]}/{parts[0]}", label, where)
                if parts[1] == "1":
                    train.append(item)
                elif parts[1] == "2":
                    test.append(item)
        self._build(test if split == "test" else self._held_out(train))

    def expected_layout(self) -> str:
        return HMDB51_LAYOUT

    def describe_source(self) -> str:
        return f"hmdb51 {self.root} fold {self.fold}"

    def _empty_hint(self) -> str:
        if self.split == "val":
            return f" (val is held out of the train videos: data.val_fraction={self.val_fraction})"
        return ""


# ---------------------------------------------------------------------------
# Kinetics


class KineticsVideos(_LayoutDataset):
    """Kinetics layout: ``<root>/<split>/<class>/<video>`` (.mp4, .avi, .mkv or .webm).

    Split folders are ``train``, ``val`` and ``test``. Kinetics publishes labels for
    train and val only, so usually there is no labelled ``<root>/test``; then
    **test is the ``val`` folder** and **val is held out of ``train``** (grouped by
    YouTube id, module docstring). With a ``<root>/test`` of class folders, test is
    that folder and val is the ``val`` folder (or held out of train if there is
    none). The classes are the sorted union of the class folders of all split
    folders, so labels agree across splits.
    """

    layout = "kinetics"

    def __init__(self, root, split: str, **kwargs):
        self.fold = None
        super().__init__(root, split, **kwargs)
        folders = kinetics_split_folders(self.root)
        self.class_names = sorted({p.name for f in folders.values() for p in f.iterdir() if self._is_class(p)})
        has_test = "test" in folders
        # Which folder feeds which split, and whether val is held out of train.
        if split == "test":
            source, held_out = ("test" if has_test else "val"), False
        elif split == "val":
            held_out = not (has_test and "val" in folders)
            source = "train" if held_out else "val"
        else:
            source, held_out = "train", not (has_test and "val" in folders)
        self.folder_of_split = source
        self.val_held_out = held_out
        if source not in folders:
            raise DataError(
                f"{self.root / source}: Kinetics split folder missing (needed for the {split} split); "
                f"expected {self.root / source}/<class>/*.mp4"
            )
        listed = self._list_folder(folders[source])
        if held_out and split in ("train", "val"):
            listed = self._held_out(listed)
        self._build(listed, class_folders={n: folders[source] / n for n in self.class_names})

    @staticmethod
    def _is_class(path: Path) -> bool:
        return path.is_dir() and not path.name.startswith(".")

    def _list_folder(self, folder: Path) -> list[_Listed]:
        index = {name: i for i, name in enumerate(self.class_names)}
        out = []
        for class_dir in sorted(p for p in folder.iterdir() if self._is_class(p)):
            for file in sorted(class_dir.iterdir()):
                if file.is_file() and file.suffix.lower() in VIDEO_EXTENSIONS and not file.name.startswith("."):
                    rel = file.relative_to(self.root).as_posix()
                    out.append(_Listed(rel, index[class_dir.name], f"folder {folder.name}/"))
        return out

    def expected_layout(self) -> str:
        return KINETICS_LAYOUT

    def describe_source(self) -> str:
        return f"kinetics {self.root}"

    def _empty_hint(self) -> str:
        if self.split == "val" and self.val_held_out:
            return f" (val is held out of train: data.val_fraction={self.val_fraction})"
        return ""


# ---------------------------------------------------------------------------
# data.source


def build_layout_dataset(
    data_cfg, split: str, seed: int = 0, strict: bool = False, cache_dir=None, progress: bool = True
) -> _LayoutDataset:
    """The ``split`` of the real data set named by ``data_cfg.source`` (see :func:`parse_source`), opened by the
    data set class of its layout (:data:`cdlib.data.sources.LAYOUTS`).

    Uses ``data_cfg.height``, ``width``, ``clip_length``, ``max_clips`` and
    ``val_fraction``; ``seed`` seeds the validation hold-out. ``cache_dir`` is the
    decode cache folder (default ``<artifacts>/decoded``; ``False``: no cache).
    """
    kind, kwargs = parse_source(data_cfg.source)
    if kwargs.get("fold") == ALL_FOLDS:
        raise ConfigError(
            f"data.source: fold {ALL_FOLDS!r} in {data_cfg.source!r} stands for one data set per fold; build them one "
            "by one (cdlib.data.sources.fold_sources), or run them with cdlib.experiment.folds / python -m cdlib bench"
        )
    dataset = LAYOUTS[kind].dataset_class()(
        split=split,
        height=data_cfg.height,
        width=data_cfg.width,
        clip_length=data_cfg.clip_length,
        max_clips=data_cfg.max_clips,
        val_fraction=data_cfg.val_fraction,
        seed=seed,
        cache_dir=cache_dir,
        strict=strict,
        progress=progress,
        **kwargs,
    )
    _SKIPPED[_scan_key(data_cfg, split, seed)] = list(dataset.skipped)
    return dataset


#: what was skipped in the splits built in this process, by what determines it (read by :func:`skipped_videos`)
_SKIPPED: dict[tuple, list[tuple[str, str]]] = {}


def _scan_key(data_cfg, split: str, seed: int) -> tuple:
    return (normalize_source(data_cfg.source), split, seed, data_cfg.height, data_cfg.width, data_cfg.clip_length,
            data_cfg.max_clips, data_cfg.val_fraction)


def skipped_videos(data_cfg, seed: int = 0) -> list[dict[str, str]]:
    """Every video of the real data set of ``data_cfg`` that was skipped or rejected, in any split, as
    ``{"path", "reason"}`` (no duplicates; ``[]`` for the synthetic set). Splits already built in this
    process are not scanned again."""
    if data_cfg.source == "synthetic":
        return []
    out, seen = [], set()
    for split in SPLITS:
        key = _scan_key(data_cfg, split, seed)
        if key not in _SKIPPED:
            build_layout_dataset(data_cfg, split, seed=seed)
        for path, reason in _SKIPPED[key]:
            if (path, reason) not in seen:
                seen.add((path, reason))
                out.append({"path": path, "reason": reason})
    return out
