"""FrameExit as a baseline policy (cdlib.method.frame_exit, cdlib.method.gating.frame_exit and its artifacts, cost and timing):
the visiting order, the gate's inputs and targets, the policy and its sweep against direct computations, the gate's
training (train split only, deterministic), and a tiny end-to-end benchmark whose timed sequential path decides as
the precomputed policy."""

from __future__ import annotations

import pytest
import torch

from cdlib.experiment import exit_gate
from cdlib.experiment.bench import run_benchmark
from cdlib.experiment.config import profile_config
from cdlib.experiment.evaluation import GATE_COST, collect_outputs, video_outputs
from cdlib.experiment.timing import TimedPipeline
from cdlib.method.frame_exit import ExitGate, exit_inputs, exit_scores, exit_targets, fit_exit_gate, visiting_order
from cdlib.method.gating import DEFAULT_EXIT_THRESHOLDS, Decision, VideoOutputs, frame_exit, get_policy, run_policy, sweep_policy
from cdlib.runtime.artifacts import ArtifactStore
from cdlib.runtime.errors import ConfigError
from test_bench import tiny_config as bench_tiny_config


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_thread):
    yield


# ----------------------------------------------------------------------------- the visiting order

ORDERS = {
    1: [0],
    2: [1, 0],
    3: [1, 0, 2],
    4: [2, 1, 3, 0],
    5: [2, 1, 4, 0, 3],
    6: [3, 1, 5, 0, 2, 4],
    7: [3, 1, 5, 0, 2, 4, 6],
    8: [4, 2, 6, 1, 3, 5, 7, 0],
    9: [4, 2, 7, 1, 3, 6, 8, 0, 5],
    12: [6, 3, 9, 1, 5, 8, 11, 0, 2, 4, 7, 10],
}


@pytest.mark.parametrize("n", sorted(ORDERS))
def test_visiting_order_small_n_written_out(n):
    order = visiting_order(n)
    assert order.dtype == torch.long and order.tolist() == ORDERS[n]


def _direct_order(n):
    """Level by level: every interval of one level, left to right, before the next level."""
    order, level = [], [(0, n)]
    while level:
        children = []
        for lo, hi in level:
            if lo < hi:
                mid = (lo + hi) // 2
                order.append(mid)
                children += [(lo, mid), (mid + 1, hi)]
        level = children
    return order


@pytest.mark.parametrize("n", range(0, 41))
def test_visiting_order_is_a_permutation_with_the_middle_first(n):
    order = visiting_order(n).tolist()
    assert sorted(order) == list(range(n))
    assert order == _direct_order(n)
    if n:
        assert order[0] == n // 2
    if n >= 4:  # then the middles of the two halves
        assert order[1:3] == [n // 4, (n // 2 + 1 + n) // 2]


def test_visiting_order_refuses_a_bad_n():
    for bad in (-1, 2.0, True):
        with pytest.raises(ConfigError, match="visiting_order"):
            visiting_order(bad)


# ----------------------------------------------------------------------------- gate inputs and targets

def test_exit_inputs_and_targets_against_a_loop():
    g = torch.Generator().manual_seed(3)
    n, d, k = 7, 5, 4
    features, logits = torch.randn(n, d, generator=g), torch.randn(n, k, generator=g) * 3
    order = visiting_order(n)
    inputs = exit_inputs(features, logits, order)
    assert inputs.shape == (n, d + k)
    for label in range(k):
        targets = exit_targets(logits, label, order)
        for t in range(1, n + 1):
            seen = order[:t].tolist()
            mean_f = torch.stack([features[i] for i in seen]).mean(0)
            mean_p = torch.stack([torch.softmax(logits[i], 0) for i in seen]).mean(0)
            torch.testing.assert_close(inputs[t - 1], torch.cat([mean_f, mean_p]))
            assert targets[t - 1] == float(int(mean_p.argmax()) == label)
    # the steps disagree on this video: a target that ignored them would fail the loop above
    predictions = {int(exit_inputs(features, logits, order)[t, d:].argmax()) for t in range(n)}
    assert len(predictions) > 1


def test_exit_scores_are_indexed_by_clip_not_by_step():
    g = torch.Generator().manual_seed(1)
    counts = [3, 5, 1]
    video = torch.repeat_interleave(torch.arange(3), torch.tensor(counts))
    features, logits = torch.randn(9, 6, generator=g), torch.randn(9, 3, generator=g)
    torch.manual_seed(0)
    gate = ExitGate(6, 3).eval()
    scores = exit_scores(gate, features, logits, video)
    start = 0
    for n in counts:
        clips = torch.arange(start, start + n)
        order = visiting_order(n)
        for t in range(1, n + 1):
            seen = clips[order[:t]]
            x = torch.cat([features[seen].mean(0), logits[seen].softmax(1).mean(0)])
            clip = int(clips[order[t - 1]])  # the clip visited at step t carries the score after step t
            torch.testing.assert_close(scores[clip], torch.sigmoid(gate(x)))
        start += n


# ----------------------------------------------------------------------------- the policy

class CountingTeacher:
    def __init__(self, logits):
        self.logits, self.calls = logits, []

    def __call__(self, indices):
        self.calls.append(indices.tolist())
        return self.logits[indices]


def _video(n=8, k=5, seed=0, exit_score=None, label=None):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g) * 3
    score = torch.rand(n, generator=g) if exit_score is None else exit_score
    label = int(torch.randint(0, k, (1,), generator=g)) if label is None else label
    return VideoOutputs(None, CountingTeacher(logits), label=label, num_clips=n, exit_score=score)


