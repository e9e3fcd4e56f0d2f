"""The benchmark shared by ``python -m cdlib bench`` and the book.

:func:`run_benchmark` trains (or loads) the teacher and the student ladder,
evaluates every registered gating policy over its whole knob range on the val
and the test split, chooses each policy's operating points on val, counts FLOPs
per clip with torch's flop counter, times the chosen points end to end (student
and teacher really run) on a fixed thread count, and measures how well each
confidence signal predicts that the teacher is right on a clip. The result is
itself an artifact keyed by the config, so the book and a second run read the
same numbers.

The JSON (what :func:`run_benchmark` returns and ``bench --out`` writes):

- ``version``, ``profile``, ``seed``, ``config_hash``, ``config``, ``environment``;
  ``data``: the data config with ``val_videos`` and ``test_videos``.
- ``cost``: GFLOPs per clip of teacher and student (the CD student's), their
  ratio, clips per test video, the clip shape, and ``gflops_per_clip`` of every
  model (the ``cd_da`` student's includes its feature distance). A policy's
  compute counts the student it uses.
- ``policies``: per policy, one point per knob value (``cd_gate``: every
  ``(θ, k, λ)``). Each point has its ``knob``; on the test split ``accuracy``,
  ``gflops_per_video``, ``teacher_clips_per_video``, ``student_clips_per_video``;
  on the val split ``val_accuracy`` and ``val_gflops_per_video``; and where it
  was timed ``wall_s_per_video``, ``wall_ratio_to_dense`` and ``wall_videos``
  (how many test videos the timing covers), plus, for the selected points,
  ``throughput_s_per_video`` and ``throughput_wall_ratio_to_dense``.
- ``selected``: per policy, indices into its points. ``matched`` is the
  cheapest point by val compute whose val accuracy is at least the dense
  teacher's val accuracy (None if no point reaches it; ties in compute go to
  the more accurate point, then the first); ``best`` the point with the highest
  val accuracy (ties go to the cheaper point, then the first).
  ``upper_bound_matched`` and ``upper_bound_best`` apply the same rules to the
  test split's accuracy and compute: they look at the test labels, so they are
  upper bounds, not operating points a user could have chosen in advance
  (:func:`select_points`).
- ``summary``: ``selection`` (``"val"``); the dense teacher's test accuracy,
  val accuracy and GFLOPs per video; for ``cd_gate``, from its ``matched``
  point, ``cd_gflops_ratio_at_dense_accuracy`` (test FLOPs relative to the
  dense teacher), ``cd_test_accuracy_at_matched_point``,
  ``cd_wall_ratio_at_dense_accuracy`` (latency mode) and
  ``cd_throughput_wall_ratio_at_dense_accuracy``, and from its ``best`` point
  ``cd_best_accuracy`` (test) and ``cd_accuracy_gain`` (minus the dense
  teacher's test accuracy); per policy ``gflops_ratio_at_dense_accuracy`` and
  ``test_accuracy_at_matched_point`` of its ``matched`` point (None: never
  matched on val) and ``best_accuracy``, the test accuracy of its ``best``
  point; the areas under the test accuracy-vs-compute curves relative
  to the oracle's (``cd_auc_vs_oracle``, ``sampler_maxprob_auc_vs_oracle``,
  ``auc_vs_oracle``); ``ce_baseline``, the label-only student the headline
  comparison uses (:func:`ce_baseline`); and ``upper_bound``, the same
  selection keys from the test-selected points, with ``selection: "test"``.
- ``confidence_auroc``, ``confidence_auprc`` (test clips) and
  ``confidence_auroc_val`` (val clips): per confidence signal, how well it
  predicts that the teacher's top class on a clip is the video's label
  (:func:`confidence_signals`).
- ``distance``: the distance-aware confidences tried for ``cd_da``, with the
  val AUROC that chose one and the test AUROC of each (:func:`distance_report`).
- ``wall_clock``: how the times were taken (below): ``selected_videos``,
  ``curve_videos``, ``passes``, ``throughput_batch``, ``threads``; None when
  the result was not timed.

Wall-clock time (:func:`measure_wall_clock`) runs the real pipeline on the
first test videos: preprocessing, the student on all of a video's clips (for
the policies that use one), the policy's decision and the teacher on the clips
it asks for, on ``bench.num_threads`` threads. On the CPU every model is frozen
for inference by :func:`cdlib.models.inference_module`; on a GPU the models run
eager under the runtime's bf16 autocast, and every timed call ends with a
synchronisation of the device (:func:`cdlib.cost.timing_model`).

- *Latency* (``wall_ratio_to_dense``): one video at a time, as a service
  answers one request. Over ``bench.wall_repeats`` passes, each test video is
  run by every timed point in turn before the next video, so all points see the
  same quiet and busy moments of the machine. Each (point, video) is timed by
  its fastest pass (other work only ever adds time), and the ratio is the
  point's total over the timed videos divided by the dense teacher's total
  over the same videos (:func:`cdlib.cost.ratio_of_totals`): a ratio of costs,
  in which a video on which an adaptive policy runs the teacher counts in
  full. ``wall_s_per_video`` is the point's total divided by the number of
  videos.
- *Throughput* (``throughput_wall_ratio_to_dense``): videos in batches of
  ``bench.throughput_batch``, as an offline job: preprocessing and the student
  on all clips of the batch in one call, every video's decision, then one
  teacher call on the clips the decisions asked for, gathered across the
  batch. The same passes and ratio, over batches.

The selected points of every policy (``selected``) and the dense teacher are
timed in both modes on ``bench.wall_selected_videos`` test videos (all of them
if there are fewer). The other points of each curve are timed in latency mode
only, on ``bench.wall_videos`` videos (0, the ``ci`` default: not timed), as
each point's ``wall_videos`` says.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
from typing import Callable, Sequence

import torch

from cdlib.artifacts import ArtifactStore, atomic_write, code_version
from cdlib.calibration import auprc, auroc
from cdlib.config import Config, config_hash
from cdlib.cost import fastest_totals, flops_per_clip, ratio_of_totals, time_interleaved, timing_model, video_gflops
from cdlib.data import skipped_videos
from cdlib.device import autocast, configure_backend, resolve_runtime, synchronize, to_device
from cdlib.gating import POLICIES, Decision, PolicySpec, VideoOutputs, get_policy, list_policies, run_policy
from cdlib.models import preprocess
from cdlib.progress import log, progress_bar
from cdlib.runs import STUDENT_VARIANTS, STUDENTS, get_clips, get_distance_fit, get_features, get_model, get_outputs, model_spec_of

VERSION = 2


# ----------------------------------------------------------------------------- per-video outputs

def split_by_video(outputs: dict[str, torch.Tensor], key: str) -> list[torch.Tensor]:
    """Cut a per-clip tensor into one tensor per video (clips are stored video by video)."""
    counts = torch.bincount(outputs["video"]).tolist()
    return list(torch.split(outputs[key], counts))


def video_outputs(teacher: dict, student: dict | None) -> list[VideoOutputs]:
    """One :class:`VideoOutputs` per video of a split from precomputed per-clip outputs.

    ``student`` None (teacher-only policies): videos without student outputs.
    """
    labels = torch.zeros(int(teacher["video"].max()) + 1, dtype=torch.long)
    labels[teacher["video"]] = teacher["labels"]
    teacher_logits = split_by_video(teacher, "logits")
    none = [None] * len(labels)
    student_logits = split_by_video(student, "logits") if student is not None else none
    scores = split_by_video(student, "score_logit") if student is not None and "score_logit" in student else none
    return [
        VideoOutputs.precomputed(s, t, torch.sigmoid(sc) if sc is not None else None, int(y))
        for s, t, sc, y in zip(student_logits, teacher_logits, scores, labels)
    ]


# ----------------------------------------------------------------------------- confidence signals

#: the two label-only students: their max-softmax signal and the sampler policy it drives
CE_BASELINES = {"ce": ("student_maxprob", "sampler_maxprob"), "ce_all": ("ce_all_maxprob", "sampler_ce_all")}


def confidence_signals(outputs: dict[str, dict]) -> dict[str, torch.Tensor]:
    """Per-clip confidence signals on the same clips: the CD score, its distance-aware form and each model's
    max-softmax.

    ``cd`` is the distilled score ``s``, ``cd_da`` the distance-aware ``s_da``
    (:mod:`cdlib.distance`); ``student_maxprob`` is the CE student trained on the
    teacher's clips, ``ce_all_maxprob`` the CE student trained on every clip (as
    the KD and CD students).
    """
    maxprob = {which: outputs[which]["logits"].softmax(-1).amax(-1) for which in ("teacher", *STUDENT_VARIANTS)}
    return {
        "cd": torch.sigmoid(outputs["cd"]["score_logit"]),
        "cd_da": torch.sigmoid(outputs["cd_da"]["score_logit"]),
        "student_maxprob": maxprob["ce"],
        "ce_all_maxprob": maxprob["ce_all"],
        "kd_maxprob": maxprob["kd"],
        "cd_maxprob": maxprob["cd"],
        "teacher_maxprob": maxprob["teacher"],
    }


def distance_report(cfg: Config, test: dict[str, dict], store: ArtifactStore | None = None) -> dict:
    """The ``distance`` block: every distance-aware candidate of ``cfg.distance`` (:func:`cdlib.runs.get_distance_fit`)
    with its ``method``, ``quantile``, gate ``reference`` and ``scale``, its ``val_auroc`` (what chose it) and
    its ``test_auroc`` (what it measures on the test clips), and the ``chosen`` one (the ``cd_da`` signal)."""
    fit = get_distance_fit(cfg, store)
    features = get_features(cfg, "test", store)
    score = torch.sigmoid(test["cd"]["score_logit"])
    correct = teacher_correct(test["teacher"])
    candidates = {}
    for name, confidence in fit.candidates.items():
        method, _, quantile = name.partition("@")
        candidates[name] = {"method": method, "quantile": float(quantile), "reference": confidence.gate.reference,
                            "scale": confidence.gate.scale, "val_auroc": fit.val_auroc[name],
                            "test_auroc": auroc(confidence(score, features), correct)}
    return {"chosen": fit.chosen, "candidates": candidates}


def teacher_correct(teacher: dict) -> torch.Tensor:
    """Whether the teacher's top class on each clip is the video's label."""
    return teacher["logits"].argmax(-1) == teacher["labels"]


def signal_quality(signals: dict[str, torch.Tensor], correct: torch.Tensor) -> dict[str, dict[str, float]]:
    """AUROC and AUPRC of each signal for predicting that the teacher is right on a clip."""
    return {name: {"auroc": auroc(s, correct), "auprc": auprc(s, correct)} for name, s in signals.items()}


def ce_baseline(val_auroc: dict[str, float]) -> dict:
    """The label-only student the headline comparison uses: the stronger of the two, chosen on val.

    Of ``ce`` (trained on the teacher's clips) and ``ce_all`` (trained on every
    clip, as the distilled students are), the one whose max-softmax has the
    higher AUROC for "teacher right on a clip" on the val clips (ties: ``ce``),
    so that the distilled score is compared with the better label-only signal
    without looking at the test split. Returns ``student``, its ``signal`` and
    ``policy`` names and the two ``val_auroc`` values.
    """
    scores = {student: val_auroc[signal] for student, (signal, _) in CE_BASELINES.items()}
    student = max(scores, key=lambda name: (_finite(scores[name]), name == "ce"))
    signal, policy = CE_BASELINES[student]
    return {"student": student, "signal": signal, "policy": policy, "val_auroc": scores}


def ce_baseline_of(results: Sequence[dict]) -> dict:
    """:func:`ce_baseline` on the val AUROCs of benchmark ``results`` (one per seed), averaged over them."""
    signals = [signal for signal, _ in CE_BASELINES.values()]
    return ce_baseline({name: sum(r["confidence_auroc_val"][name] for r in results) / len(results) for name in signals})


def _finite(value: float) -> float:
    return value if value == value else -math.inf  # NaN (one class only) ranks last


# ----------------------------------------------------------------------------- curves, selection and summary

def pareto_front(points: Sequence[dict]) -> list[dict]:
    """The points no other point beats: sorted by FLOPs, each more accurate than every cheaper one."""
    front: list[dict] = []
    for point in sorted(points, key=lambda p: (p["gflops_per_video"], -p["accuracy"])):
        if not front or point["accuracy"] > front[-1]["accuracy"]:
            front.append(point)
    return front


def curve_area(points: Sequence[dict], upper: float) -> float:
    """Area under the best-accuracy-at-most-x step curve over FLOPs ``[0, upper]``.

    ``acc(x) = max{accuracy of p : gflops(p) <= x}`` (0 before the cheapest point);
    ``area = ∫_0^upper acc(x) dx``. The ratio of two such areas over the same range
    compares whole accuracy-vs-compute curves.
    """
    area = 0.0
    front = [p for p in pareto_front(points) if p["gflops_per_video"] < upper]
    for point, following in zip(front, front[1:] + [None]):
        end = following["gflops_per_video"] if following is not None else upper
        area += point["accuracy"] * (end - point["gflops_per_video"])
    return area


#: slack in accuracy and cost comparisons of the selection rules (accuracies are fractions of videos)
_TOLERANCE = 1e-12


def select_matched(points: Sequence[dict], target: float, accuracy: str = "val_accuracy",
                   cost: str = "val_gflops_per_video") -> int | None:
    """Index of the cheapest point whose ``accuracy`` is at least ``target`` (None if none is).

    ``argmin_i cost_i`` over ``{i : accuracy_i >= target}``; ties in cost go to
    the more accurate point, then to the first. The keys name the split the rule
    looks at: val by default, ``accuracy="accuracy", cost="gflops_per_video"``
    for the test split (an upper bound).
    """
    reaching = [i for i, p in enumerate(points) if p[accuracy] >= target - _TOLERANCE]
    return min(reaching, key=lambda i: (points[i][cost], -points[i][accuracy], i)) if reaching else None


def select_best(points: Sequence[dict], accuracy: str = "val_accuracy", cost: str = "val_gflops_per_video",
                budget: float | None = None) -> int | None:
    """Index of the most accurate point whose ``cost`` is at most ``budget`` (None: any cost).

    ``argmax_i accuracy_i`` over ``{i : cost_i <= budget}``; ties in accuracy go
    to the cheaper point, then to the first. None if no point is that cheap.
    """
    within = [i for i, p in enumerate(points) if budget is None or p[cost] <= budget + _TOLERANCE]
    return min(within, key=lambda i: (-points[i][accuracy], points[i][cost], i)) if within else None


def select_points(policies: dict[str, list[dict]]) -> dict[str, dict[str, int | None]]:
    """Per policy, the indices of its ``matched`` and ``best`` points chosen on val, and the test-selected
    ``upper_bound_matched`` and ``upper_bound_best``; the target is the dense teacher's accuracy on each split."""
    dense = policies["dense_teacher"][0]
    test = {"accuracy": "accuracy", "cost": "gflops_per_video"}
    return {
        name: {
            "matched": select_matched(points, dense["val_accuracy"]),
            "best": select_best(points),
            "upper_bound_matched": select_matched(points, dense["accuracy"], **test),
            "upper_bound_best": select_best(points, **test),
        }
        for name, points in policies.items()
    }


