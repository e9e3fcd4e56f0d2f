"""Pretrained weights, input statistics and fine-tuning of the torchvision-based models (cdlib.models.pretrained)."""

import json

import pytest
import torch

from cdlib.data.base import ClipBank
from cdlib.experiment.config import TrainConfig, profile_config
from cdlib.runtime.errors import ConfigError, WeightsError
from cdlib.models import (
    MEAN,
    STD,
    Renormalize,
    create_model,
    list_models,
    model_spec,
    parameter_groups,
    preprocess,
    weights_key,
)
from cdlib.experiment.train import set_determinism, train_model
from cdlib.models.pretrained import IMAGENET_STATS
from cdlib.models.weights import hub_file, torchvision_weights


def torchvision_net(arch, seed=0, **kwargs):
    from torchvision.models import get_model_builder

    torch.manual_seed(seed)
    return get_model_builder(arch)(weights=None, **kwargs)


@pytest.fixture
def no_download(monkeypatch, tmp_path):
    """An empty torch hub cache under tmp_path, and any download attempt fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def refuse(*args, **kwargs):
        raise AssertionError(f"tried to download {args[:1]}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_input_statistics_are_those_of_torchvisions_weights():
    from torchvision.models import get_model_weights

    for name in list_models():
        spec = model_spec(name)
        if spec.weights_arch is None:
            assert (spec.mean, spec.std) == (MEAN, STD)
            continue
        transforms = get_model_weights(spec.weights_arch).DEFAULT.transforms()
        assert spec.mean == pytest.approx(tuple(transforms.mean)), name
        assert spec.std == pytest.approx(tuple(transforms.std)), name


def test_renormalize_gives_the_other_statistics_of_the_same_pixels():
    clips = torch.randint(0, 256, (2, 4, 5, 6, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = (torch.tensor(v).view(1, 3, 1, 1, 1) for v in IMAGENET_STATS)
    direct = (clips.permute(0, 4, 1, 2, 3).float() / 255 - mean) / std
    torch.testing.assert_close(Renormalize(*IMAGENET_STATS)(preprocess(clips)), direct, rtol=0, atol=1e-5)
    same = Renormalize(MEAN, STD)
    x = preprocess(clips)
    assert same.identity and same(x) is x


def test_teacher_loads_a_state_dict_file_and_gets_a_new_head(tmp_path):
    net = torchvision_net("mc3_18", seed=1)  # a 400-class head, like the Kinetics file
    path = tmp_path / "mc3_18_kinetics.pth"
    torch.save(net.state_dict(), path)
    torch.manual_seed(2)
    model = create_model("mc3_18", num_classes=7, weights=str(path))
    loaded = model.net.state_dict()
    for key, value in net.state_dict().items():
        if key.startswith("fc."):
            continue
        assert torch.equal(loaded[key], value), key
    assert loaded["fc.weight"].shape == (7, 512)
    # a training checkpoint ({"model": ...}) saved from DistributedDataParallel ("module." prefix) loads the same
    wrapped = tmp_path / "checkpoint.pt"
    torch.save({"model": {f"module.{k}": v for k, v in net.state_dict().items()}, "epoch": 3}, wrapped)
    again = create_model("mc3_18", num_classes=7, weights=str(wrapped)).net.state_dict()
    assert torch.equal(again["layer4.1.conv2.0.weight"], net.state_dict()["layer4.1.conv2.0.weight"])


def test_stacked_frames_student_answers_a_still_clip_like_its_image_network(tmp_path):
    net = torchvision_net("resnet18", seed=3).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), path)
    model = create_model("resnet18_fusion", num_classes=5, weights=str(path)).eval()
    frame = torch.randint(0, 256, (2, 1, 48, 48, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    x = preprocess(frame.expand(2, 16, 48, 48, 3))  # 16 identical frames
    net.fc = torch.nn.Identity()
    with torch.no_grad():
        image = net(Renormalize(*IMAGENET_STATS)(x[:, :, :1])[:, :, 0])
        fused = model.backbone(model.renormalize(model.segments(x)).flatten(1, 2))
    torch.testing.assert_close(fused, image, rtol=1e-4, atol=1e-4)


def test_segment_student_loads_its_image_network(tmp_path):
    net = torchvision_net("mobilenet_v3_small", seed=5)
    path = tmp_path / "mobilenet.pth"
    torch.save(net.state_dict(), path)
    model = create_model("mobilenet_v3_small_tsn", num_classes=5, weights=str(path))
    assert torch.equal(model.backbone.features[3].block[0][0].weight, net.features[3].block[0][0].weight)
    assert isinstance(model.backbone.classifier[3], torch.nn.Identity)


def test_missing_torchvision_weights_name_the_file_and_where_to_put_it(no_download):
    with pytest.raises(WeightsError) as error:
        create_model("r2plus1d_18", num_classes=5, weights="KINETICS400_V1")
    message = str(error.value)
    assert "r2plus1d_18-91a641e6.pth" in message
    assert str(no_download) in message
    assert "https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth" in message
    assert not no_download.exists() or not any(no_download.iterdir())


def test_a_published_file_in_the_hub_cache_loads_without_network(no_download, monkeypatch):
    import hashlib
    import types

    from cdlib.models import weights

    net = torchvision_net("mc3_18", seed=6)
    no_download.mkdir(parents=True)
    staged = no_download / "staged.pth"
    torch.save(net.state_dict(), staged)
    prefix = hashlib.sha256(staged.read_bytes()).hexdigest()[:8]
    staged.rename(no_download / f"mc3_18-{prefix}.pth")  # named like torchvision's files: <arch>-<sha256 prefix>.pth
    url = f"https://download.pytorch.org/models/mc3_18-{prefix}.pth"
    # torchvision's WeightsEnum.get_state_dict is load_state_dict_from_url(self.url, ...)
    member = types.SimpleNamespace(name="KINETICS400_V1", url=url,
                                   get_state_dict=lambda **kwargs: torch.hub.load_state_dict_from_url(url, **kwargs))
    monkeypatch.setattr(weights, "torchvision_weights", lambda arch, name: member)
    model = create_model("mc3_18", num_classes=7, weights="KINETICS400_V1")
    assert torch.equal(model.net.layer1[0].conv1[0].weight, net.layer1[0].conv1[0].weight)


def test_a_damaged_file_in_the_hub_cache_is_an_error_naming_it(no_download):
    member = torchvision_weights("mobilenet_v3_small", "IMAGENET1K_V1")
    no_download.mkdir(parents=True)
    file = no_download / "mobilenet_v3_small-047dcff4.pth"
    assert hub_file(member) == file
    torch.save(torchvision_net("mobilenet_v3_small").state_dict(), file)  # the right layers, not the published bytes
    with pytest.raises(WeightsError, match="mobilenet_v3_small-047dcff4.pth"):
        create_model("mobilenet_v3_small_tsn", num_classes=5, weights="IMAGENET1K_V1")


def test_unusable_weights_are_errors_naming_them(tmp_path):
    with pytest.raises(WeightsError, match="KINETICS400_V1"):  # lists the names that exist
        create_model("r3d_18", num_classes=5, weights="IMAGENET1K_V1")
    with pytest.raises(WeightsError, match="c3d_small"):
        create_model("c3d_small", num_classes=5, weights="KINETICS400_V1")
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(WeightsError, match="nowhere.pth"):
        create_model("r3d_18", num_classes=5, weights=str(missing))
    other = tmp_path / "resnet18.pth"
    torch.save(torchvision_net("resnet18").state_dict(), other)
    with pytest.raises(WeightsError, match="resnet18.pth.*do not fit"):
        create_model("mc3_18", num_classes=5, weights=str(other))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pt"):
        create_model("mc3_18", num_classes=5, weights=str(junk))


def test_weights_key_the_artifacts(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"a": torch.zeros(2)}, path)
    first = weights_key("r3d_18", str(path))
    torch.save({"a": torch.ones(2)}, path)
    assert weights_key("r3d_18", str(path)) != first
    assert weights_key("r3d_18", "") == ""
    assert weights_key("r3d_18", "DEFAULT") == weights_key("r3d_18", "KINETICS400_V1")

    from cdlib.experiment.students import student_spec, teacher_spec

    ci = profile_config("ci")
    assert "weights" not in teacher_spec(ci) and "weights" not in student_spec(ci, "cd")
    ucf = profile_config("ucf101")
    assert teacher_spec(ucf)["weights"] != teacher_spec(ucf.replace(teacher_weights=str(path)))["weights"]
    assert student_spec(ucf, "cd")["weights"].endswith("mobilenet_v3_small-047dcff4.pth")


def test_parameter_groups_split_the_backbone_from_the_new_layers():
    model = create_model("resnet18_fusion", num_classes=5)
    backbone, new = parameter_groups(model, backbone_lr_factor=0.1)
    assert backbone["lr_factor"] == 0.1 and new["lr_factor"] == 1.0
    assert {id(p) for p in new["params"]} == {id(p) for p in model.heads.parameters()}
    assert len(backbone["params"]) + len(new["params"]) == len(list(model.parameters()))
    # at factor 1 one group in the model's own order, so that training of the small models is unchanged
    for name in ("resnet18_fusion", "c3d_small"):
        model = create_model(name, num_classes=5)
        (group,) = parameter_groups(model, 1.0)
        assert group["params"] == list(model.parameters()) and group["lr_factor"] == 1.0
    with pytest.raises(ConfigError, match="no pretrained backbone"):
        parameter_groups(create_model("c3d_small", num_classes=5), 0.1)


def test_training_moves_a_backbone_at_factor_zero_not_at_all():
    g = torch.Generator().manual_seed(0)
    bank = ClipBank(
        clips=torch.randint(0, 256, (16, 4, 32, 32, 3), dtype=torch.uint8, generator=g),
        labels=torch.arange(16) % 2, video=torch.arange(16), position=torch.zeros(16, dtype=torch.long),
        informative=torch.full((16,), -1, dtype=torch.int8), num_classes=2, class_names=["a", "b"],
    )
    set_determinism(1)
    torch.manual_seed(0)
    model = create_model("resnet18_tsn", num_classes=2)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}

    def objective(outputs, idx):
        return torch.nn.functional.cross_entropy(outputs[0], bank.labels[idx]), {}

    train_model(model, bank, objective, TrainConfig(epochs=1, batch_size=8, lr=1e-2, backbone_lr_factor=0.0), seed=0)
    for name, p in model.named_parameters():
        moved = not torch.equal(p, before[name])
        assert moved == name.startswith("heads.classifier"), name  # the score head gets no gradient from this loss


def test_the_ucf101_profile_prints(capsys):
    from cdlib.__main__ import main

    assert main(["config", "--profile", "ucf101"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg["teacher"], cfg["teacher_weights"]) == ("r2plus1d_18", "KINETICS400_V1")
    assert model_spec(cfg["student"]).role == "student" and cfg["student_weights"] == "IMAGENET1K_V1"
    assert (cfg["data"]["clip_length"], cfg["data"]["height"], cfg["data"]["width"]) == (16, 112, 112)
    assert cfg["data"]["source"].startswith("ucf101:") and cfg["data"]["source"].endswith(":1")
    assert cfg["teacher_train"]["backbone_lr_factor"] < 1


def test_parameter_groups_look_into_distributed_data_parallel(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        model = create_model("resnet18_tsn", num_classes=3)
        wrapped = torch.nn.parallel.DistributedDataParallel(model)
        backbone, new = parameter_groups(wrapped, backbone_lr_factor=0.5)
        assert {id(p) for p in new["params"]} == {id(p) for p in model.heads.parameters()}
    finally:
        dist.destroy_process_group()


def test_a_run_missing_its_weights_fails_before_touching_the_data(no_download, monkeypatch, tmp_path):
    from cdlib.experiment import clips, fitting, trained_models
    from cdlib.runtime.artifacts import ArtifactStore

    def no_data(*args, **kwargs):
        raise AssertionError("the data was loaded before the weights were checked")

    for module in (clips, fitting, trained_models):  # every module that reads the clips on the way to training
        for name in ("get_bank", "get_clips"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, no_data)
    store = ArtifactStore(tmp_path / "artifacts")
    cfg = profile_config("ci").replace(teacher="r3d_18", teacher_weights="KINETICS400_V1",
                                       student="resnet18_tsn", student_weights="IMAGENET1K_V1")
    with pytest.raises(WeightsError, match="r3d_18-b3b3357e.pth"):
        trained_models.get_teacher(cfg, store)
    with pytest.raises(WeightsError, match="resnet18-f37072fd.pth"):
        trained_models.get_student(cfg, "ce", store)
