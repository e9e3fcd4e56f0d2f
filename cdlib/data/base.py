"""The interface every data set of cdlib implements, and the in-memory clip bank.

A :class:`ClipDataset` yields, for video ``i``, its ``N`` non-overlapping clips of
``T`` frames as a uint8 tensor ``[N, T, H, W, C]`` and its integer label. The
synthetic set (:mod:`cdlib.data.synthetic`) and the real layouts
(:mod:`cdlib.data.layouts`) share it, so training, the benchmark and the book take
either unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class VideoMeta:
    """What is known about one video besides its pixels.

    ``informative`` is a bool array ``[N]``: clip ``j`` shows the action (at least
    half of its frames lie inside the action segment). Real videos carry no such
    annotation and have ``informative=None``; ``action_start``/``action_end``
    (frame indices, end exclusive) likewise.
    """

    name: str
    label: int
    num_clips: int
    informative: np.ndarray | None = None
    action_start: int | None = None
    action_end: int | None = None


class ClipDataset(torch.utils.data.Dataset):
    """A split of a video data set, one item per video: ``(clips uint8 [N,T,H,W,C], label)``."""

    split: str
    class_names: list[str]
    clip_length: int
    #: videos skipped during the scan, as ``(path, reason)`` pairs (real data only)
    skipped: list[tuple[str, str]]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def meta(self, index: int) -> VideoMeta:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict:
        """A JSON-able summary (for benchmark records and the book)."""
        return {
            "split": self.split,
            "videos": len(self),
            "classes": self.num_classes,
            "class_names": list(self.class_names),
            "skipped": len(self.skipped),
        }


#: the two kinds of clip, by their ``informative`` flag, wherever the data say which clips show the action
#: (the probes, the signal and accuracy tables and the figures all name them so)
CLIP_GROUPS = {"action": 1, "non-action": 0}


def clip_groups(informative: torch.Tensor) -> dict[str, torch.Tensor]:
    """The boolean masks ``{name: informative == flag}`` of :data:`CLIP_GROUPS`; a clip of unknown kind
    (``informative == -1``: a data set without action annotation) is in neither."""
    return {name: informative == flag for name, flag in CLIP_GROUPS.items()}


class ClipLayout:
    """Which video each clip of a split belongs to: the bookkeeping a split's clips (:class:`ClipIndex`) and a
    model's outputs on them (:class:`cdlib.experiment.outputs.ClipOutputs`) share.

    Clips are stored video by video: clip ``m`` belongs to video ``video[m]`` (int64 ``[M]``, videos numbered
    from 0, each with at least one clip) and carries that video's label ``labels[m]``.
    """

    labels: torch.Tensor
    video: torch.Tensor

    @property
    def num_videos(self) -> int:
        return int(self.video.max()) + 1 if len(self.video) else 0

    def clips_per_video(self) -> torch.Tensor:
        """How many clips each video has, int64 ``[num_videos]``."""
        return torch.bincount(self.video, minlength=self.num_videos)

    def video_labels(self) -> torch.Tensor:
        """Label of each video, ``[num_videos]``."""
        labels = torch.empty(self.num_videos, dtype=torch.long)
        labels[self.video] = self.labels
        return labels

    def split_by_video(self, values: torch.Tensor) -> list[torch.Tensor]:
        """A per-clip tensor ``[M, ...]`` cut into one tensor per video, in video order."""
        return list(torch.split(values, self.clips_per_video().tolist()))


class ClipIndex(ClipLayout):
    """A split seen clip by clip: what :class:`ClipBank` (pixels in memory) and
    :class:`cdlib.data.loading.StreamedClips` (pixels read when asked) share.

    Clip ``m`` belongs to video ``video[m]``, clips stored video by video (:class:`ClipLayout`);
    ``labels``, ``video`` and ``position`` (clip index inside its video) are int64
    ``[M]``; ``informative`` is int8 ``[M]`` with 1/0 where known and -1 where the
    data set has no annotation. ``read(indices)`` returns the clips ``uint8 [B, T, H, W, C]``.
    """

    position: torch.Tensor
    informative: torch.Tensor
    num_classes: int
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def clip_shape(self) -> tuple[int, int, int, int]:  # pragma: no cover - abstract
        """``(T, H, W, C)`` of one clip."""
        raise NotImplementedError

    def read(self, indices: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def video_clips(self, index: int) -> torch.Tensor:
        """Every clip of video ``index``, in order: uint8 ``[N, T, H, W, C]``."""
        return self.read(torch.nonzero(self.video == index).squeeze(1))


@dataclass
class ClipBank(ClipIndex):
    """Every clip of a split in memory (see :class:`ClipIndex`): ``clips`` is uint8 ``[M, T, H, W, C]``."""

    clips: torch.Tensor
    labels: torch.Tensor
    video: torch.Tensor
    position: torch.Tensor
    informative: torch.Tensor
    num_classes: int
    class_names: list[str]

    @property
    def clip_shape(self) -> tuple[int, int, int, int]:
        return tuple(self.clips.shape[1:])

    def read(self, indices: torch.Tensor) -> torch.Tensor:
        return self.clips[indices]

    @classmethod
    def from_dataset(cls, dataset: ClipDataset, progress: bool = True) -> "ClipBank":
        from cdlib.runtime.progress import progress_bar

        clips, labels, video, position, informative = [], [], [], [], []
        for i in progress_bar(range(len(dataset)), desc=f"load {dataset.split}", disable=not progress):
            video_clips, label = dataset[i]
            meta = dataset.meta(i)
            n = video_clips.shape[0]
            clips.append(video_clips)
            labels.append(torch.full((n,), label, dtype=torch.long))
            video.append(torch.full((n,), i, dtype=torch.long))
            position.append(torch.arange(n))
            if meta.informative is None:
                informative.append(torch.full((n,), -1, dtype=torch.int8))
            else:
                informative.append(torch.as_tensor(np.asarray(meta.informative), dtype=torch.int8))
        return cls(
            clips=torch.cat(clips),
            labels=torch.cat(labels),
            video=torch.cat(video),
            position=torch.cat(position),
            informative=torch.cat(informative),
            num_classes=dataset.num_classes,
            class_names=list(dataset.class_names),
        )