def summarize(policies: dict[str, list[dict]]) -> dict:
    """The ``summary`` block of the benchmark JSON (module docstring) from every policy's points."""
    selected = select_points(policies)
    dense = policies["dense_teacher"][0]
    upper = dense["gflops_per_video"]
    oracle_area = curve_area(policies["oracle"], upper)

    def area_vs_oracle(points) -> float:  # NaN when the oracle has no point cheaper than the dense teacher
        return curve_area(points, upper) / oracle_area if oracle_area > 0 else float("nan")

    def at(name: str, which: str, key: str):
        index = selected[name][which]
        return policies[name][index].get(key) if index is not None else None

    def selection_keys(matched: str, best: str) -> dict:
        ratio = {name: (at(name, matched, "gflops_per_video") / upper if selected[name][matched] is not None else None)
                 for name in policies}
        return {
            "cd_gflops_ratio_at_dense_accuracy": ratio["cd_gate"],
            "cd_test_accuracy_at_matched_point": at("cd_gate", matched, "accuracy"),
            "cd_wall_ratio_at_dense_accuracy": at("cd_gate", matched, "wall_ratio_to_dense"),
            "cd_throughput_wall_ratio_at_dense_accuracy": at("cd_gate", matched, "throughput_wall_ratio_to_dense"),
            "cd_best_accuracy": at("cd_gate", best, "accuracy"),
            "cd_accuracy_gain": at("cd_gate", best, "accuracy") - dense["accuracy"],
            "gflops_ratio_at_dense_accuracy": ratio,
            "test_accuracy_at_matched_point": {name: at(name, matched, "accuracy") for name in policies},
            "best_accuracy": {name: at(name, best, "accuracy") for name in policies},
        }

    return {
        "selection": "val",
        "dense_teacher_accuracy": dense["accuracy"],
        "dense_teacher_val_accuracy": dense["val_accuracy"],
        "dense_teacher_gflops_per_video": upper,
        **selection_keys("matched", "best"),
        "cd_auc_vs_oracle": area_vs_oracle(policies["cd_gate"]),
        "sampler_maxprob_auc_vs_oracle": area_vs_oracle(policies["sampler_maxprob"]),
        "auc_vs_oracle": {name: area_vs_oracle(points) for name, points in policies.items()},
        "upper_bound": {"selection": "test", **selection_keys("upper_bound_matched", "upper_bound_best")},
    }


