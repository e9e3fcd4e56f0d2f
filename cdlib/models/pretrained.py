"""torchvision's networks as teachers and students, from scratch or fine-tuned from pretrained weights.

Teachers are torchvision's video classifiers (every one torchvision 0.26 to 0.29
offers: the video ResNets, S3D, MViT and Video Swin), with their classification
layer for K classes. Students are torchvision's 2D image networks on a few frames
of the clip with two heads, like the small students: class logits and a
confidence score logit. Pretrained weights (``create_model(..., weights=...)``, see
:mod:`cdlib.models.weights`) fill every layer but the new ones, named in each
model's ``new_layers`` so that training can give the backbone its own learning
rate (:func:`cdlib.models.parameter_groups`).

Each registry entry gives the clip its weights were trained on and the input
statistics its network expects; the model converts :func:`cdlib.models.preprocess`'s
Kinetics-normalised clips to them in its first layer (:class:`~cdlib.models.core.Renormalize`).
"""

from __future__ import annotations

import torch
from torch import nn

from cdlib.models.core import MEAN, STD, Renormalize, register_model
from cdlib.models.weights import Pretrained, load_backbone

# Input statistics of torchvision's pretrained weights (``weights.transforms().mean/std``; a test checks them).
KINETICS_STATS = (MEAN, STD)  # the video ResNets and S3D, and this pipeline's own preprocessing
MVIT_STATS = ((0.45, 0.45, 0.45), (0.225, 0.225, 0.225))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # the 2D networks and Video Swin


def _torchvision_network(arch: str, **kwargs) -> nn.Module:
    from torchvision.models import get_model_builder

    return get_model_builder(arch)(weights=None, **kwargs)


def _replace(net: nn.Module, dotted: str, layer: nn.Module) -> None:
    """Set the submodule at the dotted path ``dotted`` (``fc``, ``classifier.3``) to ``layer``."""
    parent, _, name = dotted.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, name, layer)


class VideoClassifier(nn.Module):
    """A torchvision video network with its classification layer for ``num_classes`` classes.

    ``head`` is the path of that layer inside the network; with ``pretrained``,
    every other layer is loaded from it and the head keeps its random
    initialisation (torchvision's own, for ``num_classes`` outputs).
    """

    def __init__(self, arch: str, head: str, num_classes: int, stats, pretrained: Pretrained | None = None):
        super().__init__()
        self.renormalize = Renormalize(*stats)
        self.net = _torchvision_network(arch, num_classes=num_classes)
        if pretrained is not None:
            load_backbone(self.net, pretrained, skip=(head,))
        self.new_layers = (f"net.{head}",)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.renormalize(x))


class SegmentFrames(nn.Module):
    """``frames`` frames of clips ``[B, C, T, H, W]``: the middle frame of each of ``frames`` equal segments.

    Frame ``s·i + s//2`` for ``i = 0..frames−1`` with ``s = T // frames`` (for
    ``T = 16``, ``frames = 4``: frames 2, 6, 10, 14), the segment sampling of
    Temporal Segment Networks (Wang et al. 2016) at test time; fewer when ``T < frames``.
    """

    def __init__(self, frames: int):
        super().__init__()
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        self.frames = frames

    def extra_repr(self) -> str:
        return f"frames={self.frames}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stride = max(x.shape[2] // self.frames, 1)
        return x[:, :, stride // 2 :: stride][:, :, : self.frames]


def _image_backbone(arch: str, head: str, pretrained: Pretrained | None) -> tuple[nn.Module, int]:
    """torchvision's 2D ``arch`` without its classification layer ``head``, and its feature width."""
    net = _torchvision_network(arch)
    if pretrained is not None:
        load_backbone(net, pretrained, skip=(head,))
    width = net.get_submodule(head).in_features
    _replace(net, head, nn.Identity())
    return net, width


class TwoHeads(nn.Module):
    """The class and confidence heads of a student on ``width`` features, as in the small students."""

    def __init__(self, width: int, num_classes: int):
        super().__init__()
        self.classifier = nn.Linear(width, num_classes)
        self.score_head = nn.Sequential(nn.Linear(width, 32), nn.ReLU(inplace=True), nn.Linear(32, 1))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.classifier(features), self.score_head(features).squeeze(-1)


class SegmentStudent(nn.Module):
    """A 2D image network on ``frames`` frames of the clip (:class:`SegmentFrames`), features averaged over them.

    The network (torchvision's ``arch`` without its classification layer) runs on
    each frame; the mean of the frames' features feeds the class and confidence
    heads (TSN's average consensus, on features). It sees appearance at a few
    moments, not motion.
    """

    def __init__(self, arch: str, head: str, num_classes: int, frames: int = 4, pretrained: Pretrained | None = None):
        super().__init__()
        self.renormalize = Renormalize(*IMAGENET_STATS)
        self.segments = SegmentFrames(frames)
        self.backbone, width = _image_backbone(arch, head, pretrained)
        self.heads = TwoHeads(width, num_classes)
        self.new_layers = ("heads",)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.renormalize(self.segments(x))
        b, c, f, h, w = x.shape
        features = self.backbone(x.transpose(1, 2).reshape(b * f, c, h, w))
        return self.heads(features.view(b, f, -1).mean(1))


class StackedFramesStudent(nn.Module):
    """A 2D image network whose first convolution sees ``frames`` frames stacked as channels (early fusion).

    The first convolution takes ``3·frames`` channels; pretrained, its kernel is
    the image kernel repeated for every frame and divided by ``frames``, so that
    a still clip gives exactly the pretrained network's response to one frame
    while the differences between frames (motion) can still be learned. The rest
    costs what one frame costs.
    """

    def __init__(self, arch: str, head: str, stem: str, num_classes: int, frames: int = 4,
                 pretrained: Pretrained | None = None):
        super().__init__()
        self.renormalize = Renormalize(*IMAGENET_STATS)
        self.segments = SegmentFrames(frames)
        self.backbone, width = _image_backbone(arch, head, pretrained)
        conv = self.backbone.get_submodule(stem)
        fused = nn.Conv2d(3 * frames, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                          bias=conv.bias is not None)
        with torch.no_grad():  # channel c·frames + f of the stacked input is channel c of frame f
            fused.weight.copy_(conv.weight.repeat_interleave(frames, dim=1) / frames)
            if conv.bias is not None:
                fused.bias.copy_(conv.bias)
        _replace(self.backbone, stem, fused)
        self.heads = TwoHeads(width, num_classes)
        self.new_layers = ("heads",)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.backbone(self.renormalize(self.segments(x)).flatten(1, 2)))


