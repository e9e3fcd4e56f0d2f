"""Evaluating the teacher, the students and the gating policies on their precomputed per-clip outputs.

The numbers of a benchmark result that are not timed come from here: every
model's per-clip outputs on a split (:func:`collect_outputs`), its FLOPs per clip
(:func:`measure_cost`), every registered policy's accuracy and compute over its
whole knob range on the val and the test videos (:func:`sweep_policies`), and how
well each confidence signal predicts that the teacher is right on a clip
(:func:`confidence_signals`, :func:`signal_quality`, :func:`distance_report`).
:mod:`cdlib.experiment.bench` puts them together into the benchmark JSON.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from cdlib.experiment.config import Config
from cdlib.method.calibration import auprc, auroc
from cdlib.method.cost import flops_per_clip, video_gflops
from cdlib.method.distance import candidate_parts
from cdlib.method.gating import VideoOutputs, get_policy, list_policies, sweep_policy
from cdlib.runtime.artifacts import ArtifactStore
from cdlib.runtime.errors import ConfigError
from cdlib.runtime.progress import progress_bar
from cdlib.runtime.registry import Registry
from cdlib.experiment.clips import get_clips
from cdlib.experiment.distance_student import get_distance_fit, get_features
from cdlib.experiment.exit_gate import get_exit_gate, get_exit_scores
from cdlib.experiment.outputs import ClipOutputs
from cdlib.experiment.students import STUDENTS
from cdlib.experiment.trained_models import get_model, get_outputs


# ----------------------------------------------------------------------------- what is evaluated

#: the policies every benchmark evaluates, whatever ``bench.policies`` says: the summary measures against them
REFERENCE_POLICIES = ("dense_teacher", "oracle")


#: display name of each confidence signal (:func:`confidence_signals`), in the book's figures and tables
SIGNAL_LABELS = {
    "cd": "CD score s (distilled)",
    "cd_ctx": "context student's score (whole video)",
    "cd_da": "distance-aware score s_da",
    "student_maxprob": "CE student (action clips) max-softmax",
    "ce_all_maxprob": "CE student (all clips) max-softmax",
    "kd_maxprob": "KD student max-softmax",
    "cd_maxprob": "CD student max-softmax",
    "teacher_maxprob": "teacher max-softmax",
}


def evaluated_policies(cfg: Config) -> list[str]:
    """The policies a benchmark of ``cfg`` evaluates, in registration order: those of ``bench.policies`` (every
    registered policy when it is empty) and the :data:`REFERENCE_POLICIES`."""
    chosen = {*(cfg.bench.policies or list_policies()), *REFERENCE_POLICIES}
    return [name for name in list_policies() if name in chosen]


def evaluated_students(cfg: Config) -> list[str]:
    """The students a benchmark of ``cfg`` trains and evaluates, in registration order: every registered student
    when ``bench.policies`` is empty, else only those the evaluated policies use (a subset costs less to train)."""
    if not cfg.bench.policies:
        return list(STUDENTS)
    used = {get_policy(name).student for name in evaluated_policies(cfg)}
    return [name for name in STUDENTS if name in used]


# ----------------------------------------------------------------------------- outputs and cost

#: the key of FrameExit's exit gate in ``measure_cost``'s ``flops_per_clip`` (FLOPs per gate evaluation)
GATE_COST = "frame_exit_gate"


def collect_outputs(cfg: Config, store: ArtifactStore | None = None, split: str = "test") -> dict[str, ClipOutputs]:
    """Per-clip outputs on ``split`` of the teacher and of every student the benchmark evaluates
    (:func:`evaluated_students`). When a policy that reads FrameExit's exit scores is evaluated
    (:func:`needs_exit_scores`), the teacher's outputs carry them (``exit_score``,
    :func:`cdlib.experiment.exit_gate.get_exit_scores`)."""
    outputs = {which: get_outputs(cfg, which, split, store) for which in ("teacher", *evaluated_students(cfg))}
    if needs_exit_scores(cfg):
        outputs["teacher"] = dataclasses.replace(outputs["teacher"], exit_score=get_exit_scores(cfg, split, store))
    return outputs


def needs_exit_scores(cfg: Config) -> bool:
    """Whether a policy the benchmark of ``cfg`` evaluates reads FrameExit's exit scores (``frame_exit``): only then
    are the teacher's features computed and its exit gate trained."""
    return any(get_policy(name).needs_exit_score for name in evaluated_policies(cfg))