# ----------------------------------------------------------------------------- evaluation

def sweep_policies(cfg: Config, test: dict[str, dict], val: dict[str, dict], cost: dict,
                   policies: Sequence[str] | None = None) -> dict[str, list[dict]]:
    """Accuracy and cost of every policy over its whole knob range, on the test and on the val videos.

    ``test`` and ``val`` are the per-clip outputs of the teacher and every student
    on each split (:func:`collect_outputs`). The knob range is the same on both
    splits (``k`` up to the most clips of any video of either).
    """
    videos = {}
    for split, outputs in (("test", test), ("val", val)):
        videos[split] = {None: video_outputs(outputs["teacher"], None)}
        for variant in STUDENTS:
            videos[split][variant] = video_outputs(outputs["teacher"], outputs[variant])
    max_clips = max(v.num_clips for split in videos.values() for v in split[None])

    def gflops(run, student):
        student_flops = cost["flops_per_clip"][student] if student is not None else 0.0
        return video_gflops(run["student_clips_per_video"], run["teacher_clips_per_video"], student_flops,
                            cost["teacher_flops_per_clip"])

    result = {}
    for name in policies or list_policies():
        spec = get_policy(name)
        memos = {split: [{} for _ in videos[split][spec.student]] for split in videos}  # shared by the knobs
        points = []
        for knob in progress_bar(spec.knob_values(max_clips, cfg.bench.thetas, cfg.bench.student_weights),
                                 desc=f"policy {name}"):
            runs = {split: run_policy(name, videos[split][spec.student], knob, seed=cfg.seed,
                                      repeats=cfg.bench.random_repeats, memos=memos[split]) for split in videos}
            points.append({
                "knob": list(knob) if isinstance(knob, tuple) else knob,
                "accuracy": runs["test"]["accuracy"],
                "gflops_per_video": gflops(runs["test"], spec.student),
                "teacher_clips_per_video": runs["test"]["teacher_clips_per_video"],
                "student_clips_per_video": runs["test"]["student_clips_per_video"],
                "val_accuracy": runs["val"]["accuracy"],
                "val_gflops_per_video": gflops(runs["val"], spec.student),
            })
        result[name] = points
    return result


