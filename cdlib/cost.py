"""Compute cost: FLOPs per clip counted by torch, and helpers to time calls and compare their totals.

FLOPs come from :class:`torch.utils.flop_counter.FlopCounterMode` on a forward pass
at the model's real input shape (ptflops/thop undercount 3D convolutions, and a
hand count goes stale when a model changes). It counts a multiply-add as 2 FLOPs
and counts convolutions and matrix products only (normalisation, activations and
pooling are negligible next to them).
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cdlib.progress import progress_bar


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
    """GFLOPs of one video: ``student_clips * C_S + teacher_clips * C_T`` (see :mod:`cdlib.gating`)."""
    return (student_clips * student_flops + teacher_clips * teacher_flops) / 1e9


def time_interleaved(calls: Sequence[Callable[[object], object]], units: Sequence, passes: int, *,
                     clock: Callable[[], float] = time.perf_counter, warmup: bool = True,
                     desc: str = "timing passes") -> torch.Tensor:
    """Wall-clock seconds of every call on every unit, ``[len(calls), passes, len(units)]``.

    In each pass, unit after unit, every call runs on that unit one after the
    other, so the times of one (pass, unit) block are taken moments apart: a
    drift in the machine's speed (other work, frequency scaling) hits every call
    of a block alike and cancels in their ratio. With ``warmup``, every call
    first runs once on the first unit, untimed. ``clock`` returns seconds; it is
    injected so that tests can drive it.
    """
    if warmup:
        for call in calls:
            call(units[0])
    seconds = torch.zeros(len(calls), passes, len(units), dtype=torch.float64)
    for r in progress_bar(range(passes), desc=desc):
        for u, unit in enumerate(units):
            for j, call in enumerate(calls):
                start = clock()
                call(unit)
                seconds[j, r, u] = clock() - start
    return seconds


def ratio_of_totals(seconds: torch.Tensor, reference: int) -> torch.Tensor:
    """Per call, ``median_r (Σ_u t[j, r, u] / Σ_u t[reference, r, u])`` for ``seconds = t [calls, passes, units]``.

    Within a pass, the total time of a call over all units divided by the
    reference's total over the same units: what the call costs relative to the
    reference for that workload, long units counting in proportion to their
    time (a median of per-unit ratios is not a cost: an adaptive policy that is
    fast on most videos and slow on a few would look as cheap as on the fast
    ones). The median over passes drops a pass that other work slowed.
    """
    totals = seconds.sum(dim=2)
    return _median(totals / totals[reference])


def median_total(seconds: torch.Tensor) -> torch.Tensor:
    """Per call, ``median_r Σ_u t[j, r, u]``: its total time over the units in a typical pass."""
    return _median(seconds.sum(dim=2))


def _median(values: torch.Tensor) -> torch.Tensor:
    """The median over the last dimension; of an even count, the mean of the two middle values
    (``torch.median`` would return the lower one)."""
    return values.quantile(0.5, dim=-1)
