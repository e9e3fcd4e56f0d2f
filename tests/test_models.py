import pytest
import torch

from cdlib.cost import flops_per_clip
from cdlib.errors import ConfigError
from cdlib.models import MEAN, STD, create_model, inference_module, list_models, model_spec, preprocess


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_runs_at_its_declared_shape(name):
    spec = model_spec(name)
    torch.manual_seed(0)
    model = create_model(name, num_classes=5).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *spec.input_shape))
    if spec.role == "student":
        logits, score_logit = out
        assert score_logit.shape == (2,)
        score = torch.sigmoid(score_logit)
        assert ((score > 0) & (score < 1)).all()
    else:
        logits = out
    assert logits.shape == (2, 5)
    assert torch.isfinite(logits).all()


def test_registry_has_teachers_and_students_including_torchvision_resnets():
    teachers, students = list_models("teacher"), list_models("student")
    assert {"r3d_18", "mc3_18", "r2plus1d_18", "c3d_small"} <= set(teachers)
    assert "student_tiny" in students
    assert not set(teachers) & set(students)


def test_unknown_model_is_rejected_by_name():
    with pytest.raises(ConfigError, match="no_such_net"):
        create_model("no_such_net", num_classes=3)


def test_ci_student_costs_at_most_a_tenth_of_the_ci_teacher():
    from cdlib.config import profile_config

    cfg = profile_config("ci")
    shape = (3, cfg.data.clip_length, cfg.data.height, cfg.data.width)
    teacher = flops_per_clip(create_model(cfg.teacher, num_classes=8), shape)
    student = flops_per_clip(create_model(cfg.student, num_classes=8), shape)
    assert 0 < student <= teacher / 10


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


@pytest.mark.parametrize("name", list_models())
def test_inference_module_gives_the_eager_outputs_and_leaves_the_model_alone(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5).eval()
    with torch.no_grad():  # nonzero batch-norm statistics, so that folding them into the convolutions matters
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    x = torch.randn(3, 3, 8, 32, 32)
    as_tuple = lambda out: out if isinstance(out, tuple) else (out,)  # noqa: E731
    with torch.no_grad():
        eager = as_tuple(model(x))
        frozen = inference_module(model)
        for batch in (x[1:2], x):
            for got, want in zip(as_tuple(frozen(batch)), eager):
                torch.testing.assert_close(got, want[1:2] if len(batch) == 1 else want, rtol=1e-4, atol=1e-4)
        for again, before in zip(as_tuple(model(x)), eager):
            assert torch.equal(again, before)