class _TeacherPending(Exception):
    """Raised by :class:`_GatheredTeacher` to stop a policy at its teacher call."""


class _GatheredTeacher:
    """The teacher of one video of a batch (throughput mode).

    The first call records the clips the policy asks for and stops it with
    :class:`_TeacherPending`; once the batch's teacher has run on the clips that
    every video asked for, ``logits`` is set and the policy runs again to the
    end. This relies on the contract of :mod:`cdlib.gating`: one teacher call
    per video, on clips chosen without the teacher's answer.
    """

    def __init__(self):
        self.indices: torch.Tensor | None = None
        self.logits: torch.Tensor | None = None

    def __call__(self, indices: torch.Tensor) -> torch.Tensor:
        if self.logits is None:
            self.indices = indices
            raise _TeacherPending
        return self.logits


class TimedPipeline:
    """The real inference pipeline on the first ``num_videos`` test videos, as the wall-clock timing runs it.

    Models run as :func:`cdlib.cost.timing_model` places them on the runtime's
    device (frozen by :func:`cdlib.models.inference_module` on the CPU, eager
    under bf16 autocast on a GPU); clips stay uint8 until
    :func:`cdlib.models.preprocess`, which is part of every timed run.
    """

    def __init__(self, cfg: Config, num_videos: int, store: ArtifactStore | None = None):
        self.runtime = resolve_runtime(cfg)
        source = get_clips(cfg, "test", store)
        self.clips = [source.video_clips(v) for v in range(min(num_videos, source.num_videos))]
        self.labels = source.video_labels()[:num_videos].tolist()
        self.teacher = timing_model(get_model(cfg, "teacher", store).model, self.runtime)
        used = {spec.student for spec in POLICIES.values()} - {None}
        self.students = {v: timing_model(get_model(cfg, v, store).model, self.runtime)
                         for v in STUDENTS if v in used}

    def _video(self, v: int, teacher, logits=None, score_logit=None) -> VideoOutputs:
        """Video ``v`` for a policy: its student's outputs if it has a student, else none (teacher-only)."""
        score = torch.sigmoid(score_logit) if score_logit is not None else None
        return VideoOutputs(logits, teacher, score, self.labels[v], len(self.clips[v]))

    @torch.inference_mode()
    def run_video(self, spec: PolicySpec, knob, v: int, generator: torch.Generator) -> Decision:
        """Latency mode: video ``v`` alone, the teacher called lazily on the clips the policy asks for."""
        with autocast(self.runtime):
            x = preprocess(to_device(self.clips[v], self.runtime))
            teacher = lambda idx: self.teacher(x[idx])  # noqa: E731 - the lazy teacher of this video
            outputs = self.students[spec.student](x) if spec.student is not None else (None, None)
            return spec.fn(self._video(v, teacher, *outputs), knob, generator=generator)

    @torch.inference_mode()
    def run_batch(self, spec: PolicySpec, knob, videos: Sequence[int], generator: torch.Generator
                  ) -> list[Decision]:
        """Throughput mode: the student on every clip of ``videos`` in one call, each video's decision, and one
        teacher call on the clips all the decisions asked for."""
        with autocast(self.runtime):
            return self._run_batch(spec, knob, videos, generator)

    def _run_batch(self, spec: PolicySpec, knob, videos: Sequence[int], generator: torch.Generator
                   ) -> list[Decision]:
        counts = [len(self.clips[v]) for v in videos]
        x = preprocess(to_device(torch.cat([self.clips[v] for v in videos]), self.runtime))
        starts = torch.tensor([0, *counts[:-1]]).cumsum(0).tolist()
        if spec.student is not None:
            logits, score_logit = self.students[spec.student](x)
            per_video = list(zip(torch.split(logits, counts), torch.split(score_logit, counts)))
        else:
            per_video = [()] * len(videos)
        decisions, pending = [], []
        for i, (v, start, outputs) in enumerate(zip(videos, starts, per_video)):
            teacher = _GatheredTeacher()
            video = self._video(v, teacher, *outputs)
            state = generator.get_state()
            try:
                decisions.append(spec.fn(video, knob, generator=generator))
            except _TeacherPending:
                decisions.append(None)
                pending.append((i, video, teacher, start, state))
        if pending:
            gathered = self.teacher(x[torch.cat([teacher.indices + start for _, _, teacher, start, _ in pending])])
            offset = 0
            for i, video, teacher, _, state in pending:
                teacher.logits = gathered[offset:offset + teacher.indices.numel()]
                offset += teacher.indices.numel()
                generator.set_state(state)  # the same draws as the first, interrupted run
                decisions[i] = spec.fn(video, knob, generator=generator)
        return decisions


