"""The context student (cdlib.method.context): shapes, FLOPs, padding, the listwise loss, its start as the CD student,
whole-video prediction and timing paths, and that its training reads the train split only."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cdlib.data.base import ClipBank
from cdlib.experiment import clips, distance_student, fitting, trained_models
from cdlib.experiment import context_student as context_student_module  # cdlib.method.context has context_student
from cdlib.experiment.config import profile_config
from cdlib.experiment.train import predict
from cdlib.method.context import TEMPORAL_MODULES, context_student, listwise_loss, pad_videos
from cdlib.method.cost import flops_per_clip
from cdlib.models import create_model, inference_module, preprocess
from cdlib.runtime.artifacts import ArtifactStore

SHAPE = (3, 8, 32, 32)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    yield


def _clips(count: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (count, 8, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _perturbed(module: str) -> torch.nn.Module:
    """A context student on a random CI student, its temporal module moved off its zero start."""
    torch.manual_seed(0)
    student = create_model("student_fusion", num_classes=5).eval()
    model = context_student(student, module, 16, dropout=0.0)
    with torch.no_grad():
        for parameter in model.heads.temporal.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model.eval()


@pytest.mark.parametrize("module", TEMPORAL_MODULES.names())
def test_before_training_the_context_student_is_the_cd_student(module):
    torch.manual_seed(0)
    student = create_model("student_fusion", num_classes=5).eval()
    model = context_student(student, module, 16)
    x = preprocess(_clips(7))
    with torch.no_grad():
        logits, score = model(x)
        expected_logits, expected_score = student(x)
    assert logits.shape == (7, 5) and score.shape == (7,)
    torch.testing.assert_close(logits, expected_logits)
    torch.testing.assert_close(score, expected_score)


@pytest.mark.parametrize("module", TEMPORAL_MODULES.names())
def test_videos_in_one_batch_give_what_each_gives_alone(module):
    model = _perturbed(module)
    first, second = preprocess(_clips(6, 1)), preprocess(_clips(3, 2))
    with torch.no_grad():
        together = model(torch.cat([first, second]), [6, 3])
        alone = [model(first), model(second)]
    for i in range(2):
        torch.testing.assert_close(together[i], torch.cat([alone[0][i], alone[1][i]]), atol=1e-5, rtol=1e-5)
    # videos of one length take the path without padding: the same as each alone too
    third = preprocess(_clips(6, 4))
    with torch.no_grad():
        equal = model(torch.cat([first, third]), [6, 6])
        expected = [torch.cat([a, b]) for a, b in zip(alone[0], model(third))]
    for got, want in zip(equal, expected):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # and the context is real: a clip's outputs change when another clip of its video changes
    changed = first.clone()
    changed[0] = 0
    with torch.no_grad():
        assert not torch.allclose(model(changed)[1][1:], alone[0][1][1:])


@pytest.mark.parametrize("module", TEMPORAL_MODULES.names())
def test_the_frozen_inference_module_gives_the_eager_outputs(module):
    model = _perturbed(module)
    x = preprocess(_clips(9, 3))
    frozen = inference_module(model)
    with torch.no_grad():
        for sizes in (None, [5, 4]):
            eager, timed = (model(x, sizes), frozen(x, sizes)) if sizes else (model(x), frozen(x))
            for a, b in zip(eager, timed):
                torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_the_gru_without_padding_skips_packing_and_gives_the_packed_outputs_exactly():
    torch.manual_seed(0)
    context = TEMPORAL_MODULES.get("gru")(16, 8)
    h, mask = torch.randn(3, 5, 16), torch.ones(3, 5, dtype=torch.bool)
    packed = nn.utils.rnn.pack_padded_sequence(h, mask.sum(1), batch_first=True, enforce_sorted=False)
    out, _ = nn.utils.rnn.pad_packed_sequence(context.gru(packed)[0], batch_first=True, total_length=5)
    with torch.no_grad():
        assert torch.equal(context(h, mask), context.project(out))


def test_flops_count_the_temporal_module_and_stay_under_a_tenth_of_the_teacher():
    teacher = flops_per_clip(create_model("c3d_small", num_classes=8), SHAPE)
    student = create_model("student_fusion", num_classes=8)
    per_clip = flops_per_clip(student, SHAPE)
    width, hidden, clips = 64, 64, 12
    conv = flops_per_clip(context_student(student, "conv", hidden), SHAPE, clips)
    # two kernel-3 convolutions D -> H -> D over the clip axis, 2 FLOPs per multiply-add
    assert conv - per_clip == 2 * 3 * width * hidden * 2
    for module in TEMPORAL_MODULES.names():
        total = flops_per_clip(context_student(student, module, hidden), SHAPE, clips)
        assert per_clip < total <= teacher / 10, module


def test_listwise_loss_against_a_direct_computation():
    torch.manual_seed(0)
    logits, target = torch.randn(3, 5), torch.rand(3, 5)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2, [True] + [False] * 4])
    temperature = 0.2
    expected = 0.0
    for v in range(3):
        n = int(mask[v].sum())
        wanted = torch.softmax(target[v, :n] / temperature, 0)
        expected += -(wanted * torch.log_softmax(logits[v, :n], 0)).sum() / 3
    assert float(listwise_loss(logits, target, mask, temperature)) == pytest.approx(float(expected), rel=1e-6)
    # padded entries change nothing
    assert float(listwise_loss(logits.masked_fill(~mask, 50.0), target.masked_fill(~mask, 9.0), mask, temperature)) \
        == pytest.approx(float(expected), rel=1e-6)


def test_pad_videos_and_back():
    values = torch.arange(12.0).view(6, 2)
    padded, mask = pad_videos(values, [1, 3, 2])
    assert padded.shape == (3, 3, 2) and mask.tolist() == [[True, False, False], [True, True, True], [True, True, False]]
    torch.testing.assert_close(padded[mask], values)


def test_predict_runs_whole_videos_through_a_video_context_model():
    model = _perturbed("gru")
    sizes = [4, 7, 2, 5]
    clips = _clips(sum(sizes), 4)
    video = torch.repeat_interleave(torch.arange(4), torch.tensor(sizes))
    bank = ClipBank(clips=clips, labels=torch.zeros(len(video), dtype=torch.long), video=video,
                    position=torch.cat([torch.arange(n) for n in sizes]),
                    informative=torch.full((len(video),), -1, dtype=torch.int8), num_classes=5,
                    class_names=list("abcde"))
    out = predict(model, bank, batch_size=8)  # 8 clips: videos 0 alone, 1 alone, 2 and 3 together
    with torch.no_grad():
        expected = [model(preprocess(part)) for part in torch.split(clips, sizes)]
    torch.testing.assert_close(out["logits"], torch.cat([e[0] for e in expected]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["score_logit"], torch.cat([e[1] for e in expected]), atol=1e-5, rtol=1e-5)


TINY = {
    "data.num_classes": 3, "data.height": 16, "data.width": 16, "data.video_length": 32,
    "data.num_train": 12, "data.num_val": 6, "data.num_test": 6,
    "teacher_train.epochs": 1, "teacher_train.batch_size": 16,
    "student_train.epochs": 1, "student_train.batch_size": 16, "context.epochs": 2,
}


def test_the_context_student_trains_on_the_train_split_only_and_is_cached(tmp_path, monkeypatch):
    cfg = profile_config("ci", 0).replace(**TINY)
    store = ArtifactStore(tmp_path)
    trained_models.get_student(cfg, "cd", store)  # trained first: its training reads val for its history
    read = []
    # every module on the way from the context student to the data, where each looks these names up
    for module in (context_student_module, distance_student, trained_models, fitting, clips):
        for name in ("get_features", "get_outputs", "get_clips"):
            if not hasattr(module, name):
                continue
            original = getattr(module, name)

            def recording(c, *args, original=original, name=name, **kwargs):
                split = next(a for a in args if a in ("train", "val", "test"))
                read.append((name, split))
                return original(c, *args, **kwargs)

            monkeypatch.setattr(module, name, recording)
    trained = context_student_module.get_context_student(cfg, store)
    assert read and {split for _, split in read} == {"train"}, read
    assert [h["epoch"] for h in trained.history] == [1, 2]
    assert math.isfinite(trained.history[-1]["train_rank"])
    again = context_student_module.get_context_student(cfg, store)
    for a, b in zip(trained.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a, b)
    # the outputs the benchmark evaluates come from the model through whole-video prediction
    monkeypatch.undo()
    outputs = trained_models.get_outputs(cfg, "cd_ctx", "test", store)
    bank = clips.get_clips(cfg, "test", store)
    with torch.no_grad():
        first = trained.model(preprocess(bank.video_clips(0)))
    torch.testing.assert_close(outputs.score_logit[bank.video == 0], first[1], atol=1e-5, rtol=1e-5)
