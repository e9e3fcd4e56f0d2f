"""Compute cost: FLOPs per clip counted by torch, wall-clock time per video measured.

FLOPs come from :class:`torch.utils.flop_counter.FlopCounterMode` on a forward pass
at the model's real input shape (ptflops/thop undercount 3D convolutions, and a
hand count goes stale when a model changes). It counts a multiply-add as 2 FLOPs
and counts convolutions and matrix products only (normalisation, activations and
pooling are negligible next to them).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cdlib.device import synchronize, timed


@torch.no_grad()
def flops_per_clip(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass of ``model`` on a single clip of shape ``(C, T, H, W)``, on the model's device
    (the count does not depend on it)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape, device=device))
    model.train(was_training)
    return int(counter.get_total_flops())


def video_gflops(student_clips: float, teacher_clips: float, student_flops: float, teacher_flops: float) -> float:
    """GFLOPs of one video: ``student_clips * C_S + teacher_clips * C_T`` (DESIGN.md §1.3)."""
    return (student_clips * student_flops + teacher_clips * teacher_flops) / 1e9


def time_call(fn: Callable[[], object], repeats: int = 3, warmup: bool = True, device=None) -> float:
    """Fastest wall-clock seconds of ``fn()`` over ``repeats`` calls (after a warm-up call).

    The minimum, not the mean: on a shared machine, noise only ever adds time.
    With a CUDA or MPS ``device``, each call is timed from a synchronised start to
    a synchronised end (:func:`cdlib.device.timed`), so the kernels it queued are
    counted to their end.
    """
    if warmup:
        fn()
        synchronize(device)
    return min(timed(fn, device)[1] for _ in range(repeats))


def timing_model(model: nn.Module, runtime=None) -> nn.Module:
    """``model`` as the timed pipeline runs it on ``runtime``'s device (:class:`cdlib.device.Runtime`).

    On the CPU: frozen by :func:`cdlib.models.inference_module` (TorchScript,
    batch norms folded, weights pre-packed for oneDNN). On a GPU: the eager model
    in eval mode on the device, run by the caller under the runtime's bf16
    autocast (:func:`cdlib.device.autocast`) with cuDNN's tuned kernels; the
    frozen CPU module's oneDNN weight packing does not apply there.
    """
    from cdlib.device import place_model
    from cdlib.models import inference_module

    if runtime is None or runtime.device.type == "cpu":
        return inference_module(model)
    return place_model(model.eval(), runtime)