def measure_wall_clock(cfg: Config, policies: dict[str, list[dict]], selected: dict[str, dict[str, int | None]],
                       store: ArtifactStore | None = None, clock: Callable[[], float] = time.perf_counter) -> dict:
    """Time the operating points end to end and add the wall-clock keys to them (module docstring).

    The points named in ``selected`` (:func:`select_points`) and the dense
    teacher are timed in latency and throughput mode on the first
    ``bench.wall_selected_videos`` test videos; every other point in latency
    mode on the first ``bench.wall_videos``. Returns the ``wall_clock`` block.
    """
    torch.set_num_threads(cfg.bench.num_threads)
    num_test = get_clips(cfg, "test", store).num_videos
    selected_videos = min(cfg.bench.wall_selected_videos, num_test)
    curve_videos = min(cfg.bench.wall_videos, num_test)
    pipeline = TimedPipeline(cfg, max(selected_videos, curve_videos), store)
    chosen = {("dense_teacher", 0)} | {(name, i) for name, picks in selected.items()
                                       for i in picks.values() if i is not None}
    chosen = [key for key in _all_points(policies) if key in chosen]  # in the policies' order, dense first
    rest = [key for key in _all_points(policies) if key not in chosen]

    def timed(keys, run, units, desc):
        """Per point: seconds per video and the ratio of totals to the dense teacher (the first key)."""
        calls = []
        for name, i in keys:
            spec, knob = get_policy(name), _knob(policies[name][i]["knob"])
            generator = torch.Generator().manual_seed(cfg.seed)
            # synchronised after each call, so a GPU's queued kernels are counted to their end
            calls.append(lambda unit, spec=spec, knob=knob, generator=generator:
                         (run(spec, knob, unit, generator), synchronize(pipeline.runtime.device)))
        seconds = time_interleaved(calls, units, cfg.bench.wall_repeats, clock=clock, desc=desc)
        videos = sum(len(u) if isinstance(u, range) else 1 for u in units)
        return (fastest_totals(seconds) / videos).tolist(), ratio_of_totals(seconds, 0).tolist()

    log(f"timing {len(chosen)} selected operating points on {selected_videos} test videos")
    latency = timed(chosen, pipeline.run_video, list(range(selected_videos)), "latency passes")
    batch = cfg.bench.throughput_batch
    batches = [range(s, min(s + batch, selected_videos)) for s in range(0, selected_videos, batch)]
    throughput = timed(chosen, pipeline.run_batch, batches, "throughput passes")
    for (name, i), wall, ratio, t_wall, t_ratio in zip(chosen, *latency, *throughput):
        policies[name][i].update(wall_s_per_video=wall, wall_ratio_to_dense=ratio, wall_videos=selected_videos,
                                 throughput_s_per_video=t_wall, throughput_wall_ratio_to_dense=t_ratio)
    if curve_videos > 0 and rest:
        log(f"timing the other {len(rest)} operating points on {curve_videos} test videos")
        curve = timed([("dense_teacher", 0), *rest], pipeline.run_video, list(range(curve_videos)), "curve passes")
        for (name, i), wall, ratio in zip(rest, curve[0][1:], curve[1][1:]):
            policies[name][i].update(wall_s_per_video=wall, wall_ratio_to_dense=ratio, wall_videos=curve_videos)
    return {"selected_videos": selected_videos, "curve_videos": curve_videos if rest else 0,
            "passes": cfg.bench.wall_repeats, "throughput_batch": batch, "threads": cfg.bench.num_threads}


