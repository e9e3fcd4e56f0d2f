"""Teacher and student clip models behind a registry (timm's ``create_model`` style).

Every model takes a preprocessed clip batch ``[B, 3, T, H, W]`` (see
:func:`preprocess`) at the data's clip size. Teachers return class logits
``[B, K]``; students return ``(logits [B, K], score_logit [B])``, the second head
being the distilled confidence ``s = sigmoid(score_logit)``. A student sees the
clip more cheaply by subsampling it inside its own ``forward`` (fewer frames, lower
resolution), so that teacher and student read the same clips and the FLOPs counted
for the student include that reduction.

``create_model(name, num_classes=K, ...)`` builds any registered model;
``list_models(role)`` lists them. torchvision's video ResNets (``r3d_18``,
``mc3_18``, ``r2plus1d_18``) are registered as teachers for real data and are
always trained from scratch (no weights can be downloaded here).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cdlib.errors import ConfigError

# Per-channel normalisation of uint8 frames scaled to [0, 1] (Kinetics statistics,
# as torchvision's video models use them).
MEAN = (0.43216, 0.394666, 0.37645)
STD = (0.22803, 0.22145, 0.216989)
_SCALE = (1.0 / (255.0 * torch.tensor(STD))).view(1, 3, 1, 1, 1)
_SHIFT = (-torch.tensor(MEAN) / torch.tensor(STD)).view(1, 3, 1, 1, 1)


def preprocess(clips: torch.Tensor) -> torch.Tensor:
    """uint8 clips ``[B, T, H, W, C]`` -> normalised float ``[B, C, T, H, W]`` in ``channels_last_3d`` memory format.

    ``x = (v / 255 − mean_c) / std_c`` per channel ``c``, computed in one fused
    pass as ``v · 1/(255·std_c) − mean_c/std_c`` (``torch.addcmul``); it runs on
    every clip of every timed video, and the fused form was measured 2–5× faster
    than the three separate operations. Channels-last is the frames' own layout,
    so no copy is made, and oneDNN's 3D convolutions run a training step of the CI
    teacher about 1.3× faster on it than on contiguous clips (measured here on 2
    cores, interleaved runs).
    """
    x = torch.addcmul(_SHIFT.to(clips.device), clips.permute(0, 4, 1, 2, 3).float(), _SCALE.to(clips.device))
    return x.contiguous(memory_format=torch.channels_last_3d)  # a no-op on the frames' own layout


def inference_module(model: nn.Module) -> torch.jit.ScriptModule:
    """``model`` frozen for CPU inference: same outputs, less time per call.

    Scripts and freezes the model in eval mode, folds batch norms into the
    convolutions and pre-packs the weights for oneDNN
    (``torch.jit.optimize_for_inference``). Eager PyTorch reorders every weight on
    each call and sends a batch of one small clip to its slow reference kernel
    (``slow_conv3d``); that fixed cost per call is what a selective policy pays
    when it runs the teacher on one or two clips. Measured here on the CI teacher:
    one clip 1.1 ms frozen vs 3.6 ms eager (as a batch of two) and 5.1 ms eager
    alone; twelve clips 10 ms vs 15 ms.

    TorchScript is deprecated in favour of ``torch.compile``, which on this
    machine took 86 s to compile the CI teacher and still needed 2.6 ms per
    single clip, so the timed pipeline (:func:`cdlib.bench.measure_wall_clock`)
    uses the frozen module while the pinned PyTorch provides it. Every policy,
    the dense teacher among them, is timed with the same frozen models.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
        return torch.jit.optimize_for_inference(torch.jit.script(model.eval()))


@dataclass(frozen=True)
class ModelSpec:
    name: str
    role: str  # "teacher" or "student"
    builder: Callable[..., nn.Module]
    input_shape: tuple[int, int, int, int]  # (C, T, H, W) the model is declared for
    description: str


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, role: str, input_shape: tuple[int, int, int, int], description: str):
    """Decorator adding a model builder to the registry under ``name``."""
    if role not in ("teacher", "student"):
        raise ValueError(f"role must be 'teacher' or 'student', got {role!r}")

    def decorate(builder):
        _REGISTRY[name] = ModelSpec(name, role, builder, input_shape, description)
        return builder

    return decorate


