"""Gating policies: outputs against direct computations, exact cost counts, edge cases."""

import math

import pytest
import torch

from cdlib.runtime.errors import ConfigError
from cdlib.method.gating import (
    POLICIES,
    Decision,
    PolicySpec,
    VideoOutputs,
    cd_gate,
    cd_topk,
    dense_student,
    dense_teacher,
    get_policy,
    list_policies,
    oracle,
    random_k,
    run_policy,
    sampler_maxprob,
    sweep_policy,
    uniform_k,
)

THETAS = (0.5, 0.9, 1.01)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Policies work on tiny tensors; on a busy machine torch's per-op thread forks cost ms (see run_policy)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
PLAIN_MEAN_TOPK = ("uniform_k", "random_k", "sampler_maxprob", "sampler_kd")


def _video(n=12, k_classes=6, seed=0, label=None, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(n, k_classes, generator=g) * scale
    teacher = torch.randn(n, k_classes, generator=g) * scale
    score = torch.rand(n, generator=g)
    if label is None:
        label = int(torch.randint(0, k_classes, (1,), generator=g))
    exit_score = torch.rand(n, generator=g)  # drawn last: the other draws are those of before frame_exit
    return VideoOutputs.precomputed(student, teacher, score, label, exit_score)


class CountingTeacher:
    """Wraps teacher logits and records every call's indices."""

    def __init__(self, logits):
        self.logits = logits
        self.calls = []

    def __call__(self, indices):
        self.calls.append(indices.tolist())
        return self.logits[indices]


def _counted(video):
    teacher = CountingTeacher(video.teacher.logits)
    return VideoOutputs(video.student_logits, teacher, video.student_score, video.label, video.num_clips,
                        exit_score=video.exit_score), teacher


def _run(name, video, knob, **kwargs):
    return get_policy(name).fn(video, knob, generator=torch.Generator().manual_seed(0), **kwargs)


@pytest.mark.parametrize("name", PLAIN_MEAN_TOPK + ("oracle",))
def test_top_k_at_k_equal_n_is_dense_teacher(name):
    video = _video(n=9)
    dense = dense_teacher(video)
    decision = _run(name, video, 9)
    torch.testing.assert_close(decision.probs, dense.probs)
    assert decision.teacher_clips == dense.teacher_clips == 9


def test_dense_policies_against_direct_means():
    video = _video()
    torch.testing.assert_close(dense_teacher(video).probs, video.teacher.logits.softmax(1).mean(0))
    torch.testing.assert_close(dense_student(video).probs, video.student_logits.softmax(1).mean(0))
    assert (dense_teacher(video).teacher_clips, dense_teacher(video).student_clips) == (12, 0)
    assert (dense_student(video).teacher_clips, dense_student(video).student_clips) == (0, 12)


def test_cd_topk_at_k_equal_n_is_the_score_weighted_mean():
    video = _video(n=8)
    s = video.student_score
    expected = (s[:, None] * video.teacher.logits.softmax(1)).sum(0) / s.sum()
    torch.testing.assert_close(cd_topk(video, 8).probs, expected)


def test_cd_topk_against_direct_selection():
    video = _video(n=10, seed=4)
    s = video.student_score.tolist()
    chosen = sorted(range(10), key=lambda i: -s[i])[:4]
    q = video.teacher.logits.softmax(1)
    expected = sum(s[i] * q[i] for i in chosen) / sum(s[i] for i in chosen)
    torch.testing.assert_close(cd_topk(video, 4).probs, expected)


@pytest.mark.parametrize("student_weight", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("k", [1, 3, 10])
def test_cd_gate_without_exit_against_the_formula(student_weight, k):
    video = _video(n=10, seed=7)
    s = video.student_score.tolist()
    chosen = sorted(range(10), key=lambda i: -s[i])[:k]
    p, q = video.student_logits.softmax(1), video.teacher.logits.softmax(1)
    combined = sum(s[i] * q[i] for i in chosen) + student_weight * sum(
        (s[i] * p[i] for i in range(10) if i not in chosen), torch.zeros(p.shape[1])
    )
    decision = cd_gate(video, (1.01, k, student_weight))
    torch.testing.assert_close(decision.probs, combined / combined.sum())
    assert (decision.teacher_clips, decision.student_clips) == (k, 10)
    if student_weight == 0.0:
        torch.testing.assert_close(decision.probs, cd_topk(video, k).probs)


def test_cd_gate_early_exit_threshold():
    video = _video(n=6, seed=2, scale=1.0)
    s, p = video.student_score, video.student_logits.softmax(1)
    estimate = (s[:, None] * p).sum(0) / s.sum()
    c = float(estimate.max())
    for theta in (0.0, c / 2, c):  # θ ≤ c: exit, student estimate, no teacher
        video, teacher = _counted(video)
        decision = cd_gate(video, (theta, 2))
        torch.testing.assert_close(decision.probs, estimate)
        assert (decision.teacher_clips, decision.student_clips) == (0, 6)
        assert teacher.calls == []
    for theta in (math.nextafter(c, 2.0), 1.01):
        decision = cd_gate(video, (theta, 2))
        assert decision.teacher_clips == 2


def test_cd_gate_never_exits_above_one_even_when_the_student_is_certain():
    certain = torch.full((4, 3), -1e4)
    certain[:, 0] = 1e4
    video = VideoOutputs.precomputed(certain, torch.randn(4, 3), torch.rand(4), 0)
    assert cd_gate(video, (1.0, 2)).teacher_clips == 0  # c = 1 ≥ θ = 1
    assert cd_gate(video, (1.01, 2)).teacher_clips == 2


def test_cost_counts_are_exact():
    """The teacher is called once with exactly `teacher_clips` unique ascending indices (never on early exit)."""
    base = _video(n=7, seed=11)
    for name, spec in POLICIES.items():
        for knob in spec.knob_values(base.num_clips, thetas=(0.0, 0.5, 1.01), student_weights=(0.0, 1.0),
                                     coverages=(0.0, 0.5, 1.0)):
            video, teacher = _counted(base)
            decision = _run(name, video, knob)
            if name == "oracle":  # documented convention: selects with all N, charged k
                assert teacher.calls == [list(range(7))]
                assert decision.teacher_clips == knob
                continue
            if decision.teacher_clips == 0:
                assert teacher.calls == []
            else:
                assert len(teacher.calls) == 1
                (indices,) = teacher.calls
                assert indices == sorted(set(indices)) and len(indices) == decision.teacher_clips
            expected_student = 7 if spec.reads_student(knob, 7) else 0
            assert decision.student_clips == expected_student, (name, knob)
            if spec.student is not None and not spec.reads_student(knob, 7):
                assert knob[-1] == 1.0, knob  # only coverage 1 reads no student


def test_uniform_k_indices():
    video, teacher = _counted(_video(n=12))
    uniform_k(video, 5)
    assert teacher.calls == [[1, 3, 6, 8, 10]]  # ⌊(j + ½)·12/5⌋


def test_ties_pick_the_first_clips():
    n = 6
    flat = torch.zeros(n, 4)
    video = VideoOutputs(flat, CountingTeacher(flat), torch.full((n,), 0.5), 2)
    for policy in (sampler_maxprob, cd_topk, oracle):
        video, teacher = _counted(video)
        policy(video, 3)
        assert teacher.calls[-1] == ([0, 1, 2] if policy is not oracle else list(range(n)))
    video, teacher = _counted(video)
    cd_gate(video, (1.01, 3))
    assert teacher.calls == [[0, 1, 2]]
    # oracle among clips with exactly tied q[0] = ½ but different rivals: the first two are averaged
    off = -1e4
    teacher_logits = torch.tensor([[0, off, 0], [0, 0, off], [0, off, 0], [-5, 0, 0]])
    tied = VideoOutputs.precomputed(torch.zeros(4, 3), teacher_logits, label=0)
    torch.testing.assert_close(oracle(tied, 2).probs, torch.tensor([0.5, 0.25, 0.25]))


@pytest.mark.parametrize("name", [n for n in POLICIES if POLICIES[n].knob is not None])
def test_videos_with_fewer_clips_than_k(name):
    video = _video(n=3, seed=5)
    knob = (1.01, 5) if POLICIES[name].knob == "theta,k,lambda,coverage" else 5
    decision = _run(name, video, knob)
    assert decision.teacher_clips == 3
    reference = cd_topk(video, 3) if name.startswith("cd_") else dense_teacher(video)
    torch.testing.assert_close(decision.probs, reference.probs)


def test_random_k_is_deterministic_per_seed():
    video = _video(n=12)

    def draw(seed):
        counted, teacher = _counted(video)
        random_k(counted, 4, generator=torch.Generator().manual_seed(seed))
        return teacher.calls[0]

    assert draw(3) == draw(3)
    assert len({tuple(draw(seed)) for seed in range(10)}) > 1


def test_oracle_maximises_the_mean_true_class_probability():
    """Per video and k, no plain-mean policy's clip set has a higher mean q[y] than the oracle's (any K)."""
    for seed in range(40):
        base = _video(n=8, k_classes=5, seed=seed)
        for k in range(1, 9):
            bound = float(oracle(base, k).probs[base.label])
            for name in PLAIN_MEAN_TOPK:
                assert float(_run(name, base, k).probs[base.label]) <= bound + 1e-6


def test_oracle_accuracy_bounds_plain_mean_policies_for_two_classes():
    """With K = 2, correct ⇔ mean q[y] > ½, so maximising mean q[y] maximises accuracy."""
    videos = [_video(n=8, k_classes=2, seed=seed, scale=2.0) for seed in range(150)]
    for k in range(1, 9):
        bound = run_policy("oracle", videos, k)["accuracy"]
        for name in PLAIN_MEAN_TOPK:
            assert run_policy(name, videos, k, repeats=3)["accuracy"] <= bound


def test_oracle_is_not_an_accuracy_bound_in_general():
    """What is not true, pinned down so the book does not claim it.

    (a) With K ≥ 3 a higher mean q[y] need not win the argmax: the oracle takes
    clips where y narrowly loses to one rival over clips where y wins against a
    split field. (b) cd_topk's weighted mean can exceed the oracle's plain mean
    q[y] by down-weighting its worse clips. (c) cd_gate mixes in student
    probabilities, which the oracle never sees. So the oracle is a reference
    ceiling for selection by q[y], not a strict bound on every policy.
    """
    # (a) label 0; clips 0-1: (0.45, 0.55, 0), clips 2-3: (0.44, 0.28, 0.28)
    q = torch.tensor([[0.45, 0.55, 1e-9], [0.45, 0.55, 1e-9], [0.44, 0.28, 0.28], [0.44, 0.28, 0.28]])
    video = VideoOutputs.precomputed(torch.zeros(4, 3), q.log(), torch.ones(4), label=0)
    assert oracle(video, 2).prediction == 1
    assert uniform_k(video, 2).prediction == 0  # clips ⌊0.5·4/2⌋, ⌊1.5·4/2⌋ = 1, 3
    # (b) q[y] = 0.9, 0.8, 0.1; scores pick {0, 2} and nearly ignore clip 2
    q = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]])
    video = VideoOutputs.precomputed(torch.zeros(3, 2), q.log(), torch.tensor([1.0, 1e-4, 1e-3]), label=0)
    assert float(cd_topk(video, 2).probs[0]) > float(oracle(video, 2).probs[0])
    # (c) the teacher is wrong on every clip, the student right: only cd_gate can be right
    wrong = torch.tensor([[0.4, 0.6]] * 3).log()
    right = torch.tensor([[5.0, 0.0]] * 3)
    video = VideoOutputs.precomputed(right, wrong, torch.tensor([0.1, 0.9, 0.9]), label=0)
    assert oracle(video, 1).prediction == 1
    assert cd_gate(video, (1.01, 1)).prediction == 0


