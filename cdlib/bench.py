"""The benchmark shared by ``python -m cdlib bench`` and the book (DESIGN.md §4).

:func:`run_benchmark` trains (or loads) the teacher and the student ladder,
evaluates every registered gating policy over its whole knob range on the test
split, counts FLOPs per clip with torch's flop counter, times each operating point
end to end (student and teacher really run) on a fixed thread count, measures how
well each confidence signal predicts that the teacher is right on a clip, and
summarises the result in the JSON of DESIGN.md §4.2. The result is itself an
artifact keyed by the config, so the book and a second run read the same numbers.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from cdlib.artifacts import ArtifactStore, atomic_write, code_version
from cdlib.calibration import auprc, auroc
from cdlib.config import Config, config_hash
from cdlib.cost import flops_per_clip, time_call, timing_model, video_gflops
from cdlib.device import autocast, configure_backend, resolve_runtime, to_device
from cdlib.gating import VideoOutputs, get_policy, list_policies, run_policy
from cdlib.models import preprocess
from cdlib.progress import log, progress_bar
from cdlib.runs import STUDENT_VARIANTS, get_clips, get_model, get_outputs, model_spec_of

VERSION = 1


# ----------------------------------------------------------------------------- per-video outputs

def split_by_video(outputs: dict[str, torch.Tensor], key: str) -> list[torch.Tensor]:
    """Cut a per-clip tensor into one tensor per video (clips are stored video by video)."""
    counts = torch.bincount(outputs["video"]).tolist()
    return list(torch.split(outputs[key], counts))


def video_outputs(teacher: dict, student: dict | None) -> list[VideoOutputs]:
    """One :class:`VideoOutputs` per test video from precomputed per-clip outputs.

    ``student`` None (teacher-only policies) puts the teacher's logits in the
    student slot; those policies never read it.
    """
    labels = torch.zeros(int(teacher["video"].max()) + 1, dtype=torch.long)
    labels[teacher["video"]] = teacher["labels"]
    teacher_logits = split_by_video(teacher, "logits")
    source = student if student is not None else teacher
    student_logits = split_by_video(source, "logits")
    scores = split_by_video(source, "score_logit") if "score_logit" in source else [None] * len(labels)
    return [
        VideoOutputs.precomputed(s, t, torch.sigmoid(sc) if sc is not None else None, int(y))
        for s, t, sc, y in zip(student_logits, teacher_logits, scores, labels)
    ]


# ----------------------------------------------------------------------------- confidence signals

def confidence_signals(outputs: dict[str, dict]) -> dict[str, torch.Tensor]:
    """Per-clip confidence signals on the same clips: the CD score and each model's max-softmax."""
    signals = {"cd": torch.sigmoid(outputs["cd"]["score_logit"])}
    signals["student_maxprob"] = outputs["ce"]["logits"].softmax(-1).amax(-1)
    signals["kd_maxprob"] = outputs["kd"]["logits"].softmax(-1).amax(-1)
    signals["cd_maxprob"] = outputs["cd"]["logits"].softmax(-1).amax(-1)
    signals["teacher_maxprob"] = outputs["teacher"]["logits"].softmax(-1).amax(-1)
    return signals


def teacher_correct(teacher: dict) -> torch.Tensor:
    """Whether the teacher's top class on each clip is the video's label."""
    return teacher["logits"].argmax(-1) == teacher["labels"]


def signal_quality(signals: dict[str, torch.Tensor], correct: torch.Tensor) -> dict[str, dict[str, float]]:
    """AUROC and AUPRC of each signal for predicting that the teacher is right on a clip."""
    return {name: {"auroc": auroc(s, correct), "auprc": auprc(s, correct)} for name, s in signals.items()}


# ----------------------------------------------------------------------------- curves and summary

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


def first_reaching(points: Sequence[dict], accuracy: float) -> dict | None:
    """The cheapest point whose accuracy is at least ``accuracy`` (None if none is)."""
    reaching = [p for p in points if p["accuracy"] >= accuracy - 1e-12]
    return min(reaching, key=lambda p: p["gflops_per_video"]) if reaching else None


