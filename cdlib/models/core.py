"""The model registry, the clip preprocessing shared by every model, and frozen inference modules.

See :mod:`cdlib.models` for what a registered model takes and returns.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from cdlib.runtime.errors import ConfigError, WeightsError
from cdlib.runtime.registry import Registry

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
    batch, frames, height, width, channels = clips.shape
    # Each row of a frame, width x channels values, is one run of the loop: per channel, the innermost run
    # would be 3 values long, and the same addcmul took 1.5 times as long (one thread, 64 clips of the CI data).
    scale, shift = (v.to(clips.device).view(channels).repeat(width) for v in (_SCALE, _SHIFT))
    x = torch.addcmul(shift, clips.reshape(batch, frames, height, width * channels).float(), scale)
    return x.view(batch, frames, height, width, channels).permute(0, 4, 1, 2, 3)  # channels_last_3d: no copy


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
    single clip, so the timed pipeline (:func:`cdlib.experiment.timing.measure_wall_clock`)
    uses the frozen module while the pinned PyTorch provides it. Every policy,
    the dense teacher among them, is timed with the same frozen models.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
        return torch.jit.optimize_for_inference(torch.jit.script(model.eval()))


class Renormalize(nn.Module):
    """Clips normalised by :func:`preprocess` (statistics ``MEAN``, ``STD``) -> normalised by ``(mean, std)``.

    Both are affine maps of the same pixels ``u = v / 255``: ``x = (u − MEAN) / STD``,
    so ``x' = (u − mean) / std = x · STD/std + (MEAN − mean)/std`` per channel, exactly.
    A network whose pretrained weights expect other statistics than the pipeline's
    (ImageNet's, or MViT's 0.45/0.225) starts with this layer, so that teacher and
    student still read the same preprocessed clips. It is the identity when the
    statistics agree.
    """

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.mean, self.std = tuple(mean), tuple(std)
        scale = [s0 / s for s0, s in zip(STD, self.std)]
        shift = [(m0 - m) / s for m0, m, s in zip(MEAN, self.mean, self.std)]
        self.identity = all(abs(a - 1) < 1e-7 for a in scale) and all(abs(b) < 1e-7 for b in shift)
        # Not in the state dict: the statistics are part of the architecture, not learned.
        self.register_buffer("scale", torch.tensor(scale).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("shift", torch.tensor(shift).view(1, 3, 1, 1, 1), persistent=False)

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return x
        return torch.addcmul(self.shift, x, self.scale)


@dataclass(frozen=True)
class ModelSpec:
    """A registered model.

    ``input_shape``: the clip ``(C, T, H, W)`` it is declared for (that of its
    pretrained weights, if any). ``min_input_shape``: the smallest clip it accepts
    (quick checks run it there). ``mean``/``std``: the statistics its network
    expects; every model takes clips normalised by :func:`preprocess` and converts
    them itself (:class:`Renormalize`) where these differ from ``MEAN``/``STD``.
    ``weights_arch``: the torchvision architecture whose weights it loads
    (``create_model(..., weights=...)``); None for models trained from scratch only.
    """

    name: str
    role: str  # "teacher" or "student"
    builder: Callable[..., nn.Module]
    input_shape: tuple[int, int, int, int]  # (C, T, H, W) the model is declared for
    description: str
    min_input_shape: tuple[int, int, int, int]
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD
    weights_arch: str | None = None


#: every model by name (:class:`~cdlib.runtime.registry.Registry`), added by :func:`register_model`
MODELS: Registry[ModelSpec] = Registry("model")


def register_model(name: str, role: str, input_shape: tuple[int, int, int, int], description: str, *,
                   min_input_shape: tuple[int, int, int, int] | None = None, mean=MEAN, std=STD,
                   weights_arch: str | None = None):
    """Decorator adding a model builder to :data:`MODELS` under ``name`` (see :class:`ModelSpec` for the fields).

    A builder takes ``num_classes`` and, if ``weights_arch`` is set, ``pretrained``:
    None or ``(state_dict, source)`` of the torchvision network
    (:func:`cdlib.models.weights.load_weights`).
    """
    if role not in ("teacher", "student"):
        raise ValueError(f"role must be 'teacher' or 'student', got {role!r}")

    def decorate(builder):
        MODELS.register(name, ModelSpec(name, role, builder, input_shape, description, min_input_shape or input_shape,
                                        tuple(mean), tuple(std), weights_arch), description)
        return builder

    return decorate


def list_models(role: str | None = None) -> list[str]:
    """Registered model names, sorted, optionally only teachers or only students."""
    return sorted(name for name, spec in MODELS.items() if role is None or spec.role == role)


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered as ``name``; :class:`ConfigError` naming the known models if there is none."""
    return MODELS.get(name)