def test_frame_exit_stops_at_the_first_step_over_the_threshold():
    # n = 8, order 4, 2, 6, 1, 3, 5, 7, 0; scores in that order: 0.1, 0.3, 0.8, 0.2, 0.9, ...
    in_order = torch.tensor([0.1, 0.3, 0.8, 0.2, 0.9, 0.4, 0.95, 0.5])
    score = torch.empty(8)
    score[visiting_order(8)] = in_order
    for threshold, steps in [(0.0, 1), (0.1, 1), (0.3, 2), (0.5, 3), (0.8, 3), (0.85, 5), (0.9, 5), (0.92, 7),
                             (0.95, 7), (0.96, 8), (1.0, 8), (1.01, 8), (5.0, 8)]:
        video = _video(exit_score=score)
        decision = frame_exit(video, threshold)
        visited = sorted(visiting_order(8)[:steps].tolist())
        assert video.teacher.calls == [visited], threshold  # one call, ascending, the clips visited
        expected = torch.softmax(video.teacher.logits[visited], 1).mean(0)
        torch.testing.assert_close(decision.probs, expected)
        assert (decision.teacher_clips, decision.student_clips, decision.gate_steps) == (steps, 0, steps)


def test_a_threshold_above_one_visits_every_clip_and_is_the_dense_teacher():
    for seed in range(5):
        video = _video(n=6, seed=seed, exit_score=torch.ones(6))  # even certain scores: sigmoid < 1.01
        decision = frame_exit(video, 1.01)
        assert decision.teacher_clips == decision.gate_steps == 6
        torch.testing.assert_close(decision.probs, torch.softmax(video.teacher.logits, 1).mean(0))


def test_run_policy_counts_gate_steps_and_refuses_videos_without_exit_scores():
    videos = [_video(n=4 + seed % 3, seed=seed) for seed in range(20)]
    decisions = [frame_exit(_video(n=4 + seed % 3, seed=seed), 0.7) for seed in range(20)]
    result = run_policy("frame_exit", videos, 0.7)
    assert result["gate_steps_per_video"] == sum(d.gate_steps for d in decisions) / 20
    assert result["teacher_clips_per_video"] == result["gate_steps_per_video"]
    assert result["student_clips_per_video"] == 0
    assert result["accuracy"] == sum(d.prediction == v.label for d, v in zip(decisions, videos)) / 20
    assert run_policy("dense_teacher", videos, None)["gate_steps_per_video"] == 0
    bare = VideoOutputs(None, videos[0].teacher, label=1, num_clips=videos[0].num_clips)
    with pytest.raises(ConfigError, match="frame_exit: needs exit_score"):
        run_policy("frame_exit", [videos[0], bare], 0.7)
    with pytest.raises(ConfigError, match="frame_exit: needs exit_score"):
        frame_exit(bare, 0.7)
    with pytest.raises(ConfigError, match="threshold"):
        frame_exit(videos[0], float("nan"))
    with pytest.raises(ValueError, match="exit_score"):
        VideoOutputs(None, videos[0].teacher, label=1, num_clips=3, exit_score=torch.rand(4))
    assert Decision(torch.ones(2) / 2, 1, 0).gate_steps == 0