def summarize(policies: dict[str, list[dict]]) -> dict:
    """The ``summary`` block of DESIGN.md §4.2, plus the same area ratio for every policy."""
    dense = policies["dense_teacher"][0]
    cd = policies["cd_gate"]
    upper = dense["gflops_per_video"]
    oracle_area = curve_area(policies["oracle"], upper)

    def area_vs_oracle(points) -> float:  # NaN when the oracle has no point cheaper than the dense teacher
        return curve_area(points, upper) / oracle_area if oracle_area > 0 else float("nan")

    matched = first_reaching(cd, dense["accuracy"])
    best = max(p["accuracy"] for p in cd)
    summary = {
        "dense_teacher_accuracy": dense["accuracy"],
        "dense_teacher_gflops_per_video": dense["gflops_per_video"],
        "cd_gflops_ratio_at_dense_accuracy": matched["gflops_per_video"] / upper if matched else None,
        "cd_best_accuracy": best,
        "cd_accuracy_gain": best - dense["accuracy"],
        "cd_auc_vs_oracle": area_vs_oracle(cd),
        "sampler_maxprob_auc_vs_oracle": area_vs_oracle(policies["sampler_maxprob"]),
        "cd_wall_ratio_at_dense_accuracy": matched.get("wall_ratio_to_dense") if matched else None,
    }
    summary["auc_vs_oracle"] = {name: area_vs_oracle(points) for name, points in policies.items()}
    summary["gflops_ratio_at_dense_accuracy"] = {}
    for name, points in policies.items():
        hit = first_reaching(points, dense["accuracy"])
        summary["gflops_ratio_at_dense_accuracy"][name] = hit["gflops_per_video"] / upper if hit else None
    return summary


# ----------------------------------------------------------------------------- evaluation

def sweep_policies(cfg: Config, outputs: dict[str, dict], cost: dict, policies: Sequence[str] | None = None,
                   **policy_kwargs) -> dict[str, list[dict]]:
    """Accuracy and cost of every policy over its whole knob range on the test videos."""
    videos = {None: video_outputs(outputs["teacher"], None)}
    for variant in STUDENT_VARIANTS:
        videos[variant] = video_outputs(outputs["teacher"], outputs[variant])
    max_clips = max(v.num_clips for v in videos[None])
    result = {}
    for name in policies or list_policies():
        spec = get_policy(name)
        kwargs = policy_kwargs.get(name, {})
        points = []
        for knob in progress_bar(spec.knob_values(max_clips, cfg.bench.thetas), desc=f"policy {name}"):
            run = run_policy(name, videos[spec.student], knob, seed=cfg.seed, repeats=cfg.bench.random_repeats, **kwargs)
            points.append({
                "knob": list(knob) if isinstance(knob, tuple) else knob,
                "accuracy": run["accuracy"],
                "gflops_per_video": video_gflops(run["student_clips_per_video"], run["teacher_clips_per_video"],
                                                 cost["student_flops_per_clip"], cost["teacher_flops_per_clip"]),
                "teacher_clips_per_video": run["teacher_clips_per_video"],
                "student_clips_per_video": run["student_clips_per_video"],
            })
        result[name] = points
    return result


def measure_wall_clock(cfg: Config, policies: dict[str, list[dict]], store: ArtifactStore | None = None) -> None:
    """Add ``wall_s_per_video`` and ``wall_ratio_to_dense`` to every operating point, measured end to end.

    The first ``bench.wall_videos`` test videos go through the real pipeline:
    preprocessing, the student on all clips (if the policy uses one), the policy's
    decision and the teacher on the clips it asks for, with every model frozen by
    :func:`cdlib.models.inference_module`, on ``bench.num_threads`` threads after a
    warm-up run of every point. There are ``bench.wall_repeats``
    passes; in each, every point runs on one video after the other, so the
    points of a (pass, video) block, the dense teacher among them, are timed
    within about a second of each other.

    - ``wall_s_per_video``: the mean over the videos of each video's fastest run
      (noise from other work on the machine only ever adds time).
    - ``wall_ratio_to_dense``: the median over the (pass, video) blocks of the
      point's time divided by the dense teacher's time in the same block. Pairing
      cancels the slow drifts of a shared machine's speed, which can change one
      model's time by half between two moments of the same run.
    """
    torch.set_num_threads(cfg.bench.num_threads)
    # device placement (cdlib.device): frozen models on the CPU, eager bf16-autocast models on a GPU
    runtime = resolve_runtime(cfg)
    source = get_clips(cfg, "test", store)
    teacher = timing_model(get_model(cfg, "teacher", store).model, runtime)
    students = {v: timing_model(get_model(cfg, v, store).model, runtime) for v in STUDENT_VARIANTS}
    clips = [source.video_clips(v) for v in range(min(cfg.bench.wall_videos, source.num_videos))]
    labels = source.video_labels()[: cfg.bench.wall_videos].tolist()

    @torch.inference_mode()
    def run_video(spec, knob, video_clips, label, generator):
        with autocast(runtime):
            x = preprocess(to_device(video_clips, runtime))
            run_teacher = lambda idx: teacher(x[idx])  # noqa: E731 - the lazy teacher of this video
            if spec.student is None:
                video = VideoOutputs(torch.zeros(len(x), 1, device=x.device), run_teacher, None, label)
            else:
                logits, score_logit = students[spec.student](x)
                video = VideoOutputs(logits, run_teacher, torch.sigmoid(score_logit), label)
            spec.fn(video, knob, generator=generator)

    timed = [(get_policy(name), point, tuple(point["knob"]) if isinstance(point["knob"], list) else point["knob"])
             for name, points in policies.items() for point in points]
    dense = next(j for j, (spec, _, _) in enumerate(timed) if spec.name == "dense_teacher")
    for spec, _, knob in timed:  # warm-up
        run_video(spec, knob, clips[0], labels[0], torch.Generator().manual_seed(cfg.seed))
    seconds = torch.zeros(len(timed), cfg.bench.wall_repeats, len(clips), dtype=torch.float64)
    for r in progress_bar(range(cfg.bench.wall_repeats), desc="wall-clock passes"):
        generators = [torch.Generator().manual_seed(cfg.seed) for _ in timed]
        for v, (video_clips, label) in enumerate(zip(clips, labels)):
            for j, (spec, _, knob) in enumerate(timed):
                seconds[j, r, v] = time_call(lambda: run_video(spec, knob, video_clips, label, generators[j]),
                                             repeats=1, warmup=False, device=runtime.device)
    fastest = seconds.amin(dim=1).mean(dim=1)
    paired = (seconds / seconds[dense]).flatten(1).median(dim=1).values
    for (_, point, _), wall, ratio in zip(timed, fastest.tolist(), paired.tolist()):
        point["wall_s_per_video"] = wall
        point["wall_ratio_to_dense"] = ratio