@pytest.mark.parametrize("name", list(POLICIES))
def test_every_policy_runs_on_its_first_and_last_knob(name):
    spec = get_policy(name)
    video = _video(n=5, seed=1)
    knobs = spec.knob_values(video.num_clips, THETAS, coverages=(0.0, 0.5, 1.0))
    for knob in (knobs[0], knobs[len(knobs) // 2], knobs[-1]):
        decision = spec.fn(video, knob, generator=torch.Generator().manual_seed(0))
        assert isinstance(decision, Decision)
        assert decision.probs.shape == (6,)
        assert float(decision.probs.sum()) == pytest.approx(1.0, abs=1e-5)
        assert (decision.probs >= 0).all()
        assert 0 <= decision.prediction < 6
        assert 0 <= decision.teacher_clips <= 5 and decision.student_clips in (0, 5)
    assert spec.needs_score == (spec.student in ("cd", "cd_da", "cd_ctx") and name != "dense_student")
    assert spec.needs_label == (name == "oracle")
    assert spec.random == (name == "random_k")
    assert spec.description


@pytest.mark.parametrize("name", [name for name in list_policies() if get_policy(name).needs_score])
def test_run_policy_refuses_videos_without_the_score_a_policy_needs(name):
    video = _video(n=4, seed=2)
    unscored = VideoOutputs(video.student_logits, video.teacher, None, video.label)
    with pytest.raises(ConfigError, match=name):
        run_policy(name, [video, unscored], get_policy(name).knob_values(4, THETAS)[0])


TEACHER_ONLY = ("dense_teacher", "uniform_k", "random_k", "oracle", "frame_exit")


def _without_student(video):
    """The same video with the teacher's outputs only: no student logits or score, its clip count given."""
    return VideoOutputs(None, video.teacher, label=video.label, num_clips=video.num_clips, exit_score=video.exit_score)


def test_the_teacher_only_policies_are_those_without_a_student():
    assert [name for name in list_policies() if not get_policy(name).needs_student] == list(TEACHER_ONLY)
    assert all(spec.needs_student == (spec.student is not None) for spec in POLICIES.values())


@pytest.mark.parametrize("name", TEACHER_ONLY)
def test_teacher_only_policies_decide_as_before_on_videos_without_a_student(name):
    videos = [_video(n=5, seed=seed) for seed in range(8)]
    bare = [_without_student(video) for video in videos]
    assert all(video.student_logits is None and video.num_clips == 5 for video in bare)
    for knob in get_policy(name).knob_values(5, THETAS):
        for video, alone in zip(videos, bare):
            with_student, without = _run(name, video, knob), _run(name, alone, knob)
            torch.testing.assert_close(without.probs, with_student.probs, rtol=0, atol=0)
            assert (without.teacher_clips, without.student_clips) == (with_student.teacher_clips, 0)
        assert run_policy(name, bare, knob, repeats=3) == run_policy(name, videos, knob, repeats=3)


@pytest.mark.parametrize("name", [name for name in list_policies() if get_policy(name).needs_student])
def test_a_policy_that_needs_a_student_refuses_a_video_without_one(name):
    video = _video(n=4, seed=2)
    knob = get_policy(name).knob_values(4, THETAS)[0]
    with pytest.raises(ConfigError, match=rf"{name}: needs the outputs of the '\w+' student"):
        run_policy(name, [video, _without_student(video)], knob)
    with pytest.raises(ConfigError, match="needs a student's outputs|needs student_score"):  # called directly
        _run(name, _without_student(video), knob)


def test_a_video_without_a_student_needs_its_clip_count_and_no_score():
    video = _video(n=4, seed=2)
    precomputed = VideoOutputs.precomputed(None, video.teacher.logits, label=1)
    assert precomputed.student_logits is None and precomputed.num_clips == 4
    with pytest.raises(ValueError, match="num_clips"):
        VideoOutputs(None, video.teacher, label=1)
    with pytest.raises(ValueError, match="num_clips"):
        VideoOutputs(None, video.teacher, label=1, num_clips=0)
    with pytest.raises(ValueError, match="student_score: given without student_logits"):
        VideoOutputs(None, video.teacher, torch.rand(4), 1, num_clips=4)
    with pytest.raises(ValueError, match="num_clips: 3 given, but student_logits has 4 clips"):
        VideoOutputs(video.student_logits, video.teacher, num_clips=3)
    with pytest.raises(ValueError, match="teacher_logits"):
        VideoOutputs.precomputed(None, video.teacher.logits[0])


def test_knob_values():
    assert get_policy("dense_teacher").knob_values(4, THETAS) == [None]
    assert get_policy("uniform_k").knob_values(4, THETAS) == [1, 2, 3, 4]
    gate = get_policy("cd_gate").knob_values(2, (0.5, 1.01), (0.0, 1.0))  # coverage 0 unless given
    assert gate == [(0.5, 1, 0.0, 0.0), (0.5, 1, 1.0, 0.0), (0.5, 2, 0.0, 0.0), (0.5, 2, 1.0, 0.0),
                    (1.01, 1, 0.0, 0.0), (1.01, 1, 1.0, 0.0), (1.01, 2, 0.0, 0.0), (1.01, 2, 1.0, 0.0)]
    gate = get_policy("cd_gate_da").knob_values(2, (0.5,), (0.0, 1.0), (0.0, 1.0))  # nesting θ, k, λ, c
    assert gate == [(0.5, 1, 0.0, 0.0), (0.5, 1, 0.0, 1.0), (0.5, 1, 1.0, 0.0), (0.5, 1, 1.0, 1.0),
                    (0.5, 2, 0.0, 0.0), (0.5, 2, 0.0, 1.0), (0.5, 2, 1.0, 0.0), (0.5, 2, 1.0, 1.0)]
    assert get_policy("cd_topk").knob_values(3, THETAS, (0.5,), (0.0, 0.25, 1.0)) == [
        (1, 0.0), (1, 0.25), (1, 1.0), (2, 0.0), (2, 0.25), (2, 1.0), (3, 0.0), (3, 0.25), (3, 1.0)]
    assert get_policy("cd_topk").knob_values(2) == [(1, 0.0), (2, 0.0)]
    assert (get_policy("cd_topk").knob, get_policy("cd_gate").knob) == ("k,coverage", "theta,k,lambda,coverage")


def test_registry_and_bad_arguments():
    assert list_policies() == list(POLICIES)
    assert {spec.student for spec in POLICIES.values()} == {None, "ce", "ce_all", "kd", "cd", "cd_da", "cd_ctx"}
    with pytest.raises(ConfigError, match="'nope'"):
        get_policy("nope")
    with pytest.raises(ConfigError, match="'nope'"):
        run_policy("nope", [_video()], 1)
    video = _video(n=4)
    for name in ("uniform_k", "random_k", "sampler_maxprob", "cd_topk", "oracle"):
        with pytest.raises(ConfigError, match=f"{name}.*k"):
            _run(name, video, 0)
    with pytest.raises(ConfigError, match="cd_gate.*k"):
        cd_gate(video, (0.5, 0))
    with pytest.raises(ConfigError, match=r"cd_gate.*\(theta, k\)"):
        cd_gate(video, 3)
    with pytest.raises(ConfigError, match=r"cd_gate.*\(theta, k\)"):
        cd_gate(video, (0.5, 1, 1.0, 0.0, 2))
    with pytest.raises(ConfigError, match=r"cd_gate.*\(theta, k\)"):
        cd_gate(video, (0.5,))
    with pytest.raises(ConfigError, match="lambda"):
        cd_gate(video, (0.5, 1, -1.0))
    with pytest.raises(ConfigError, match="theta"):
        cd_gate(video, (float("nan"), 1))
    with pytest.raises(ConfigError, match="dense_teacher.*knob"):
        dense_teacher(video, 3)
    no_score = VideoOutputs.precomputed(video.student_logits, video.teacher.logits, label=1)
    with pytest.raises(ConfigError, match="cd_topk.*student_score"):
        cd_topk(no_score, 2)
    no_label = VideoOutputs.precomputed(video.student_logits, video.teacher.logits)
    with pytest.raises(ConfigError, match="oracle.*label"):
        oracle(no_label, 2)
    with pytest.raises(ConfigError, match="label"):
        run_policy("dense_teacher", [no_label], None)
    with pytest.raises(ValueError, match="student_score"):
        VideoOutputs.precomputed(video.student_logits, video.teacher.logits, torch.rand(3))
    with pytest.raises(ConfigError, match="label"):
        sweep_policy("cd_gate", [no_label], [(0.5, 1)])
    with pytest.raises(ValueError, match="random"):
        PolicySpec("swept_random", random_k, "k", None, False, False, "", random=True, sweep=lambda v, k: [])


@pytest.mark.parametrize("name", list_policies())
def test_sweep_policy_gives_what_run_policy_gives_at_every_knob(name):
    """Every policy over its whole knob range: k beyond some videos' clip counts, thresholds at videos' own
    confidences (an exit is c >= theta; the median's splits the videos), at 0 (every video exits) and above 1
    (none does)."""
    videos = [_video(n=4 + seed % 3, seed=seed) for seed in range(40)]
    confidences = sorted(video.student_estimate[1] for video in videos)
    thetas = (0.0, videos[0].student_estimate[1], videos[5].student_estimate[1], confidences[20], 1.01)
    knobs = get_policy(name).knob_values(6, thetas, (0.0, 0.5, 1.0), (0.0, 0.3, 1.0))
    swept = sweep_policy(name, videos, knobs, seed=3, repeats=2)
    assert swept == [run_policy(name, videos, knob, seed=3, repeats=2) for knob in knobs]
    spec = get_policy(name)
    if spec.knob is not None and "coverage" in spec.knob:  # the whole coverage range is swept, c = 1 costs no student
        assert {knob[-1] for knob in knobs} == {0.0, 0.3, 1.0}
        assert any(point["student_clips_per_video"] == 0 for point in swept)
    if spec.knob == "theta,k,lambda,coverage":  # the thresholds split the videos between exit and teacher
        full = sum(video.num_clips for video in videos) / len(videos)
        assert any(0 < point["student_clips_per_video"] < full for point in swept)  # λ > 0: k >= N on some only
        exits = [sum(v.student_estimate[1] >= theta for v in videos) for theta in thetas]
        assert exits[0] == len(videos) and exits[-1] == 0 and exits[3] == 20


def test_run_policy_against_a_loop():
    videos = [_video(n=6, seed=seed) for seed in range(30)]
    for name, knob in [("dense_teacher", None), ("cd_gate", (0.6, 2)), ("sampler_maxprob", 3)]:
        decisions = [_run(name, video, knob) for video in videos]
        result = run_policy(name, videos, knob)
        assert result["accuracy"] == pytest.approx(sum(d.prediction == v.label for d, v in zip(decisions, videos)) / 30)
        assert result["teacher_clips_per_video"] == pytest.approx(sum(d.teacher_clips for d in decisions) / 30)
        assert result["student_clips_per_video"] == pytest.approx(sum(d.student_clips for d in decisions) / 30)
        assert result["log_likelihood"] == pytest.approx(
            sum(math.log(max(float(d.probs[v.label]), 1e-12)) for d, v in zip(decisions, videos)) / 30)
    gate, topk = run_policy("cd_gate", videos, (1.01, 2, 0.0)), run_policy("cd_topk", videos, 2)
    # the two normalise the same float32 weighted sum in a different order: the same argmax, likelihoods a few
    # float32 ulps apart
    assert gate.pop("log_likelihood") == pytest.approx(topk.pop("log_likelihood"), rel=1e-6) and gate == topk
    assert run_policy("cd_gate", videos, (0.6, 2)) == run_policy("cd_gate", videos, (0.6, 2, 1.0))  # λ = 1 by default


def test_run_policy_random_k_averages_seeded_draws():
    videos = [_video(n=6, seed=seed) for seed in range(30)]
    once = run_policy("random_k", videos, 2, seed=5, repeats=1)
    assert run_policy("random_k", videos, 2, seed=5, repeats=1) == once
    assert run_policy("random_k", videos, 2, seed=5, repeats=4) == run_policy("random_k", videos, 2, seed=5, repeats=4)
    draws = []
    for repeat in range(4):
        generator = torch.Generator().manual_seed(5 * 1_000_003 + repeat)
        draws.append(sum(random_k(v, 2, generator=generator).prediction == v.label for v in videos) / 30)
    assert run_policy("random_k", videos, 2, seed=5, repeats=4)["accuracy"] == pytest.approx(sum(draws) / 4)
    assert draws[0] == once["accuracy"]
    torch.set_num_threads(2)
    run_policy("random_k", videos, 2)
    assert torch.get_num_threads() == 2  # restored after its single-threaded evaluation
    torch.set_num_threads(1)


def test_cd_gate_reuses_its_teacher_combination_across_thresholds_through_the_callers_memo():
    shared, teacher = _counted(_video(n=8, seed=4))
    memo = {}
    for theta in (1.01, 0.99, 2.0):  # none exits: one teacher call per k, shared by the thresholds
        for k in (1, 3):
            decision = cd_gate(shared, (theta, k), memo=memo)
            fresh = cd_gate(_counted(_video(n=8, seed=4))[0], (theta, k))
            assert torch.equal(decision.probs, fresh.probs)
            assert (decision.teacher_clips, decision.student_clips) == (fresh.teacher_clips, fresh.student_clips)
    assert len(teacher.calls) == 2
    # another student weight is another combination, of the same teacher call on the same clips
    cd_gate(shared, (1.01, 1, 0.0), memo=memo)
    assert len(teacher.calls) == 2
    # another coverage is other clips: another teacher call
    cd_gate(shared, (1.01, 1, 0.0, 0.5), memo=memo)
    cd_gate(shared, (1.01, 1, 1.0, 0.5), memo=memo)
    assert len(teacher.calls) == 3
    # without a memo nothing is kept: the policy writes nowhere but the memo it is given
    cd_gate(shared, (1.01, 1))
    cd_gate(shared, (1.01, 1))
    assert len(teacher.calls) == 5
    assert {key for key in memo if key[0] == "cd_gate"} == {
        ("cd_gate", 1, 1.0, 0.0), ("cd_gate", 3, 1.0, 0.0), ("cd_gate", 1, 0.0, 0.0), ("cd_gate", 1, 0.0, 0.5),
        ("cd_gate", 1, 1.0, 0.5)}


def test_run_policy_reuses_one_memo_per_video():
    videos = [_counted(_video(n=6, seed=seed)) for seed in range(3)]
    memos = [{} for _ in videos]
    plain = [v for v, _ in videos]
    for theta in (1.01, 2.0):
        assert run_policy("cd_gate", plain, (theta, 2), memos=memos) == run_policy(
            "cd_gate", [_video(n=6, seed=seed) for seed in range(3)], (theta, 2))
    assert [len(teacher.calls) for _, teacher in videos] == [1, 1, 1]
    with pytest.raises(ValueError, match="memos"):
        run_policy("cd_gate", plain, (1.01, 2), memos=memos[:2])


# ----------------------------------------------------------------------------- the coverage knob c


def _uniform(n, k):
    """uniform_k's clips, written out: ⌊(2j+1)·N/(2k)⌋, k clipped to N."""
    k = min(k, n)
    return [(2 * j + 1) * n // (2 * k) for j in range(k)]


def _direct_coverage_clips(scores, k, c):
    """The clips of cd_topk / cd_gate at (k, c), 0 < c ≤ 1, computed from the definition clip by clip."""
    n = len(scores)
    k = min(k, n)
    centres = _uniform(n, k)
    low, high = min(scores), max(scores)
    s_hat = [(s - low) / (high - low) if high > low else 0.0 for s in scores]
    best = {}
    for i in range(n):
        distances = [abs(i - u) for u in centres]
        j = distances.index(min(distances))  # the nearest centre, ties the lower j
        g = min(1.0, max(0.0, 1 - distances[j] / (n / k)))
        value = (1 - c) * s_hat[i] + c * g
        if j not in best or value > best[j][0]:  # ties: the lower index, met first
            best[j] = (value, i)
    return [best[j][1] for j in range(k)]


def _teacher_indices(policy, video, knob):
    counted, teacher = _counted(video)
    decision = policy(counted, knob)
    assert len(teacher.calls) == (decision.teacher_clips > 0)
    return (teacher.calls[0] if teacher.calls else []), decision


@pytest.mark.parametrize("seed", range(4))
def test_coverage_zero_is_plain_top_k_by_score_with_todays_numbers(seed):
    n = 9
    video = _video(n=n, seed=seed)
    s = video.student_score.tolist()
    p, q = video.student_logits.softmax(1), video.teacher.logits.softmax(1)
    for k in range(1, n + 2):
        top = sorted(sorted(range(n), key=lambda i: -s[i])[:k])
        indices, topk = _teacher_indices(cd_topk, video, (k, 0.0))
        assert indices == top
        torch.testing.assert_close(topk.probs, sum(s[i] * q[i] for i in top) / sum(s[i] for i in top))
        assert torch.equal(topk.probs, cd_topk(video, k).probs)  # a plain k is c = 0
        assert (topk.teacher_clips, topk.student_clips) == (len(top), n)
        for weight in (0.0, 0.5, 1.0):
            indices, gate = _teacher_indices(cd_gate, video, (1.01, k, weight, 0.0))
            assert indices == top
            combined = sum(s[i] * q[i] for i in top) + weight * sum(
                (s[i] * p[i] for i in range(n) if i not in top), torch.zeros(p.shape[1]))
            torch.testing.assert_close(gate.probs, combined / combined.sum())
            assert torch.equal(gate.probs, cd_gate(video, (1.01, k, weight)).probs)
            assert (gate.teacher_clips, gate.student_clips) == (len(top), n)


@pytest.mark.parametrize("n", [1, 2, 5, 7, 12, 13])
def test_coverage_one_is_exactly_uniform_k(n):
    """Every k in 1..N+2 (N not divisible by k, k = N, k > N): uniform_k's clips, probabilities and counts; the
    decisions that read no student cost none and need no student outputs."""
    video = _video(n=n, seed=n, scale=1.0)
    bare = _without_student(video)
    for k in range(1, n + 3):
        uniform_indices, uniform = _teacher_indices(uniform_k, video, k)
        assert uniform_indices == _uniform(n, k)
        for policy, knob in ((cd_topk, (k, 1.0)), (cd_topk, (k, 1)), (cd_gate, (1.01, k, 0.0, 1.0)),
                             (cd_gate, (2.0, k, 1.0, 1.0) if k >= n else (2.0, k, 0.0, 1))):
            for outputs in (video, bare):
                indices, decision = _teacher_indices(policy, outputs, knob)
                assert indices == uniform_indices, (policy, knob)
                assert torch.equal(decision.probs, uniform.probs), (policy, knob)
                assert (decision.teacher_clips, decision.student_clips) == (uniform.teacher_clips, 0)
        # where the decision reads the student (an exit test, a student term) the clips are still uniform_k's
        for knob in ((1.0, k, 0.0, 1.0), (1.01, k, 0.5, 1.0)):
            indices, decision = _teacher_indices(cd_gate, video, knob)
            reads = knob[0] <= 1 or k < n  # at k ≥ N the student term is empty
            assert indices == uniform_indices and decision.student_clips == (n if reads else 0)
        torch.testing.assert_close(cd_gate(video, (1.0, k, 0.0, 1.0)).probs, uniform.probs)
        # a coverage just below 1 reaches the same clips through the cells (g = 1 only at the u_j)
        assert _teacher_indices(cd_topk, video, (k, 1 - 1e-6))[0] == uniform_indices
    with pytest.raises(ConfigError, match="needs student_score"):  # a student term reads the student
        cd_gate(bare, (1.01, 1, 0.5, 1.0)) if n > 1 else cd_topk(bare, (1, 0.5))


@pytest.mark.parametrize("c", [0.1, 0.25, 0.5, 0.9])
def test_intermediate_coverage_picks_one_clip_per_cell_as_defined(c):
    for n, seed in ((12, 0), (13, 1), (7, 2), (5, 3), (20, 4)):
        video = _video(n=n, seed=seed)
        s = video.student_score.tolist()
        p, q = video.student_logits.softmax(1), video.teacher.logits.softmax(1)
        for k in range(1, n + 2):
            expected = _direct_coverage_clips(s, k, c)
            assert len(expected) == min(k, n) and expected == sorted(set(expected))
            indices, topk = _teacher_indices(cd_topk, video, (k, c))
            assert indices == expected, (n, k, c)
            w = [max(x ** (1 - c), 1e-12) for x in s]
            torch.testing.assert_close(topk.probs, sum(w[i] * q[i] for i in expected) / sum(w[i] for i in expected))
            assert (topk.teacher_clips, topk.student_clips) == (min(k, n), n)
            indices, gate = _teacher_indices(cd_gate, video, (1.01, k, 0.5, c))
            assert indices == expected
            combined = sum(w[i] * q[i] for i in expected) + 0.5 * sum(
                (w[i] * p[i] for i in range(n) if i not in expected), torch.zeros(p.shape[1]))
            torch.testing.assert_close(gate.probs, combined / combined.sum())
    # small c is the best clip by score inside each segment: k = 2 of N = 8 (u = 2, 6; cells 0-3 and 4-7)
    scores = torch.tensor([0.1, 0.9, 0.2, 0.3, 0.8, 0.1, 0.2, 0.95])
    video = VideoOutputs.precomputed(torch.zeros(8, 3), torch.randn(8, 3), scores, 0)
    assert _teacher_indices(cd_topk, video, (2, 0.0))[0] == [1, 7]  # plain top-2, both may share a segment
    assert _teacher_indices(cd_topk, video, (2, 0.1))[0] == [1, 7]
    assert _teacher_indices(cd_topk, video, (3, 0.0))[0] == [1, 4, 7]
    assert _teacher_indices(cd_topk, video, (3, 0.1))[0] == [1, 4, 7]  # u = 1, 4, 6: cells 0-2, 3-5, 6-7
    assert _teacher_indices(cd_topk, video, (2, 0.9))[0] == [2, 6]
    # ties: clip 4, as far from u_0 = 2 as from u_1 = 6, is in cell 0; clips 1 and 3, tied, give the lower
    for scores, expected in (([0.1, 0.2, 0.1, 0.1, 0.99, 0.5, 0.1, 0.1], [4, 5]),
                             ([0.1, 0.9, 0.2, 0.9, 0.1, 0.3, 0.2, 0.8], [1, 7])):
        assert _direct_coverage_clips(scores, 2, 0.1) == expected
        video = VideoOutputs.precomputed(torch.zeros(8, 3), torch.randn(8, 3), torch.tensor(scores), 0)
        assert _teacher_indices(cd_topk, video, (2, 0.1))[0] == expected
    # equal scores carry no information: ŝ = 0, so any c > 0 takes uniform_k's clips
    flat = VideoOutputs.precomputed(torch.zeros(10, 3), torch.randn(10, 3), torch.full((10,), 0.7), 0)
    for k in (1, 3, 4, 10):
        assert _teacher_indices(cd_topk, flat, (k, 0.25))[0] == _uniform(10, k)
        assert _teacher_indices(cd_topk, flat, (k, 0.0))[0] == list(range(k))


def test_coverage_one_points_are_uniform_k_points():
    videos = [_video(n=4 + seed % 3, seed=seed) for seed in range(30)]
    for k in range(1, 7):
        uniform = run_policy("uniform_k", videos, k)
        assert uniform["student_clips_per_video"] == 0
        assert run_policy("cd_topk", videos, (k, 1.0)) == uniform
        assert run_policy("cd_gate", videos, (1.01, k, 0.0, 1.0)) == uniform
        assert run_policy("cd_gate_da", videos, (1.5, k, 0.0, 1.0)) == uniform
        assert sweep_policy("cd_gate", videos, [(1.01, k, 0.0, 1.0)]) == [uniform]


def test_reads_student():
    topk, gate, da = get_policy("cd_topk"), get_policy("cd_gate"), get_policy("cd_gate_da")
    assert topk.reads_student(3) and topk.reads_student((3, 0.0)) and topk.reads_student((3, 0.99))
    assert not topk.reads_student((3, 1.0)) and not topk.reads_student((3, 1))
    for spec in (gate, da):
        assert not spec.reads_student((1.01, 2, 0.0, 1.0))
        assert not spec.reads_student((1.01, 2, 0.0, 1.0), 5)
        assert spec.reads_student((1.0, 2, 0.0, 1.0))  # θ ≤ 1: the exit test reads the student
        assert spec.reads_student((1.01, 2, 0.0, 0.9))
        assert spec.reads_student((1.01, 2, 0.5, 1.0)) and spec.reads_student((1.01, 2, 0.5, 1.0), 3)
        assert not spec.reads_student((1.01, 3, 0.5, 1.0), 3)  # k ≥ N: no student term
        assert spec.reads_student((1.01, 2)) and spec.reads_student((1.01, 2, 0.0))
    assert not get_policy("uniform_k").reads_student(2) and not get_policy("dense_teacher").reads_student(None)
    assert get_policy("sampler_maxprob").reads_student(2) and get_policy("dense_student").reads_student(None)


def test_coverage_knob_validation():
    video = _video(n=4)
    for bad in (1.5, -0.1, float("nan"), True, "0.5", None):
        with pytest.raises(ConfigError, match="cd_topk: knob coverage c must be a number in"):
            cd_topk(video, (2, bad))
        with pytest.raises(ConfigError, match="cd_gate: knob coverage c must be a number in"):
            cd_gate(video, (0.5, 2, 1.0, bad))
        with pytest.raises(ConfigError, match="cd_gate: knob coverage"):
            sweep_policy("cd_gate", [video], [(0.5, 2, 1.0, bad)])
    for bad in ((2,), (2, 0.5, 0.5), [], "2"):
        with pytest.raises(ConfigError, match=r"cd_topk: knob must be k or \(k, coverage\)|cd_topk: knob k"):
            cd_topk(video, bad)
    with pytest.raises(ConfigError, match="cd_topk: knob k"):
        cd_topk(video, (0, 0.5))
    with pytest.raises(ConfigError, match="cd_gate: knob k"):
        cd_gate(video, (0.5, 0, 1.0, 0.5))
    # numbers other than floats are accepted and mean the same; lists as JSON gives them back
    assert torch.equal(cd_topk(video, (2, 0)).probs, cd_topk(video, 2).probs)
    assert torch.equal(cd_gate(video, [1.01, 2, 1, 0]).probs, cd_gate(video, (1.01, 2, 1.0, 0.0)).probs)
    assert torch.equal(cd_topk(video, [2, 0.5]).probs, cd_topk(video, (2, 0.5)).probs)