def create_model(name: str, num_classes: int, weights: str = "", **kwargs) -> nn.Module:
    """Build the registered model ``name`` for ``num_classes`` classes.

    ``weights``: ``""`` for a random initialisation, else a torchvision weights name
    of the model's architecture (``KINETICS400_V1``, ``IMAGENET1K_V1``, ``DEFAULT``) or
    a path to a state-dict file (:mod:`cdlib.models.weights`); the pretrained layers
    are loaded and the classification layer is new, for ``num_classes`` classes.
    Weights that cannot be used raise :class:`~cdlib.runtime.errors.WeightsError` naming them.
    """
    from cdlib.models.weights import load_weights

    if num_classes < 2:
        raise ConfigError(f"num_classes must be at least 2, got {num_classes}")
    spec = model_spec(name)
    if weights:
        if spec.weights_arch is None:
            takes = ", ".join(n for n in list_models() if MODELS[n].weights_arch)
            raise WeightsError(f"model {name!r} takes no pretrained weights (got {weights!r}); models that do: {takes}")
        kwargs["pretrained"] = load_weights(spec.weights_arch, weights)
    return spec.builder(num_classes=num_classes, **kwargs)


def create_meta_model(name: str, num_classes: int = 2) -> nn.Module:
    """``name`` built on PyTorch's ``meta`` device: shapes without memory or compute, built in milliseconds.

    For counting FLOPs and checking shapes of the big video networks, whose random
    initialisation alone takes seconds on a CPU.
    """
    with torch.device("meta"):
        return model_spec(name).builder(num_classes=num_classes)


def parameter_groups(model: nn.Module, backbone_lr_factor: float = 1.0) -> list[dict]:
    """The optimiser's parameter groups for ``model``, each with ``lr_factor``: its learning rate over the base one.

    A model built on a pretrained network names its new layers in ``new_layers``
    (the classification layer for K classes, a student's confidence head). With
    ``backbone_lr_factor != 1`` every other parameter (the backbone) goes into a group
    of its own at that factor, so a pretrained backbone is fine-tuned more gently
    than the freshly initialised head; with 1, all parameters form one group at
    factor 1. A factor other than 1 for a model without ``new_layers`` (the small
    models) is an error rather than ignored. A model wrapped in
    ``DistributedDataParallel`` is looked into.
    """
    if backbone_lr_factor < 0:
        raise ConfigError(f"backbone_lr_factor must be >= 0, got {backbone_lr_factor}")
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    new_layers = tuple(getattr(model, "new_layers", ()))
    if backbone_lr_factor == 1.0:
        return [{"params": list(model.parameters()), "lr_factor": 1.0}]
    if not new_layers:
        raise ConfigError(f"backbone_lr_factor is {backbone_lr_factor}, but {type(model).__name__} has no pretrained "
                          "backbone (only the torchvision-based models do); set it to 1")

    def is_new(name: str) -> bool:
        return any(name == layer or name.startswith(layer + ".") for layer in new_layers)

    named = list(model.named_parameters())
    return [
        {"params": [p for n, p in named if not is_new(n)], "lr_factor": float(backbone_lr_factor)},
        {"params": [p for n, p in named if is_new(n)], "lr_factor": 1.0},
    ]