def _all_points(policies: dict[str, list[dict]]) -> list[tuple[str, int]]:
    """(policy, index) of every point, the dense teacher first."""
    keys = [(name, i) for name, points in policies.items() for i in range(len(points))]
    return sorted(keys, key=lambda key: key != ("dense_teacher", 0))


def _knob(value):
    """A point's knob as the policy takes it (JSON turns tuples into lists)."""
    return tuple(value) if isinstance(value, list) else value


def measure_cost(cfg: Config, store: ArtifactStore | None = None) -> dict:
    """FLOPs per clip of the teacher and of every student (``flops_per_clip``; ``student_flops_per_clip`` is the CD
    student's, the method's), counted by torch's flop counter on one clip of the test split's shape."""
    source = get_clips(cfg, "test", store)
    shape = (3, *source.clip_shape[:3])
    flops = {which: flops_per_clip(get_model(cfg, which, store).model, shape) for which in ("teacher", *STUDENTS)}
    teacher, student = flops["teacher"], flops["cd"]
    counts = torch.bincount(source.video).float()
    return {
        "flops_per_clip": flops,
        "teacher_flops_per_clip": teacher,
        "student_flops_per_clip": student,
        "teacher_gflops_per_clip": teacher / 1e9,
        "student_gflops_per_clip": student / 1e9,
        "student_teacher_flops_ratio": student / teacher,
        "clips_per_video": float(counts.mean()),
        "input_shape": list(shape),
    }


