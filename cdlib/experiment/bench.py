"""The benchmark shared by ``python -m cdlib bench`` and the book.

:func:`run_benchmark` trains (or loads) the teacher and the student ladder,
evaluates every registered gating policy (or those of ``bench.policies``, with
only the students they use) over its whole knob range on the val and the test
split and counts FLOPs per clip with torch's flop counter
(:mod:`cdlib.experiment.evaluation`), chooses each policy's operating points on val
(:mod:`cdlib.method.selection`), times the chosen points end to end (student and
teacher really run) on a fixed thread count (:mod:`cdlib.experiment.timing`), and
measures how well each confidence signal predicts that the teacher is right on a clip
(:mod:`cdlib.experiment.evaluation`). The result is itself an artifact keyed by the config
and the code that computes it, so the book and a second run read the same
numbers; :func:`sweep` runs it over the values of one config field.

The JSON (what :func:`run_benchmark` returns and ``bench --out`` writes):

- ``version``, ``profile``, ``seed``, ``config_hash``, ``config``, ``environment``;
  ``data``: the data config with ``val_videos`` and ``test_videos``.
- ``cost``: GFLOPs per clip of teacher and student (the CD student's), their
  ratio, clips per test video, the clip shape, and ``gflops_per_clip`` of every
  model (the ``cd_da`` student's includes its feature distance), and, where
  ``frame_exit`` is evaluated, ``gflops_per_clip["frame_exit_gate"]``: its exit
  gate's GFLOPs per evaluation (one gate input, counted by the same flop
  counter). A policy's compute counts the student it uses, and its gate
  evaluations.
- ``policies``: per evaluated policy (:func:`cdlib.experiment.evaluation.evaluated_policies`),
  one point per knob value (``k = 1..N``; ``cd_topk``: every ``(k, c)``; ``cd_gate``, ``cd_gate_da``: every
  ``(θ, k, λ, c)``, from ``bench.thetas``, ``bench.student_weights`` and ``bench.coverages``, the coverage ``c``
  running from the top-k clips by score at 0 to exactly ``uniform_k``'s clips at 1, :mod:`cdlib.method.gating`;
  ``frame_exit``: every threshold of ``bench.exit_thresholds``; a JSON list). Each point has its ``knob``; on the
  test split ``accuracy``, ``log_likelihood`` (the mean over videos of the log-probability the decision gives the
  true class, :func:`cdlib.method.gating.run_policy`), ``gflops_per_video``, ``teacher_clips_per_video``, ``student_clips_per_video``,
  ``gate_steps_per_video`` (exit-gate evaluations per video: ``frame_exit``'s
  clips visited, 0 for every other policy; ``gflops_per_video`` adds them times
  the gate's FLOPs);
  on the val split ``val_accuracy``, ``val_log_likelihood`` and ``val_gflops_per_video``; and where it
  was timed ``wall_s_per_video``, ``wall_ratio_to_dense`` and ``wall_videos``
  (how many test videos the timing covers) with that time per video split into
  ``preprocess_s``, ``student_s``, ``decision_s`` and ``teacher_s`` (they sum to
  ``wall_s_per_video`` up to the microseconds of each call's entry and exit;
  what each holds: :mod:`cdlib.experiment.timing`), plus, for the selected points,
  ``throughput_s_per_video``, ``throughput_wall_ratio_to_dense`` and the same
  split in batches, ``throughput_preprocess_s``, ``throughput_student_s``,
  ``throughput_decision_s`` and ``throughput_teacher_s``.
- ``selected``: per policy, indices into its points. ``matched`` is the
  cheapest point by val compute whose val accuracy is at least the dense
  teacher's val accuracy (None if no point reaches it; ties in compute go to
  the more accurate point, then the first); ``best`` the point with the highest
  val accuracy (ties go to the higher ``val_log_likelihood``, then the cheaper
  point, then the first).
  ``upper_bound_matched`` and ``upper_bound_best`` apply the same rules to the
  test split's accuracy and compute: they look at the test labels, so they are
  upper bounds, not operating points a user could have chosen in advance
  (:func:`cdlib.method.selection.select_points`).
- ``summary``: ``selection`` (``"val"``); the dense teacher's test accuracy,
  val accuracy and GFLOPs per video; ``method``: which of ``cd_gate`` (the per-clip
  CD student) and ``cd_gate_ctx`` (the context student) the method uses, chosen
  on val by the area under its val curve relative to the oracle's
  (:func:`cdlib.method.selection.method_policy`: ``policy``, ``student``,
  ``val_auc_vs_oracle``); for that policy, from its ``matched``
  point, ``cd_gflops_ratio_at_dense_accuracy`` (test FLOPs relative to the
  dense teacher), ``cd_test_accuracy_at_matched_point``,
  ``cd_wall_ratio_at_dense_accuracy`` (latency mode) and
  ``cd_throughput_wall_ratio_at_dense_accuracy``, and from its ``best`` point
  ``cd_best_accuracy`` (test) and ``cd_accuracy_gain`` (minus the dense
  teacher's test accuracy); per policy ``gflops_ratio_at_dense_accuracy`` and
  ``test_accuracy_at_matched_point`` of its ``matched`` point (None: never
  matched on val) and ``best_accuracy``, the test accuracy of its ``best``
  point; the areas under the test accuracy-vs-compute curves relative
  to the oracle's (``cd_auc_vs_oracle``: the method's policy, ``sampler_maxprob_auc_vs_oracle``,
  ``auc_vs_oracle``); ``ce_baseline``, the label-only student the headline
  comparison uses (:func:`cdlib.method.selection.ce_baseline`); and ``upper_bound``, the same
  selection keys from the test-selected points, with ``selection: "test"``.
- ``confidence_auroc``, ``confidence_auprc`` (test clips) and
  ``confidence_auroc_val`` (val clips): per confidence signal, how well it
  predicts that the teacher's top class on a clip is the video's label
  (:func:`cdlib.experiment.evaluation.confidence_signals`).
- ``distance``: the distance-aware confidences tried for ``cd_da``, with the
  val AUROC that chose one and the test AUROC of each (:func:`cdlib.experiment.evaluation.distance_report`).
- ``wall_clock``: how the times were taken (:mod:`cdlib.experiment.timing`): ``selected_videos``,
  ``curve_videos``, ``passes``, ``throughput_batch``, ``threads``; ``backend``, the inference backend the
  models ran on (``bench.backend`` resolved, :func:`cdlib.models.backends.resolve_backend`: ``torchscript``
  for ``auto`` on the CPU); ``prepare_s``, per timed model (``teacher``, each student by name,
  ``exit_teacher`` where ``frame_exit`` is timed), the seconds its preparation took (scripting, export or
  compilation and the warm-up calls on one video's clips), never counted in any timed point; and
  ``achieved_gflop_s``: per mode (``latency``, ``throughput``), per model that the
  timed selected points run (``teacher`` and each student by name, e.g. ``cd``),
  its GFLOPs over the seconds of its forwards on all of a video's clips
  (:func:`cdlib.method.cost.achieved_gflop_s`; the teacher at the dense teacher's point,
  a student over the points that run it). None when the result was not timed.

A key about a model or a policy that ``bench.policies`` leaves out is absent from
its dict, or None where it is a single value (``cost.student_gflops_per_clip``,
``distance``, the ``cd_*`` and ``sampler_maxprob_*`` summary keys, ``ce_baseline``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
from typing import Sequence

import torch

from cdlib.data import skipped_videos
from cdlib.experiment.config import Config
from cdlib.runtime.artifacts import PAYLOAD, ArtifactStore, atomic_write, code_version, config_hash
from cdlib.runtime.device import configure_backend
from cdlib.experiment.evaluation import (
    collect_outputs,
    confidence_signals,
    distance_report,
    evaluated_students,
    measure_cost,
    signal_quality,
    sweep_policies,
)
from cdlib.experiment.parallel import map_configs
from cdlib.experiment.students import model_spec_of
from cdlib.experiment.timing import measure_wall_clock
from cdlib.method.selection import ce_baseline, select_points, summarize
from cdlib.runtime.progress import log, progress_bar

VERSION = 2


#: the modules whose code computes a benchmark result (not its tables or figures): a change to any of them makes
#: a new result. The modules of the trained models and their outputs (clips ... exit_gate): which outputs are
#: evaluated; models.core and models.backends: preprocessing and the inference backends are timed. The code that trains or derives a model
#: (cdlib.experiment.train, cdlib.method.distance, ...) is in that model's key.
RESULT_CODE = ("cdlib.experiment.bench", "cdlib.experiment.evaluation", "cdlib.method.selection", "cdlib.experiment.timing",
               "cdlib.experiment.clips", "cdlib.experiment.students", "cdlib.experiment.fitting", "cdlib.experiment.outputs",
               "cdlib.experiment.trained_models", "cdlib.experiment.distance_student", "cdlib.experiment.context_student",
               "cdlib.experiment.exit_gate", "cdlib.method.gating", "cdlib.method.cost", "cdlib.method.calibration",
               "cdlib.models.core", "cdlib.models.backends")


def benchmark_spec(cfg: Config, timing: bool = True) -> dict:
    """What keys a benchmark result: the config, whether it is timed, every model's key and :data:`RESULT_CODE`."""
    return {
        "config": dataclasses.asdict(cfg),
        "timing": timing,
        "models": {which: config_hash(model_spec_of(cfg, which)) for which in ("teacher", *evaluated_students(cfg))},
        "code": code_version(*RESULT_CODE),
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
        configure_backend(cfg.resolved_runtime)  # CPU: deterministic on runtime.num_threads; GPU: cudnn.benchmark
        test, val = collect_outputs(cfg, store, "test"), collect_outputs(cfg, store, "val")
        cost = measure_cost(cfg, store)
        log("evaluating policies on the val and test splits")
        policies = sweep_policies(cfg, test, val, cost)
        gflops_per_clip = {which: flops / 1e9 for which, flops in cost["flops_per_clip"].items()}
        wall_clock = None
        if timing:
            wall_clock = measure_wall_clock(cfg, policies, select_points(policies), gflops_per_clip, store)
        quality = signal_quality(confidence_signals(test), test["teacher"].correct)
        val_auroc = {name: q["auroc"] for name, q in
                     signal_quality(confidence_signals(val), val["teacher"].correct).items()}
        return {
            "version": VERSION,
            "profile": cfg.profile,
            "seed": cfg.seed,
            "data": {**dataclasses.asdict(cfg.data), "val_videos": val["teacher"].num_videos,
                     "test_videos": test["teacher"].num_videos,
                     "skipped": skipped_videos(cfg.data, cfg.seed)},
            "config_hash": config_hash(cfg),
            "config": dataclasses.asdict(cfg),
            "cost": {
                "teacher_gflops_per_clip": cost["teacher_gflops_per_clip"],
                "student_gflops_per_clip": cost["student_gflops_per_clip"],
                "student_teacher_flops_ratio": cost["student_teacher_flops_ratio"],
                "clips_per_video": cost["clips_per_video"],
                "input_shape": cost["input_shape"],
                "gflops_per_clip": gflops_per_clip,
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
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
            },
        }

    return _from_json(store.get_or_create("bench", spec, lambda d: _to_json(build(d))))


def train_benchmark_models(cfg: Config, store: ArtifactStore | None = None) -> None:
    """Train (or load) every model :func:`run_benchmark` of ``cfg`` reads and store their outputs on the test and
    val splits, without evaluating or timing anything."""
    for split in ("test", "val"):
        collect_outputs(cfg, store, split)


def run_benchmarks(configs: Sequence[Config], store: ArtifactStore | None = None) -> list[dict]:
    """:func:`run_benchmark` of each config, timed: first the models of every config whose result is not stored
    yet are trained, up to ``runtime.seed_processes`` configs at once (:func:`cdlib.experiment.parallel.map_configs`),
    then each config is evaluated and timed in turn in this process, so that no wall clock is measured beside
    other work."""
    store = store if store is not None else ArtifactStore()
    missing = [cfg for cfg in configs if not (store.directory("bench", benchmark_spec(cfg)) / PAYLOAD).exists()]
    if len(missing) > 1:
        map_configs(train_benchmark_models, missing, store, desc="train every seed's models")
    return [run_benchmark(cfg, store) for cfg in configs]


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


def sweeps(configs: Sequence[Config], key: str, values: Sequence, store: ArtifactStore | None = None) -> list[dict]:
    """The untimed :func:`sweep` of every config (seed), one list of results after another, up to
    ``runtime.seed_processes`` configs at once (:func:`cdlib.experiment.parallel.map_configs`)."""
    per_config = map_configs(sweep, configs, key, values, store, desc=f"sweep {key} of every seed")
    return [result for results in per_config for result in results]


#: what :func:`harder_data` evaluates: the method's policies (per-clip and context student), FrameExit and the CE student's sampler,
#: so that only the teacher, the CE and the CD student (and its context heads) are trained on the harder data
HARDER_DATA_POLICIES = ("sampler_maxprob", "cd_gate", "cd_gate_ctx", "frame_exit")


def harder_config(cfg: Config, informative_fraction: float) -> Config:
    """``cfg`` with the models trained and tested on videos whose action fills ``informative_fraction`` of the
    video (``data.informative_fraction``), for :data:`HARDER_DATA_POLICIES` only."""
    return cfg.replace(**{"data.informative_fraction": informative_fraction, "bench.policies": HARDER_DATA_POLICIES})


def harder_data(cfg: Config, informative_fraction: float, store: ArtifactStore | None = None) -> dict:
    """The untimed :func:`run_benchmark` of :func:`harder_config`."""
    return run_benchmark(harder_config(cfg, informative_fraction), store, timing=False)
