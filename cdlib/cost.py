"""Compute cost: FLOPs per clip counted by torch, wall-clock time per video measured.

FLOPs come from :class:`torch.utils.flop_counter.FlopCounterMode` on a forward pass
at the model's real input shape (ptflops/thop undercount 3D convolutions, and a
hand count goes stale when a model changes). It counts a multiply-add as 2 FLOPs
and counts convolutions and matrix products only (normalisation, activations and
pooling are negligible next to them).
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@torch.no_grad()
def flops_per_clip(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass of ``model`` on a single clip of shape ``(C, T, H, W)``."""
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape))
    model.train(was_training)
    return int(counter.get_total_flops())


def video_gflops(student_clips: float, teacher_clips: float, student_flops: float, teacher_flops: float) -> float:
    """GFLOPs of one video: ``student_clips * C_S + teacher_clips * C_T`` (DESIGN.md §1.3)."""
    return (student_clips * student_flops + teacher_clips * teacher_flops) / 1e9


def time_call(fn: Callable[[], object], repeats: int = 3, warmup: bool = True) -> float:
    """Fastest wall-clock seconds of ``fn()`` over ``repeats`` calls (after a warm-up call).

    The minimum, not the mean: on a shared machine, noise only ever adds time.
    """
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