def test_the_sweep_equals_run_policy_at_every_threshold():
    videos = [_video(n=1 + seed % 9, seed=seed) for seed in range(60)]
    scores = torch.cat([v.exit_score for v in videos])
    # at 0 (exit after one clip), at videos' own scores (an exit is >=), between them, above 1 (never)
    thresholds = [0.0, *scores[:12].tolist(), float(scores.median()), 0.5, 0.99, 1.0, 1.01, 2.0]
    swept = sweep_policy("frame_exit", videos, thresholds)
    assert swept == [run_policy("frame_exit", videos, t) for t in thresholds]
    steps = [s["teacher_clips_per_video"] for s in swept]
    assert steps[0] == 1 and steps[-1] == sum(v.num_clips for v in videos) / 60
    assert len(set(steps)) > 5


def test_knob_values_and_the_config_field():
    spec = get_policy("frame_exit")
    assert spec.knob == "threshold" and spec.needs_exit_score and spec.student is None
    assert spec.knob_values(4, (0.5,), (1.0,), exit_thresholds=(0.3, 1.01)) == [0.3, 1.01]
    cfg = profile_config("ci", 0)
    assert cfg.bench.exit_thresholds == DEFAULT_EXIT_THRESHOLDS == tuple(spec.knob_values(4))
    assert cfg.replace(**{"bench.exit_thresholds": "0.6, 1.01"}).bench.exit_thresholds == (0.6, 1.01)
    with pytest.raises(ConfigError, match="bench.exit_thresholds"):
        cfg.replace(**{"bench.exit_thresholds": "-0.1"})
    with pytest.raises(ConfigError, match="bench.exit_thresholds"):
        cfg.replace(**{"bench.exit_thresholds": ""})
    assert not any(get_policy(name).needs_exit_score for name in ("dense_teacher", "cd_gate", "oracle"))


# ----------------------------------------------------------------------------- the gate's training

def _training_data(seed=0, videos=30, k=4, d=8):
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(2, 9, (videos,), generator=g)
    video = torch.repeat_interleave(torch.arange(videos), counts)
    labels = torch.randint(0, k, (videos,), generator=g)[video]
    logits = torch.randn(len(video), k, generator=g) * 2
    logits[torch.arange(len(video)), labels] += torch.rand(len(video), generator=g) * 3  # often right
    features = torch.randn(len(video), d, generator=g) * 5 + 2
    return features, logits, labels, video


def test_the_gate_training_is_deterministic_and_learns_the_target():
    data = _training_data()
    before = torch.random.get_rng_state()
    first, second = fit_exit_gate(*data, seed=3), fit_exit_gate(*data, seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)  # the global RNG is left alone
    assert not first.training
    assert first.state_dict().keys() == second.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    other = fit_exit_gate(*data, seed=4)
    assert not torch.equal(other.net[0].weight, first.net[0].weight)
    # it learned something: on its own training pairs its scores separate the targets better than chance
    from cdlib.method.calibration import auroc
    from cdlib.method.frame_exit import training_pairs

    inputs, targets = training_pairs(*data)
    with torch.no_grad():
        assert auroc(first(inputs), targets.bool()) > 0.7


def tiny_config(**overrides):
    """The benchmark tests' tiny config with FrameExit alone evaluated."""
    return bench_tiny_config(**{"bench.policies": "frame_exit", **overrides})


def test_the_gate_reads_the_train_split_only(tmp_path, monkeypatch):
    requested = []

    def recording(function):
        def call(cfg, *args, **kwargs):
            requested.append(args)
            return function(cfg, *args, **kwargs)
        return call

    for name in ("get_outputs", "get_teacher_features"):  # as the exit gate's module looks them up
        monkeypatch.setattr(exit_gate, name, recording(getattr(exit_gate, name)))
    cfg = tiny_config()
    gate = exit_gate.get_exit_gate(cfg, ArtifactStore(tmp_path))
    assert isinstance(gate, ExitGate) and not gate.training
    splits = {arg for args in requested for arg in args if arg in ("train", "val", "test")}
    assert requested and splits == {"train"}
    # so nothing the test split alone depends on keys the gate
    test_only = cfg.replace(**{"data.test_shift": 0.5, "data.num_test": 3})
    assert exit_gate.exit_gate_spec(test_only) == exit_gate.exit_gate_spec(cfg)
    assert exit_gate.exit_gate_spec(cfg.replace(seed=1)) != exit_gate.exit_gate_spec(cfg)


# ----------------------------------------------------------------------------- teacher features

