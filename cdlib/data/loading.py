"""Clips for training and prediction through torch's ``Dataset`` and ``DataLoader``, in memory or streamed.

A split is a :class:`~cdlib.data.base.ClipIndex`: per-clip metadata for every
clip and ``read(indices)`` for the pixels. Two kinds:

- :class:`~cdlib.data.base.ClipBank` holds every decoded clip in memory (fast
  for small sets such as the embedded synthetic one);
- :class:`StreamedClips` holds the metadata only and reads a clip's video from
  its :class:`~cdlib.data.base.ClipDataset` when asked: from the decode cache of
  :mod:`cdlib.data.video` for video files, from the renderer for the synthetic
  set. Memory then does not grow with the number of videos.

:func:`clip_loader` wraps either in a :class:`~torch.utils.data.DataLoader` whose
batches are given as lists of clip indices (:class:`BatchPlan`). The batches are
made in the main process from ``(seed, epoch)`` (:func:`cdlib.experiment.train.epoch_order`);
worker processes only read pixels, and the loader returns batches in the planned
order, so the clips of every step are the same whatever ``num_workers``. Each
worker loads at most ``prefetch_batches`` batches ahead; on CUDA, batches come in
pinned memory for asynchronous copies to the GPU.
"""

from __future__ import annotations

import numpy as np
import torch

from cdlib.data.base import ClipDataset, ClipIndex

__all__ = ["BatchPlan", "ClipReader", "StreamedClips", "clip_loader", "decoded_bytes"]


class StreamedClips(ClipIndex):
    """The clips of a :class:`ClipDataset`, read from it on demand (see the module docstring).

    ``read`` groups the asked clips by video and loads each video once per call;
    the last video loaded is kept, so reading clips in order (prediction) loads
    every video once.
    """

    def __init__(self, dataset: ClipDataset, num_clips: list[int], labels: list[int], informative: list):
        self.dataset = dataset
        counts = self._counts = torch.tensor(num_clips, dtype=torch.long)
        self.video = torch.arange(len(counts)).repeat_interleave(counts)
        self.position = torch.cat([torch.arange(n) for n in num_clips]) if num_clips else torch.zeros(0, dtype=torch.long)
        self.labels = torch.tensor(labels, dtype=torch.long).repeat_interleave(counts)
        self.informative = torch.cat([
            torch.full((n,), -1, dtype=torch.int8) if info is None else torch.as_tensor(np.asarray(info), dtype=torch.int8)
            for n, info in zip(num_clips, informative)
        ]) if num_clips else torch.zeros(0, dtype=torch.int8)
        self.num_classes = dataset.num_classes
        self.class_names = list(dataset.class_names)
        self._last: tuple[int, torch.Tensor] | None = None

    @classmethod
    def from_dataset(cls, dataset: ClipDataset) -> "StreamedClips":
        """Metadata from ``dataset.meta`` alone: no video is decoded (the synthetic set renders none)."""
        metas = [dataset.meta(i) for i in range(len(dataset))]
        return cls(dataset, [m.num_clips for m in metas], [m.label for m in metas], [m.informative for m in metas])

    @property
    def clip_shape(self) -> tuple[int, int, int, int]:
        return (self.dataset.clip_length, self.dataset.height, self.dataset.width, 3)

    def video_clips(self, index: int) -> torch.Tensor:
        if self._last is None or self._last[0] != index:
            clips, _ = self.dataset[index]
            expected = int(self._counts[index])
            if clips.shape[0] != expected:
                raise RuntimeError(f"video {index} of {self.dataset.split}: read {clips.shape[0]} clips, "
                                   f"its metadata says {expected} (did the file change after the scan?)")
            self._last = (index, clips)
        return self._last[1]

    def read(self, indices: torch.Tensor) -> torch.Tensor:
        indices = torch.as_tensor(indices, dtype=torch.long)
        out = torch.empty((len(indices), *self.clip_shape), dtype=torch.uint8)
        videos = self.video[indices]
        for v in dict.fromkeys(videos.tolist()):  # each video once, in order of first use
            rows = torch.nonzero(videos == v).squeeze(1)
            out[rows] = self.video_clips(v)[self.position[indices[rows]]]
        return out

    def __getstate__(self):  # workers start without the parent's last video
        return {**self.__dict__, "_last": None}


def decoded_bytes(dataset: ClipDataset) -> int:
    """Bytes the decoded uint8 clips of ``dataset`` take in memory (from metadata; nothing is decoded)."""
    clips = sum(dataset.meta(i).num_clips for i in range(len(dataset)))
    return clips * dataset.clip_length * dataset.height * dataset.width * 3


class ClipReader(torch.utils.data.Dataset):
    """A clip source as a map-style dataset: item ``m`` is clip ``m``, uint8 ``[T, H, W, C]``.

    The loader fetches whole batches through ``__getitems__``, which returns
    ``(clips uint8 [B, T, H, W, C], indices int64 [B])`` in one read.
    """

    def __init__(self, source: ClipIndex):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.source.read(torch.tensor([index]))[0]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.source.read(idx), idx


class BatchPlan:
    """The batches (lists of clip indices) a loader yields next; set :attr:`batches` before each pass.

    A batch sampler the loader's persistent workers keep across epochs: its
    content changes, the object does not.
    """

    def __init__(self, batches=()):
        self.batches = [list(map(int, b)) for b in batches]

    def set(self, batches) -> None:
        self.batches = [list(map(int, b)) for b in batches]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _whole_batch(batch):
    return batch  # ClipReader.__getitems__ already returns the batch


def clip_loader(source: ClipIndex, plan: BatchPlan, runtime=None, persistent: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader yielding ``(clips uint8 [B, T, H, W, C], indices [B])`` for the batches of ``plan``, in order.

    ``runtime`` (:class:`cdlib.runtime.device.Runtime`) gives the worker count
    (:meth:`~cdlib.runtime.device.Runtime.workers_for`), the prefetch depth and pinning;
    without it, the main process reads. The loader draws its base seed from a
    private generator, so iterating it never moves the global RNG (dropout).
    """
    from cdlib.data.base import ClipBank

    workers = runtime.workers_for(isinstance(source, ClipBank)) if runtime is not None else 0
    return torch.utils.data.DataLoader(
        ClipReader(source),
        batch_sampler=plan,
        collate_fn=_whole_batch,
        num_workers=workers,
        prefetch_factor=runtime.prefetch_batches if workers > 0 else None,
        persistent_workers=persistent and workers > 0,
        pin_memory=runtime is not None and runtime.pin_memory,
        generator=torch.Generator(),
    )