def measure_cost(cfg: Config, store: ArtifactStore | None = None) -> dict:
    source = get_clips(cfg, "test", store)
    shape = (3, *source.clip_shape[:3])
    teacher = flops_per_clip(get_model(cfg, "teacher", store).model, shape)
    student = flops_per_clip(get_model(cfg, "cd", store).model, shape)
    counts = torch.bincount(source.video).float()
    return {
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
    return {which: get_outputs(cfg, which, split, store) for which in ("teacher", *STUDENT_VARIANTS)}


def benchmark_spec(cfg: Config, timing: bool = True) -> dict:
    return {
        "config": dataclasses.asdict(cfg),
        "timing": timing,
        "models": {which: config_hash(model_spec_of(cfg, which)) for which in ("teacher", *STUDENT_VARIANTS)},
        # runs: which outputs are evaluated; models: preprocessing and inference_module are timed
        "code": code_version("cdlib.bench", "cdlib.runs", "cdlib.gating", "cdlib.cost", "cdlib.calibration",
                             "cdlib.models"),
    }


def run_benchmark(cfg: Config, store: ArtifactStore | None = None, recompute: bool = False,
                  timing: bool = True) -> dict:
    """The benchmark JSON of DESIGN.md §4.2 for ``cfg`` (cached as an artifact).

    ``timing=False`` skips the wall-clock measurement (no ``wall_s_per_video``;
    the wall-clock summary is None): sweeps over many configs use it. It returns
    the timed result instead where one is cached already.
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
        outputs = collect_outputs(cfg, store)
        cost = measure_cost(cfg, store)
        log("evaluating policies")
        policies = sweep_policies(cfg, outputs, cost)
        if timing:
            log("timing policies")
            measure_wall_clock(cfg, policies, store)
        quality = signal_quality(confidence_signals(outputs), teacher_correct(outputs["teacher"]))
        return {
            "version": VERSION,
            "profile": cfg.profile,
            "seed": cfg.seed,
            "data": {**dataclasses.asdict(cfg.data), "test_videos": int(outputs["teacher"]["video"].max()) + 1},
            "config_hash": config_hash(cfg),
            "config": dataclasses.asdict(cfg),
            "cost": {
                "teacher_gflops_per_clip": cost["teacher_gflops_per_clip"],
                "student_gflops_per_clip": cost["student_gflops_per_clip"],
                "student_teacher_flops_ratio": cost["student_teacher_flops_ratio"],
                "clips_per_video": cost["clips_per_video"],
                "input_shape": cost["input_shape"],
            },
            "policies": policies,
            "confidence_auroc": {name: q["auroc"] for name, q in quality.items()},
            "confidence_auprc": {name: q["auprc"] for name, q in quality.items()},
            "summary": summarize(policies),
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


def headline_table(result: dict) -> pd.DataFrame:
    """Per policy: best accuracy and its cost, and the cost of matching the dense teacher's accuracy."""
    summary = result["summary"]
    dense_gflops = summary["dense_teacher_gflops_per_video"]
    rows = []
    for name, points in result["policies"].items():
        best = max(points, key=lambda p: (p["accuracy"], -p["gflops_per_video"]))
        matched = summary["gflops_ratio_at_dense_accuracy"][name]
        rows.append({
            "policy": name,
            "best accuracy": best["accuracy"],
            "GFLOPs/video": best["gflops_per_video"],
            "relative cost": best["gflops_per_video"] / dense_gflops,
            "cost to match dense": matched if matched is not None else float("nan"),
            "area vs oracle": summary["auc_vs_oracle"][name],
        })
    return pd.DataFrame(rows).set_index("policy")


def format_table(result: dict) -> str:
    s = result["summary"]
    lines = [
        headline_table(result).to_string(float_format=lambda v: f"{v:.3f}"),
        "",
        f"dense teacher: accuracy {s['dense_teacher_accuracy']:.3f}, {s['dense_teacher_gflops_per_video']:.3f} GFLOPs/video",
        "cd_gate FLOPs ratio at dense accuracy: " + _fmt(s["cd_gflops_ratio_at_dense_accuracy"]),
        "cd_gate wall-clock ratio at dense accuracy: " + _fmt(s["cd_wall_ratio_at_dense_accuracy"]),
        f"cd_gate accuracy gain over dense: {s['cd_accuracy_gain']:+.3f}",
        "confidence AUROC (teacher right on a clip): "
        + ", ".join(f"{k} {v:.3f}" for k, v in result["confidence_auroc"].items()),
    ]
    return "\n".join(lines)


def _fmt(value) -> str:
    return "not reached" if value is None else f"{value:.3f}"


# ----------------------------------------------------------------------------- tables, sweeps and ablations

def best_within(points: Sequence[dict], gflops: float) -> float:
    """``max{accuracy of p : gflops(p) <= gflops}``: the best accuracy a policy reaches within a budget (NaN if none)."""
    within = [p["accuracy"] for p in points if p["gflops_per_video"] <= gflops + 1e-12]
    return max(within) if within else float("nan")


def matched_accuracy_table(result: dict, target: float | None = None) -> pd.DataFrame:
    """Per policy, its cheapest operating point reaching ``target`` accuracy (default: the dense teacher's).

    Columns: ``knob``, ``accuracy``, ``GFLOPs/video``, ``FLOPs ratio`` and, if the
    result was timed, ``wall-clock ratio`` (both relative to the dense teacher),
    and ``teacher clips/video``. A policy that never reaches the target has NaN.
    """
    dense = result["policies"]["dense_teacher"][0]
    target = dense["accuracy"] if target is None else target
    rows = []
    for name, points in result["policies"].items():
        hit = first_reaching(points, target)
        row = {"policy": name, "knob": str(hit["knob"]) if hit else "",
               "accuracy": hit["accuracy"] if hit else float("nan"),
               "GFLOPs/video": hit["gflops_per_video"] if hit else float("nan"),
               "FLOPs ratio": hit["gflops_per_video"] / dense["gflops_per_video"] if hit else float("nan"),
               "teacher clips/video": hit["teacher_clips_per_video"] if hit else float("nan")}
        if "wall_ratio_to_dense" in dense:
            row["wall-clock ratio"] = hit["wall_ratio_to_dense"] if hit else float("nan")
        rows.append(row)
    return pd.DataFrame(rows).set_index("policy")


def matched_compute_table(result: dict, budgets: Sequence[float] = (0.1, 0.25, 0.5, 1.0)) -> pd.DataFrame:
    """Best accuracy of each policy within each compute budget, a fraction of the dense teacher's FLOPs.

    One row per policy, one column per budget (``"≤ 25%"``); NaN where no
    operating point of the policy is that cheap.
    """
    dense = result["summary"]["dense_teacher_gflops_per_video"]
    table = {f"≤ {b:.0%}": {name: best_within(points, b * dense) for name, points in result["policies"].items()}
             for b in budgets}
    frame = pd.DataFrame(table)
    frame.index.name = "policy"
    return frame


def config_value(result: dict, key: str):
    """The value of the dotted config ``key`` (e.g. ``data.test_shift``) a benchmark result was made with."""
    value = result["config"]
    for part in key.split("."):
        value = value[part]
    return value


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


def sweep_table(results: Sequence[dict], key: str, budget: float = 0.25) -> pd.DataFrame:
    """One row per (swept value, policy): best accuracy, accuracy within ``budget`` of the dense teacher's
    FLOPs, FLOPs ratio at the dense teacher's accuracy (NaN: never reached) and area vs the oracle."""
    rows = []
    for result in results:
        summary = result["summary"]
        dense_gflops = summary["dense_teacher_gflops_per_video"]
        for name, points in result["policies"].items():
            ratio = summary["gflops_ratio_at_dense_accuracy"][name]
            rows.append({
                key: config_value(result, key),
                "seed": result["seed"],
                "policy": name,
                "best accuracy": max(p["accuracy"] for p in points),
                "accuracy within budget": best_within(points, budget * dense_gflops),
                "FLOPs ratio at dense accuracy": ratio if ratio is not None else float("nan"),
                "area vs oracle": summary["auc_vs_oracle"][name],
                "dense teacher accuracy": summary["dense_teacher_accuracy"],
            })
    return pd.DataFrame(rows)


def signal_table(outputs: dict[str, dict]) -> pd.DataFrame:
    """How well each confidence signal predicts that the teacher is right on a clip, by clip group.

    Groups: ``all`` clips, and where the data say which clips show the action,
    ``action`` and ``non-action`` clips separately (within a group the signal must
    rank the teacher's right clips above its wrong ones without the help of the
    action/non-action contrast). Columns: ``signal``, ``group``, ``clips``,
    ``teacher right`` (fraction), ``mean signal``, ``auroc``, ``auprc``.
    """
    signals = confidence_signals(outputs)
    correct = teacher_correct(outputs["teacher"])
    informative = outputs["teacher"]["informative"]
    groups = {"all": torch.ones_like(correct)}
    if bool((informative >= 0).all()):
        groups.update({"action": informative == 1, "non-action": informative == 0})
    rows = []
    for name, signal in signals.items():
        for group, mask in groups.items():
            if not bool(mask.any()):
                continue
            s, c = signal[mask], correct[mask]
            rows.append({"signal": name, "group": group, "clips": int(mask.sum()),
                         "teacher right": float(c.float().mean()), "mean signal": float(s.mean()),
                         "auroc": auroc(s, c), "auprc": auprc(s, c)})
    return pd.DataFrame(rows)


def ablation_table(cfg: Config, variants: dict[str, dict], store: ArtifactStore | None = None) -> pd.DataFrame:
    """The method under config changes: one row per named variant (a dict of dotted overrides of ``cfg``).

    Columns: the CD score's AUROC and AUPRC for "teacher right on a clip", the
    area vs the oracle of ``cd_gate`` and ``cd_topk``, ``cd_gate``'s FLOPs ratio at
    the dense teacher's accuracy (NaN: never reached) and best accuracy. Untimed;
    only what a variant changes is retrained.
    """
    rows = []
    for name, overrides in progress_bar(variants.items(), desc="ablation"):
        result = run_benchmark(cfg.replace(**overrides), store, timing=False)
        summary = result["summary"]
        ratio = summary["cd_gflops_ratio_at_dense_accuracy"]
        rows.append({
            "variant": name,
            "seed": result["seed"],
            "cd AUROC": result["confidence_auroc"]["cd"],
            "cd AUPRC": result["confidence_auprc"]["cd"],
            "cd_gate area vs oracle": summary["cd_auc_vs_oracle"],
            "cd_topk area vs oracle": summary["auc_vs_oracle"]["cd_topk"],
            "cd_gate FLOPs ratio at dense accuracy": ratio if ratio is not None else float("nan"),
            "cd_gate best accuracy": summary["cd_best_accuracy"],
        })
    return pd.DataFrame(rows)


def accuracy_table(outputs: dict[str, dict]) -> pd.DataFrame:
    """Accuracy of each model of ``outputs`` (teacher and students) on the clips and videos of a split.

    Columns: ``clip accuracy`` on all clips and, where the data say which clips
    show the action, on ``action clips`` and ``non-action clips``; ``video
    accuracy`` of dense averaging (the mean clip softmax of each video).
    """
    from cdlib.runs import dense_accuracy

    rows = []
    for which, out in outputs.items():
        right = (out["logits"].argmax(-1) == out["labels"]).float()
        row = {"model": which, "clip accuracy": float(right.mean())}
        informative = out["informative"]
        if bool((informative >= 0).all()):
            row["action clips"] = float(right[informative == 1].mean())
            row["non-action clips"] = float(right[informative == 0].mean())
        row["video accuracy"] = dense_accuracy(out)
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")
