"""The small models of the synthetic data (CI and full profiles), trained from scratch on a CPU.

Teachers are 3D CNNs; students are two-headed (class logits and a confidence
score logit) and see a cheap view of the clip (:func:`_cheap_view`: fewer frames,
lower resolution) inside their own ``forward``, so that teacher and student read
the same clips and the FLOPs counted for a student include that reduction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cdlib.models.core import register_model


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

    def stacked_frames(self, x: torch.Tensor) -> torch.Tensor:
        """Clips ``[B, C, T, H, W]`` -> every ``frame_stride``-th frame average-pooled by ``spatial_factor``, the
        frames stacked as channels: ``[B, C·T', H', W']``, channel ``c·T' + t``, in ``channels_last`` memory format.

        The same values as ``_cheap_view(x, ...).flatten(1, 2)``, bit for bit, written channels-last: on the 2
        cores here the 2D convolutions, batch norms and above all the max-pools run a training step of the
        student 1.3 times faster on channels-last images than on contiguous ones (a max-pool of the first
        block's output took 3.1 ms contiguous and 0.2 ms channels-last, one thread), and gathering the frames
        into channels-last planes before pooling takes 1.4 ms for 64 clips where pooling the clips first took 3.5.
        """
        x = x[:, :, :: self.frame_stride]
        b, c, t, h, w = x.shape
        stacked = x.permute(0, 3, 4, 1, 2).reshape(b, h, w, c * t).permute(0, 3, 1, 2)
        return F.avg_pool2d(stacked, self.spatial_factor) if self.spatial_factor > 1 else stacked

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(self.stacked_frames(x))
        return self.classifier(features), self.score_head(features).squeeze(-1)


@register_model("c3d_small", "teacher", (3, 8, 32, 32), "4-block 3D CNN teacher for the synthetic data (CI profile)")
def c3d_small(num_classes: int, **kwargs) -> nn.Module:
    return C3DSmall(num_classes, **kwargs)


@register_model("c3d_wide", "teacher", (3, 8, 32, 32), "wider 4-block 3D CNN teacher (--set teacher=c3d_wide)")
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
