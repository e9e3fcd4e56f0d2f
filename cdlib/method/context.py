"""Video context for the student: every clip's class logits and confidence see the whole video.

The per-clip CD student scores each clip alone, so it cannot use that an action
fills one stretch of its video, nor compare a clip with the video's other clips.
The *context student* keeps the CD student's per-clip trunk and passes the
features of all ``N`` clips of a video through a small temporal module before
the two heads::

    φ_i = trunk(x_i)                          the CD student's features of clip i (its heads' input), i = 1..N
    h   = φ + T(φ_1, …, φ_N)                  T: a temporal module over the clip axis, residual
    z_i = classifier(h_i),  score_logit_i = score_head(h_i)

``T``'s last layer starts at zero and the heads start as copies of the CD
student's, so before training the context student *is* the CD student; it is
then trained on whole videos (one item = the clips of one video) with the CD
student's own loss (:class:`cdlib.method.losses.ConfidenceDistillationLoss`, the same
``cfg.distill`` weights and target), on the train split's cached trunk features
(:func:`cdlib.experiment.context_student.get_context_student`; this module holds the model and the loss, not the
training loop).
The trunk stays frozen: training the temporal module and the heads takes seconds,
and the per-clip trunk the method times and counts is the one it already has.

The temporal modules (registry :data:`TEMPORAL_MODULES`, chosen by
``context.module``) all take padded features ``[B, L, D]`` and a mask ``[B, L]``
(True on real clips) and return ``[B, L, D]``; a padded position never changes a
real one, so a batch of videos of different lengths gives each video what it
gives alone (a test checks it):

- ``conv``: two 1-D convolutions over the clip axis (kernel 3, ReLU between):
  each clip sees its neighbours two clips away, the stretch an action fills.
- ``gru``: a bidirectional GRU: each clip sees the whole video, in order.
- ``attention``: one self-attention layer (4 heads) after a depthwise
  convolution that gives each clip its neighbourhood (a conditional positional
  encoding, Chu et al. 2021): each clip is compared with every other.

The module's FLOPs are counted with the student's (``torch.utils.flop_counter``
on a whole video, per clip: :func:`cdlib.method.cost.flops_per_clip` with ``clips``).
"""

from __future__ import annotations

import copy
import math
from typing import Callable, List, Optional

import torch
from torch import Tensor, nn

from cdlib.runtime.errors import ConfigError
from cdlib.runtime.registry import Registry


# ----------------------------------------------------------------------------- temporal modules

#: name -> builder ``(width D, hidden) -> nn.Module`` with ``forward(h [B, L, D], mask [B, L]) -> [B, L, D]``
TEMPORAL_MODULES: Registry[Callable[[int, int], nn.Module]] = Registry("temporal module")


def register_temporal(name: str, description: str):
    """Decorator adding a temporal-module builder to :data:`TEMPORAL_MODULES`."""
    return TEMPORAL_MODULES.register(name, description=description)


