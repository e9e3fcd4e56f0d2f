"""Data sets: the embedded synthetic action videos and real video layouts.

:func:`build_dataset` turns ``data.source`` into a :class:`ClipDataset`:
``synthetic``, ``ucf101:<root>[:<annotation_dir>][:fold]``,
``hmdb51:<root>:<split_dir>[:fold]`` or ``kinetics:<root>``
(:mod:`cdlib.data.sources`). The small real sets shipped with the study are in
``data/`` (:mod:`cdlib.data.shipped`). The data layer sits on :mod:`cdlib.runtime` and may import
nothing else of cdlib: what it needs of a config it is given (``data_cfg``, duck-typed).
"""

from cdlib.data.base import SPLITS, ClipBank, ClipDataset, VideoMeta

__all__ = ["SPLITS", "ClipBank", "ClipDataset", "VideoMeta", "build_dataset", "skipped_videos"]


def build_dataset(data_cfg, split: str, seed: int = 0, strict: bool = False) -> ClipDataset:
    """The ``split`` (train, val or test) of the data set that ``data_cfg.source`` names."""
    from cdlib.runtime.errors import DataError

    if split not in SPLITS:
        raise DataError(f"split: unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    source = data_cfg.source
    if source == "synthetic":
        from cdlib.data.synthetic import SyntheticActionVideos

        return SyntheticActionVideos(data_cfg, split=split, seed=seed)
    from cdlib.data.layouts import build_layout_dataset

    return build_layout_dataset(data_cfg, split=split, seed=seed, strict=strict)


def skipped_videos(data_cfg, seed: int = 0) -> list[dict[str, str]]:
    """Every skipped or rejected video of the data set, as ``{"path", "reason"}`` (``[]`` for the synthetic
    set); see :func:`cdlib.data.layouts.skipped_videos`."""
    if data_cfg.source == "synthetic":
        return []
    from cdlib.data.layouts import skipped_videos as scan

    return scan(data_cfg, seed)
