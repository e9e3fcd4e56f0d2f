"""Confidence-gated inference: policies over the per-clip outputs of one video.

A policy sees one video's :class:`VideoOutputs` (a ``teacher`` callable and,
for a policy that uses a student, the student's logits on all ``N`` clips and
optionally its distilled score ``s``) and a knob, decides which clips the
teacher sees and how the clip predictions are combined, and returns a
:class:`Decision`: the video-level class distribution and how many clips each
network ran on. Every policy calls ``video.teacher`` at most once, with exactly
the clips it uses (ascending, unique), so its cost ``student_clips·C_S +
teacher_clips·C_T`` follows from the counts, and which clips it asks for never
depends on the teacher's answer (the benchmark's throughput mode relies on this
to batch the teacher across videos). One exception: :func:`frame_exit` asks for
the clips its exit gate chose, and the gate reads the teacher's outputs; it too
calls ``video.teacher`` once on precomputed scores, but a deployment runs it
clip by clip (:mod:`cdlib.timing` has a sequential path for it).

Every policy has the signature ``fn(video, knob, *, generator=None, memo=None)``.
``generator`` feeds the random policies; ``memo`` is a dict the caller owns for
this one video, in which a policy may keep results that several knobs share
(``cd_gate`` keeps its teacher combination per ``k`` and ``λ``), so a sweep over
knobs runs the teacher once per combination. Policies write nowhere else.

Policies are registered in the registry :data:`POLICIES` (``register_policy``,
``get_policy``, ``list_policies``) with their knob and what they consume;
:func:`run_policy` evaluates one operating point over many videos, and
:func:`sweep_policy` many.

Top-k everywhere: highest signal first, ties broken by the lower clip index,
``k`` clipped to ``N``; ``k < 1`` raises :class:`ConfigError`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from cdlib.errors import ConfigError
from cdlib.frame_exit import check_threshold, visiting_order
from cdlib.registry import Registry

#: distilled scores are floored at this weight, so a video whose scores all underflow to 0 gets plain means
MIN_WEIGHT = 1e-12

#: :func:`frame_exit`'s thresholds when no others are given (``bench.exit_thresholds``'s default); above 1: no exit
DEFAULT_EXIT_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.01)


class _Precomputed:
    """A teacher callable that indexes precomputed logits ``[N, K]``."""

    def __init__(self, logits: Tensor):
        self.logits = logits

    def __call__(self, indices: Tensor) -> Tensor:
        return self.logits[indices]


@dataclass(frozen=True, eq=False)
class VideoOutputs:
    """Per-clip outputs of one video with ``N`` clips and ``K`` classes.

    ``teacher`` maps a LongTensor of clip indices to teacher logits
    ``[len, K]``: it indexes precomputed logits (:meth:`precomputed`) or runs the
    teacher lazily. ``student_logits [N, K]`` are a student's class logits, or
    None for a video the teacher alone sees (the policies whose spec has no
    student: they never read a student, and nothing stands in for one); ``N`` is
    then ``num_clips``, which must be given, and otherwise is taken from
    ``student_logits``. ``student_score`` is the CD student's distilled
    confidence ``s ∈ (0, 1)`` per clip; ``label`` may be used by the oracle only.
    ``exit_score [N]`` is FrameExit's gate output per clip (:func:`frame_exit`),
    with or without a student.

    Knob-independent quantities (student softmax, clip orders) are derived once
    per video and cached as properties; treat the tensors as immutable.
    """

    student_logits: Tensor | None
    teacher: Callable[[Tensor], Tensor]
    student_score: Tensor | None = None
    label: int | None = None
    num_clips: int | None = None
    exit_score: Tensor | None = None

    def __post_init__(self):
        if self.student_logits is not None:
            if self.student_logits.ndim != 2 or self.student_logits.shape[0] < 1:
                raise ValueError(f"student_logits: expected [N, K] with N >= 1, got {tuple(self.student_logits.shape)}")
            if self.num_clips is not None and self.num_clips != self.student_logits.shape[0]:
                raise ValueError(f"num_clips: {self.num_clips} given, but student_logits has "
                                 f"{self.student_logits.shape[0]} clips")
            object.__setattr__(self, "num_clips", self.student_logits.shape[0])  # frozen: set once, here
        elif self.student_score is not None:
            raise ValueError("student_score: given without student_logits (the score is a student's output)")
        elif isinstance(self.num_clips, bool) or not isinstance(self.num_clips, numbers.Integral) \
                or self.num_clips < 1:
            raise ValueError(f"num_clips: a video without student_logits needs its clip count >= 1, "
                             f"got {self.num_clips!r}")
        if self.student_score is not None and self.student_score.shape != (self.num_clips,):
            raise ValueError(f"student_score: expected shape ({self.num_clips},), got {tuple(self.student_score.shape)}")
        if self.exit_score is not None and self.exit_score.shape != (self.num_clips,):
            raise ValueError(f"exit_score: expected shape ({self.num_clips},), got {tuple(self.exit_score.shape)}")

    @classmethod
    def precomputed(
        cls,
        student_logits: Tensor | None,
        teacher_logits: Tensor,
        student_score: Tensor | None = None,
        label: int | None = None,
        exit_score: Tensor | None = None,
    ) -> "VideoOutputs":
        """Outputs whose teacher indexes ``teacher_logits [N, K]`` computed beforehand; ``N`` is the teacher's.

        ``student_logits`` None: a video without a student (teacher-only policies).
        """
        if teacher_logits.ndim != 2:
            raise ValueError(f"teacher_logits: expected [N, K], got {tuple(teacher_logits.shape)}")
        if student_logits is not None and teacher_logits.shape != student_logits.shape:
            raise ValueError(
                f"teacher_logits: expected shape {tuple(student_logits.shape)} like student_logits, got {tuple(teacher_logits.shape)}"
            )
        return cls(student_logits, _Precomputed(teacher_logits), student_score, label, teacher_logits.shape[0],
                   exit_score)

    @cached_property
    def student_probs(self) -> Tensor:
        """``p_i = softmax(student_logits_i)``, ``[N, K]``."""
        return torch.softmax(self.student_logits, dim=1)

    @cached_property
    def score_weights(self) -> Tensor:
        """``s_i`` floored at :data:`MIN_WEIGHT`, ``[N, 1]``."""
        return self.student_score.clamp_min(MIN_WEIGHT).unsqueeze(1)

    @cached_property
    def order_by_score(self) -> Tensor:
        """Clip indices by descending ``s`` (stable)."""
        return _descending(self.student_score)

    @cached_property
    def order_by_maxprob(self) -> Tensor:
        """Clip indices by descending student max-softmax (stable)."""
        return _descending(self.student_probs.max(dim=1).values)

    @cached_property
    def weighted_student_probs(self) -> Tensor:
        """``s_i p_i``, ``[N, K]``."""
        return self.score_weights * self.student_probs

    @cached_property
    def student_estimate(self) -> tuple[Tensor, float]:
        """``(P_S, c)``: ``P_S = Σ_i s_i p_i / Σ_i s_i`` and its confidence ``c = max_k P_S[k]``."""
        estimate = self.weighted_student_probs.sum(dim=0) / self.score_weights.sum()
        return estimate, float(estimate.max())


@dataclass(frozen=True, eq=False)
class Decision:
    """A policy's answer for one video: class distribution ``probs [K]`` and clips run per network.

    ``gate_steps``: evaluations of a gating network besides the two networks
    (:func:`frame_exit`'s exit gate, once per clip it visits; 0 for every other policy).
    """

    probs: Tensor
    teacher_clips: int
    student_clips: int
    gate_steps: int = 0

    @cached_property
    def prediction(self) -> int:
        """``argmax_k probs[k]`` (ties: the lowest class index)."""
        return int(self.probs.argmax())


def _descending(values: Tensor) -> Tensor:
    return torch.sort(values, descending=True, stable=True).indices


def _check_k(policy: str, k) -> int:
    if type(k) is int and k >= 1:  # the common case, without the slower checks against the numbers ABCs
        return k
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ConfigError(f"{policy}: knob k must be an integer >= 1, got {k!r}")
    return int(k)


def _check_no_knob(policy: str, knob) -> None:
    if knob is not None:
        raise ConfigError(f"{policy}: takes no knob (None), got {knob!r}")


def _require_student(policy: str, video: VideoOutputs) -> None:
    if video.student_logits is None:
        raise ConfigError(f"{policy}: needs a student's outputs (student_logits); this video has none")


def _require_score(policy: str, video: VideoOutputs) -> None:
    if video.student_score is None:
        raise ConfigError(f"{policy}: needs student_score (the CD student's distilled confidence); this video has none")


def _teacher_probs(video: VideoOutputs, indices: Tensor) -> Tensor:
    return torch.softmax(video.teacher(indices), dim=1)


def _top(order: Tensor, k: int) -> Tensor:
    """The first ``k`` clips of ``order``, ascending (``k`` clipped to ``N`` by slicing)."""
    return order[:k].sort().values


def _teacher_mean(video: VideoOutputs, indices: Tensor, student_clips: int) -> Decision:
    return Decision(_teacher_probs(video, indices).mean(dim=0), indices.numel(), student_clips)


def dense_teacher(video: VideoOutputs, knob=None, *, generator: torch.Generator | None = None,
                  memo: dict | None = None) -> Decision:
    """``P = (1/N) Σ_i softmax(z_T,i)`` over all clips; teacher ``N``, student 0."""
    _check_no_knob("dense_teacher", knob)
    return _teacher_mean(video, torch.arange(video.num_clips), 0)


def dense_student(video: VideoOutputs, knob=None, *, generator: torch.Generator | None = None,
                  memo: dict | None = None) -> Decision:
    """``P = (1/N) Σ_i softmax(z_S,i)`` over all clips; teacher 0, student ``N``."""
    _check_no_knob("dense_student", knob)
    _require_student("dense_student", video)
    return Decision(video.student_probs.mean(dim=0), 0, video.num_clips)


def uniform_k(video: VideoOutputs, k: int, *, generator: torch.Generator | None = None,
              memo: dict | None = None) -> Decision:
    """Teacher mean over clips ``⌊(j + ½)·N/k⌋``, ``j < k`` (evenly spaced); teacher ``min(k, N)``, student 0."""
    k = min(_check_k("uniform_k", k), video.num_clips)
    indices = torch.div((2 * torch.arange(k) + 1) * video.num_clips, 2 * k, rounding_mode="floor")
    return _teacher_mean(video, indices, 0)


def random_k(video: VideoOutputs, k: int, *, generator: torch.Generator | None = None,
             memo: dict | None = None) -> Decision:
    """Teacher mean over ``min(k, N)`` clips drawn without replacement from ``generator``; student 0.

    Without a generator the global torch RNG is used.
    """
    k = _check_k("random_k", k)
    return _teacher_mean(video, _top(torch.randperm(video.num_clips, generator=generator), k), 0)


def sampler_maxprob(video: VideoOutputs, k: int, *, generator: torch.Generator | None = None,
                    memo: dict | None = None) -> Decision:
    """Teacher mean over the top-k clips by student ``max_k p_i[k]`` (SCSampler-style); student ``N``."""
    k = _check_k("sampler_maxprob", k)
    _require_student("sampler_maxprob", video)
    return _teacher_mean(video, _top(video.order_by_maxprob, k), video.num_clips)


def cd_topk(video: VideoOutputs, k: int, *, generator: torch.Generator | None = None,
            memo: dict | None = None) -> Decision:
    """Top-k clips ``S`` by distilled score ``s``; ``P = Σ_{i∈S} s_i q_i / Σ_{i∈S} s_i``; student ``N``."""
    k = _check_k("cd_topk", k)
    _require_score("cd_topk", video)
    indices = _top(video.order_by_score, k)
    weights = video.score_weights[indices]
    probs = (weights * _teacher_probs(video, indices)).sum(dim=0) / weights.sum()
    return Decision(probs, indices.numel(), video.num_clips)


def cd_gate(video: VideoOutputs, knob: tuple, *, generator: torch.Generator | None = None,
            memo: dict | None = None) -> Decision:
    """The method: video-level early exit, else teacher on the top-k clips by ``s``, combined by confidence.

    ``knob`` is ``(θ, k, λ)``, or ``(θ, k)`` for ``λ = 1``. With
    ``p_i = softmax(z_S,i)``, ``q_i = softmax(z_T,i)`` and scores ``s_i``:

    1. ``P_S = Σ_i s_i p_i / Σ_i s_i`` and ``c = max_k P_S[k]``.
    2. If ``c ≥ θ``: early exit, ``P = P_S``; teacher 0, student ``N``.
       ``θ > 1`` never exits, ``θ ≤ 0`` always does.
    3. Else the teacher runs on the top-k clips ``S`` by ``s`` and
       ``P ∝ Σ_{i∈S} s_i q_i + λ·Σ_{i∉S} s_i p_i`` (normalised to sum to 1),
       ``λ ≥ 0`` the weight of the student's clips; teacher ``min(k, N)``,
       student ``N``. ``λ = 0`` is :func:`cd_topk`; at ``k ≥ N`` the student
       term is empty.

    Step 3 does not depend on ``θ``: with a ``memo`` it is computed once per
    ``(k, λ)`` for this video and shared by every threshold.
    """
    theta, k, weight = _gate_knob(knob)
    _require_score("cd_gate", video)
    if video.student_estimate[1] >= theta:
        return _early_exit(video)
    return _gate_teacher(video, k, weight, memo)


def _early_exit(video: VideoOutputs) -> Decision:
    """Step 2 of :func:`cd_gate`: the student's estimate ``P_S``; teacher 0, student ``N``."""
    return Decision(video.student_estimate[0], 0, video.num_clips)


def _gate_teacher(video: VideoOutputs, k: int, weight: float, memo: dict | None) -> Decision:
    """Step 3 of :func:`cd_gate` at ``(k, λ)``, kept in ``memo`` (when given) for every threshold."""
    key = ("cd_gate", min(k, video.num_clips), weight)
    decision = memo.get(key) if memo is not None else None
    if decision is None:
        indices = _top(video.order_by_score, k)
        combined = (video.score_weights[indices] * _teacher_probs(video, indices)).sum(dim=0)
        if weight > 0 and k < video.num_clips:
            rest = video.order_by_score[k:]
            combined = combined + weight * video.weighted_student_probs[rest].sum(dim=0)
        decision = Decision(combined / combined.sum(), indices.numel(), video.num_clips)
        if memo is not None:
            memo[key] = decision
    return decision


def _sweep_gate(videos: Sequence[VideoOutputs], knobs: Sequence) -> list[dict[str, float]]:
    """:func:`run_policy` of :func:`cd_gate` at each of ``knobs``, each video's decisions computed once.

    A video's early exit does not depend on the knob and its step 3 only on
    ``(k, λ)``; a threshold ``θ`` then only picks, per video, one of the two
    (exit where ``c ≥ θ``), which one comparison does for every video.
    """
    total = len(videos)
    confidence = torch.tensor([video.student_estimate[1] for video in videos], dtype=torch.float64)
    exit_right = torch.tensor([_early_exit(video).prediction == video.label for video in videos])
    student_clips = sum(video.num_clips for video in videos)
    by_pair: dict[tuple[int, float], tuple[Tensor, Tensor]] = {}
    results = []
    for knob in knobs:
        theta, k, weight = _gate_knob(knob)
        if (k, weight) not in by_pair:
            decisions = [_gate_teacher(video, k, weight, None) for video in videos]
            by_pair[k, weight] = (torch.tensor([d.prediction == v.label for d, v in zip(decisions, videos)]),
                                  torch.tensor([d.teacher_clips for d in decisions]))
        teacher_right, teacher_clips = by_pair[k, weight]
        exits = confidence >= theta
        results.append({
            "accuracy": int(torch.where(exits, exit_right, teacher_right).sum()) / total,
            "teacher_clips_per_video": int(teacher_clips[~exits].sum()) / total,
            "student_clips_per_video": student_clips / total,
        })
    return results


def _gate_knob(knob) -> tuple[float, int, float]:
    """``(θ, k, λ)`` of a ``cd_gate`` knob, checked; ``(θ, k)`` means ``λ = 1``."""
    if not isinstance(knob, (tuple, list)) or len(knob) not in (2, 3):
        raise ConfigError(f"cd_gate: knob must be (theta, k) or (theta, k, lambda), got {knob!r}")
    theta, k, weight = (*knob, 1.0) if len(knob) == 2 else knob
    if type(theta) is float and type(weight) is float and theta == theta and weight >= 0:  # the common case, fast
        return theta, _check_k("cd_gate", k), weight
    if isinstance(theta, bool) or not isinstance(theta, numbers.Real) or math.isnan(theta):
        raise ConfigError(f"cd_gate: knob theta must be a number, got {theta!r}")
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not weight >= 0:
        raise ConfigError(f"cd_gate: knob lambda (the student's weight) must be a number >= 0, got {weight!r}")
    return float(theta), _check_k("cd_gate", k), float(weight)


def oracle(video: VideoOutputs, k: int, *, generator: torch.Generator | None = None,
           memo: dict | None = None) -> Decision:
    """Teacher mean over the top-k clips by the teacher's own ``q_i[y]`` (needs the label).

    A reference ceiling, not a method: it runs the teacher on all ``N`` clips
    to choose, but is charged the ideal selector's cost, teacher ``min(k, N)``
    and student 0. It maximises the mean true-class probability
    ``(1/k) Σ_{i∈S} q_i[y]`` over all k-subsets. That bounds the accuracy of the
    plain-mean policies only for ``K = 2``: with ``K ≥ 3`` a higher mean
    ``q[y]`` can still lose the argmax, and the weighted ``cd_topk``/``cd_gate``
    are not bounded either (counterexamples in ``tests/test_gating.py``).
    """
    k = _check_k("oracle", k)
    if video.label is None:
        raise ConfigError("oracle: needs the video label; this video has none")
    probs = _teacher_probs(video, torch.arange(video.num_clips))
    chosen = _top(_descending(probs[:, video.label]), k)
    return Decision(probs[chosen].mean(dim=0), chosen.numel(), 0)


# ----------------------------------------------------------------------------- FrameExit

def _require_exit_score(policy: str, video: VideoOutputs) -> None:
    if video.exit_score is None:
        raise ConfigError(f"{policy}: needs exit_score (FrameExit's exit gate per clip); this video has none")


def _exit_step(video: VideoOutputs, threshold: float) -> int:
    """``t*``: the first step ``t`` (1-based) whose exit score ``exit_score[order[t-1]]`` is ``≥ threshold``, else ``N``."""
    hits = (video.exit_score[visiting_order(video.num_clips)] >= threshold).nonzero()
    return int(hits[0]) + 1 if hits.numel() else video.num_clips


def _exit_decision(video: VideoOutputs, steps: int, memo: dict | None) -> Decision:
    """The teacher's mean softmax over the first ``steps`` clips of the visiting order (kept in ``memo`` when given)."""
    key = ("frame_exit", steps)
    decision = memo.get(key) if memo is not None else None
    if decision is None:
        indices = visiting_order(video.num_clips)[:steps].sort().values
        decision = Decision(_teacher_probs(video, indices).mean(dim=0), steps, 0, gate_steps=steps)
        if memo is not None:
            memo[key] = decision
    return decision


def frame_exit(video: VideoOutputs, threshold: float, *, generator: torch.Generator | None = None,
               memo: dict | None = None) -> Decision:
    """FrameExit (Ghodrati et al., CVPR 2021): the teacher clip by clip in a coarse-to-fine order, until its exit gate
    says stop (:mod:`cdlib.frame_exit`).

    With ``order = visiting_order(N)`` (the middle clip, then the middles of the
    halves, of the quarters, ...) and ``t*`` the first step ``t`` with
    ``exit_score[order[t-1]] ≥ threshold`` (else ``N``): ``P`` is the teacher's
    mean softmax over ``order[:t*]``; teacher ``t*``, student 0, and ``t*`` gate
    evaluations (:attr:`Decision.gate_steps`). A threshold above 1 never exits
    (all ``N`` clips), one ``≤ 0`` exits after the first clip.

    ``exit_score [N]`` (:attr:`VideoOutputs.exit_score`) is the gate's output after
    the visit of each clip, computed beforehand from the teacher's outputs on every
    clip (:func:`cdlib.runs.get_exit_scores`). That makes this evaluation exact:
    the gate after step ``t`` reads only the clips visited up to ``t``, so the
    scores of the clips after ``t*``, which a deployment never computes, change
    nothing. A deployment runs the teacher step by step instead and cannot make one
    teacher call for the clips it will use (the contract of this module), since
    which clips it runs depends on the teacher's answers: :mod:`cdlib.timing` times
    it that way.
    """
    threshold = check_threshold(threshold)
    _require_exit_score("frame_exit", video)
    return _exit_decision(video, _exit_step(video, threshold), memo)


def _sweep_frame_exit(videos: Sequence[VideoOutputs], knobs: Sequence) -> list[dict[str, float]]:
    """:func:`run_policy` of :func:`frame_exit` at each of ``knobs``: per video, the exit step of every threshold at
    once (the first step whose running maximum of the exit scores reaches it), and each distinct step's decision once."""
    thresholds = torch.tensor([check_threshold(knob) for knob in knobs], dtype=torch.float64)
    total = len(videos)
    correct = torch.zeros(len(knobs), dtype=torch.long)
    clips = torch.zeros(len(knobs), dtype=torch.long)
    for video in videos:
        _require_exit_score("frame_exit", video)
        # compared in the scores' dtype, as frame_exit compares them
        running_max = video.exit_score[visiting_order(video.num_clips)].cummax(dim=0).values
        steps = (torch.searchsorted(running_max, thresholds.to(running_max.dtype), side="left") + 1
                 ).clamp_max(video.num_clips)
        right = {int(t): _exit_decision(video, int(t), None).prediction == video.label for t in steps.unique()}
        correct += torch.tensor([right[int(t)] for t in steps])
        clips += steps
    return [{
        "accuracy": int(c) / total,
        "teacher_clips_per_video": int(t) / total,
        "student_clips_per_video": 0 / total,
        "gate_steps_per_video": int(t) / total,
    } for c, t in zip(correct, clips)]


Policy = Callable[..., Decision]


@dataclass(frozen=True)
class PolicySpec:
    """A registered policy: its function, knob and what it consumes.

    ``knob``: ``"k"``, ``"theta,k,lambda"`` or None. ``student``: which student's
    outputs it uses (None, or a student registered in :data:`cdlib.runs.STUDENTS`);
    :attr:`needs_student` follows from it. ``needs_score``: it reads the distilled
    score ``s`` (:func:`run_policy` refuses videos without one). ``needs_label``:
    it reads the video's label, so it is a reference, not a method (figures draw
    it dashed). ``random``: it draws from the generator (:func:`run_policy`
    averages ``repeats`` draws). ``sweep``: for a deterministic policy, a
    function ``(videos, knobs)`` that gives what :func:`run_policy` gives at each
    knob, faster (:func:`sweep_policy`; a test compares the two for every policy).
    ``needs_exit_score``: it reads FrameExit's ``exit_score`` (:func:`run_policy`
    refuses videos without one).
    """

    name: str
    fn: Policy
    knob: str | None
    student: str | None
    needs_score: bool
    needs_label: bool
    description: str
    random: bool = False
    sweep: Callable[[Sequence[VideoOutputs], Sequence], list[dict[str, float]]] | None = None
    needs_exit_score: bool = False

    def __post_init__(self):
        if self.random and self.sweep is not None:
            raise ValueError(f"{self.name}: a random policy is averaged over seeded draws by run_policy, not swept")

    @property
    def needs_student(self) -> bool:
        """It reads a student's outputs (``student`` is set): :func:`run_policy` refuses videos without them."""
        return self.student is not None

    def knob_values(self, num_clips: int, thetas: Sequence[float] = (), student_weights: Sequence[float] = (1.0,),
                    exit_thresholds: Sequence[float] = DEFAULT_EXIT_THRESHOLDS) -> list:
        """The full sweep: ``[None]``, ``k = 1..N``, or every ``(θ, k, λ)`` with ``θ`` in ``thetas``,
        ``k = 1..N`` and ``λ`` in ``student_weights`` (in that nesting order); for the knob ``"threshold"``
        (:func:`frame_exit`) the values of ``exit_thresholds``."""
        ks = list(range(1, num_clips + 1))
        if self.knob is None:
            return [None]
        if self.knob == "threshold":
            return [float(threshold) for threshold in exit_thresholds]
        if self.knob == "k":
            return ks
        return [(theta, k, weight) for theta in thetas for k in ks for weight in student_weights]


#: every policy by name (:class:`~cdlib.registry.Registry`), added by :func:`register_policy`
POLICIES: Registry[PolicySpec] = Registry("policy")


def register_policy(spec: PolicySpec) -> PolicySpec:
    """Add ``spec`` to :data:`POLICIES` under ``spec.name``, with its description; returns it.

    The benchmark sweeps every registered policy and the figures draw it, so a
    policy registered here needs no other list.
    """
    return POLICIES.register(spec.name, spec, spec.description)


for _spec in [
    PolicySpec("dense_teacher", dense_teacher, None, None, False, False, "teacher on every clip, mean softmax"),
    PolicySpec("dense_student", dense_student, None, "cd", False, False, "student on every clip, mean softmax"),
    PolicySpec("uniform_k", uniform_k, "k", None, False, False, "teacher on k evenly spaced clips"),
    PolicySpec("random_k", random_k, "k", None, False, False, "teacher on k random clips", random=True),
    PolicySpec(
        "sampler_maxprob", sampler_maxprob, "k", "ce", False, False,
        "teacher on the top-k clips by the max-softmax of the CE student trained on the teacher's clips",
    ),
    PolicySpec(
        "sampler_ce_all", sampler_maxprob, "k", "ce_all", False, False,
        "teacher on the top-k clips by the max-softmax of the CE student trained on every clip",
    ),
    PolicySpec(
        "sampler_kd", sampler_maxprob, "k", "kd", False, False,
        "teacher on the top-k clips by the KD student's max-softmax",
    ),
    PolicySpec("cd_topk", cd_topk, "k", "cd", True, False, "teacher on the top-k clips by distilled score, s-weighted"),
    PolicySpec(
        "cd_gate", cd_gate, "theta,k,lambda", "cd", True, False,
        "early exit at student confidence theta, else cd_topk + lambda x student", sweep=_sweep_gate,
    ),
    PolicySpec(
        "cd_gate_da", cd_gate, "theta,k,lambda", "cd_da", True, False,
        "cd_gate with the distance-aware score s_da = s x g(feature distance) in place of s", sweep=_sweep_gate,
    ),
    PolicySpec("oracle", oracle, "k", None, False, True, "teacher on the top-k clips by its own true-class prob (reference)"),
    PolicySpec(
        "frame_exit", frame_exit, "threshold", None, False, False,
        "FrameExit: teacher clip by clip in a coarse-to-fine order until its exit gate reaches the threshold",
        sweep=_sweep_frame_exit, needs_exit_score=True,
    ),
]:
    register_policy(_spec)


def list_policies() -> list[str]:
    """Names of the registered policies, in registration order."""
    return POLICIES.names()


def get_policy(name: str) -> PolicySpec:
    """The :class:`PolicySpec` registered as ``name``; :class:`ConfigError` naming the known policies if there is none."""
    return POLICIES.get(name)


@contextmanager
def _single_thread():
    """Run torch on one intra-op thread, then restore the previous count.

    Policies work on tensors of a few dozen numbers; some kernels (softmax,
    max over a dim) still fork a parallel region per call, which costs
    milliseconds when the other cores are busy.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run_policy(
    name: str,
    videos: Sequence[VideoOutputs],
    knob,
    *,
    seed: int = 0,
    repeats: int = 1,
    memos: Sequence[dict] | None = None,
) -> dict[str, float]:
    """One operating point over many videos: ``accuracy``, ``teacher_clips_per_video``, ``student_clips_per_video``
    and ``gate_steps_per_video`` (:attr:`Decision.gate_steps`; 0 but for :func:`frame_exit`).

    ``accuracy`` is the fraction of videos whose prediction equals their label
    (every video needs one). For ``random_k`` the three numbers are averaged over
    ``repeats`` draws (any policy registered ``random``); draw ``r`` uses one ``torch.Generator`` seeded with
    ``seed·1000003 + r``, consumed over the videos in order. Other policies are
    deterministic and run once. ``memos``: one dict per video, owned by the
    caller, that the policy may reuse across knobs (see the module docstring).
    Evaluation runs torch on one thread (restored afterwards): the tensors are
    tiny, and intra-op parallelism only adds overhead.
    """
    spec = _checked(name, videos, repeats)
    if memos is not None and len(memos) != len(videos):
        raise ValueError(f"memos: expected one dict per video ({len(videos)}), got {len(memos)}")
    with _single_thread():
        return _evaluate(spec, videos, knob, seed, repeats, memos if memos is not None else [None] * len(videos))


def _evaluate(spec: PolicySpec, videos: Sequence[VideoOutputs], knob, seed: int, repeats: int,
              memos: Sequence[dict | None]) -> dict[str, float]:
    """:func:`run_policy` on videos already checked (:func:`_checked`), one memo (or None) per video."""
    draws = repeats if spec.random else 1
    correct = teacher = student = gate = 0
    for repeat in range(draws):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + repeat) if spec.random else None
        for video, memo in zip(videos, memos):
            decision = spec.fn(video, knob, generator=generator, memo=memo)
            correct += decision.prediction == video.label
            teacher += decision.teacher_clips
            student += decision.student_clips
            gate += decision.gate_steps
    total = draws * len(videos)
    return {
        "accuracy": correct / total,
        "teacher_clips_per_video": teacher / total,
        "student_clips_per_video": student / total,
        "gate_steps_per_video": gate / total,
    }


def sweep_policy(name: str, videos: Sequence[VideoOutputs], knobs: Sequence, *, seed: int = 0, repeats: int = 1
                 ) -> list[dict[str, float]]:
    """:func:`run_policy` at each of ``knobs``, in order: the same numbers, computed faster.

    A policy registered with a ``sweep`` (``cd_gate``, ``cd_gate_da``) evaluates
    every knob at once; any other runs knob by knob with one memo per video,
    shared by the knobs.
    """
    spec = _checked(name, videos, repeats)
    with _single_thread():
        if spec.sweep is not None:
            return [{**result, "gate_steps_per_video": result.get("gate_steps_per_video", 0.0)}
                    for result in spec.sweep(videos, knobs)]
        memos = [{} for _ in videos]
        return [_evaluate(spec, videos, knob, seed, repeats, memos) for knob in knobs]


def _checked(name: str, videos: Sequence[VideoOutputs], repeats: int) -> PolicySpec:
    """The spec of policy ``name``, once ``videos`` are known to hold what it reads and ``repeats`` is valid."""
    spec = get_policy(name)
    if not videos:
        raise ValueError("videos: expected at least one video")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(f"repeats: expected an integer >= 1, got {repeats!r}")
    if any(video.label is None for video in videos):
        raise ConfigError(f"{name}: accuracy needs every video's label; some have none")
    if spec.needs_student and any(video.student_logits is None for video in videos):
        raise ConfigError(f"{name}: needs the outputs of the {spec.student!r} student; some videos have none")
    if spec.needs_score and any(video.student_score is None for video in videos):
        raise ConfigError(f"{name}: needs student_score (the CD student's distilled confidence); some videos have none")
    if spec.needs_exit_score and any(video.exit_score is None for video in videos):
        raise ConfigError(f"{name}: needs exit_score (FrameExit's exit gate per clip); some videos have none")
    return spec