def collect_outputs(cfg: Config, store: ArtifactStore | None = None, split: str = "test") -> dict[str, dict]:
    """Per-clip outputs of the teacher and every student of the ladder on ``split``."""
    return {which: get_outputs(cfg, which, split, store) for which in ("teacher", *STUDENTS)}


def benchmark_spec(cfg: Config, timing: bool = True) -> dict:
    return {
        "config": dataclasses.asdict(cfg),
        "timing": timing,
        "models": {which: config_hash(model_spec_of(cfg, which)) for which in ("teacher", *STUDENTS)},
        # runs: which outputs are evaluated; models: preprocessing and inference_module are timed
        "code": code_version("cdlib.bench", "cdlib.runs", "cdlib.gating", "cdlib.cost", "cdlib.calibration",
                             "cdlib.models.core"),
    }


def run_benchmark(cfg: Config, store: ArtifactStore | None = None, recompute: bool = False,
                  timing: bool = True) -> dict:
    """The benchmark JSON for ``cfg`` (module docstring), cached as an artifact.

    ``timing=False`` skips the wall-clock measurement (no wall-clock keys on the
    points, ``wall_clock`` None and the wall-clock summary None): sweeps over
    many configs use it. It returns the timed result instead where one is cached
    already.
    """
    store = store if store is not None else ArtifactStore()
    spec = benchmark_spec(cfg, timing)
    if recompute:
        store.remove("bench", spec)
    elif not timing:
        timed = store.load("bench", benchmark_spec(cfg, timing=True))
        if timed is not None:
            return _from_json(timed)

    def build(_):
        configure_backend(resolve_runtime(cfg))  # CPU: deterministic on bench.num_threads; GPU: cudnn.benchmark
        test, val = collect_outputs(cfg, store, "test"), collect_outputs(cfg, store, "val")
        cost = measure_cost(cfg, store)
        log("evaluating policies on the val and test splits")
        policies = sweep_policies(cfg, test, val, cost)
        wall_clock = None
        if timing:
            wall_clock = measure_wall_clock(cfg, policies, select_points(policies), store)
        quality = signal_quality(confidence_signals(test), teacher_correct(test["teacher"]))
        val_auroc = {name: q["auroc"] for name, q in
                     signal_quality(confidence_signals(val), teacher_correct(val["teacher"])).items()}
        return {
            "version": VERSION,
            "profile": cfg.profile,
            "seed": cfg.seed,
            "data": {**dataclasses.asdict(cfg.data), "val_videos": int(val["teacher"]["video"].max()) + 1,
                     "test_videos": int(test["teacher"]["video"].max()) + 1,
                     "skipped": skipped_videos(cfg.data, cfg.seed)},
            "config_hash": config_hash(cfg),
            "config": dataclasses.asdict(cfg),
            "cost": {
                "teacher_gflops_per_clip": cost["teacher_gflops_per_clip"],
                "student_gflops_per_clip": cost["student_gflops_per_clip"],
                "student_teacher_flops_ratio": cost["student_teacher_flops_ratio"],
                "clips_per_video": cost["clips_per_video"],
                "input_shape": cost["input_shape"],
                "gflops_per_clip": {which: flops / 1e9 for which, flops in cost["flops_per_clip"].items()},
            },
            "policies": policies,
            "selected": select_points(policies),
            "confidence_auroc": {name: q["auroc"] for name, q in quality.items()},
            "confidence_auprc": {name: q["auprc"] for name, q in quality.items()},
            "confidence_auroc_val": val_auroc,
            "distance": distance_report(cfg, test, store),
            "summary": {**summarize(policies), "ce_baseline": ce_baseline(val_auroc)},
            "wall_clock": wall_clock,
            "environment": {
                "threads": cfg.bench.num_threads,
                "torch": torch.__version__,
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
            },
        }

    return _from_json(store.get_or_create("bench", spec, lambda d: _to_json(build(d))))


def _to_json(result: dict) -> dict:
    # Stored as JSON text: the artifact loader only unpickles tensors and plain containers.
    return {"json": json.dumps(result)}


def _from_json(payload: dict) -> dict:
    return json.loads(payload["json"])


def write_json(result: dict, path: str | os.PathLike) -> None:
    """Write the benchmark JSON atomically (NaN written as null)."""
    text = json.dumps(_nan_to_none(result), indent=1)
    atomic_write(path, lambda handle: handle.write(text + "\n"), mode="w")


def _nan_to_none(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


# ----------------------------------------------------------------------------- sweeps

def sweep(cfg: Config, key: str, values: Sequence, store: ArtifactStore | None = None,
          timing: bool = False) -> list[dict]:
    """:func:`run_benchmark` of ``cfg`` with the dotted ``key`` set to each of ``values`` (untimed by default).

    Test-only data fields (``data.test_informative_fraction``, ``data.test_shift``)
    reuse the trained models and only evaluate again; any other field retrains what
    depends on it.
    """
    results = []
    for value in progress_bar(values, desc=f"sweep {key}"):
        log(f"sweep: {key} = {value}")
        results.append(run_benchmark(cfg.replace(**{key: value}), store, timing=timing))
    return results
