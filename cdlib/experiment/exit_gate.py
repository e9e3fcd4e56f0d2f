"""FrameExit's artifacts (:mod:`cdlib.method.frame_exit`): the teacher with its penultimate features
(:class:`TeacherWithFeatures`) and those features on every split, the exit gate fitted on the train split and its
exit score on every clip of a split.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from cdlib.experiment.clips import data_spec, get_clips, resolve_store
from cdlib.experiment.config import Config
from cdlib.experiment.students import teacher_spec
from cdlib.experiment.train import predict
from cdlib.experiment.trained_models import get_outputs, get_teacher
from cdlib.method.frame_exit import GATE_SETTINGS, ExitGate, exit_scores, fit_exit_gate
from cdlib.models.pretrained import VideoClassifier
from cdlib.models.small import C3DSmall
from cdlib.runtime import distributed
from cdlib.runtime.artifacts import ArtifactStore, code_version
from cdlib.runtime.device import configure_backend
from cdlib.runtime.errors import ConfigError


class _PointwiseHead(nn.Module):
    """A 1x1x1 ``Conv3d`` classification layer (S3D's) applied to pooled features ``[B, D]``: the same logits as
    the convolution followed by the network's mean over time and space, which commute with it."""

    def __init__(self, conv: nn.Conv3d):
        super().__init__()
        self.conv = conv

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.conv(features[:, :, None, None, None]).flatten(1)


class _VideoBody(nn.Module):
    """A :class:`~cdlib.models.pretrained.VideoClassifier` up to the input of its classification layer."""

    def __init__(self, renormalize: nn.Module, net: nn.Module):
        super().__init__()
        self.renormalize, self.net = renormalize, net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.renormalize(x))


def _without_layer(module: nn.Module, dotted: str) -> nn.Module:
    """A shallow copy of ``module`` whose submodule at ``dotted`` is ``nn.Identity``; every other submodule (and
    every weight) is shared with ``module``, which is left unchanged."""
    first, _, rest = dotted.partition(".")
    clone = copy.copy(module)
    clone._modules = dict(module._modules)
    clone._modules[first] = nn.Identity() if not rest else _without_layer(module._modules[first], rest)
    return clone


class TeacherWithFeatures(nn.Module):
    """A teacher that also returns its penultimate features: ``x -> (logits [B, K], features [B, D])``, the features
    being the input of its classification layer (the last ``nn.Linear``; S3D's 1x1x1 convolution, on its pooled
    input). For inference (dropout before the classifier is left out, as in eval mode); TorchScript-able, so that
    :func:`cdlib.method.cost.timing_model` freezes it like the teacher.

    Knows :class:`~cdlib.models.small.C3DSmall` (``c3d_small``, ``c3d_wide``) and the torchvision
    :class:`~cdlib.models.pretrained.VideoClassifier` teachers; a :class:`ConfigError` for any other model.
    """

    def __init__(self, teacher: nn.Module):
        super().__init__()
        if isinstance(teacher, C3DSmall):
            self.body, self.head = teacher.features, teacher.classifier
        elif isinstance(teacher, VideoClassifier):
            path = teacher.new_layers[0].removeprefix("net.")
            head = teacher.net.get_submodule(path)
            if isinstance(head, nn.Conv3d) and head.kernel_size == (1, 1, 1):
                head = _PointwiseHead(head)
            elif not isinstance(head, nn.Linear):
                raise ConfigError(f"teacher features: the classification layer {path} of {type(teacher.net).__name__} "
                                  f"is a {type(head).__name__}, neither nn.Linear nor a 1x1x1 Conv3d")
            self.body, self.head = _VideoBody(teacher.renormalize, _without_layer(teacher.net, path)), head
        else:
            raise ConfigError(f"teacher features: no known split of a {type(teacher).__name__} into features and "
                              "classifier (known: C3DSmall, VideoClassifier)")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x).flatten(1)
        return self.head(features), features


def get_teacher_features(cfg: Config, split: str, store: ArtifactStore | None = None) -> torch.Tensor:
    """The teacher's penultimate features ``[M, D]`` on every clip of ``split`` (:class:`TeacherWithFeatures`),
    cached like its outputs (:func:`get_features` for the CD student's)."""
    store = resolve_store(store)
    spec = {"model": teacher_spec(cfg), "split": split, "clips": data_spec(cfg, split),
            "numerics": cfg.resolved_runtime.numerics(), "features": "input of the classification layer"}

    def build(_):
        runtime = cfg.resolved_runtime
        configure_backend(runtime)
        wrapped = TeacherWithFeatures(get_teacher(cfg, store).model)
        # predict names its outputs by position (logits, score_logit, ...): the second is the features here
        _, features = predict(wrapped, get_clips(cfg, split, store), desc=f"teacher features on {split}",
                              runtime=runtime).values()
        return {"features": features}

    return distributed.get_or_create(store, "teacher_features", spec, build)["features"]


#: the only split the exit gate is trained on: the getters it calls are asked for this split and no other
_GATE_SPLIT = "train"


def exit_gate_spec(cfg: Config) -> dict:
    """What determines FrameExit's exit gate: the teacher, the train split's clips, the gate settings
    (:data:`cdlib.method.frame_exit.GATE_SETTINGS`), the seed and the code that fits it."""
    return {"role": "exit_gate", "teacher": teacher_spec(cfg), "clips": data_spec(cfg, _GATE_SPLIT),
            "numerics": cfg.resolved_runtime.numerics(), "gate": dict(GATE_SETTINGS), "seed": cfg.seed,
            "code": code_version("cdlib.method.frame_exit")}


def get_exit_gate(cfg: Config, store: ArtifactStore | None = None):
    """FrameExit's exit gate (:class:`cdlib.method.frame_exit.ExitGate`, eval mode), fitted on the teacher's outputs and
    features on the train split only (:func:`cdlib.method.frame_exit.fit_exit_gate`), so that neither the val split
    (which chooses operating points) nor the test split can change it."""
    def build(_):
        outputs = get_outputs(cfg, "teacher", _GATE_SPLIT, store)
        features = get_teacher_features(cfg, _GATE_SPLIT, store)
        gate = fit_exit_gate(features, outputs.logits, outputs.labels, outputs.video, seed=cfg.seed, **GATE_SETTINGS)
        return {"state_dict": gate.state_dict(), "feature_dim": gate.feature_dim, "num_classes": gate.num_classes,
                "hidden": GATE_SETTINGS["hidden"]}

    payload = distributed.get_or_create(resolve_store(store), "exit_gate", exit_gate_spec(cfg), build)
    gate = ExitGate(payload["feature_dim"], payload["num_classes"], payload["hidden"])
    gate.load_state_dict(payload["state_dict"])
    return gate.eval()


def get_exit_scores(cfg: Config, split: str, store: ArtifactStore | None = None) -> torch.Tensor:
    """FrameExit's exit score ``[M]`` of every clip of ``split``: the gate's ``σ`` after its video's clips were
    visited up to and including it (:func:`cdlib.method.frame_exit.exit_scores`), cached."""
    store = resolve_store(store)
    spec = {"gate": exit_gate_spec(cfg), "split": split, "clips": data_spec(cfg, split),
            "numerics": cfg.resolved_runtime.numerics()}

    def build(_):
        outputs = get_outputs(cfg, "teacher", split, store)
        features = get_teacher_features(cfg, split, store)
        return {"scores": exit_scores(get_exit_gate(cfg, store), features, outputs.logits, outputs.video)}

    return distributed.get_or_create(store, "exit_scores", spec, build)["scores"]
