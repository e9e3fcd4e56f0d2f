"""Export the synthetic action videos as real video files in the UCF101 layout.

So that the file path of the study (decoding, the UCF101 loader, the decode cache)
runs on the same content as the embedded set (:mod:`cdlib.data.synthetic`)::

    <out>/<Class>/v_<Class>_g<NNN>_c01.avi       one file per synthetic video
    <out>/ucfTrainTestlist/classInd.txt          "1 MoveRight", ... in label order
    <out>/ucfTrainTestlist/trainlist01.txt       train *and* val videos, "Class/v_....avi <label>"
    <out>/ucfTrainTestlist/vallist01.txt         the val videos (a cdlib extension)
    <out>/ucfTrainTestlist/testlist01.txt        test videos, "Class/v_....avi"
    <out>/synthetic_export.json                  config, seed, codec, and video ↔ (split, index)

The synthetic val split is kept exactly: standard UCF101 tools see train+val as the
train list, while :class:`cdlib.data.layouts.UCF101Videos` reads ``vallist01.txt``
and returns the same train/val/test membership as the synthetic set. Every video is
its own group (``gNNN`` numbered per class), as synthetic videos are independent.
Class folders are the pattern names in CamelCase (``move_right`` → ``MoveRight``):
UCF101 style, no ``_`` or spaces in paths.

Codec: ``ffv1`` with pixel format ``bgr0`` in AVI, i.e. lossless RGB: decoding gives
back the exact frames. (``mpeg4``, even at the highest quality, was measured here
to differ by ~10 grey levels on average on 32×32 noisy frames, mostly from 4:2:0
chroma subsampling.) Lossless files of noisy frames compress little, about
0.9× the raw size; ``codec="mpeg4"`` trades exactness for ~5× smaller files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from pathlib import Path

import av
import numpy as np
import torch

from cdlib.data.sources import DefaultSource
from cdlib.data.sources import abspath as _abspath
from cdlib.runtime.artifacts import atomic_write
from cdlib.runtime.errors import ConfigError, DataError
from cdlib.runtime.progress import log, progress_bar

__all__ = [
    "CODECS", "FALLBACK_OVERRIDES", "DefaultSource", "class_folder_name", "default_real_source", "export_synthetic",
    "exported_synthetic", "write_video",
]

#: codec name -> (pixel format, encoder options)
CODECS = {
    "ffv1": ("bgr0", {}),  # lossless RGB
    # qscale 2 (global_quality = 2 * FF_QP2LAMBDA): the highest practical mpeg4 quality
    "mpeg4": ("yuv420p", {"flags": "+qscale", "global_quality": str(2 * 118)}),
}


def class_folder_name(name: str) -> str:
    """``move_right`` → ``MoveRight``: a UCF101-style class folder name."""
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", name) if p]
    folder = "".join(p[:1].upper() + p[1:] for p in parts)
    if not folder:
        raise DataError(f"class name {name!r} gives an empty folder name")
    return folder


def write_video(path: str | os.PathLike, frames, fps: int = 25, codec: str = "ffv1") -> None:
    """Encode uint8 RGB frames ``[L, H, W, 3]`` to ``path`` (container from the suffix).

    Written to a temporary file in the same folder and renamed, so that an
    interrupted export leaves no half-written video. ``mpeg4`` needs even sizes.
    """
    if codec not in CODECS:
        raise ConfigError(f"codec: expected one of {', '.join(CODECS)}, got {codec!r}")
    frames = np.asarray(frames.numpy() if isinstance(frames, torch.Tensor) else frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"expected non-empty uint8 frames [L, H, W, 3], got {frames.dtype} {frames.shape}")
    pix_fmt, options = CODECS[codec]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        with av.open(tmp, mode="w", format=path.suffix.lstrip(".") or None) as container:
            stream = container.add_stream(codec, rate=fps, options=dict(options))
            stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
            stream.pix_fmt = pix_fmt
            for array in frames:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode())  # flush the encoder
        os.replace(tmp, path)
    except av.error.FFmpegError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise DataError(f"{path}: cannot encode the video with {codec} ({exc.strerror or type(exc).__name__})") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_text(path: Path, lines: list[str]) -> None:
    atomic_write(path, lambda handle: handle.write("".join(line + "\n" for line in lines)), mode="w")


def export_synthetic(
    data_cfg,
    out_dir: str | os.PathLike,
    seed: int = 0,
    splits: tuple[str, ...] = ("train", "val", "test"),
    fps: int = 25,
    codec: str = "ffv1",
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write the synthetic set of ``data_cfg`` (seed ``seed``) as videos in the UCF101 layout.

    See the module docstring for the layout. ``data_cfg.source`` must be
    ``synthetic``. An existing non-empty ``out_dir`` is refused unless
    ``overwrite`` (files are then replaced one by one; nothing is deleted).
    Returns ``out_dir``; load it back with ``--data ucf101:<out_dir>`` or
    :class:`cdlib.data.layouts.UCF101Videos`.
    """
    from cdlib.data import SPLITS, build_dataset

    if data_cfg.source != "synthetic":
        raise ConfigError(f"data.source: export_synthetic exports the synthetic set, got {data_cfg.source!r}")
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise ConfigError(f"splits: expected a non-empty subset of {', '.join(SPLITS)}, got {list(splits)!r}")
    if codec not in CODECS:
        raise ConfigError(f"codec: expected one of {', '.join(CODECS)}, got {codec!r}")
    out = _abspath(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError(f"{out}: folder is not empty; choose a new folder or pass overwrite=True (--overwrite)")

    datasets = {s: build_dataset(data_cfg, s, seed) for s in SPLITS if s in splits}
    class_names = next(iter(datasets.values())).class_names
    folders = [class_folder_name(n) for n in class_names]
    if len(set(folders)) != len(folders):
        raise DataError(f"class names {class_names} do not give distinct folder names")
    labels = {s: [ds.meta(i).label for i in range(len(ds))] for s, ds in datasets.items()}
    per_class = np.bincount([lab for ls in labels.values() for lab in ls], minlength=len(class_names))
    width = max(2, len(str(int(per_class.max()))))

    counter = [0] * len(class_names)
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    videos = []
    total = sum(len(ds) for ds in datasets.values())
    bar = progress_bar(total=total, desc=f"export synthetic ({codec})", disable=not progress)
    for split, ds in datasets.items():
        for i in range(len(ds)):
            label = labels[split][i]
            counter[label] += 1
            folder = folders[label]
            rel = f"{folder}/v_{folder}_g{counter[label]:0{width}d}_c01.avi"
            write_video(out / rel, ds.video(i), fps=fps, codec=codec)
            lists[split].append(f"{rel} {label + 1}" if split != "test" else rel)
            videos.append({"path": rel, "split": split, "index": i, "label": label})
            bar.update(1)
    bar.close()

    annotations = out / "ucfTrainTestlist"
    _write_text(annotations / "classInd.txt", [f"{k + 1} {f}" for k, f in enumerate(folders)])
    _write_text(annotations / "trainlist01.txt", lists["train"] + lists["val"])
    _write_text(annotations / "testlist01.txt", lists["test"])
    if "val" in datasets:
        _write_text(annotations / "vallist01.txt", lists["val"])
    manifest = {
        "format": 1,
        "seed": seed,
        "fps": fps,
        "codec": codec,
        "pix_fmt": CODECS[codec][0],
        "splits": list(datasets),
        "class_names": list(class_names),
        "class_folders": folders,
        "data": dataclasses.asdict(data_cfg),
        "videos": videos,
    }
    _write_text(out / "synthetic_export.json", [json.dumps(manifest, indent=1)])
    log(f"exported {total} synthetic videos ({', '.join(f'{s} {len(d)}' for s, d in datasets.items())}) to {out}")
    return out


def exported_synthetic(data_cfg, seed: int = 0, root: str | os.PathLike | None = None) -> Path:
    """The synthetic set of ``data_cfg`` exported once as videos, reused afterwards.

    The folder is ``<root>/exported/<hash of data_cfg and seed>`` (``root``: the
    artifact store, :func:`cdlib.runtime.artifacts.default_root`). It is written in a
    temporary folder and renamed when complete, so an interrupted export is
    never mistaken for a finished one.
    """
    import shutil

    from cdlib.runtime.artifacts import default_root
    from cdlib.runtime.artifacts import config_hash

    base = Path(root) if root is not None else default_root()
    target = base / "exported" / config_hash({"data": dataclasses.asdict(data_cfg), "seed": seed})
    if (target / "synthetic_export.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        export_synthetic(data_cfg, staging, seed=seed, overwrite=True)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


#: How the real-data chapter's fallback set differs from the profile's synthetic set: trimmed like the real
#: sets that chapter is about (the action fills every video, rho = 1), small, and with 4 classes like the
#: Weizmann set it stands in for. Videos read from files carry no annotation of where the action is, so the
#: teacher trains on every clip with its video's label. Measured (ci profile, seed 0, 96 train / 64 test
#: videos): untrimmed (rho = 0.3) with 8 classes, most of those clips show no action or a distractor moving
#: like another class, and the teacher's video accuracy was 0.109 for a chance of 0.125; trimmed with 8
#: classes (12 train videos each) 0.203; trimmed with 4 classes (24 each) 0.734 for a chance of 0.25.
FALLBACK_OVERRIDES = {"data.informative_fraction": 1.0, "data.num_classes": 4, "data.num_train": 96,
                      "data.num_val": 32, "data.num_test": 64}


def default_real_source(fold, cfg, shipped_root: str | os.PathLike | None = None,
                        root: str | os.PathLike | None = None) -> DefaultSource:
    """The shipped Weizmann set at ``fold`` (an integer or ``"all"``) or, only when it is missing, the fallback.

    ``shipped_root`` is where the shipped set should be (default
    :func:`cdlib.data.shipped.shipped_path`). The fallback is the synthetic set of
    ``cfg`` (a :class:`~cdlib.experiment.config.Config`) with :data:`FALLBACK_OVERRIDES`,
    exported once as video files (:func:`exported_synthetic`, under ``root``) and
    read through the same UCF101 loader; it has one fold, which every ``fold`` maps
    to. Use this only when the user named no data: a named source is used or refused
    (:func:`cdlib.data.sources.check_source`), never replaced.
    """
    from cdlib.data.shipped import WEIZMANN, shipped_path
    from cdlib.runtime.artifacts import project_root

    shipped = _abspath(shipped_root) if shipped_root is not None else shipped_path(WEIZMANN)
    if (shipped / "ucfTrainTestlist" / "classInd.txt").is_file():
        checkout = project_root()
        shown = shipped.relative_to(checkout) if checkout is not None and shipped.is_relative_to(checkout) else shipped
        return DefaultSource(f"ucf101:{shipped}:{fold}", f"the Weizmann videos shipped in {shown}", False)
    fallback = cfg.replace(**FALLBACK_OVERRIDES)
    folder = exported_synthetic(fallback.data, fallback.seed, root)
    reason = f"no data set was named and the shipped Weizmann set is missing at {shipped}"
    log(f"{reason}: using the synthetic set exported as videos at {folder}")
    return DefaultSource(f"ucf101:{folder}:1", f"the synthetic videos ({fallback.data.num_classes} classes), trimmed so "
                         "that the action fills each video, exported as video files", True, reason)