def list_models(role: str | None = None) -> list[str]:
    """Registered model names, optionally only teachers or only students."""
    return sorted(name for name, spec in _REGISTRY.items() if role is None or spec.role == role)


def model_spec(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    return _REGISTRY[name]


def create_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Build the registered model ``name`` for ``num_classes`` classes (randomly initialised)."""
    if num_classes < 2:
        raise ConfigError(f"num_classes must be at least 2, got {num_classes}")
    return model_spec(name).builder(num_classes=num_classes, **kwargs)


def model_fingerprint(name: str) -> str:
    """Hash of what defines a registered model: its builder's and classes' source, its layers, the input
    preprocessing and the students' clip subsampling (``_cheap_view``).

    Artifacts key trained weights by it, so editing one model retrains that model
    only, not every model in this module.
    """
    import hashlib
    import inspect

    spec = model_spec(name)
    model = spec.builder(num_classes=2)
    parts = [inspect.getsource(f) for f in (spec.builder, preprocess, _cheap_view)] + [repr(model)]
    parts += [inspect.getsource(cls) for cls in type(model).__mro__ if cls.__module__ == __name__]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def _conv_block(cin: int, cout: int, kernel=(3, 3, 3)) -> nn.Sequential:
    padding = tuple(k // 2 for k in kernel)
    return nn.Sequential(nn.Conv3d(cin, cout, kernel, padding=padding, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True))


class C3DSmall(nn.Module):
    """A 4-block 3D CNN teacher: a strided stem, three conv(3x3x3)-BN-ReLU blocks with
    pooling, global average pooling and a linear classifier."""

    def __init__(self, num_classes: int, widths=(16, 32, 64, 128), dropout: float = 0.2):
        super().__init__()
        w1, w2, w3, w4 = widths
        self.features = nn.Sequential(
            nn.Conv3d(3, w1, (3, 3, 3), stride=(1, 2, 2), padding=1, bias=False),
            nn.BatchNorm3d(w1),
            nn.ReLU(inplace=True),
            _conv_block(w1, w2),
            nn.MaxPool3d((2, 2, 2)),
            _conv_block(w2, w3),
            nn.MaxPool3d((2, 2, 2)),
            _conv_block(w3, w4),
            nn.AdaptiveAvgPool3d(1),
            nn.Flatten(),
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(w4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x)))


def _cheap_view(x: torch.Tensor, frame_stride: int, spatial_factor: int) -> torch.Tensor:
    """Every ``frame_stride``-th frame of clips ``[B, C, T, H, W]``, average-pooled in space by ``spatial_factor``."""
    x = x[:, :, ::frame_stride]
    if spatial_factor > 1:
        x = F.avg_pool3d(x, (1, spatial_factor, spatial_factor))
    return x


class ClipStudent(nn.Module):
    """A cheap two-headed student: subsample the clip, a small 3D CNN, class and confidence heads.

    ``frame_stride`` keeps every ``frame_stride``-th frame and ``spatial_factor``
    average-pools space by that factor before the network (the cheap view of the
    clip). The confidence head is a small MLP on the same features producing one
    logit; ``s = sigmoid(score_logit)``.
    """

    def __init__(self, num_classes: int, widths=(12, 24, 32), frame_stride: int = 2, spatial_factor: int = 2):
        super().__init__()
        self.frame_stride = frame_stride
        self.spatial_factor = spatial_factor
        layers: list[nn.Module] = []
        cin = 3
        for i, width in enumerate(widths):
            layers.append(_conv_block(cin, width))
            if i < len(widths) - 1:
                layers.append(nn.MaxPool3d((1, 2, 2)))
            cin = width
        layers += [nn.AdaptiveAvgPool3d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, num_classes)
        self.score_head = nn.Sequential(nn.Linear(cin, 32), nn.ReLU(inplace=True), nn.Linear(32, 1))

    def cheap_view(self, x: torch.Tensor) -> torch.Tensor:
        return _cheap_view(x, self.frame_stride, self.spatial_factor)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(self.cheap_view(x))
        return self.classifier(features), self.score_head(features).squeeze(-1)


class FrameStudent(ClipStudent):
    """The cheapest student: one frame (the clip's middle frame) through a small 2D CNN.

    It sees appearance but no motion, so it can spot *where* an action is shown but
    cannot tell apart classes that differ only in the direction of motion.
    """

    def __init__(self, num_classes: int, widths=(12, 24, 32), spatial_factor: int = 2):
        super().__init__(num_classes, widths=widths, frame_stride=1, spatial_factor=spatial_factor)

    def cheap_view(self, x: torch.Tensor) -> torch.Tensor:
        middle = x.shape[2] // 2
        return _cheap_view(x[:, :, middle : middle + 1], 1, self.spatial_factor)


class FusionStudent(nn.Module):
    """A cheap student that stacks frames as channels (early fusion) into a small 2D CNN.

    Every ``frame_stride``-th frame, average-pooled by ``spatial_factor``, is
    stacked along the channel axis, so the first 2D convolution sees motion as
    differences between channels. 2D convolutions run far more efficiently than
    3D ones of the same FLOPs on a CPU, which keeps the student cheap in
    wall-clock time too, not only in FLOPs.
    """

    def __init__(self, num_classes: int, widths=(32, 48, 64), frame_stride: int = 2, spatial_factor: int = 2,
                 frames: int = 8):
        super().__init__()
        self.frame_stride = frame_stride
        self.spatial_factor = spatial_factor
        cin = 3 * len(range(0, frames, frame_stride))
        layers: list[nn.Module] = []
        for i, width in enumerate(widths):
            layers += [nn.Conv2d(cin, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, num_classes)
        self.score_head = nn.Sequential(nn.Linear(cin, 32), nn.ReLU(inplace=True), nn.Linear(32, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(_cheap_view(x, self.frame_stride, self.spatial_factor).flatten(1, 2))
        return self.classifier(features), self.score_head(features).squeeze(-1)


@register_model("c3d_small", "teacher", (3, 8, 32, 32), "4-block 3D CNN teacher for the synthetic data (CI profile)")
def c3d_small(num_classes: int, **kwargs) -> nn.Module:
    return C3DSmall(num_classes, **kwargs)


@register_model("c3d_wide", "teacher", (3, 8, 32, 32), "wider 4-block 3D CNN teacher (full profile)")
def c3d_wide(num_classes: int, **kwargs) -> nn.Module:
    return C3DSmall(num_classes, widths=(24, 48, 96, 192), **kwargs)


@register_model("student_tiny", "student", (3, 8, 32, 32), "3D CNN on every 2nd frame at half resolution")
def student_tiny(num_classes: int, **kwargs) -> nn.Module:
    return ClipStudent(num_classes, **kwargs)


@register_model("student_fusion", "student", (3, 8, 32, 32), "2D CNN on every 2nd frame stacked as channels, half resolution")
def student_fusion(num_classes: int, **kwargs) -> nn.Module:
    return FusionStudent(num_classes, **kwargs)


@register_model("student_micro", "student", (3, 8, 32, 32), "narrow 3D CNN on every 4th frame at quarter resolution")
def student_micro(num_classes: int, **kwargs) -> nn.Module:
    return ClipStudent(num_classes, widths=(8, 16), frame_stride=4, spatial_factor=4, **kwargs)


@register_model("student_frame", "student", (3, 8, 32, 32), "2D CNN on the middle frame (no motion)")
def student_frame(num_classes: int, **kwargs) -> nn.Module:
    return FrameStudent(num_classes, **kwargs)


def _torchvision_video_resnet(builder_name: str):
    def build(num_classes: int, **kwargs) -> nn.Module:
        from torchvision.models import video

        # weights=None: trained from scratch, nothing is downloaded.
        return getattr(video, builder_name)(weights=None, num_classes=num_classes, **kwargs)

    return build


for _name, _what in (("r3d_18", "ResNet3D-18"), ("mc3_18", "mixed-convolution ResNet-18"), ("r2plus1d_18", "R(2+1)D-18")):
    register_model(_name, "teacher", (3, 8, 64, 64), f"torchvision {_what} (from scratch), for real videos")(
        _torchvision_video_resnet(_name)
    )
