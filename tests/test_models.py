import pytest
import torch

from cdlib.cli.estimate import model_cost
from cdlib.experiment.config import PROFILES, profile_config
from cdlib.method.cost import flops_per_clip
from cdlib.runtime.errors import ConfigError
from cdlib.models import (
    MEAN,
    STD,
    create_meta_model,
    create_model,
    inference_module,
    list_models,
    model_spec,
    preprocess,
)

# Models checked on PyTorch's meta device only (their layers built and run at the declared clip shape, shapes
# checked, no numbers computed), and why: a real build or forward pass costs too much CPU for a unit test. Their
# wrapper classes are checked on real numbers through their smaller siblings (r3d_18, swin3d_t).
SHAPE_ONLY = {
    "mvit_v1_b": "accepts 16x224x224 clips only: 141 GFLOPs, about 10 s a clip on 2 cores",
    "mvit_v2_s": "accepts 16x224x224 clips only: 128 GFLOPs, about 10 s a clip on 2 cores",
    "s3d": "needs at least 14x224x224: 31 GFLOPs, about 5 s a clip on 2 cores",
    "swin3d_s": "randomly initialising its 50 M parameters takes about 15 s on 2 cores",
    "swin3d_b": "randomly initialising its 88 M parameters takes about 15 s on 2 cores",
}
NUMERIC = [name for name in list_models() if name not in SHAPE_ONLY]


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_runs_at_its_declared_shape(name):
    spec = model_spec(name)
    model = create_meta_model(name, num_classes=5).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, *spec.input_shape, device="meta"))
    if spec.role == "student":
        assert isinstance(out, tuple) and len(out) == 2
        logits, score_logit = out
        assert score_logit.shape == (2,)
    else:
        logits = out
    assert logits.shape == (2, 5)


@pytest.mark.parametrize("name", NUMERIC)
def test_every_registered_model_computes_on_its_smallest_clip(name):
    spec = model_spec(name)
    torch.manual_seed(0)
    model = create_model(name, num_classes=5).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *spec.min_input_shape))
    if spec.role == "student":
        logits, score_logit = out
        assert score_logit.shape == (2,)
        score = torch.sigmoid(score_logit)
        assert ((score > 0) & (score < 1)).all()
    else:
        logits = out
    assert logits.shape == (2, 5)
    assert torch.isfinite(logits).all()


def test_registry_has_teachers_and_students_including_torchvision_networks():
    teachers, students = list_models("teacher"), list_models("student")
    assert {"r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v1_b", "mvit_v2_s", "swin3d_t", "swin3d_s", "swin3d_b",
            "c3d_small"} <= set(teachers)
    assert {"student_tiny", "mobilenet_v3_small_tsn", "resnet18_tsn", "resnet18_fusion"} <= set(students)
    assert not set(teachers) & set(students)
    assert set(SHAPE_ONLY) <= set(list_models())


def test_unknown_model_is_rejected_by_name():
    with pytest.raises(ConfigError, match="no_such_net"):
        create_model("no_such_net", num_classes=3)


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profiles_student_costs_at_most_a_tenth_of_its_teacher(profile):
    cfg = profile_config(profile)
    shape = (3, cfg.data.clip_length, cfg.data.height, cfg.data.width)
    teacher = model_cost(cfg.teacher, shape, num_classes=8).forward_flops
    student = model_cost(cfg.student, shape, num_classes=8).forward_flops
    assert 0 < student <= teacher / 10


@pytest.mark.parametrize("name", ["c3d_small", "student_fusion", "resnet18_fusion"])
def test_flops_counted_on_the_meta_device_equal_those_of_the_real_model(name):
    shape = model_spec(name).min_input_shape
    assert model_cost(name, shape, num_classes=8).forward_flops == flops_per_clip(create_model(name, num_classes=8), shape)


def test_flop_counter_counts_a_known_convolution():
    conv = torch.nn.Conv3d(3, 4, kernel_size=3, padding=1, bias=False)
    # 2 FLOPs per multiply-add: out positions * out channels * (in channels * kernel volume)
    assert flops_per_clip(conv, (3, 2, 5, 5)) == 2 * (2 * 5 * 5) * 4 * (3 * 27)


def test_preprocess_layout_and_scale():
    clips = torch.zeros(2, 8, 6, 7, 3, dtype=torch.uint8)
    clips[..., 0] = 255
    x = preprocess(clips)
    assert x.shape == (2, 3, 8, 6, 7)
    assert x[:, 0].min() > 2 and x[:, 1].max() < -1  # red channel high, green low after normalising


def test_preprocess_matches_the_formula():
    clips = torch.randint(0, 256, (2, 4, 5, 6, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = torch.tensor(MEAN), torch.tensor(STD)
    direct = ((clips.float() / 255 - mean) / std).permute(0, 4, 1, 2, 3)
    x = preprocess(clips)
    torch.testing.assert_close(x, direct, rtol=0, atol=1e-5)
    assert x.is_contiguous(memory_format=torch.channels_last_3d)


def test_the_fusion_students_stacked_frames_are_the_pooled_frames_as_channels():
    from cdlib.models.small import _cheap_view

    clips = torch.randint(0, 256, (3, 8, 12, 10, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x = preprocess(clips)
    for stride, factor in ((2, 2), (1, 1), (4, 2)):
        student = create_model("student_fusion", num_classes=3, frame_stride=stride, spatial_factor=factor)
        stacked = student.stacked_frames(x)
        direct = _cheap_view(x, stride, factor).flatten(1, 2)  # channel c·T' + t: channel c of frame t
        assert torch.equal(stacked, direct), (stride, factor)
        assert stacked.is_contiguous(memory_format=torch.channels_last)
    # stride 4, two frames kept: stacked channel 1·2 + 1 is channel 1 of frame 4, pooled over 2x2 pixels
    pooled = x[:, 1, 4].unfold(1, 2, 2).unfold(2, 2, 2).mean((3, 4))
    torch.testing.assert_close(student.stacked_frames(x)[:, 1 * 2 + 1], pooled, rtol=0, atol=1e-6)


# Freezing is checked on the small models and on one model of each torchvision wrapper class (VideoClassifier,
# SegmentStudent, StackedFramesStudent), the ucf101 profile's pair among them; each costs seconds of CPU.
FROZEN = [name for name in list_models() if model_spec(name).weights_arch is None] + [
    "r2plus1d_18", "mobilenet_v3_small_tsn", "resnet18_fusion"]


@pytest.mark.parametrize("name", FROZEN)
def test_inference_module_gives_the_eager_outputs_and_leaves_the_model_alone(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5).eval()
    with torch.no_grad():  # nonzero batch-norm statistics, so that folding them into the convolutions matters
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    x = torch.randn(3, *model_spec(name).min_input_shape)
    as_tuple = lambda out: out if isinstance(out, tuple) else (out,)  # noqa: E731
    with torch.no_grad():
        eager = as_tuple(model(x))
        frozen = inference_module(model)
        for batch in (x[1:2], x):
            for got, want in zip(as_tuple(frozen(batch)), eager):
                torch.testing.assert_close(got, want[1:2] if len(batch) == 1 else want, rtol=1e-4, atol=1e-4)
        for again, before in zip(as_tuple(model(x)), eager):
            assert torch.equal(again, before)
