"""The training loop: deterministic, checkpointed every epoch, resumable, on any device, over DDP.

:func:`train_model` fits a model on a split (a :class:`~cdlib.data.base.ClipIndex`:
a :class:`~cdlib.data.base.ClipBank` in memory or :class:`~cdlib.data.loading.StreamedClips`)
with a given objective. The order of the clips, the clips sampled per video and
the dropout noise of epoch ``e`` depend only on ``(seed, e)``, and the learning
rate only on the step, so a run that is interrupted and resumed from its last
checkpoint ends with exactly the weights of an uninterrupted run. Clips reach
the model through a :class:`~torch.utils.data.DataLoader` (:func:`cdlib.data.loading.clip_loader`)
that yields the planned batches in order, so the number of loader workers
changes nothing but speed.

A :class:`~cdlib.runtime.device.Runtime` picks the device and bf16 autocast; without
one, training runs on the CPU in full precision. Under torchrun
(:mod:`cdlib.runtime.distributed`) each process takes its slice of every global batch
and DDP averages the gradients of the global batch; process 0 alone writes
checkpoints and every process resumes from them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from cdlib.data.base import ClipIndex
from cdlib.data.loading import BatchPlan, clip_loader
from cdlib.experiment.config import TrainConfig
from cdlib.models import parameter_groups, preprocess
from cdlib.runtime import distributed
from cdlib.runtime.artifacts import atomic_save, discard, verified_load
from cdlib.runtime.device import Runtime, autocast, place_model, set_determinism, to_device
from cdlib.runtime.errors import ArtifactError, ConfigError
from cdlib.runtime.progress import log, progress_bar

__all__ = ["CLIP_CHOICES", "clip_accuracy", "epoch_order", "learning_rate", "predict", "set_determinism", "train_model"]

#: objective(model_outputs, clip_indices) -> (loss, {component: float}); clip indices are on the CPU
Objective = Callable[[object, torch.Tensor], tuple[torch.Tensor, dict[str, float]]]

CHECKPOINT = "checkpoint.pt"
WARMUP_FRACTION = 0.05


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + 17) % (2**63)


CLIP_CHOICES = ("all", "action")


def eligible_clips(bank: ClipIndex, clips: str) -> torch.Tensor:
    """Indices of the clips a model trains on: ``all``, or ``action`` (clips not known to lack the action)."""
    if clips not in CLIP_CHOICES:
        raise ConfigError(f"train.clips must be one of {', '.join(CLIP_CHOICES)}, got {clips!r}")
    if clips == "all":
        return torch.arange(len(bank.video))
    return torch.nonzero(bank.informative != 0).squeeze(1)


def epoch_order(bank: ClipIndex, train_cfg: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """Clip indices of one epoch in random order: the eligible clips (``train_cfg.clips``),
    at most ``train_cfg.clips_per_video`` of them per video (0: all)."""
    candidates = eligible_clips(bank, train_cfg.clips)
    keys = torch.rand(len(candidates), generator=generator)
    by_key = candidates[torch.argsort(keys)]
    if train_cfg.clips_per_video > 0:
        # Rank each clip inside its video by its random key; keep the first ones.
        grouped = by_key[torch.argsort(bank.video[by_key], stable=True)]
        counts = torch.bincount(bank.video[grouped])
        counts = counts[counts > 0]
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(len(grouped)) - starts.repeat_interleave(counts)
        chosen = grouped[rank < train_cfg.clips_per_video]
        return chosen[torch.randperm(len(chosen), generator=generator)]
    return by_key


def learning_rate(base_lr: float, step: int, total_steps: int) -> float:
    """Linear warm-up over the first 5% of steps, then cosine decay to zero."""
    warmup = max(1, int(WARMUP_FRACTION * total_steps))
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


#: names of a model's outputs, in the order it returns them
PREDICTED = ("logits", "score_logit", "features")


@torch.no_grad()
def predict(model: nn.Module, bank: ClipIndex, batch_size: int = 256, desc: str = "predict",
            runtime: Runtime | None = None) -> dict[str, torch.Tensor]:
    """Per-clip outputs of ``model`` on every clip of ``bank``, as float32 CPU tensors.

    Returns ``{"logits": [M, K]}`` and, for students, ``"score_logit": [M]``
    (and ``"features": [M, D]`` for a :class:`cdlib.method.distance.FeatureStudent`): the
    model's outputs named in the order of :data:`PREDICTED`.
    ``model`` is moved to the runtime's device. The clips go in fixed batches
    ``[0, batch_size), [batch_size, 2·batch_size), ...`` (for a model with ``video_context``, whole videos of at
    most ``batch_size`` clips together, and the model is told each video's clip count); under DDP the batches are
    dealt round-robin to the processes and gathered back in clip order, so every
    batch is computed as one process computes it and the outputs do not depend on
    the world size.
    """
    model.eval()
    place_model(model, runtime)
    video_context = getattr(model, "video_context", False)
    batches = distributed.shard(_video_batches(bank, batch_size) if video_context else
                                [range(s, min(s + batch_size, len(bank))) for s in range(0, len(bank), batch_size)])
    outputs = []
    for batch, (clips, _) in zip(batches, progress_bar(clip_loader(bank, BatchPlan(batches), runtime),
                                                       total=len(batches), desc=desc)):
        with autocast(runtime):
            x = preprocess(to_device(clips, runtime))
            if video_context:  # each video's clip count, in order
                sizes = torch.unique_consecutive(bank.video[batch.start:batch.stop], return_counts=True)[1]
                out = model(x, sizes.tolist())
            else:
                out = model(x)
        outputs.append(tuple(o.float().cpu() for o in (out if isinstance(out, tuple) else (out,))))
    outputs = distributed.unshard(distributed.all_gather_objects(outputs))
    return {name: torch.cat([o[i] for o in outputs]) for i, name in enumerate(PREDICTED[: len(outputs[0])])}


def _video_batches(bank: ClipIndex, batch_size: int) -> list[range]:
    """Consecutive whole videos in batches of at most ``batch_size`` clips (a longer video alone), for a model
    whose clips see their video (``video_context``, :class:`cdlib.method.context.VideoContextStudent`)."""
    sizes = bank.clips_per_video().tolist()
    batches, start, end = [], 0, 0
    for size in sizes:
        if end > start and end + size - start > batch_size:
            batches.append(range(start, end))
            start = end
        end += size
    return batches + [range(start, end)] if end > start else batches


def clip_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).float().mean())


def _load_checkpoint(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return verified_load(path)
    except ArtifactError as exc:
        log(f"checkpoint cannot be trusted, starting over: {exc}")
        discard(path)
        return None


def train_model(
    model: nn.Module,
    bank: ClipIndex,
    objective: Objective,
    train_cfg: TrainConfig,
    seed: int,
    work_dir: str | Path | None = None,
    val_bank: ClipIndex | None = None,
    desc: str = "train",
    on_epoch_end: Callable[[int], None] | None = None,
    runtime: Runtime | None = None,
    unused_parameters: bool = False,
) -> list[dict]:
    """Train ``model`` in place on ``runtime``'s device; return the per-epoch history.

    With ``work_dir``, a checkpoint (weights, optimiser state, history) is written
    atomically after every epoch and a later call resumes from it. ``val_bank``
    adds the clip-level validation accuracy to the history after every ``train_cfg.val_every``-th epoch and
    after the last. ``on_epoch_end(epoch)``
    runs after each checkpoint (tests use it to interrupt a run). ``unused_parameters``
    says that some parameters get no gradient from ``objective`` (DDP must know).

    Under DDP (:mod:`cdlib.runtime.distributed`), step ``s`` of every process sees its
    slice of the same global batch of ``train_cfg.batch_size`` clips, and its
    loss is weighted by ``world · n_local / n_global`` so that DDP's gradient
    average is the gradient of the global batch's mean loss. Batch norm still
    normalises each process's slice, unless the model runs on CUDA with
    ``runtime.sync_batchnorm`` (SyncBatchNorm); dropout draws from the epoch's
    seed plus the rank. Process 0 writes the checkpoints; on resuming, it reads
    the checkpoint and sends it to the others.
    """
    world, rank = distributed.world_size(), distributed.rank()
    place_model(model, runtime)
    # Parameter groups come from the model (cdlib.models.parameter_groups): a pretrained backbone trains at
    # train_cfg.backbone_lr_factor times the learning rate of the new layers; each group carries its lr_factor.
    groups = parameter_groups(model, train_cfg.backbone_lr_factor)
    optimizer = torch.optim.AdamW(groups, lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    history: list[dict] = []
    first_epoch = 0
    checkpoint_path = Path(work_dir) / CHECKPOINT if work_dir is not None else None
    if checkpoint_path is not None:
        state = distributed.broadcast_object(_load_checkpoint(checkpoint_path) if distributed.is_main() else None)
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            history = list(state["history"])
            first_epoch = state["epoch"] + 1
            log(f"{desc}: resuming after epoch {first_epoch}")
    device = runtime.device if runtime is not None else torch.device("cpu")
    network = model if world == 1 else distributed.wrap(model, device, runtime is None or runtime.sync_batchnorm,
                                                         unused_parameters)

    clips_per_epoch = len(epoch_order(bank, train_cfg, torch.Generator().manual_seed(0)))
    steps_per_epoch = math.ceil(clips_per_epoch / train_cfg.batch_size)
    total_steps = steps_per_epoch * train_cfg.epochs
    plan = BatchPlan()
    loader = clip_loader(bank, plan, runtime, persistent=True)
    for epoch in range(first_epoch, train_cfg.epochs):
        generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
        torch.manual_seed(epoch_seed(seed, epoch) + rank)  # dropout noise of this epoch (and process)
        order = epoch_order(bank, train_cfg, generator)
        batches = [order[step * train_cfg.batch_size : (step + 1) * train_cfg.batch_size] for step in range(steps_per_epoch)]
        parts = [distributed.local_part(batch) for batch in batches]
        # A process whose slice of a short last batch is empty still joins the step (DDP's all-reduce
        # waits for every process): it runs the batch's first clip with weight 0.
        plan.set(part if len(part) else batch[:1] for part, batch in zip(parts, batches))
        network.train()
        totals: dict[str, float] = {}
        seen = 0
        bar = progress_bar(loader, total=steps_per_epoch, desc=f"{desc} epoch {epoch + 1}/{train_cfg.epochs}")
        for step, (clips, idx) in enumerate(bar):
            for group in optimizer.param_groups:
                group["lr"] = group["lr_factor"] * learning_rate(train_cfg.lr, epoch * steps_per_epoch + step, total_steps)
            with autocast(runtime):
                loss, components = objective(network(preprocess(to_device(clips, runtime))), idx)
            mean_loss = loss.item()
            if world > 1:
                loss = loss * (world * len(parts[step]) / len(batches[step]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(parts[step])
            for name, value in {"loss": mean_loss, **components}.items():
                totals[name] = totals.get(name, 0.0) + value * len(parts[step])
            bar.set_postfix(loss=f"{totals['loss'] / max(seen, 1):.3f}")
        if world > 1:
            *sums, seen = distributed.all_reduce_sum([*totals.values(), seen])
            totals = dict(zip(totals, sums))
        record = {"epoch": epoch + 1, **{f"train_{k}": v / seen for k, v in totals.items()}}
        if val_bank is not None and (epoch + 1 == train_cfg.epochs or
                                     (train_cfg.val_every and (epoch + 1) % train_cfg.val_every == 0)):
            val_logits = predict(model, val_bank, desc=f"{desc} val", runtime=runtime)["logits"]
            record["val_clip_accuracy"] = clip_accuracy(val_logits, val_bank.labels)
        history.append(record)
        log(f"{desc} epoch {epoch + 1}: " + ", ".join(f"{k}={v:.4f}" for k, v in record.items() if k != "epoch"))
        if checkpoint_path is not None:
            if distributed.is_main():
                state = {"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "history": history}
                atomic_save(state, checkpoint_path)
            distributed.barrier()  # nobody goes on (or stops) before the epoch's checkpoint exists
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    model.eval()
    return history
