"""FrameExit (Ghodrati, Bejnordi and Habibian, CVPR 2021) as a baseline: early exiting over the teacher's clips.

The teacher visits a video's clips in a fixed, coarse-to-fine order
(:func:`visiting_order`: the middle clip, then the middles of the halves, of the
quarters, ...). After each clip a small gating network (:class:`ExitGate`) on
what the teacher has seen so far decides whether to stop; the prediction is the
teacher's mean softmax over the clips visited. Nothing here reads a student.

This module is the method alone, on tensors: the gate's inputs and targets
after every step (:func:`exit_inputs`, :func:`exit_targets`), its training
(:func:`fit_exit_gate`, on the train split's teacher outputs only) and the exit
score of every clip (:func:`exit_scores`), which the policy
:func:`cdlib.method.gating.frame_exit` thresholds. :mod:`cdlib.experiment.exit_gate` caches the
teacher's features, the gate and the scores as artifacts; :mod:`cdlib.experiment.timing` runs
the same decision clip by clip.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections import deque

import torch
from torch import Tensor, nn

from cdlib.runtime.errors import ConfigError

#: how the gate is trained (:func:`fit_exit_gate`); part of the gate's artifact key
#: (:func:`cdlib.experiment.exit_gate.get_exit_gate`)
GATE_SETTINGS = {"hidden": 64, "steps": 300, "batch_size": 256, "lr": 3e-3, "weight_decay": 1e-4}


@functools.lru_cache(maxsize=256)
def _order(n: int) -> tuple[int, ...]:
    order, intervals = [], deque([(0, n)])
    while intervals:
        lo, hi = intervals.popleft()
        if lo >= hi:
            continue
        mid = (lo + hi) // 2
        order.append(mid)
        intervals.append((lo, mid))
        intervals.append((mid + 1, hi))
    return tuple(order)


def visiting_order(n: int) -> Tensor:
    """FrameExit's deterministic order over ``n`` clips, a permutation of ``0..n-1`` (LongTensor ``[n]``).

    Breadth-first over intervals: the interval ``[lo, hi)`` visits its middle
    ``mid = (lo + hi) // 2``, then its children ``[lo, mid)`` and ``[mid + 1, hi)``,
    left before right, level by level, starting from ``[0, n)``. For ``n = 8``::

        [0, 8) -> 4;  [0, 4) -> 2, [5, 8) -> 6;  [0, 2) -> 1, [3, 4) -> 3, [5, 6) -> 5, [7, 8) -> 7;  [0, 1) -> 0

    so the order is ``4, 2, 6, 1, 3, 5, 7, 0``: coarse to fine, each level
    halving the gaps the previous ones left. The paper's policy (its appendix,
    Algorithm 1) is coarse to fine too but starts with the middle, the first and
    the last frame, then refines on ``linspace`` grids; this bisection is the
    order this project specifies, the same idea without the two ends first.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"visiting_order: n must be an integer >= 0, got {n!r}")
    return torch.tensor(_order(n), dtype=torch.long)


def check_threshold(threshold) -> float:
    """``threshold`` as a float: ``frame_exit``'s knob, any real number but NaN (a :class:`ConfigError` otherwise)."""
    if type(threshold) is float and threshold == threshold:  # the common case, fast
        return threshold
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or math.isnan(threshold):
        raise ConfigError(f"frame_exit: knob threshold must be a number, got {threshold!r}")
    return float(threshold)


class ExitGate(nn.Module):
    """The exit gate: ``[running mean of features (D) ‖ running mean of softmax (K)] → Linear(D+K, 64) → ReLU →
    Linear(64, 1)``, the exit logit after a step.

    Its input after step ``t`` is the mean of the teacher's penultimate features
    and of its softmax over the clips visited so far (:func:`exit_inputs`),
    standardised by fixed per-dimension statistics of the training inputs
    (buffers ``shift`` and ``scale``, set by :func:`fit_exit_gate`; an affine map
    the first layer could absorb, kept apart so that training starts well
    conditioned whatever the teacher's feature scale).

    How it follows the paper: the teacher sees the clips in FrameExit's
    deterministic order, a gate on the features accumulated so far decides after
    every clip whether to stop, and the gate learns "the prediction so far is
    already right" (:func:`exit_targets`) with a binary cross-entropy. Where it
    departs: the paper trains one gate per step (on accumulated features pooled
    by the backbone) together with a classifier per step, end to end with the
    backbone; here one gate is shared by every step, the teacher is frozen, and
    the prediction at the exit is the teacher's own mean softmax over the clips
    visited, as for every other policy of :mod:`cdlib.method.gating`, so that only the
    stopping rule differs from theirs.
    """

    def __init__(self, feature_dim: int, num_classes: int, hidden: int = 64):
        super().__init__()
        self.feature_dim, self.num_classes = feature_dim, num_classes
        width = feature_dim + num_classes
        self.register_buffer("shift", torch.zeros(width))
        self.register_buffer("scale", torch.ones(width))
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, inputs: Tensor) -> Tensor:
        """Exit logits ``[...]`` of gate inputs ``[..., D + K]``."""
        return self.net((inputs - self.shift) / self.scale).squeeze(-1)