class ConvContext(nn.Module):
    """``T(φ) = conv₂(relu(conv₁(φ)))`` over the clip axis, kernel 3, zeros beyond the video's ends."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.first = nn.Conv1d(width, hidden, 3, padding=1)
        self.second = nn.Conv1d(hidden, width, 3, padding=1)

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        keep = mask.unsqueeze(1).to(h.dtype)  # [B, 1, L]: padded clips are zeros, as beyond a video's end
        x = torch.relu(self.first(h.transpose(1, 2) * keep)) * keep
        return (self.second(x) * keep).transpose(1, 2)

    def output_layer(self) -> nn.Module:
        return self.second


class GRUContext(nn.Module):
    """A bidirectional GRU over the clips in order, projected back to the feature width."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.gru = nn.GRU(width, hidden // 2, batch_first=True, bidirectional=True)
        self.project = nn.Linear(2 * (hidden // 2), width)

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        if bool(mask.all()):
            # no padding (one video, or videos of equal length): packing would run the same steps, after a sort
            # and a gather per call (0.23 -> 0.21 ms for the module on one 12-clip video here)
            out, _ = self.gru(h)
        else:
            lengths = mask.sum(1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
            out, _ = self.gru(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=h.shape[1])
        return self.project(out) * mask.unsqueeze(2).to(h.dtype)

    def output_layer(self) -> nn.Module:
        return self.project


class AttentionContext(nn.Module):
    """One self-attention layer over the clips, after a depthwise convolution that encodes each clip's place.

    ``x = LayerNorm(φ + dwconv(φ))``; per head, ``softmax(q kᵀ / √d) v`` over the
    video's real clips; the heads' outputs are projected back. Written out with
    matrix products (not :class:`torch.nn.MultiheadAttention`, whose fused
    inference kernel the FLOP counter does not see).
    """

    def __init__(self, width: int, hidden: int, heads: int = 4):
        super().__init__()
        if hidden % heads:
            raise ConfigError(f"context.hidden: attention needs a multiple of its {heads} heads, got {hidden}")
        self.heads = heads
        self.position = nn.Conv1d(width, width, 3, padding=1, groups=width)
        self.norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * hidden)
        self.project = nn.Linear(hidden, width)

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        keep = mask.unsqueeze(2).to(h.dtype)
        x = self.norm(h + self.position((h * keep).transpose(1, 2)).transpose(1, 2))
        batch, length, _ = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # [3, B, heads, L, d]
        q, k, v = qkv[0], qkv[1], qkv[2]
        logits = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        weights = logits.masked_fill(~mask[:, None, None, :], float("-inf")).softmax(-1)  # every video has a clip
        out = torch.matmul(weights, v).transpose(1, 2).reshape(batch, length, -1)
        return self.project(out) * keep

    def output_layer(self) -> nn.Module:
        return self.project


register_temporal("conv", "two 1-D convolutions over the clip axis (kernel 3): neighbours up to two clips away")(
    ConvContext)
register_temporal("gru", "a bidirectional GRU over the clips in order: the whole video")(GRUContext)
register_temporal("attention", "one self-attention layer after a depthwise positional convolution")(AttentionContext)


# ----------------------------------------------------------------------------- the context student

class _NoScore(nn.Module):
    """Stands in for a student's score head in its trunk: a zero logit per clip, so the trunk returns features."""

    def forward(self, features: Tensor) -> Tensor:
        return features.new_zeros(features.shape[0], 1)


def _head_parent(student: nn.Module) -> tuple[str, nn.Module]:
    """The dotted name of the module that holds ``student``'s ``classifier`` and ``score_head``, and that module."""
    from cdlib.method.distance import score_head_name

    parent_name = score_head_name(student).rpartition(".")[0]
    parent = student.get_submodule(parent_name)
    if not isinstance(getattr(parent, "classifier", None), nn.Linear):
        raise ConfigError(f"{type(student).__name__}: its score_head has no sibling nn.Linear named classifier, "
                          "so its features cannot be taken for the context student")
    return parent_name, parent


def student_trunk(student: nn.Module) -> nn.Module:
    """A copy of ``student`` that returns its per-clip features ``φ [B, D]`` (the input of its heads) as its first
    output: its ``classifier`` becomes the identity and its ``score_head`` a zero logit. ``student`` is unchanged."""
    trunk = copy.deepcopy(student)
    _, parent = _head_parent(trunk)
    parent.classifier = nn.Identity()
    parent.score_head = _NoScore()
    return trunk.eval()


def pad_videos(values: Tensor, sizes: List[int]) -> tuple[Tensor, Tensor]:
    """Per-clip rows ``[M, D]``, stored video by video with ``sizes`` clips each, as ``[V, L, D]`` (``L`` the
    longest video, zeros after each video's end) and the mask ``[V, L]`` of real clips."""
    length = max(sizes)
    padded = values.new_zeros(len(sizes), length, values.shape[1])
    mask = torch.zeros(len(sizes), length, dtype=torch.bool, device=values.device)
    start = 0
    for v, size in enumerate(sizes):
        padded[v, :size] = values[start:start + size]
        mask[v, :size] = True
        start += size
    return padded, mask


class ContextHeads(nn.Module):
    """``h = φ + T(φ)`` and the two heads: ``forward(φ [B, L, D], mask [B, L]) -> (logits [B, L, K], score [B, L])``."""

    def __init__(self, temporal: nn.Module, classifier: nn.Module, score_head: nn.Module, dropout: float = 0.0):
        super().__init__()
        self.temporal = temporal
        self.dropout = nn.Dropout(dropout)
        self.classifier = classifier
        self.score_head = score_head

    def forward(self, features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        h = features + self.temporal(self.dropout(features), mask)
        return self.classifier(h), self.score_head(h).squeeze(-1)


class VideoContextStudent(nn.Module):
    """The context student (module docstring): ``forward(x [M, C, T, H, W], sizes) -> (logits [M, K], score [M])``.

    ``x`` holds the clips of one or more whole videos, video by video; ``sizes``
    gives each video's number of clips (None: ``x`` is one video). The trunk runs
    on all clips at once; the temporal module sees each video alone.
    """

    video_context = True  # callers must pass whole videos (cdlib.experiment.train.predict, cdlib.experiment.timing)

    def __init__(self, trunk: nn.Module, heads: ContextHeads):
        super().__init__()
        self.trunk = trunk
        self.heads = heads

    def forward(self, x: Tensor, sizes: Optional[List[int]] = None) -> tuple[Tensor, Tensor]:
        features = self.trunk(x)[0]
        if sizes is None:
            sizes = [features.shape[0]]
        if min(sizes) == max(sizes):
            # videos of one length (one video alone among them) need no padding: a view, and no gather of the
            # real clips afterwards: 0.09 of the context student's 0.86 ms on one 12-clip video here (2 threads)
            length = sizes[0]
            mask = torch.ones(len(sizes), length, dtype=torch.bool, device=features.device)
            logits, score_logit = self.heads(features.view(len(sizes), length, -1), mask)
            return logits.flatten(0, 1), score_logit.flatten()
        padded, mask = pad_videos(features, sizes)
        logits, score_logit = self.heads(padded, mask)
        return logits[mask], score_logit[mask]


def context_student(student: nn.Module, module: str, hidden: int, dropout: float = 0.0) -> VideoContextStudent:
    """A :class:`VideoContextStudent` on ``student``'s trunk, with the temporal ``module`` (:data:`TEMPORAL_MODULES`)
    of ``hidden`` units, its output layer at zero and the heads copied from ``student``: before training, it gives
    exactly ``student``'s outputs."""
    _, parent = _head_parent(student)
    width = parent.classifier.in_features
    temporal = TEMPORAL_MODULES.get(module)(width, hidden)
    output = temporal.output_layer()
    nn.init.zeros_(output.weight)
    nn.init.zeros_(output.bias)
    heads = ContextHeads(temporal, copy.deepcopy(parent.classifier), copy.deepcopy(parent.score_head), dropout)
    return VideoContextStudent(student_trunk(student), heads).eval()


# ----------------------------------------------------------------------------- training

def listwise_loss(score_logit: Tensor, target: Tensor, mask: Tensor, temperature: float) -> Tensor:
    """The ListNet loss (Cao et al. 2007) of each video's clip ranking, mean over the videos.

    With score logits ``l [B, L]``, confidence targets ``t [B, L]`` and the mask
    of real clips: ``L = −(1/B) Σ_v Σ_i softmax(t_v / T)_i · log softmax(l_v)_i``,
    both softmaxes over the real clips of video ``v`` only. The per-clip BCE of
    the CD loss asks the score for each clip's target on its own; this term asks
    for the order of the clips inside a video, which is what top-k selection reads.
    """
    hidden = torch.finfo(score_logit.dtype).min
    wanted = (target / temperature).masked_fill(~mask, hidden).softmax(1)
    return -(wanted * score_logit.masked_fill(~mask, hidden).log_softmax(1)).masked_fill(~mask, 0.0).sum(1).mean()