# ----------------------------------------------------------------------------- teachers

# arch: (classification layer, declared clip (C, T, H, W), smallest clip it accepts, input statistics, what)
VIDEO_TEACHERS = {
    "r3d_18": ("fc", (3, 16, 112, 112), (3, 8, 32, 32), KINETICS_STATS, "ResNet3D-18"),
    "mc3_18": ("fc", (3, 16, 112, 112), (3, 8, 32, 32), KINETICS_STATS, "mixed-convolution ResNet-18 (MC3)"),
    "r2plus1d_18": ("fc", (3, 16, 112, 112), (3, 8, 32, 32), KINETICS_STATS, "R(2+1)D-18"),
    # S3D ends in a fixed 2x7x7 average pool: at least 14 frames at 224x224 (its weights were evaluated on 128).
    "s3d": ("classifier.1", (3, 16, 224, 224), (3, 14, 224, 224), KINETICS_STATS, "S3D"),
    # MViT's positional embeddings fix the clip to exactly 16x224x224.
    "mvit_v1_b": ("head.1", (3, 16, 224, 224), (3, 16, 224, 224), MVIT_STATS, "MViT-B (v1)"),
    "mvit_v2_s": ("head.1", (3, 16, 224, 224), (3, 16, 224, 224), MVIT_STATS, "MViTv2-S"),
    # Video Swin pads to its 8x7x7 windows: any clip works (its weights were evaluated on 32 frames).
    "swin3d_t": ("head", (3, 16, 224, 224), (3, 2, 32, 32), IMAGENET_STATS, "Video Swin-T"),
    "swin3d_s": ("head", (3, 16, 224, 224), (3, 2, 32, 32), IMAGENET_STATS, "Video Swin-S"),
    "swin3d_b": ("head", (3, 16, 224, 224), (3, 2, 32, 32), IMAGENET_STATS, "Video Swin-B"),
}


def _video_teacher(arch: str, head: str, stats):
    def build(num_classes: int, pretrained: Pretrained | None = None) -> nn.Module:
        return VideoClassifier(arch, head, num_classes, stats, pretrained)

    return build


for _arch, (_head, _shape, _smallest, _stats, _what) in VIDEO_TEACHERS.items():
    register_model(
        _arch, "teacher", _shape,
        f"torchvision {_what}, from scratch or Kinetics-400 weights (KINETICS400_V1), "
        f"{_shape[1]}x{_shape[2]}x{_shape[3]} clips",
        min_input_shape=_smallest, mean=_stats[0], std=_stats[1], weights_arch=_arch,
    )(_video_teacher(_arch, _head, _stats))


# ----------------------------------------------------------------------------- students

# name: (arch, classification layer, first convolution for early fusion or None, what)
IMAGE_STUDENTS = {
    "mobilenet_v3_small_tsn": ("mobilenet_v3_small", "classifier.3", None, "MobileNetV3-Small"),
    "resnet18_tsn": ("resnet18", "fc", None, "ResNet-18"),
    "resnet18_fusion": ("resnet18", "fc", "conv1", "ResNet-18"),
}


def _image_student(arch: str, head: str, stem: str | None):
    def build(num_classes: int, pretrained: Pretrained | None = None, frames: int = 4) -> nn.Module:
        if stem is None:
            return SegmentStudent(arch, head, num_classes, frames, pretrained)
        return StackedFramesStudent(arch, head, stem, num_classes, frames, pretrained)

    return build


for _name, (_arch, _head, _stem, _what) in IMAGE_STUDENTS.items():
    _how = "with 4 frames stacked as channels (early fusion)" if _stem else "on 4 frames, features averaged (TSN)"
    register_model(
        _name, "student", (3, 16, 112, 112),
        f"torchvision {_what} {_how}, from scratch or ImageNet weights (IMAGENET1K_V1)",
        min_input_shape=(3, 4, 32, 32), mean=IMAGENET_STATS[0], std=IMAGENET_STATS[1], weights_arch=_arch,
    )(_image_student(_arch, _head, _stem))
