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

from cdlib.runtime.device import synchronize, timed
from cdlib.runtime.progress import progress_bar


@torch.no_grad()
def flops_per_clip(model: nn.Module, input_shape: tuple[int, ...], clips: int = 1) -> float:
    """FLOPs per clip of one forward pass of ``model`` on ``clips`` clips of shape ``(C, T, H, W)`` (the total
    divided by ``clips``), on the model's device (the count does not depend on it).

    A clip model costs the same per clip at any ``clips``; a model whose clips see their video
    (``video_context``, :mod:`cdlib.method.context`) is counted on one video of ``clips`` clips, so that a module over
    the clip axis costs what it costs on a whole video.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(clips, *input_shape, device=device))
    model.train(was_training)
    return counter.get_total_flops() / clips


def video_gflops(student_clips: float, teacher_clips: float, student_flops: float, teacher_flops: float) -> float:
    """GFLOPs of one video: ``student_clips * C_S + teacher_clips * C_T`` (see :mod:`cdlib.method.gating`)."""
    return (student_clips * student_flops + teacher_clips * teacher_flops) / 1e9


def time_call(fn: Callable[[], object], repeats: int = 3, warmup: bool = True, device=None) -> float:
    """Fastest wall-clock seconds of ``fn()`` over ``repeats`` calls (after a warm-up call).

    The minimum, not the mean: on a shared machine, noise only ever adds time.
    With a CUDA or MPS ``device``, each call is timed from a synchronised start to
    a synchronised end (:func:`cdlib.runtime.device.timed`), so the kernels it queued are
    counted to their end.
    """
    if warmup:
        fn()
        synchronize(device)
    return min(timed(fn, device)[1] for _ in range(repeats))


def timing_model(model: nn.Module, runtime=None, backend: str = "auto", example_inputs=None):
    """``model`` as the timed pipeline runs it on ``runtime``'s device (:class:`cdlib.runtime.device.Runtime`),
    prepared by the inference ``backend`` (``bench.backend``, :data:`cdlib.models.backends.BACKENDS`).

    Returns a :class:`cdlib.models.backends.Prepared`: called like the model, with ``backend`` (the backend's
    name) and ``prepare_s`` (seconds of preparation, compilation and warm-up calls on ``example_inputs`` included,
    which a caller reports apart from inference). ``auto``
    (:func:`cdlib.models.backends.resolve_backend`): on the CPU frozen by :func:`cdlib.models.inference_module`
    (TorchScript, batch norms folded, weights pre-packed for oneDNN); on a GPU the eager model in eval mode on
    the device under bf16 autocast with cuDNN's tuned kernels, the caller running it under the runtime's autocast
    (:func:`cdlib.runtime.device.autocast`) too. ``example_inputs``: the model's positional arguments on the
    runtime's device, which ``compile`` and ``onnxruntime`` need; the preparation runs under the runtime's autocast,
    as the pipeline's calls do, so that a compiled model's guards hold. ConfigError for an unknown backend, one
    unavailable here or one that cannot take the model.
    """
    from cdlib.models.backends import resolve_backend
    from cdlib.runtime.device import autocast, place_model

    device = runtime.device if runtime is not None else torch.device("cpu")
    chosen = resolve_backend(backend, device, runtime.amp_dtype if runtime is not None else None)
    if device.type != "cpu":
        place_model(model.eval(), runtime)
    with autocast(runtime):
        return chosen.prepare(model, example_inputs)


def time_interleaved(calls: Sequence[Callable[[object], object]], units: Sequence, passes: int, *,
                     clock: Callable[[], float] = time.perf_counter, warmup: bool = True,
                     desc: str = "timing passes", after: Callable[[int, int, int], None] | None = None
                     ) -> torch.Tensor:
    """Wall-clock seconds of every call on every unit, ``[len(calls), passes, len(units)]``.

    In each pass, unit after unit, every call runs on that unit one after the
    other, so the times of one (pass, unit) block are taken moments apart and
    every call sees the same quiet and busy periods of a shared machine. With
    ``warmup``, every call first runs once on the first unit, untimed. ``clock``
    returns seconds; it is injected so that tests can drive it. ``after(j, r, u)``,
    if given, runs after the timed call ``j`` on unit ``u`` in pass ``r``, outside
    its time: a caller reads there what the call recorded about itself (the
    timed pipeline: its seconds per stage, :func:`fastest_parts`).
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
                if after is not None:
                    after(j, r, u)
    return seconds


def fastest_totals(seconds: torch.Tensor) -> torch.Tensor:
    """Per call, ``Σ_u min_r t[j, r, u]`` for ``seconds = t [calls, passes, units]``: its total time over
    the units, each unit timed by its fastest pass.

    Other work on a shared machine only ever adds time, in bursts that can
    double a run; the fastest of the interleaved passes is each unit's time with
    the least of it. Interleaving gives every call the same quiet and busy
    moments, so no call is favoured.
    """
    return seconds.amin(dim=1).sum(dim=1)


def fastest_parts(seconds: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
    """Per call, ``Σ_u p[j, r*(j, u), u, :]`` with ``r*(j, u) = argmin_r t[j, r, u]``, for ``seconds = t [calls,
    passes, units]`` and ``parts = p [calls, passes, units, P]``: what each call recorded about itself (e.g. its
    seconds per stage), summed over the units from the same fastest passes as :func:`fastest_totals`.

    Taking the parts of the pass that gave a unit its time keeps them a split of
    that time: parts that partition a call's time sum to its fastest total.
    """
    fastest = seconds.argmin(dim=1)  # [calls, units]
    picked = parts.gather(1, fastest[:, None, :, None].expand(-1, 1, -1, parts.shape[-1])).squeeze(1)
    return picked.sum(dim=1)


def achieved_gflop_s(gflops: float, seconds: float) -> float:
    """A model's achieved compute rate, ``gflops / seconds`` GFLOP/s: the GFLOPs it ran (clips × its GFLOPs per
    clip, :func:`flops_per_clip`) over the wall-clock seconds its forwards took.

    Against the hardware's peak, it says how well a network uses the machine: a
    small network (few FLOPs per call, memory-bound layers, a fixed cost per
    call) reaches a lower rate than a large one, so its share of the time is
    larger than its share of the FLOPs.
    """
    if not seconds > 0:
        raise ValueError(f"achieved_gflop_s: seconds must be positive, got {seconds!r}")
    return gflops / seconds


def ratio_of_totals(seconds: torch.Tensor, reference: int) -> torch.Tensor:
    """Per call, ``Σ_u min_r t[j, r, u] / Σ_u min_r t[reference, r, u]`` (:func:`fastest_totals`).

    The total time of a call over all units divided by the reference's total
    over the same units: what the call costs relative to the reference for that
    workload, long units counting in proportion to their time. A median of
    per-unit ratios is not a cost: an adaptive policy that is fast on most
    videos and slow on a few would look as cheap as on the fast ones.
    """
    totals = fastest_totals(seconds)
    return totals / totals[reference]
