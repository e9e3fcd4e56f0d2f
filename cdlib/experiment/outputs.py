"""One model's outputs on every clip of a split (:class:`ClipOutputs`), what evaluation, gating and the tables read."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cdlib.data.base import ClipLayout


@dataclass(frozen=True, eq=False)  # eq: tensors have no single truth value
class ClipOutputs(ClipLayout):
    """One model's outputs on every clip of a split, with the split's bookkeeping of its clips.

    ``M`` clips of ``K`` classes, stored video by video (:class:`~cdlib.data.base.ClipLayout`, as in
    :class:`~cdlib.data.base.ClipIndex`): clip ``m`` belongs to video
    ``video[m]`` at ``position[m]`` inside it and carries the video's label
    ``labels[m]``; ``informative[m]`` is 1/0 where the data say whether the clip
    shows the action, -1 where they do not. ``logits [M, K]`` are the model's
    class logits, ``score_logit [M]`` a student's confidence logit (None for the
    teacher, which has no confidence head). ``exit_score [M]``: FrameExit's exit
    score per clip (:func:`get_exit_scores`), on the teacher's outputs where a
    benchmark evaluates ``frame_exit`` (:func:`cdlib.experiment.evaluation.collect_outputs`), else None.
    """

    logits: torch.Tensor
    labels: torch.Tensor
    video: torch.Tensor
    position: torch.Tensor
    informative: torch.Tensor
    score_logit: torch.Tensor | None = None
    exit_score: torch.Tensor | None = None

    @property
    def score(self) -> torch.Tensor | None:
        """The confidence ``s = σ(score_logit)`` per clip, ``[M]`` (None without a confidence head)."""
        return torch.sigmoid(self.score_logit) if self.score_logit is not None else None

    @property
    def correct(self) -> torch.Tensor:
        """Whether the model's top class on each clip is the video's label, bool ``[M]``."""
        return self.logits.argmax(-1) == self.labels

    def video_probs(self) -> torch.Tensor:
        """Dense averaging: the mean clip softmax of each video, ``[num_videos, K]``."""
        probs = self.logits.softmax(-1)
        total = torch.zeros(self.num_videos, probs.shape[1]).index_add_(0, self.video, probs)
        return total / self.clips_per_video().unsqueeze(1)

    def dense_accuracy(self) -> float:
        """Video-level accuracy of averaging the clip softmax over all clips of each video."""
        return float((self.video_probs().argmax(1) == self.video_labels()).float().mean())
