"""The GPU-time estimate of a profile (cdlib.cli.estimate) and the README table it generates."""

import re

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cdlib.experiment.config import profile_config
from cdlib.cli.estimate import (
    README_END,
    README_START,
    REFERENCE_IMAGES_PER_S,
    GPU,
    Phase,
    _network_cost,
    data_size,
    estimate_markdown,
    flop_counter,
    hours,
    model_cost,
    reference_tflops,
    training_scaling,
    write_into_readme,
)
from cdlib.models import create_model
from cdlib.runtime.errors import ConfigError

PROJECT = __import__("pathlib").Path(__file__).resolve().parent.parent


def training_step_flops(module, x, counter):
    with counter as c:
        module(x).sum().backward()
    return c.get_total_flops()


def test_a_grouped_convolutions_backward_costs_twice_its_forward():
    for groups in (1, 8):
        conv = torch.nn.Conv2d(16, 16, 3, padding=1, groups=groups, bias=False)
        x = torch.randn(2, 16, 10, 10, requires_grad=True)  # both gradients: input and weight
        with FlopCounterMode(display=False) as c:
            conv(x)
        forward = c.get_total_flops()
        assert forward == 2 * 2 * 100 * 16 * (16 // groups) * 9
        assert training_step_flops(conv, x, flop_counter()) == 3 * forward
        if groups == 1:  # where torch's own formula is right, ours agrees with it
            assert training_step_flops(conv, x, FlopCounterMode(display=False)) == 3 * forward


def test_saved_activations_counted_on_meta_match_the_real_model():
    """Autograd's saved tensors, counted by tensor on the meta device, equal those counted by storage on real ones."""
    shape = (3, 8, 32, 32)
    meta = model_cost("c3d_small", shape, num_classes=8).activation_bytes
    model = create_model("c3d_small", num_classes=8).train()
    storages: dict[int, int] = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(torch.randn(2, *shape)).sum().backward()
    assert meta == pytest.approx(sum(storages.values()) / 2)


def test_training_step_flops_of_a_convnet_are_about_three_forward_passes():
    cost = model_cost("r2plus1d_18", (3, 16, 112, 112), num_classes=101)
    assert cost.forward_flops == pytest.approx(81.04e9, rel=1e-3)  # torchvision's 40.52 GMACs, 2 FLOPs each
    # the first convolution needs no input gradient, so a little under 3x
    assert 2.9 * cost.forward_flops < cost.train_flops < 3 * cost.forward_flops


def test_the_reference_throughput_is_resnet50s_training_flops_at_the_published_rate():
    from torchvision.models import resnet50

    with torch.device("meta"):
        net = resnet50(weights=None)
    forward, train, _, _ = _network_cost(net, (3, 224, 224))
    assert forward == pytest.approx(2 * 4.09e9, rel=0.01)  # ResNet-50's well-known 4.1 GMACs
    assert reference_tflops() == pytest.approx(train * 2470 / 1e12)
    assert 0.15 < reference_tflops() / 312 < 0.25  # a fifth of the A100's bf16 peak, as the docs say


def test_ucf101_sizes_follow_the_published_statistics():
    cfg = profile_config("ucf101")
    size = data_size(cfg)
    assert size.train_videos + size.val_videos == 9537 and size.test_videos == 3783
    assert size.val_videos == pytest.approx(0.15 * 9537)
    assert size.clips_per_video == pytest.approx(7.21 * 25 / 16 - 0.5)
    assert size.max_clips_per_video == 111  # 71.04 s at 25 fps in 16-frame clips
    assert data_size(cfg.replace(**{"data.source": "ucf101:/x:3"})).test_videos == 3696
    assert data_size(cfg.replace(**{"data.source": "ucf101:/x:/splits:2"})).description == "UCF101 split 2"
    with pytest.raises(ConfigError, match="all folds are three runs"):
        data_size(cfg.replace(**{"data.source": "ucf101:/x:all"}))
    synthetic = data_size(profile_config("ci"))
    assert (synthetic.train_videos, synthetic.clips_per_video) == (1200, 96 // 8)


def test_hours_scale_with_the_gpus_as_assumed():
    gpu = GPU("test", 100.0, "")
    train = Phase("train", 1e6, 100e12 * 3600, "train", 0.0)  # one hour of work on one GPU
    assert hours(train, gpu, 1) == (pytest.approx(1.0), False)
    assert hours(train, gpu, 8)[0] == pytest.approx(1 / (8 * training_scaling(8)))
    assert training_scaling(8) == pytest.approx(REFERENCE_IMAGES_PER_S[8] / (8 * REFERENCE_IMAGES_PER_S[1]))
    shard = Phase("outputs", 1e6, 100e12 * 3600, "shard", 0.0)
    assert hours(shard, gpu, 8)[0] == pytest.approx(1 / 8)
    one = Phase("timing", 1e6, 100e12 * 3600, "one", 0.0)
    assert hours(one, gpu, 8)[0] == pytest.approx(1.0)
    loading = Phase("students", 1e6, 1.0, "train", 8000 * 3600 * 2)  # two hours of frames at 8000 frames/s
    assert hours(loading, gpu, 1, loader_fps=8000) == (pytest.approx(2.0), True)
    assert hours(loading, gpu, 8, loader_fps=8000)[0] == pytest.approx(2.0 / 8)


def test_estimate_table_lists_every_phase_and_the_weight_files():
    text = estimate_markdown(profile_config("ucf101"), tflops=50)
    assert "r2plus1d_18-91a641e6.pth" in text and "mobilenet_v3_small-047dcff4.pth" in text
    assert "| 1x GPU | 8x GPU |" in text and "GPU 50 TFLOP/s" in text
    assert len(re.findall(r"^\| (teacher|students|benchmark)", text, re.M)) == 8  # 8: the teacher features of frame_exit


def test_the_estimate_counts_only_the_students_and_policies_of_bench_policies():
    full = estimate_markdown(profile_config("ucf101"), tflops=50)
    some = estimate_markdown(profile_config("ucf101").replace(**{"bench.policies": "cd_gate"}), tflops=50)
    assert "students (4): train" in full and "cd_da student" in full
    assert "students (1): train" in some and "cd_da student" not in some
    points = [int(re.search(r"timing of (\d+) operating points", text)[1]) for text in (full, some)]
    assert points[1] < points[0]


def test_readme_holds_the_current_estimate():
    readme = (PROJECT / "README.md").read_text()
    block = readme.split(README_START + "\n", 1)[1].split(README_END, 1)[0]
    assert block == estimate_markdown(profile_config("ucf101")), (
        "README's estimate is stale: run python -m cdlib estimate --profile ucf101 --readme README.md")


def test_write_into_readme_replaces_only_the_block(tmp_path):
    path = tmp_path / "README.md"
    path.write_text(f"intro\n{README_START}\nold\n{README_END}\noutro\n")
    write_into_readme(path, "new\n")
    assert path.read_text() == f"intro\n{README_START}\nnew\n{README_END}\noutro\n"