def measure_cost(cfg: Config, store: ArtifactStore | None = None) -> dict:
    """FLOPs per clip of the teacher and of every evaluated student (``flops_per_clip``; ``student_flops_per_clip``
    is the CD student's, the method's, None when it is not evaluated), counted by torch's flop counter on one clip
    of the test split's shape. With ``frame_exit`` evaluated, ``flops_per_clip["frame_exit_gate"]`` is its exit
    gate's FLOPs per evaluation (one gate input), counted the same way."""
    source = get_clips(cfg, "test", store)
    shape = (3, *source.clip_shape[:3])
    counts = source.clips_per_video().float()
    clips = max(1, round(float(counts.mean())))  # a video-context student is counted on a video of this many clips
    models = {which: get_model(cfg, which, store).model for which in ("teacher", *evaluated_students(cfg))}
    flops = {which: flops_per_clip(model, shape, clips if getattr(model, "video_context", False) else 1)
             for which, model in models.items()}
    if needs_exit_scores(cfg):
        gate = get_exit_gate(cfg, store)
        flops[GATE_COST] = flops_per_clip(gate, (gate.feature_dim + gate.num_classes,))
    teacher, student = flops["teacher"], flops.get("cd")
    return {
        "flops_per_clip": flops,
        "teacher_flops_per_clip": teacher,
        "student_flops_per_clip": student,
        "teacher_gflops_per_clip": teacher / 1e9,
        "student_gflops_per_clip": student / 1e9 if student is not None else None,
        "student_teacher_flops_ratio": student / teacher if student is not None else None,
        "clips_per_video": float(counts.mean()),
        "input_shape": list(shape),
    }


# ----------------------------------------------------------------------------- per-video outputs

def video_outputs(teacher: ClipOutputs, student: ClipOutputs | None) -> list[VideoOutputs]:
    """One :class:`VideoOutputs` per video of a split from the teacher's and a student's per-clip outputs.

    ``student`` None (teacher-only policies): videos without student outputs. Where the teacher's outputs carry
    FrameExit's exit scores (:func:`collect_outputs`), every video carries its own (``exit_score``).
    """
    student_logits = scores = [None] * teacher.num_videos
    if student is not None:
        student_logits = student.split_by_video(student.logits)
        if student.score_logit is not None:
            scores = student.split_by_video(student.score)
    exits = [None] * teacher.num_videos
    if teacher.exit_score is not None:
        exits = teacher.split_by_video(teacher.exit_score)
    return [
        VideoOutputs.precomputed(s, t, sc, int(y), ex)
        for s, t, sc, y, ex in zip(student_logits, teacher.split_by_video(teacher.logits), scores,
                                   teacher.video_labels(), exits)
    ]


# ----------------------------------------------------------------------------- policies

def sweep_policies(cfg: Config, test: dict[str, ClipOutputs], val: dict[str, ClipOutputs], cost: dict,
                   policies: Sequence[str] | None = None) -> dict[str, list[dict]]:
    """Accuracy and cost of each policy over its whole knob range, on the test and on the val videos.

    ``test`` and ``val`` are the per-clip outputs of the teacher and the evaluated
    students on each split (:func:`collect_outputs`); ``policies`` defaults to
    :func:`evaluated_policies`. The knob range is the same on both splits (``k``
    up to the most clips of any video of either). A point's compute counts its
    gate evaluations too (``gate_steps_per_video`` × ``flops_per_clip["frame_exit_gate"]``;
    none but for ``frame_exit``).
    """
    videos = {}
    for split, outputs in (("test", test), ("val", val)):
        videos[split] = {None: video_outputs(outputs["teacher"], None)}
        for variant in [which for which in outputs if which != "teacher"]:
            videos[split][variant] = video_outputs(outputs["teacher"], outputs[variant])
    max_clips = max(v.num_clips for split in videos.values() for v in split[None])

    def gflops(run, student):
        student_flops = cost["flops_per_clip"][student] if student is not None else 0.0
        return video_gflops(run["student_clips_per_video"], run["teacher_clips_per_video"], student_flops,
                            cost["teacher_flops_per_clip"]) + gate_gflops(run)

    def gate_gflops(run):
        if not run["gate_steps_per_video"]:
            return 0.0
        if GATE_COST not in cost["flops_per_clip"]:
            raise ConfigError(f"cost: the policies evaluate an exit gate, but measure_cost counted no {GATE_COST!r}")
        return run["gate_steps_per_video"] * cost["flops_per_clip"][GATE_COST] / 1e9

    result = {}
    for name in progress_bar(policies or evaluated_policies(cfg), desc="policies"):
        spec = get_policy(name)
        if spec.student is not None and spec.student not in videos["test"]:
            raise ConfigError(f"{name}: needs the outputs of the {spec.student} student, which were not collected")
        knobs = spec.knob_values(max_clips, cfg.bench.thetas, cfg.bench.student_weights, cfg.bench.coverages,
                                 cfg.bench.exit_thresholds)
        on_tests, on_vals = (sweep_policy(name, videos[split][spec.student], knobs, seed=cfg.seed,
                                          repeats=cfg.bench.random_repeats) for split in ("test", "val"))
        result[name] = [{
            "knob": list(knob) if isinstance(knob, tuple) else knob,
            "accuracy": on_test["accuracy"],
            "log_likelihood": on_test["log_likelihood"],
            "gflops_per_video": gflops(on_test, spec.student),
            "teacher_clips_per_video": on_test["teacher_clips_per_video"],
            "student_clips_per_video": on_test["student_clips_per_video"],
            "val_accuracy": on_val["accuracy"],
            "val_log_likelihood": on_val["log_likelihood"],
            "val_gflops_per_video": gflops(on_val, spec.student),
            "gate_steps_per_video": on_test["gate_steps_per_video"],
        } for knob, on_test, on_val in zip(knobs, on_tests, on_vals)]
    return result


