"""Training glue between the experiment and :mod:`cdlib.experiment.train`: :func:`fit_model` trains a registered
model on the train split's clips into an artifact (a :class:`TrainedModel`), :func:`require_pretrained` fails
early on missing pretrained weights, and :func:`fit_context_heads` trains the context student's heads on whole
videos.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cdlib.experiment.clips import get_clips, resolve_store
from cdlib.experiment.config import Config, TrainConfig
from cdlib.experiment.train import epoch_seed, learning_rate, train_model
from cdlib.method.context import pad_videos
from cdlib.models import create_model, require_weights
from cdlib.runtime import distributed
from cdlib.runtime.artifacts import PAYLOAD, ArtifactStore, config_hash
from cdlib.runtime.device import configure_backend
from cdlib.runtime.progress import log, progress_bar


@dataclass
class TrainedModel:
    """A trained model with its training history and the spec that keys its artifact."""

    name: str
    model: nn.Module
    history: list[dict]
    spec: dict

    @property
    def key(self) -> str:
        return config_hash(self.spec)


def require_pretrained(name: str, weights: str, kind: str, spec: dict, store: ArtifactStore | None) -> None:
    """Fail now, before the data set is decoded, if a model still to train lacks its pretrained weights file."""
    if weights and not (resolve_store(store).directory(kind, spec) / PAYLOAD).exists():
        require_weights(name, weights)


def fit_model(name: str, spec: dict, cfg: Config, train_cfg: TrainConfig, objective_for, init_seed: int, kind: str,
              store: ArtifactStore | None, weights: str = "", unused_parameters: bool = False) -> TrainedModel:
    """Model ``name`` trained on the train split's clips of ``cfg`` with ``train_cfg``, stored as a ``kind``
    artifact keyed by ``spec`` (trained on first use, loaded after): initialised from ``init_seed`` (or from
    the pretrained ``weights``), minimising ``objective_for()`` (:func:`cdlib.experiment.train.train_model`),
    validated on the val split; in eval mode."""
    store = resolve_store(store)
    train_bank = get_clips(cfg, "train", store)
    num_classes = train_bank.num_classes

    def build(work_dir):
        runtime = cfg.resolved_runtime
        configure_backend(runtime)
        torch.manual_seed(init_seed)
        model = create_model(name, num_classes=num_classes, weights=weights)
        history = train_model(
            model, train_bank, objective_for(), train_cfg, seed=cfg.seed, work_dir=work_dir,
            val_bank=get_clips(cfg, "val", store), desc=f"{kind} {name}", runtime=runtime,
            unused_parameters=unused_parameters,
        )
        state = {key: value.cpu() for key, value in model.state_dict().items()}
        return {"state_dict": state, "history": history, "num_classes": num_classes}

    payload = distributed.get_or_create(store, kind, spec, build)
    model = create_model(name, num_classes=payload["num_classes"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return TrainedModel(name=name, model=model, history=payload["history"], spec=spec)


def fit_context_heads(heads, features: Tensor, video: Tensor, objective, *, epochs: int,
                      batch_videos: int, lr: float, weight_decay: float, seed: int, desc: str = "context") -> list[dict]:
    """Train the :class:`cdlib.method.context.ContextHeads` ``heads`` in place on whole videos of per-clip
    ``features [M, D]`` (clips stored video by video, ``video [M]`` their video); return the per-epoch history.

    ``objective(logits [B, L, K], score_logit [B, L], mask [B, L], clips [m]) -> (loss, components)`` is the loss
    of a padded batch of ``B`` videos, whose real clips (``mask``, in order) are the split's clips ``clips``.
    Batches of ``batch_videos`` videos in an order drawn from ``seed`` and the epoch; AdamW with the warm-up and
    cosine schedule of :func:`cdlib.experiment.train.learning_rate`.
    """
    sizes = torch.bincount(video).tolist()
    starts = torch.tensor([0, *sizes[:-1]]).cumsum(0).tolist()
    optimizer = torch.optim.AdamW(heads.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(sizes) / batch_videos)
    total = steps_per_epoch * epochs
    history = []
    for epoch in progress_bar(range(epochs), desc=desc):
        generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
        torch.manual_seed(epoch_seed(seed, epoch))  # dropout noise of this epoch
        order = torch.randperm(len(sizes), generator=generator).tolist()
        heads.train()
        totals, seen = {}, 0
        for step in range(steps_per_epoch):
            chosen = order[step * batch_videos:(step + 1) * batch_videos]
            clips = torch.cat([torch.arange(starts[v], starts[v] + sizes[v]) for v in chosen])
            padded, mask = pad_videos(features[clips], [sizes[v] for v in chosen])
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(lr, epoch * steps_per_epoch + step, total)
            loss, components = objective(*heads(padded, mask), mask, clips)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(clips)
            for name, value in {"loss": loss.item(), **components}.items():
                totals[name] = totals.get(name, 0.0) + value * len(clips)
        history.append({"epoch": epoch + 1, **{f"train_{k}": v / seen for k, v in totals.items()}})
    heads.eval()
    log(f"{desc}: " + ", ".join(f"{k}={v:.4f}" for k, v in history[-1].items() if k != "epoch"))
    return history
