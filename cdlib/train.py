"""The training loop: deterministic, checkpointed every epoch, resumable.

:func:`train_model` fits a model on a :class:`~cdlib.data.ClipBank` with a given
objective. The order of the clips, the clips sampled per video and the dropout
noise of epoch ``e`` depend only on ``(seed, e)``, and the learning rate only on
the step, so a run that is interrupted and resumed from its last checkpoint ends
with exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from cdlib.artifacts import atomic_save, discard, verified_load
from cdlib.config import TrainConfig
from cdlib.data.base import ClipBank
from cdlib.errors import ArtifactError, ConfigError
from cdlib.models import parameter_groups, preprocess
from cdlib.progress import log, progress_bar

#: objective(model_outputs, clip_indices) -> (loss, {component: float})
Objective = Callable[[object, torch.Tensor], tuple[torch.Tensor, dict[str, float]]]

CHECKPOINT = "checkpoint.pt"
WARMUP_FRACTION = 0.05


def set_determinism(num_threads: int | None = None) -> None:
    """Deterministic CPU algorithms and, if given, a fixed thread count."""
    torch.use_deterministic_algorithms(True)
    # Deterministic mode also fills every new tensor with NaN by default, which costs
    # ~20% of a training step here; our kernels write all memory they allocate.
    torch.utils.deterministic.fill_uninitialized_memory = False
    if num_threads:
        torch.set_num_threads(num_threads)


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + 17) % (2**63)


CLIP_CHOICES = ("all", "action")


def eligible_clips(bank: ClipBank, clips: str) -> torch.Tensor:
    """Indices of the clips a model trains on: ``all``, or ``action`` (clips not known to lack the action)."""
    if clips not in CLIP_CHOICES:
        raise ConfigError(f"train.clips must be one of {', '.join(CLIP_CHOICES)}, got {clips!r}")
    if clips == "all":
        return torch.arange(len(bank.video))
    return torch.nonzero(bank.informative != 0).squeeze(1)


def epoch_order(bank: ClipBank, train_cfg: TrainConfig, generator: torch.Generator) -> torch.Tensor:
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


@torch.no_grad()
def predict(model: nn.Module, bank: ClipBank, batch_size: int = 256, desc: str = "predict") -> dict[str, torch.Tensor]:
    """Per-clip outputs of ``model`` on every clip of ``bank``.

    Returns ``{"logits": [M, K]}`` and, for students, ``"score_logit": [M]``.
    """
    model.eval()
    logits, scores = [], []
    for start in progress_bar(range(0, len(bank.clips), batch_size), desc=desc):
        out = model(preprocess(bank.clips[start : start + batch_size]))
        if isinstance(out, tuple):
            logits.append(out[0])
            scores.append(out[1])
        else:
            logits.append(out)
    result = {"logits": torch.cat(logits)}
    if scores:
        result["score_logit"] = torch.cat(scores)
    return result


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
    bank: ClipBank,
    objective: Objective,
    train_cfg: TrainConfig,
    seed: int,
    work_dir: str | Path | None = None,
    val_bank: ClipBank | None = None,
    desc: str = "train",
    on_epoch_end: Callable[[int], None] | None = None,
) -> list[dict]:
    """Train ``model`` in place; return the per-epoch history.

    With ``work_dir``, a checkpoint (weights, optimiser state, history) is written
    atomically after every epoch and a later call resumes from it. ``val_bank``
    adds the clip-level validation accuracy to the history. ``on_epoch_end(epoch)``
    runs after each checkpoint (tests use it to interrupt a run).
    """
    if train_cfg.epochs < 1 or train_cfg.batch_size < 1 or train_cfg.lr <= 0:
        raise ConfigError(f"train: epochs and batch_size must be >= 1 and lr > 0, got {train_cfg}")
    # Parameter groups come from the model (cdlib.models.parameter_groups): a pretrained backbone trains at
    # train_cfg.backbone_lr_factor times the learning rate of the new layers; each group carries its lr_factor.
    groups = parameter_groups(model, train_cfg.backbone_lr_factor)
    optimizer = torch.optim.AdamW(groups, lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    history: list[dict] = []
    first_epoch = 0
    checkpoint_path = Path(work_dir) / CHECKPOINT if work_dir is not None else None
    if checkpoint_path is not None:
        state = _load_checkpoint(checkpoint_path)
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            history = list(state["history"])
            first_epoch = state["epoch"] + 1
            log(f"{desc}: resuming after epoch {first_epoch}")

    clips_per_epoch = len(epoch_order(bank, train_cfg, torch.Generator().manual_seed(0)))
    steps_per_epoch = math.ceil(clips_per_epoch / train_cfg.batch_size)
    total_steps = steps_per_epoch * train_cfg.epochs
    for epoch in range(first_epoch, train_cfg.epochs):
        generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
        torch.manual_seed(epoch_seed(seed, epoch))  # dropout noise of this epoch
        order = epoch_order(bank, train_cfg, generator)
        model.train()
        totals: dict[str, float] = {}
        seen = 0
        bar = progress_bar(range(steps_per_epoch), desc=f"{desc} epoch {epoch + 1}/{train_cfg.epochs}")
        for step in bar:
            idx = order[step * train_cfg.batch_size : (step + 1) * train_cfg.batch_size]
            for group in optimizer.param_groups:
                group["lr"] = group["lr_factor"] * learning_rate(train_cfg.lr, epoch * steps_per_epoch + step, total_steps)
            loss, parts = objective(model(preprocess(bank.clips[idx])), idx)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(idx)
            for name, value in {"loss": loss.item(), **parts}.items():
                totals[name] = totals.get(name, 0.0) + value * len(idx)
            bar.set_postfix(loss=f"{totals['loss'] / seen:.3f}")
        record = {"epoch": epoch + 1, **{f"train_{k}": v / seen for k, v in totals.items()}}
        if val_bank is not None:
            val_logits = predict(model, val_bank, desc=f"{desc} val")["logits"]
            record["val_clip_accuracy"] = clip_accuracy(val_logits, val_bank.labels)
        history.append(record)
        log(f"{desc} epoch {epoch + 1}: " + ", ".join(f"{k}={v:.4f}" for k, v in record.items() if k != "epoch"))
        if checkpoint_path is not None:
            state = {"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(), "history": history}
            atomic_save(state, checkpoint_path)
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    model.eval()
    return history
