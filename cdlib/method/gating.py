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
clip by clip (:mod:`cdlib.experiment.timing` has a sequential path for it).

Every policy has the signature ``fn(video, knob, *, generator=None, memo=None)``.
``generator`` feeds the random policies; ``memo`` is a dict the caller owns for
this one video, in which a policy may keep results that several knobs share
(``cd_gate`` keeps its decision per ``k``, ``λ`` and ``c``, and the clips it
chooses and the teacher's probabilities on them per ``k`` and ``c``), so a sweep
over knobs runs the teacher once per clip set. Policies write nowhere else (the
geometry of the uniform grid, a pure function of ``N`` and ``k``, is cached once
per process).

Knobs: ``uniform_k``, ``random_k``, the samplers and ``oracle`` take ``k``;
``cd_topk`` takes ``(k, c)`` (or a plain ``k``, ``c = 0``) and ``cd_gate`` /
``cd_gate_da`` ``(θ, k, λ, c)`` (or ``(θ, k, λ)``, ``c = 0``, or ``(θ, k)``,
``λ = 1, c = 0``). The *coverage* ``c ∈ [0, 1]`` trades the distilled score
against temporal coverage (:func:`coverage_clips`): ``c = 0`` is the top-k
clips by ``s``, ``0 < c ≤ 1`` one clip per cell of uniform_k's grid
``u_j = ⌊(2j+1)·N/(2k)⌋``, the one maximising ``(1 − c)·ŝ_i + c·g_i``
(``ŝ`` the min-max normalised score, ``g_i = clamp(1 − |i − u_{j(i)}|/(N/k), 0, 1)``
the closeness to its cell's ``u_j``), and ``c = 1`` exactly uniform_k's clips,
combined by ``w_i = s_i^(1−c)``, so the method's knob space contains the
uniform baseline. A decision that reads nothing of the student (``cd_topk`` at
``c = 1``; ``cd_gate`` at ``θ > 1``, ``c = 1`` and ``λ = 0`` or ``k ≥ N``,
:meth:`PolicySpec.reads_student`) costs no student clips, works on a video
without student outputs, and is then :func:`uniform_k`'s decision exactly. The
family is discontinuous at ``c = 0``, which drops the one-per-cell constraint.

Policies are registered in the registry :data:`POLICIES` (``register_policy``,
``get_policy``, ``list_policies``) with their knob and what they consume;
:func:`run_policy` evaluates one operating point over many videos, and
:func:`sweep_policy` many.

Top-k everywhere: highest signal first, ties broken by the lower clip index,
``k`` clipped to ``N``; ``k < 1`` raises :class:`ConfigError`.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from cdlib.method.frame_exit import check_threshold, visiting_order
from cdlib.runtime.errors import ConfigError
from cdlib.runtime.registry import Registry

#: distilled scores are floored at this weight, so a video whose scores all underflow to 0 gets plain means
MIN_WEIGHT = 1e-12

#: a video's true-class probability is floored at this before its log (:meth:`Decision.log_likelihood`), so a
#: prediction that gives the label no mass costs a large finite amount rather than ``-inf``
MIN_LIKELIHOOD = 1e-12

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
    student: they never read a student, and nothing stands in for one; and a
    knob that reads no student, :meth:`PolicySpec.reads_student`); ``N`` is
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
    def normalised_score(self) -> Tensor:
        """``ŝ_i = (s_i − min s) / (max s − min s)`` in float64 ``[N]`` (all 0 when every ``s_i`` is equal)."""
        s = self.student_score.double()
        low, high = s.min(), s.max()
        return (s - low) / (high - low) if high > low else torch.zeros_like(s)

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

    def log_likelihood(self, label: int) -> float:
        """``log max(probs[label], MIN_LIKELIHOOD)``: how much of its mass the decision gives the true class."""
        return math.log(max(float(self.probs[label]), MIN_LIKELIHOOD))


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
    return _teacher_mean(video, uniform_clips(video.num_clips, _check_k("uniform_k", k)), 0)


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


def uniform_clips(num_clips: int, k: int) -> Tensor:
    """``u_j = ⌊(2j+1)·N/(2k)⌋``, ``j < k`` (``k`` clipped to ``N``): :func:`uniform_k`'s clips, ascending, unique.

    Cached per ``(N, k)``: the same tensor each time, not to be written to.
    """
    return _uniform_clips(num_clips, min(k, num_clips))


@functools.lru_cache(maxsize=4096)
def _uniform_clips(num_clips: int, k: int) -> Tensor:
    return torch.div((2 * torch.arange(k) + 1) * num_clips, 2 * k, rounding_mode="floor")


@functools.lru_cache(maxsize=4096)
def _cells(num_clips: int, k: int) -> tuple[Tensor, Tensor]:
    """Per clip ``i`` of ``N``: its cell ``j(i)`` (the nearest ``u_j``, ties the lower ``j``) ``[N]`` long, and its
    closeness ``g_i = clamp(1 − d_i / (N/k), 0, 1)`` with ``d_i = |i − u_{j(i)}|`` ``[N]`` float64 (``k ≤ N``). A
    pure function of ``N`` and ``k``, cached (callers must not modify the tensors)."""
    distance = (torch.arange(num_clips).unsqueeze(1) - uniform_clips(num_clips, k).unsqueeze(0)).abs()  # [N, k]
    nearest = distance.min(dim=1)  # ties: the first, i.e. the lower j
    closeness = (1 - nearest.values.double() / (num_clips / k)).clamp(0.0, 1.0)
    return nearest.indices, closeness


def coverage_clips(video: VideoOutputs, k: int, coverage: float, memo: dict | None = None) -> Tensor:
    """The clips ``S`` that :func:`cd_topk` and :func:`cd_gate` give the teacher at ``(k, c)``, ascending.

    ``c = 0``: the top-k clips by ``s``. ``0 < c ≤ 1``: one clip per cell of
    :func:`uniform_clips`, in cell ``j`` the one maximising
    ``(1 − c)·ŝ_i + c·g_i`` (ties: the lower index), ``ŝ`` the min-max normalised
    scores and ``g`` the closeness to ``u_j`` (:meth:`VideoOutputs.normalised_score`);
    ``c = 1`` is ``u_j`` itself, read without the scores. Kept in ``memo`` (when
    given) per ``(k, c)``, for every ``θ`` and ``λ``.
    """
    k = min(k, video.num_clips)
    if coverage == 1.0:
        return uniform_clips(video.num_clips, k)
    key = ("clips", k, coverage)
    clips = memo.get(key) if memo is not None else None
    if clips is not None:
        return clips
    if coverage == 0.0:
        clips = _top(video.order_by_score, k)
    else:
        # per cell, the first clip of the largest value: tensor code, no loop over the clips
        cells, closeness = _cells(video.num_clips, k)
        value = (1 - coverage) * video.normalised_score + coverage * closeness
        best = value.new_full((k,), -math.inf).scatter_reduce(0, cells, value, "amax")
        candidates = torch.where(value == best[cells], torch.arange(video.num_clips), video.num_clips)
        clips = candidates.new_full((k,), video.num_clips).scatter_reduce(0, cells, candidates, "amin")
    if memo is not None:
        memo[key] = clips
    return clips


def _coverage_weights(video: VideoOutputs, coverage: float, memo: dict | None) -> Tensor:
    """``w_i = s_i^(1−c)`` floored at :data:`MIN_WEIGHT`, ``[N, 1]`` (``c = 0``: :attr:`VideoOutputs.score_weights`),
    kept in ``memo`` per ``c``."""
    if coverage == 0.0:
        return video.score_weights
    key = ("weights", coverage)
    weights = memo.get(key) if memo is not None else None
    if weights is None:
        weights = video.student_score.pow(1 - coverage).clamp_min(MIN_WEIGHT).unsqueeze(1)
        if memo is not None:
            memo[key] = weights
    return weights


def cd_topk(video: VideoOutputs, knob, *, generator: torch.Generator | None = None,
            memo: dict | None = None) -> Decision:
    """Teacher on the clips ``S`` of :func:`coverage_clips`, combined weighted by the distilled score.

    ``knob`` is ``(k, c)``, or a plain ``k`` for ``c = 0``; the coverage
    ``c ∈ [0, 1]`` trades the score against temporal coverage. With
    ``u_j = ⌊(2j+1)·N/(2k)⌋`` (:func:`uniform_k`'s clips, ``k`` clipped to
    ``N``), each clip ``i`` in the cell of its nearest ``u_j`` (ties: the lower
    ``j``), ``d_i = |i − u_{j(i)}|``, closeness ``g_i = clamp(1 − d_i/(N/k), 0, 1)``
    and ``ŝ_i`` the video's scores min-max normalised to ``[0, 1]`` (all 0 when
    all are equal):

    - ``c = 0``: ``S`` = the top-k clips by ``s``.
    - ``0 < c ≤ 1``: one clip per cell, in cell ``j`` the one maximising
      ``(1 − c)·ŝ_i + c·g_i`` (ties: the lower index). Small ``c`` is the best
      clip by score inside each of ``k`` segments; ``c = 1`` is ``u_j`` in every
      cell, exactly :func:`uniform_k`'s clips. The family is discontinuous at
      0: ``c = 0`` drops the one-per-cell constraint.

    ``P = Σ_{i∈S} w_i q_i / Σ_{i∈S} w_i`` with ``w_i = s_i^(1−c)`` (floored at
    :data:`MIN_WEIGHT`); teacher ``min(k, N)``, student ``N``. At ``c = 1`` it
    reads nothing of the student: ``P`` is the plain teacher mean, exactly
    :func:`uniform_k`'s decision, student 0, and the video needs no student
    outputs.
    """
    k, coverage = _topk_knob(knob)
    if coverage == 1.0:
        return _uniform_decision(video, k, memo)
    _require_score("cd_topk", video)
    indices = coverage_clips(video, k, coverage, memo)
    weights = _coverage_weights(video, coverage, memo)[indices]
    probs = (weights * _teacher_probs(video, indices)).sum(dim=0) / weights.sum()
    return Decision(probs, indices.numel(), video.num_clips)


def cd_gate(video: VideoOutputs, knob: tuple, *, generator: torch.Generator | None = None,
            memo: dict | None = None) -> Decision:
    """The method: video-level early exit, else teacher on the clips of :func:`coverage_clips`, combined by
    confidence.

    ``knob`` is ``(θ, k, λ, c)``; ``(θ, k, λ)`` means ``c = 0`` and ``(θ, k)``
    means ``λ = 1, c = 0``. With ``p_i = softmax(z_S,i)``, ``q_i = softmax(z_T,i)``
    and scores ``s_i``:

    1. ``P_S = Σ_i s_i p_i / Σ_i s_i`` and ``c_exit = max_k P_S[k]``.
    2. If ``c_exit ≥ θ``: early exit, ``P = P_S``; teacher 0, student ``N``.
       ``θ > 1`` never exits (a probability never exceeds 1: the test is
       skipped), ``θ ≤ 0`` always does.
    3. Else the teacher runs on the clips ``S`` that :func:`cd_topk` takes at
       ``(k, c)`` (the top-k by ``s`` at ``c = 0``, one clip per cell of the
       uniform grid for ``c > 0``, uniform_k's clips at ``c = 1``; see
       :func:`cd_topk` for the coverage ``c``) and
       ``P ∝ Σ_{i∈S} w_i q_i + λ·Σ_{i∉S} w_i p_i`` (normalised to sum to 1)
       with ``w_i = s_i^(1−c)`` (floored at :data:`MIN_WEIGHT`), ``λ ≥ 0`` the
       weight of the student's clips; teacher ``min(k, N)``, student ``N``.
       ``λ = 0`` is :func:`cd_topk`; at ``k ≥ N`` the student term is empty.

    Honest cost: at ``θ > 1``, ``c = 1`` and ``λ = 0`` or ``k ≥ N`` the decision
    reads nothing of the student (:func:`gate_reads_student`): it is
    :func:`uniform_k`'s at ``k`` exactly (probabilities, teacher clips),
    student 0, and the video needs no student outputs.

    Step 3 does not depend on ``θ``: with a ``memo`` it is computed once per
    ``(k, λ, c)`` for this video and shared by every threshold (and the clips
    ``S`` once per ``(k, c)``, shared by every ``λ``).
    """
    theta, k, weight, coverage = _gate_knob(knob)
    if not _gate_reads(theta, k, weight, coverage, video.num_clips):
        return _uniform_decision(video, k, memo)
    _require_score("cd_gate", video)
    if theta <= 1 and video.student_estimate[1] >= theta:
        return _early_exit(video)
    return _gate_teacher(video, k, weight, coverage, memo)


def _early_exit(video: VideoOutputs) -> Decision:
    """Step 2 of :func:`cd_gate`: the student's estimate ``P_S``; teacher 0, student ``N``."""
    return Decision(video.student_estimate[0], 0, video.num_clips)


def _gate_teacher(video: VideoOutputs, k: int, weight: float, coverage: float, memo: dict | None) -> Decision:
    """Step 3 of :func:`cd_gate` at ``(k, λ, c)``, kept in ``memo`` (when given) for every threshold.

    ``λ`` is irrelevant where the student term is empty (``k ≥ N``) and is keyed
    as 0 there. At ``c = 1`` without a student term ``P`` is computed as the plain
    teacher mean (which it equals), bitwise :func:`uniform_k`'s.
    """
    k = min(k, video.num_clips)
    if k >= video.num_clips:
        weight = 0.0
    key = ("cd_gate", k, weight, coverage)
    decision = memo.get(key) if memo is not None else None
    if decision is None:
        indices = coverage_clips(video, k, coverage, memo)
        if coverage == 1.0 and weight == 0:
            decision = Decision(_selected_teacher(video, k, coverage, indices, memo, False).mean(dim=0),
                                indices.numel(), video.num_clips)
        else:
            combined = _selected_teacher(video, k, coverage, indices, memo, True)
            if weight > 0:
                combined = combined + weight * _student_rest(video, k, coverage, indices, memo)
            decision = Decision(combined / combined.sum(), indices.numel(), video.num_clips)
        if memo is not None:
            memo[key] = decision
    return decision


def _selected_teacher(video: VideoOutputs, k: int, coverage: float, indices: Tensor, memo: dict | None,
                      weighted: bool) -> Tensor:
    """``q_S`` (``weighted``: ``Σ_{i∈S} w_i q_i``) of step 3 of :func:`cd_gate`, from its one teacher call on ``S``;
    both kept in ``memo`` per ``(k, c)``, for every ``λ``."""
    key = ("teacher", k, coverage, weighted)
    value = memo.get(key) if memo is not None else None
    if value is None:
        if weighted:
            weights = _coverage_weights(video, coverage, memo)[indices]
            value = (weights * _selected_teacher(video, k, coverage, indices, memo, False)).sum(dim=0)
        else:
            value = _teacher_probs(video, indices)
        if memo is not None:
            memo[key] = value
    return value


def _student_rest(video: VideoOutputs, k: int, coverage: float, indices: Tensor, memo: dict | None) -> Tensor:
    """``Σ_{i∉S} w_i p_i`` of step 3 of :func:`cd_gate` (``k < N``), kept in ``memo`` per ``(k, c)``."""
    key = ("rest", k, coverage)
    rest = memo.get(key) if memo is not None else None
    if rest is None:
        if coverage == 0.0:  # S is the top-k by s: the rest is the order's tail
            rest = video.weighted_student_probs[video.order_by_score[k:]].sum(dim=0)
        else:
            outside = torch.ones(video.num_clips, dtype=torch.bool)
            outside[indices] = False
            weights = _coverage_weights(video, coverage, memo)
            rest = (weights[outside] * video.student_probs[outside]).sum(dim=0)
        if memo is not None:
            memo[key] = rest
    return rest


def _sweep_gate(videos: Sequence[VideoOutputs], knobs: Sequence) -> list[dict[str, float]]:
    """:func:`run_policy` of :func:`cd_gate` at each of ``knobs``, each video's decisions computed once.

    A video's early exit does not depend on the knob and its step 3 only on
    ``(k, λ, c)``; a threshold ``θ`` then only picks, per video, one of the two
    (exit where ``c_exit ≥ θ``), which one comparison does for every video. The
    clips of a ``(k, c)``, their teacher probabilities and the student term are
    computed once per video (one memo per video) and shared by the ``λ``.
    """
    total = len(videos)
    confidence = torch.tensor([video.student_estimate[1] for video in videos], dtype=torch.float64)
    exit_right, exit_likelihood = _outcomes([_early_exit(video) for video in videos], videos)
    clips = torch.tensor([video.num_clips for video in videos])
    total_clips = int(clips.sum())
    memos = [{} for _ in videos]
    # per (k, λ, c), and per k for uniform_k's decision: each video's (right, log-likelihood, teacher clips)
    by_triple: dict[tuple[int, float, float], tuple[Tensor, Tensor, Tensor]] = {}
    uniform: dict[int, tuple[Tensor, Tensor, Tensor]] = {}
    results = []
    for knob in knobs:
        theta, k, weight, coverage = _gate_knob(knob)
        if theta > 1 and coverage == 1.0:  # _gate_reads per video: only a student term (λ > 0, k < N) reads it
            reads = clips > k if weight > 0 else torch.zeros(total, dtype=torch.bool)
            some, every = bool(reads.any()), bool(reads.all())
        else:
            reads, some, every = None, True, True
        if not every and k not in uniform:  # the videos that read no student take uniform_k's decision
            decisions = [_uniform_decision(video, k, memo) for video, memo in zip(videos, memos)]
            uniform[k] = (*_outcomes(decisions, videos), torch.tensor([d.teacher_clips for d in decisions]))
        if some and (k, weight, coverage) not in by_triple:
            decisions = [_gate_teacher(video, k, weight, coverage, memo) for video, memo in zip(videos, memos)]
            by_triple[k, weight, coverage] = (*_outcomes(decisions, videos),
                                              torch.tensor([d.teacher_clips for d in decisions]))
        if every:
            teacher_right, teacher_likelihood, teacher_clips = by_triple[k, weight, coverage]
            student_clips = total_clips
        elif not some:
            teacher_right, teacher_likelihood, teacher_clips = uniform[k]
            student_clips = 0
        else:
            teacher_right, teacher_likelihood, teacher_clips = (
                torch.where(reads, read, unread) for read, unread in zip(by_triple[k, weight, coverage], uniform[k]))
            student_clips = int(clips[reads].sum())
        exits = confidence >= theta if theta <= 1 else torch.zeros(total, dtype=torch.bool)  # θ ≤ 1: all read
        results.append({
            "accuracy": int(torch.where(exits, exit_right, teacher_right).sum()) / total,
            "log_likelihood": math.fsum(torch.where(exits, exit_likelihood, teacher_likelihood).tolist()) / total,
            "teacher_clips_per_video": int(teacher_clips[~exits].sum()) / total,
            "student_clips_per_video": student_clips / total,
        })
    return results


def _outcomes(decisions: Sequence[Decision], videos: Sequence[VideoOutputs]) -> tuple[Tensor, Tensor]:
    """Per video, whether its decision is right and the decision's :meth:`Decision.log_likelihood`."""
    return (torch.tensor([d.prediction == v.label for d, v in zip(decisions, videos)]),
            torch.tensor([d.log_likelihood(v.label) for d, v in zip(decisions, videos)], dtype=torch.float64))


def _uniform_decision(video: VideoOutputs, k: int, memo: dict | None) -> Decision:
    """:func:`uniform_k`'s decision at ``k`` (bitwise: the same teacher mean), its teacher probabilities shared in
    ``memo`` with step 3 of :func:`cd_gate` at ``c = 1``; student 0."""
    k = min(k, video.num_clips)
    indices = uniform_clips(video.num_clips, k)
    return Decision(_selected_teacher(video, k, 1.0, indices, memo, False).mean(dim=0), indices.numel(), 0)


def _check_coverage(policy: str, coverage) -> float:
    if type(coverage) is float and 0.0 <= coverage <= 1.0:  # the common case, fast
        return coverage
    if isinstance(coverage, bool) or not isinstance(coverage, numbers.Real) or not 0 <= coverage <= 1:
        raise ConfigError(f"{policy}: knob coverage c must be a number in [0, 1], got {coverage!r}")
    return float(coverage)


def _topk_knob(knob) -> tuple[int, float]:
    """``(k, c)`` of a ``cd_topk`` knob, checked; a plain ``k`` means ``c = 0``."""
    if isinstance(knob, (tuple, list)):
        if len(knob) != 2:
            raise ConfigError(f"cd_topk: knob must be k or (k, coverage), got {knob!r}")
        return _check_k("cd_topk", knob[0]), _check_coverage("cd_topk", knob[1])
    return _check_k("cd_topk", knob), 0.0


def _gate_knob(knob) -> tuple[float, int, float, float]:
    """``(θ, k, λ, c)`` of a ``cd_gate`` knob, checked; ``(θ, k, λ)`` means ``c = 0``, ``(θ, k)`` means ``λ = 1``
    and ``c = 0``."""
    if not isinstance(knob, (tuple, list)) or len(knob) not in (2, 3, 4):
        raise ConfigError(f"cd_gate: knob must be (theta, k), (theta, k, lambda) or (theta, k, lambda, coverage), "
                          f"got {knob!r}")
    theta, k, weight, coverage = (*knob, 1.0, 0.0) if len(knob) == 2 else (*knob, 0.0) if len(knob) == 3 else knob
    if type(theta) is float and type(weight) is float and theta == theta and weight >= 0:  # the common case, fast
        return theta, _check_k("cd_gate", k), weight, _check_coverage("cd_gate", coverage)
    if isinstance(theta, bool) or not isinstance(theta, numbers.Real) or math.isnan(theta):
        raise ConfigError(f"cd_gate: knob theta must be a number, got {theta!r}")
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not weight >= 0:
        raise ConfigError(f"cd_gate: knob lambda (the student's weight) must be a number >= 0, got {weight!r}")
    return float(theta), _check_k("cd_gate", k), float(weight), _check_coverage("cd_gate", coverage)


def _gate_reads(theta: float, k: int, weight: float, coverage: float, num_clips: int | None) -> bool:
    """Whether :func:`cd_gate` at ``(θ, k, λ, c)`` reads the student on a video of ``num_clips`` clips (None:
    on some video, however many clips it has)."""
    return not (theta > 1 and coverage == 1.0 and (weight == 0 or (num_clips is not None and k >= num_clips)))


def topk_reads_student(knob, num_clips: int | None = None) -> bool:
    """Whether :func:`cd_topk` at ``knob`` reads the student: unless ``c = 1``."""
    return _topk_knob(knob)[1] != 1.0


def gate_reads_student(knob, num_clips: int | None = None) -> bool:
    """Whether :func:`cd_gate` at ``knob`` reads the student on a video of ``num_clips`` clips: unless ``θ > 1``
    (the exit test needs no student), ``c = 1`` (uniform_k's clips, plain mean) and ``λ = 0`` or ``k ≥ N`` (no
    student term). ``num_clips`` None: whether it reads the student on some video (``k ≥ N`` not known)."""
    return _gate_reads(*_gate_knob(knob), num_clips)


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
    says stop (:mod:`cdlib.method.frame_exit`).

    With ``order = visiting_order(N)`` (the middle clip, then the middles of the
    halves, of the quarters, ...) and ``t*`` the first step ``t`` with
    ``exit_score[order[t-1]] ≥ threshold`` (else ``N``): ``P`` is the teacher's
    mean softmax over ``order[:t*]``; teacher ``t*``, student 0, and ``t*`` gate
    evaluations (:attr:`Decision.gate_steps`). A threshold above 1 never exits
    (all ``N`` clips), one ``≤ 0`` exits after the first clip.

    ``exit_score [N]`` (:attr:`VideoOutputs.exit_score`) is the gate's output after
    the visit of each clip, computed beforehand from the teacher's outputs on every
    clip (:func:`cdlib.experiment.exit_gate.get_exit_scores`). That makes this evaluation exact:
    the gate after step ``t`` reads only the clips visited up to ``t``, so the
    scores of the clips after ``t*``, which a deployment never computes, change
    nothing. A deployment runs the teacher step by step instead and cannot make one
    teacher call for the clips it will use (the contract of this module), since
    which clips it runs depends on the teacher's answers: :mod:`cdlib.experiment.timing` times
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
    likelihoods = [[] for _ in knobs]  # per knob, each video's log-likelihood, summed exactly (math.fsum) at the end
    clips = torch.zeros(len(knobs), dtype=torch.long)
    for video in videos:
        _require_exit_score("frame_exit", video)
        # compared in the scores' dtype, as frame_exit compares them
        running_max = video.exit_score[visiting_order(video.num_clips)].cummax(dim=0).values
        steps = (torch.searchsorted(running_max, thresholds.to(running_max.dtype), side="left") + 1
                 ).clamp_max(video.num_clips)
        decisions = {int(t): _exit_decision(video, int(t), None) for t in steps.unique()}
        correct += torch.tensor([decisions[int(t)].prediction == video.label for t in steps])
        for values, t in zip(likelihoods, steps.tolist()):
            values.append(decisions[t].log_likelihood(video.label))
        clips += steps
    return [{
        "accuracy": int(c) / total,
        "log_likelihood": math.fsum(values) / total,
        "teacher_clips_per_video": int(t) / total,
        "student_clips_per_video": 0 / total,
        "gate_steps_per_video": int(t) / total,
    } for c, values, t in zip(correct, likelihoods, clips)]


Policy = Callable[..., Decision]


@dataclass(frozen=True)
class PolicySpec:
    """A registered policy: its function, knob and what it consumes.

    ``knob``: ``"k"``, ``"k,coverage"``, ``"theta,k,lambda,coverage"`` or None.
    ``student``: which student's outputs it uses (None, or a student registered
    in :data:`cdlib.experiment.students.STUDENTS`); :attr:`needs_student` follows from it.
    ``student_reads``: for a policy with a student that some knobs do not read,
    ``(knob, num_clips) -> bool`` (:meth:`reads_student`). ``needs_score``: it reads the distilled
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
    student_reads: Callable[[object, int | None], bool] | None = None
    needs_exit_score: bool = False

    def __post_init__(self):
        if self.random and self.sweep is not None:
            raise ValueError(f"{self.name}: a random policy is averaged over seeded draws by run_policy, not swept")

    @property
    def needs_student(self) -> bool:
        """It reads a student's outputs (``student`` is set): :func:`run_policy` refuses videos without them."""
        return self.student is not None

    def reads_student(self, knob, num_clips: int | None = None) -> bool:
        """Whether the decision at ``knob`` reads anything of the student (on a video of ``num_clips`` clips; None:
        on some video). False for a policy without a student; True for one with a student, unless its
        ``student_reads`` says otherwise (``cd_topk`` at ``c = 1``; ``cd_gate`` at ``θ > 1``, ``c = 1`` and
        ``λ = 0`` or ``k ≥ N``). A decision that reads no student costs no student clips, works on a video
        without student outputs, and the timed pipeline does not run the student for it."""
        if self.student is None:
            return False
        return True if self.student_reads is None else self.student_reads(knob, num_clips)

    def knob_values(self, num_clips: int, thetas: Sequence[float] = (), student_weights: Sequence[float] = (1.0,),
                    coverages: Sequence[float] = (0.0,), exit_thresholds: Sequence[float] = DEFAULT_EXIT_THRESHOLDS
                    ) -> list:
        """The full sweep: ``[None]``; ``k = 1..N``; for ``"k,coverage"`` every ``(k, c)`` with ``k = 1..N`` and
        ``c`` in ``coverages``; every ``(θ, k, λ, c)`` with ``θ`` in ``thetas``, ``k = 1..N``, ``λ`` in
        ``student_weights`` and ``c`` in ``coverages`` (in that nesting order); for the knob ``"threshold"``
        (:func:`frame_exit`) the values of ``exit_thresholds``."""
        ks = list(range(1, num_clips + 1))
        if self.knob is None:
            return [None]
        if self.knob == "threshold":
            return [float(threshold) for threshold in exit_thresholds]
        if self.knob == "k":
            return ks
        if self.knob == "k,coverage":
            return [(k, coverage) for k in ks for coverage in coverages]
        return [(theta, k, weight, coverage) for theta in thetas for k in ks for weight in student_weights
                for coverage in coverages]


#: every policy by name (:class:`~cdlib.runtime.registry.Registry`), added by :func:`register_policy`
POLICIES: Registry[PolicySpec] = Registry("policy")


def register_policy(spec: PolicySpec) -> PolicySpec:
    """Add ``spec`` to :data:`POLICIES` under ``spec.name``, with its description; returns it.

    The benchmark sweeps every registered policy and the figures draw it, so a
    policy registered here needs no other list.
    """
    return POLICIES.register(spec.name, spec, spec.description)


def _cd_topk_spec(name: str, student: str, description: str) -> PolicySpec:
    """:func:`cd_topk` on the scores of ``student``."""
    return PolicySpec(name, cd_topk, "k,coverage", student, True, False, description,
                      student_reads=topk_reads_student)


def _cd_gate_spec(name: str, student: str, description: str) -> PolicySpec:
    """:func:`cd_gate` on the outputs of ``student``."""
    return PolicySpec(name, cd_gate, "theta,k,lambda,coverage", student, True, False, description,
                      sweep=_sweep_gate, student_reads=gate_reads_student)


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
    _cd_topk_spec("cd_topk", "cd", "teacher on the top-k clips by distilled score (coverage c: one per segment, "
                  "c = 1 uniform), s-weighted"),
    _cd_gate_spec("cd_gate", "cd", "early exit at student confidence theta, else cd_topk + lambda x student"),
    _cd_gate_spec("cd_gate_da", "cd_da", "cd_gate with the distance-aware score s_da = s x g(feature distance) in "
                  "place of s"),
    _cd_topk_spec("cd_topk_ctx", "cd_ctx", "cd_topk with the context student's score (each clip's score sees the "
                  "whole video)"),
    _cd_gate_spec("cd_gate_ctx", "cd_ctx", "cd_gate with the context student (cdlib.method.context) in place of the "
                  "per-clip CD student"),
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
    """One operating point over many videos: ``accuracy``, ``log_likelihood``, ``teacher_clips_per_video``,
    ``student_clips_per_video`` and ``gate_steps_per_video`` (:attr:`Decision.gate_steps`; 0 but for :func:`frame_exit`).

    ``accuracy`` is the fraction of videos whose prediction equals their label
    (every video needs one), ``log_likelihood`` the mean over videos of
    ``log max(P[y], MIN_LIKELIHOOD)`` (:meth:`Decision.log_likelihood`), which
    breaks ties in accuracy when points are chosen on val
    (:func:`cdlib.method.selection.select_best`). For ``random_k`` the numbers are averaged over
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
    likelihoods = []  # summed exactly (math.fsum), so that a sweep's different order gives the same mean
    for repeat in range(draws):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + repeat) if spec.random else None
        for video, memo in zip(videos, memos):
            decision = spec.fn(video, knob, generator=generator, memo=memo)
            correct += decision.prediction == video.label
            likelihoods.append(decision.log_likelihood(video.label))
            teacher += decision.teacher_clips
            student += decision.student_clips
            gate += decision.gate_steps
    total = draws * len(videos)
    return {
        "accuracy": correct / total,
        "log_likelihood": math.fsum(likelihoods) / total,
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