def test_teacher_with_features_returns_the_teachers_logits_and_the_classifiers_input():
    from cdlib.models import create_model, inference_module

    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 32, 32)
    for name in ("c3d_small", "r3d_18"):
        teacher = create_model(name, num_classes=5).eval()
        wrapped = exit_gate.TeacherWithFeatures(teacher).eval()
        with torch.no_grad():
            logits, features = wrapped(x)
            torch.testing.assert_close(logits, teacher(x), atol=1e-5, rtol=1e-5)
            head = teacher.classifier if name == "c3d_small" else teacher.net.fc
            torch.testing.assert_close(head(features), logits, atol=1e-5, rtol=1e-5)
            frozen = inference_module(wrapped)  # TorchScript-able, as the timed pipeline freezes it
            torch.testing.assert_close(frozen(x)[0], logits, atol=1e-4, rtol=1e-4)
        assert features.shape == (2, head.in_features)
        assert isinstance(teacher.net.fc if name == "r3d_18" else teacher.classifier, torch.nn.Linear)  # unchanged
    with pytest.raises(ConfigError, match="teacher features"):
        exit_gate.TeacherWithFeatures(create_model("student_tiny", num_classes=5))


# ----------------------------------------------------------------------------- end to end

def test_the_benchmark_has_frame_exit_points_with_gate_steps_and_the_gate_flops(tiny_run):
    cfg, store, result = tiny_run
    assert list(result["policies"]) == ["dense_teacher", "oracle", "frame_exit"]
    gate = exit_gate.get_exit_gate(cfg, store)
    gate_flops = 2 * (gate.feature_dim + gate.num_classes) * 64 + 2 * 64
    assert result["cost"]["gflops_per_clip"][GATE_COST] == pytest.approx(gate_flops / 1e9)
    teacher_gflops = result["cost"]["teacher_gflops_per_clip"]
    points = result["policies"]["frame_exit"]
    assert [p["knob"] for p in points] == list(cfg.bench.exit_thresholds)
    test = collect_outputs(cfg, store, "test")
    videos = video_outputs(test["teacher"], None)
    assert all(v.exit_score is not None for v in videos)
    for p in points:
        direct = run_policy("frame_exit", videos, p["knob"])
        assert p["accuracy"] == direct["accuracy"]
        assert p["gate_steps_per_video"] == direct["gate_steps_per_video"] == p["teacher_clips_per_video"]
        assert p["gflops_per_video"] == pytest.approx(p["teacher_clips_per_video"] * teacher_gflops
                                                      + p["gate_steps_per_video"] * gate_flops / 1e9)
        assert "wall_s_per_video" in p
    never = points[-1]  # 1.01: every clip, the dense teacher's accuracy, plus the gate's cost
    assert never["teacher_clips_per_video"] == 4 and never["accuracy"] == result["policies"]["dense_teacher"][0]["accuracy"]
    assert all(p["gate_steps_per_video"] == 0 for name in ("dense_teacher", "oracle") for p in result["policies"][name])
    # a benchmark without frame_exit trains no gate and counts none
    assert GATE_COST not in run_benchmark(cfg.replace(**{"bench.policies": "uniform_k"}), store,
                                          timing=False)["cost"]["gflops_per_clip"]


def test_the_timed_sequential_path_decides_as_the_precomputed_policy(tiny_run):
    cfg, store, _ = tiny_run
    videos = video_outputs(collect_outputs(cfg, store, "test")["teacher"], None)
    scores = torch.cat([v.exit_score for v in videos]).unique().sort().values
    # thresholds halfway between the videos' scores: every exit step that occurs, each with the widest margin
    thresholds = [0.0, *((scores[1:] + scores[:-1]) / 2).tolist(), 1.01]
    pipeline = TimedPipeline(cfg, len(videos), store)
    spec = get_policy("frame_exit")
    steps_seen = set()
    for threshold in thresholds:
        expected = [frame_exit(v, threshold) for v in videos]
        alone = [pipeline.run_video(spec, threshold, v, torch.Generator()) for v in range(len(videos))]
        batched = pipeline.run_batch(spec, threshold, range(len(videos)), torch.Generator())
        for e, a, b in zip(expected, alone, batched):
            for timed in (a, b):
                assert (timed.teacher_clips, timed.student_clips, timed.gate_steps) == \
                    (e.teacher_clips, e.student_clips, e.gate_steps), threshold
                torch.testing.assert_close(timed.probs, e.probs, atol=1e-4, rtol=1e-4)
            steps_seen.add(e.teacher_clips)
    assert len(steps_seen) >= 2  # the thresholds make videos stop at different steps