# ----------------------------------------------------------------------------- confidence signals

@dataclass(frozen=True)
class Signal:
    """A per-clip confidence signal: ``score(outputs)`` maps the outputs of the models named in ``reads`` (the
    teacher and students, on the same clips) to one score per clip, higher meaning "the teacher is more likely
    right"."""

    score: Callable[[dict[str, ClipOutputs]], torch.Tensor]
    reads: tuple[str, ...]


#: the confidence signals by name (:class:`~cdlib.runtime.registry.Registry`)
SIGNALS: Registry[Signal] = Registry("confidence signal")


def register_signal(name: str, description: str, score: Callable[[dict[str, ClipOutputs]], torch.Tensor],
                    reads: Sequence[str]) -> Signal:
    """Add a :class:`Signal` to :data:`SIGNALS`: the benchmark reports its AUROC and AUPRC wherever the models it
    ``reads`` are evaluated."""
    return SIGNALS.register(name, Signal(score, tuple(reads)), description)


def _maxprob(which: str) -> Callable[[dict[str, ClipOutputs]], torch.Tensor]:
    return lambda outputs: outputs[which].logits.softmax(-1).amax(-1)


register_signal("cd", "the distilled score s of the CD student", lambda outputs: outputs["cd"].score, ["cd"])
register_signal("cd_ctx", "the context student's score (cdlib.method.context)", lambda outputs: outputs["cd_ctx"].score,
                ["cd_ctx"])
register_signal("cd_da", "the distance-aware score s_da (cdlib.method.distance)", lambda outputs: outputs["cd_da"].score,
                ["cd_da"])
for _model, _name, _what in (("ce", "student_maxprob", "the CE student trained on the teacher's clips"),
                             ("ce_all", "ce_all_maxprob", "the CE student trained on every clip"),
                             ("kd", "kd_maxprob", "the KD student"), ("cd", "cd_maxprob", "the CD student"),
                             ("teacher", "teacher_maxprob", "the teacher's own")):
    register_signal(_name, f"max-softmax of {_what}", _maxprob(_model), [_model])


def confidence_signals(outputs: dict[str, ClipOutputs]) -> dict[str, torch.Tensor]:
    """Each registered signal (:data:`SIGNALS`) whose models are in ``outputs`` (the teacher's and the students'
    on the same clips): the distilled score ``cd``, its distance-aware form ``cd_da`` and each model's
    max-softmax."""
    return {name: signal.score(outputs) for name, signal in SIGNALS.items() if set(signal.reads) <= outputs.keys()}


def distance_report(cfg: Config, test: dict[str, ClipOutputs], store: ArtifactStore | None = None) -> dict | None:
    """The ``distance`` block: every distance-aware candidate of ``cfg.distance``
    (:func:`cdlib.experiment.distance_student.get_distance_fit`)
    with its ``method``, ``quantile``, gate ``reference`` and ``scale``, its ``val_auroc`` (what chose it) and
    its ``test_auroc`` (what it measures on the test clips), and the ``chosen`` one (the ``cd_da`` signal).
    None when the ``cd_da`` student is not evaluated (``test`` has no outputs of it)."""
    if "cd_da" not in test:
        return None
    fit = get_distance_fit(cfg, store)
    features = get_features(cfg, "test", store)
    score, correct = test["cd"].score, test["teacher"].correct
    candidates = {}
    for name, confidence in fit.candidates.items():
        method, quantile = candidate_parts(name)
        candidates[name] = {"method": method, "quantile": quantile, "reference": confidence.gate.reference,
                            "scale": confidence.gate.scale, "val_auroc": fit.val_auroc[name],
                            "test_auroc": auroc(confidence(score, features), correct)}
    return {"chosen": fit.chosen, "candidates": candidates}


def signal_quality(signals: dict[str, torch.Tensor], correct: torch.Tensor) -> dict[str, dict[str, float]]:
    """AUROC and AUPRC of each signal for predicting that the teacher is right on a clip."""
    return {name: {"auroc": auroc(s, correct), "auprc": auprc(s, correct)} for name, s in signals.items()}