def exit_inputs(features: Tensor, logits: Tensor, order: Tensor) -> Tensor:
    """The gate's input after each step of one video, ``[N, D + K]``: row ``t - 1`` is the mean of ``features [N, D]``
    and of ``softmax(logits [N, K])`` over the clips ``order[:t]``."""
    counts = torch.arange(1, order.numel() + 1, dtype=features.dtype).unsqueeze(1)
    pooled = features[order].cumsum(0) / counts
    probs = torch.softmax(logits[order].float(), dim=1).cumsum(0) / counts
    return torch.cat([pooled, probs.to(features.dtype)], dim=1)


def exit_targets(logits: Tensor, label: int, order: Tensor) -> Tensor:
    """The gate's target after each step of one video, float ``[N]``: 1 where the prediction so far (argmax of the
    mean teacher softmax over ``order[:t]``) is ``label``, else 0."""
    probs = torch.softmax(logits[order].float(), dim=1).cumsum(0)
    return (probs.argmax(dim=1) == label).float()


def _by_video(video: Tensor) -> list[Tensor]:
    """The clip indices of each video, in clip order (clips are stored video by video, as in ``ClipOutputs``)."""
    if video.numel() and not bool((video[1:] >= video[:-1]).all()):
        raise ValueError("video: clips must be stored video by video (video ids non-decreasing)")
    counts = torch.bincount(video).tolist()
    return list(torch.arange(video.numel()).split(counts))


def training_pairs(features: Tensor, logits: Tensor, labels: Tensor, video: Tensor) -> tuple[Tensor, Tensor]:
    """Every (video, step) pair of a split: gate inputs ``[P, D + K]`` and targets ``[P]``."""
    inputs, targets = [], []
    for clips in _by_video(video):
        if clips.numel() == 0:
            continue
        order = visiting_order(clips.numel())
        inputs.append(exit_inputs(features[clips].float(), logits[clips], order))
        targets.append(exit_targets(logits[clips], int(labels[clips[0]]), order))
    return torch.cat(inputs), torch.cat(targets)


def fit_exit_gate(features: Tensor, logits: Tensor, labels: Tensor, video: Tensor, *, seed: int = 0,
                  hidden: int = GATE_SETTINGS["hidden"], steps: int = GATE_SETTINGS["steps"],
                  batch_size: int = GATE_SETTINGS["batch_size"], lr: float = GATE_SETTINGS["lr"],
                  weight_decay: float = GATE_SETTINGS["weight_decay"]) -> ExitGate:
    """Train an :class:`ExitGate` with BCE on every (video, step) pair of the given clips; returned in eval mode.

    Pass the *train* split's per-clip teacher ``features [M, D]``, ``logits [M, K]``,
    ``labels [M]`` and ``video [M]`` (as in :class:`cdlib.experiment.outputs.ClipOutputs`).
    AdamW for ``steps`` minibatches of ``batch_size`` pairs drawn without
    replacement (an epoch at a time) from a generator seeded with ``seed``; the
    initialisation is seeded too, without touching torch's global RNG, so the
    same inputs give the same weights.
    """
    inputs, targets = training_pairs(features, logits, labels, video)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gate = ExitGate(features.shape[1], logits.shape[1], hidden)
    gate.shift.copy_(inputs.mean(0))
    gate.scale.copy_(inputs.std(0, unbiased=False).clamp_min(1e-6))
    optimizer = torch.optim.AdamW(gate.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    batch = min(batch_size, len(targets))
    queue = torch.empty(0, dtype=torch.long)
    gate.train()
    for _ in range(steps):
        if queue.numel() < batch:
            queue = torch.cat([queue, torch.randperm(len(targets), generator=generator)])
        picked, queue = queue[:batch], queue[batch:]
        loss = nn.functional.binary_cross_entropy_with_logits(gate(inputs[picked]), targets[picked])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return gate.eval()


@torch.no_grad()
def exit_scores(gate: ExitGate, features: Tensor, logits: Tensor, video: Tensor) -> Tensor:
    """``σ(gate logit)`` per clip, ``[M]``: for clip ``m``, after its video's clips were visited in
    :func:`visiting_order` up to and including ``m`` (indexed by clip, not by step)."""
    scores = torch.empty(video.numel())
    for clips in _by_video(video):
        if clips.numel() == 0:
            continue
        order = visiting_order(clips.numel())
        scores[clips[order]] = torch.sigmoid(gate(exit_inputs(features[clips].float(), logits[clips], order))).float()
    return scores
