"""Teacher and student clip models behind a registry (timm's ``create_model`` style).

Every model takes a preprocessed clip batch ``[B, 3, T, H, W]`` (see
:func:`preprocess`: Kinetics statistics, as torchvision's video ResNets expect).
Teachers return class logits ``[B, K]``; students return ``(logits [B, K],
score_logit [B])``, the second head being the distilled confidence
``s = sigmoid(score_logit)``. A student sees the clip more cheaply by subsampling
it inside its own ``forward`` (fewer frames, lower resolution), so that teacher and
student read the same clips and the FLOPs counted for the student include that
reduction. A model whose network expects other input statistics (ImageNet's, for
instance) converts the clips itself in its first layer, so one preprocessed clip
serves every model.

``create_model(name, num_classes=K, weights=...)`` builds any registered model;
``list_models(role)`` lists them (the registry :data:`MODELS`, with their descriptions)
and ``model_spec(name)`` says what each takes:
its declared clip shape, the smallest it accepts, its input statistics and the
torchvision architecture whose pretrained weights it loads.

- :mod:`cdlib.models.small`: the small 3D CNN teachers and students of the synthetic
  data (CI and full profiles), trained from scratch on a CPU.
- :mod:`cdlib.models.pretrained`: torchvision's video networks as teachers
  (``r3d_18``, ``mc3_18``, ``r2plus1d_18``, ``s3d``, ``mvit_v1_b``, ``mvit_v2_s``,
  ``swin3d_t/s/b``) and its 2D networks as students (``mobilenet_v3_small_tsn``,
  ``resnet18_tsn``, ``resnet18_fusion``), fine-tuned from Kinetics-400 or ImageNet
  weights (:mod:`cdlib.models.weights`).

The models layer sits on :mod:`cdlib.runtime` and :mod:`cdlib.data` and may import nothing above them.
"""

from __future__ import annotations

import hashlib

from torch import nn

from cdlib.runtime.artifacts import source_fingerprint
from cdlib.runtime.errors import WeightsError
from cdlib.models import pretrained, small  # noqa: F401  (registers the models)
from cdlib.models.core import (
    MEAN,
    MODELS,
    STD,
    ModelSpec,
    Renormalize,
    create_meta_model,
    create_model,
    inference_module,
    list_models,
    model_spec,
    parameter_groups,
    preprocess,
    register_model,
)
from cdlib.models.small import _cheap_view
from cdlib.models.weights import load_weights, require_weights_file, weights_fingerprint

__all__ = [
    "MEAN", "MODELS", "STD", "ModelSpec", "Renormalize", "create_meta_model", "create_model", "inference_module",
    "list_models", "load_weights", "model_fingerprint", "model_spec", "parameter_groups", "preprocess",
    "register_model", "require_weights", "weights_fingerprint", "weights_key",
]


def _own_classes(model: nn.Module) -> list[type]:
    """The classes of this package that make up ``model``: its own class and its bases first, then its layers'."""
    classes: list[type] = []
    for module in (model, *model.modules()):
        for cls in type(module).__mro__:
            if cls.__module__.startswith(__name__) and cls not in classes:
                classes.append(cls)
    return classes


def model_fingerprint(name: str) -> str:
    """Hash of what defines a registered model: its builder's and classes' code, its layers, the input
    preprocessing and the students' clip subsampling (``_cheap_view``); docstrings and comments do not count
    (:func:`cdlib.runtime.artifacts.source_fingerprint`).

    Artifacts key trained weights by it, so editing one model retrains that model
    only, not every model in this package. (Pretrained weights are keyed
    separately, by :func:`weights_fingerprint`.)
    """
    spec = model_spec(name)
    model = create_meta_model(name)  # the same layers as a real build, without initialising them
    code = source_fingerprint(spec.builder, preprocess, _cheap_view, *_own_classes(model))
    return hashlib.sha256(f"{code}\n{model!r}".encode()).hexdigest()[:12]


def weights_key(name: str, weights: str) -> str:
    """What identifies the pretrained ``weights`` of model ``name`` in artifact keys ("" for none)."""
    if not weights:
        return ""
    arch = model_spec(name).weights_arch
    if arch is None:
        raise WeightsError(f"model {name!r} takes no pretrained weights (got {weights!r})")
    return weights_fingerprint(arch, weights)


def require_weights(name: str, weights: str) -> None:
    """Raise :class:`~cdlib.runtime.errors.WeightsError` now if the ``weights`` of model ``name`` are not on disk.

    Loading them happens later, when the model is built; this lets a run fail
    before it spends an hour decoding a data set.
    """
    if weights:
        arch = model_spec(name).weights_arch
        if arch is None:
            raise WeightsError(f"model {name!r} takes no pretrained weights (got {weights!r})")
        require_weights_file(arch, weights)
