"""Tables of benchmark results for the command line and the book: pandas DataFrames and the CLI summary.

Everything here reads finished results (:func:`cdlib.experiment.bench.run_benchmark`) or
per-clip outputs (:func:`cdlib.experiment.evaluation.collect_outputs`) and computes nothing
the benchmark caches; :func:`ablation_table` runs the benchmark for each variant.
Kept apart from the benchmark's modules so that a relabelled column or a
reformatted line changes no artifact key: the benchmark's key hashes the modules
that compute its numbers (:data:`cdlib.experiment.bench.RESULT_CODE`), and this is not one
of them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from cdlib.data.base import clip_groups
from cdlib.experiment.bench import run_benchmark
from cdlib.experiment.config import Config
from cdlib.experiment.evaluation import confidence_signals
from cdlib.experiment.folds import by_seed, cited_texts, spread_texts
from cdlib.experiment.outputs import ClipOutputs
from cdlib.experiment.timing import STAGES
from cdlib.method.calibration import auprc, auroc
from cdlib.method.selection import select_best
from cdlib.runtime.artifacts import ArtifactStore
from cdlib.runtime.progress import progress_bar


# ----------------------------------------------------------------------------- the headline and the command line's summary

def selected_point(result: dict, name: str, which: str = "matched") -> dict | None:
    """The point of policy ``name`` that ``result["selected"][name][which]`` names (None if there is none)."""
    index = result["selected"][name][which]
    return result["policies"][name][index] if index is not None else None


def headline_table(result: dict) -> pd.DataFrame:
    """Per policy, its operating points chosen on val, evaluated on test, and one upper bound, labelled.

    Columns: ``best accuracy`` and ``best: FLOPs ratio`` of the point with the
    best val accuracy; ``matched: accuracy`` and ``matched: FLOPs ratio`` of the
    cheapest point that matched the dense teacher on val (NaN: none did);
    ``area vs oracle`` under the test curve; ``best accuracy (upper bound)``, the
    highest test accuracy of any point (chosen on test).
    """
    dense_gflops = result["summary"]["dense_teacher_gflops_per_video"]
    rows = []
    for name in result["policies"]:
        best, matched = selected_point(result, name, "best"), selected_point(result, name, "matched")
        rows.append({
            "policy": name,
            "best accuracy": best["accuracy"],
            "best: FLOPs ratio": best["gflops_per_video"] / dense_gflops,
            "matched: accuracy": matched["accuracy"] if matched else float("nan"),
            "matched: FLOPs ratio": matched["gflops_per_video"] / dense_gflops if matched else float("nan"),
            "area vs oracle": result["summary"]["auc_vs_oracle"][name],
            "best accuracy (upper bound)": selected_point(result, name, "upper_bound_best")["accuracy"],
        })
    return pd.DataFrame(rows).set_index("policy")


def format_table(result: dict) -> str:
    """The summary ``python -m cdlib bench`` prints: the headline table, the method's numbers (its policy chosen
    on val, ``summary.method``, where one of its policies was evaluated) and the label-only baseline (where a CE
    student was)."""
    s, ub, data = result["summary"], result["summary"]["upper_bound"], result["data"]
    wall = result.get("wall_clock")
    baseline = s["ce_baseline"]
    lines = [
        headline_table(result).to_string(float_format=lambda v: f"{v:.3f}"),
        "",
        f"operating points chosen on the {data['val_videos']} val videos (one video: "
        f"{1 / data['val_videos']:.1%} of val accuracy), evaluated on the {data['test_videos']} test videos",
        f"dense teacher: test accuracy {s['dense_teacher_accuracy']:.3f} (val {s['dense_teacher_val_accuracy']:.3f}), "
        f"{s['dense_teacher_gflops_per_video']:.3f} GFLOPs/video",
    ]
    method = s.get("method")
    if method is not None:
        name = method["policy"]
        lines += [
            f"the method: {name} (the {method['student']} student), chosen on val by the area vs the oracle's val "
            "curve: " + ", ".join(f"{k} {v:.3f}" for k, v in method["val_auc_vs_oracle"].items()),
            f"{name} at the point matched on val: FLOPs ratio " + _fmt(s["cd_gflops_ratio_at_dense_accuracy"])
            + ", test accuracy " + _fmt(s["cd_test_accuracy_at_matched_point"]),
            f"{name} at the best point on val: test accuracy {s['cd_best_accuracy']:.3f} "
            f"({s['cd_accuracy_gain']:+.3f} over dense); test area vs oracle {s['cd_auc_vs_oracle']:.3f}",
        ]
        if wall is not None:
            lines.append(f"{name} wall-clock ratio at the matched point: {_fmt(s['cd_wall_ratio_at_dense_accuracy'])} "
                         f"one video at a time, {_fmt(s['cd_throughput_wall_ratio_at_dense_accuracy'])} in batches of "
                         f"{wall['throughput_batch']} (totals over {wall['selected_videos']} test videos, "
                         f"each timed by the fastest of {wall['passes']} interleaved passes)")
        lines.append("upper bound (points chosen on test): FLOPs ratio at dense accuracy "
                     + _fmt(ub["cd_gflops_ratio_at_dense_accuracy"]) + f", best accuracy {ub['cd_best_accuracy']:.3f} "
                     f"({ub['cd_accuracy_gain']:+.3f})")
    lines.append("confidence AUROC (teacher right on a clip): "
                 + ", ".join(f"{k} {v:.3f}" for k, v in result["confidence_auroc"].items()))
    if baseline is not None:
        lines.append(f"CE baseline of the headline: {baseline['student']} (higher val AUROC: "
                     + ", ".join(f"{k} {v:.3f}" for k, v in baseline["val_auroc"].items()) + ")")
    return "\n".join(lines)


def _fmt(value) -> str:
    return "not reached" if value is None else f"{value:.3f}"


def _nan_if_none(value) -> float:
    return float("nan") if value is None else value


# ----------------------------------------------------------------------------- the method's student, FrameExit, harder data

def method_choice(results: Sequence[dict]) -> dict:
    """Which policy the method used over ``results`` (one per seed or fold), from each one's ``summary.method``.

    ``policy``: the one validation chose most often (ties: the first of
    :data:`cdlib.method.selection.METHOD_POLICIES`), ``student`` its student,
    ``val_auc_vs_oracle``: each candidate's mean over the results, ``count``: in
    how many results ``policy`` was chosen, ``text``: that in words.
    """
    from cdlib.method.selection import METHOD_POLICIES

    chosen = [r["summary"]["method"]["policy"] for r in results]
    policy = max(METHOD_POLICIES, key=lambda name: (chosen.count(name), -list(METHOD_POLICIES).index(name)))
    areas = {name: sum(r["summary"]["method"]["val_auc_vs_oracle"][name] for r in results) / len(results)
             for name in results[0]["summary"]["method"]["val_auc_vs_oracle"]}
    count = chosen.count(policy)
    text = ("chosen on validation; one run" if len(results) == 1 else "chosen on validation in every run"
            if count == len(results) else f"chosen on validation in {count} of {len(results)} runs")
    return {"policy": policy, "student": METHOD_POLICIES[policy], "val_auc_vs_oracle": areas, "count": count,
            "text": text}


def _mean(values) -> float:
    values = [v for v in values if v is not None and v == v]
    return sum(values) / len(values) if values else float("nan")


def frame_exit_comparison(results: Sequence[dict], budget: float) -> dict[str, str]:
    """The method (its policy chosen on val) against ``frame_exit``, in words, from means over ``results``.

    ``matched``: the test FLOPs ratios of their points matched to the dense
    teacher on val (and their test accuracies there); ``budget``: the test
    accuracies of their most accurate points on val within ``budget`` of the
    dense teacher's FLOPs (:func:`matched_compute_table`). Each says which one
    wins: the cheaper at matched accuracy, the more accurate at matched compute.
    """
    method = method_choice(results)["policy"]
    ratio = {name: _mean([r["summary"]["gflops_ratio_at_dense_accuracy"].get(name) for r in results])
             for name in (method, "frame_exit")}
    accuracy = {name: _mean([r["summary"]["test_accuracy_at_matched_point"].get(name) for r in results])
                for name in (method, "frame_exit")}
    within = {name: _mean([float(matched_compute_table(r, (budget,)).loc[name, float(budget)]) for r in results])
              for name in (method, "frame_exit")}

    def matched_text():
        a, b = ratio[method], ratio["frame_exit"]
        if a != a and b != b:
            return "neither matched the dense teacher on validation"
        if b != b or (a == a and a < b):
            verdict = f"{method} beats frame_exit"
        elif a != a or b < a:
            verdict = f"frame_exit beats {method}"
        else:
            verdict = f"{method} and frame_exit tie"

        def cost(name, value):
            return (f"{name} never matched on validation" if value != value else
                    f"{name} needs {value:.1%} of the dense teacher's FLOPs (test accuracy {accuracy[name]:.3f})")

        return f"{verdict}: {cost(method, a)} and {cost('frame_exit', b)}"

    def budget_text():
        a, b = within[method], within["frame_exit"]
        if a != a or b != b:
            return f"{method if a != a else 'frame_exit'} has no point that cheap"
        verdict = (f"{method} beats frame_exit" if a > b else f"frame_exit beats {method}" if b > a
                   else f"{method} and frame_exit tie")
        return f"{verdict}: {a:.3f} against {b:.3f} on test"

    return {"matched": matched_text(), "budget": budget_text()}


def harder_data_table(results: Sequence[dict]) -> pd.DataFrame:
    """One row per benchmark result (easier and harder data alike): its ``rho`` (the training and test action
    fraction), ``seed``, the dense teacher's accuracy, the oracle's best, the test accuracy of the point best on
    val and the area under the test curve relative to the oracle's of ``cd_gate``, ``cd_gate_ctx``, the method
    (its policy chosen on val) and ``frame_exit``, ``sampler_maxprob``'s area, and the test AUROC of the per-clip
    and of the context student's score."""
    rows = []
    for r in results:
        s = r["summary"]
        row = {"rho": r["config"]["data"]["informative_fraction"], "seed": r["seed"],
               "dense teacher": s["dense_teacher_accuracy"],
               "oracle best": max(p["accuracy"] for p in r["policies"]["oracle"])}
        for name in ("cd_gate", "cd_gate_ctx", "frame_exit"):
            row[f"{name} best (val)"] = _nan_if_none(s["best_accuracy"].get(name))
        for name in ("cd_gate", "cd_gate_ctx", "frame_exit", "sampler_maxprob"):
            row[f"{name} area vs oracle"] = _nan_if_none(s["auc_vs_oracle"].get(name))
        row["method area vs oracle"] = _nan_if_none(s["cd_auc_vs_oracle"])
        row["AUROC of s"] = _nan_if_none(r["confidence_auroc"].get("cd"))
        row["AUROC of s (context)"] = _nan_if_none(r["confidence_auroc"].get("cd_ctx"))
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- matched points, sweeps, signals and ablations

def matched_accuracy_table(result: dict, upper_bound: bool = False) -> pd.DataFrame:
    """Per policy, its cheapest point that matched the dense teacher's accuracy on val, evaluated on test.

    Columns: ``knob``, ``val accuracy``, ``accuracy`` (test), ``GFLOPs/video``,
    ``FLOPs ratio`` (test, relative to the dense teacher), ``teacher
    clips/video`` and, if the result was timed, ``wall-clock ratio`` (latency),
    ``throughput ratio`` and ``timed videos``. A policy with no point that
    matched has NaN. ``upper_bound=True``: the point chosen on test instead.
    """
    dense = result["policies"]["dense_teacher"][0]
    which = "upper_bound_matched" if upper_bound else "matched"
    rows = []
    for name in result["policies"]:
        hit = selected_point(result, name, which)

        def value(key, hit=hit):
            return hit[key] if hit is not None and key in hit else float("nan")

        row = {"policy": name, "knob": str(hit["knob"]) if hit else "", "val accuracy": value("val_accuracy"),
               "accuracy": value("accuracy"), "GFLOPs/video": value("gflops_per_video"),
               "FLOPs ratio": value("gflops_per_video") / dense["gflops_per_video"],
               "teacher clips/video": value("teacher_clips_per_video")}
        if "wall_ratio_to_dense" in dense:
            row.update({"wall-clock ratio": value("wall_ratio_to_dense"),
                        "throughput ratio": value("throughput_wall_ratio_to_dense"),
                        "timed videos": value("wall_videos")})
        rows.append(row)
    return pd.DataFrame(rows).set_index("policy")


#: :func:`time_breakdown_table`'s modes: the prefix of each mode's keys on a timed point, and of its total
TIMING_MODES = {"latency": ("", "wall_s_per_video"), "throughput": ("throughput_", "throughput_s_per_video")}


def time_breakdown_table(results: Sequence[dict]) -> pd.DataFrame:
    """Milliseconds per video of the dense teacher, the dense student and the method's matched point, split into
    the timed pipeline's stages (:data:`cdlib.experiment.timing.STAGES`), one video at a time and in batches; the
    mean over ``results`` (one per seed or fold).

    Rows ``(point, mode)``: ``point`` is ``dense teacher``, ``dense student`` or
    ``method`` (the matched point of the policy :func:`method_choice` names); NaN
    where a point is absent (not evaluated, or never matched on val), ``mode`` one of :data:`TIMING_MODES`.
    Columns: each stage, from the point's ``{prefix}{stage}_s``, and ``total``,
    its measured time per video, which the stages sum to up to each call's entry
    and exit (:mod:`cdlib.experiment.timing`).
    """
    method = method_choice(results)["policy"]
    rows = []
    for result in results:
        points = {"dense teacher": result["policies"]["dense_teacher"][0],
                  "dense student": result["policies"].get("dense_student", [None])[0],
                  "method": selected_point(result, method)}
        for label, p in points.items():
            for mode, (prefix, total) in TIMING_MODES.items():
                keys = {stage: f"{prefix}{stage}_s" for stage in STAGES} | {"total": total}
                rows.append({"point": label, "mode": mode,
                             **{column: 1e3 * p[key] if p else float("nan") for column, key in keys.items()}})
    return pd.DataFrame(rows).groupby(["point", "mode"], sort=False).mean()


def achieved_gflop_s_table(results: Sequence[dict]) -> pd.DataFrame:
    """GFLOP/s each model achieved in the timed pipeline (``wall_clock.achieved_gflop_s``,
    :func:`cdlib.method.cost.achieved_gflop_s`): one row per model, one column per mode, the mean over ``results``
    (NaN where a result did not time the model)."""
    frames = [pd.DataFrame(r["wall_clock"]["achieved_gflop_s"]) for r in results]
    table = pd.concat(frames).groupby(level=0, sort=False).mean()
    table.index.name = "model"
    return table[list(TIMING_MODES)]


#: the name of :func:`matched_compute_table`'s column axis, whose labels are the budgets as fractions
BUDGET_AXIS = "budget (fraction of the dense teacher's FLOPs)"


def matched_compute_table(result: dict, budgets: Sequence[float] = (0.1, 0.25, 0.5, 1.0)) -> pd.DataFrame:
    """Test accuracy of each policy's most accurate point on val within each compute budget.

    A budget is a fraction of the dense teacher's FLOPs on val; the point is
    :func:`select_best` on val within it. One row per policy, one column per
    budget, keyed by the budget itself (``table[0.25]``; the column axis is named
    :data:`BUDGET_AXIS`), so that callers select by value, not by a label; NaN
    where no point of the policy is that cheap.
    """
    dense = result["policies"]["dense_teacher"][0]["val_gflops_per_video"]

    def accuracy_within(points, budget):
        index = select_best(points, budget=budget * dense)
        return points[index]["accuracy"] if index is not None else float("nan")

    table = {float(b): {name: accuracy_within(points, b) for name, points in result["policies"].items()}
             for b in budgets}
    frame = pd.DataFrame(table)
    frame.index.name = "policy"
    frame.columns.name = BUDGET_AXIS
    return frame


def config_value(result: dict, key: str):
    """The value of the dotted config ``key`` (e.g. ``data.test_shift``) a benchmark result was made with."""
    value = result["config"]
    for part in key.split("."):
        value = value[part]
    return value


def sweep_table(results: Sequence[dict], key: str, budget: float = 0.25) -> pd.DataFrame:
    """One row per (swept value, policy), from the points chosen on val, evaluated on test.

    Columns: ``best accuracy`` (of the point best on val), ``accuracy within
    budget`` (the best on val within ``budget`` of the dense teacher's FLOPs),
    ``FLOPs ratio at dense accuracy`` and ``accuracy at matched point`` (the
    point that matched the dense teacher on val; NaN: none did), ``area vs
    oracle``, ``dense teacher accuracy``, and ``best accuracy (upper bound)``,
    the highest test accuracy of any point. The val split does not change with
    the test-only data fields, so those sweeps show points chosen on the
    training distribution applied to other test videos.
    """
    rows = []
    for result in results:
        summary = result["summary"]
        within = matched_compute_table(result, (budget,)).iloc[:, 0]
        for name in result["policies"]:
            rows.append({
                key: config_value(result, key),
                "seed": result["seed"],
                "policy": name,
                "best accuracy": selected_point(result, name, "best")["accuracy"],
                "accuracy within budget": within[name],
                "FLOPs ratio at dense accuracy": _nan_if_none(summary["gflops_ratio_at_dense_accuracy"][name]),
                "accuracy at matched point": _nan_if_none(summary["test_accuracy_at_matched_point"][name]),
                "area vs oracle": summary["auc_vs_oracle"][name],
                "dense teacher accuracy": summary["dense_teacher_accuracy"],
                "best accuracy (upper bound)": selected_point(result, name, "upper_bound_best")["accuracy"],
            })
    return pd.DataFrame(rows)


def distance_table(results: Sequence[dict], key: str) -> pd.DataFrame:
    """The distance-aware candidates of ``results``' ``distance`` blocks, mean over seeds.

    Rows: ``(method, quantile)``; columns: ``val AUROC`` (on the val clips, which
    chose the candidate used) and the test AUROC at each value of the swept
    ``key`` (e.g. ``data.test_shift``), all for "the teacher is right on a clip".
    """
    rows = []
    for result in results:
        for candidate in result["distance"]["candidates"].values():
            index = {"seed": result["seed"], "method": candidate["method"], "quantile": candidate["quantile"]}
            rows.append({**index, "column": "val AUROC", "auroc": candidate["val_auroc"]})
            rows.append({**index, "column": config_value(result, key), "auroc": candidate["test_auroc"]})
    frame = pd.DataFrame(rows).drop_duplicates(["seed", "method", "quantile", "column"])
    table = frame.pivot_table(index=["method", "quantile"], columns="column", values="auroc", aggfunc="mean", sort=False)
    table.columns.name = f"AUROC (test columns: {key})"
    return table[["val AUROC", *[c for c in table.columns if c != "val AUROC"]]]


#: how much higher an AUROC must be than another's to count as a lift (the book's verdicts "lifts", "repairs")
AUROC_LIFT = 0.05


def auroc_lifts(auroc: float, *references: float, margin: float = AUROC_LIFT) -> bool:
    """Whether ``auroc`` lifts on every one of ``references``: ``auroc >= max(references) + margin``.

    The book's one rule for calling a new score's AUROC (for "the teacher is right on this clip") better
    than the scores it replaces: a difference under :data:`AUROC_LIFT` is within what another seed or
    another few test videos move, so it is reported, not called a lift. False when any value is NaN.
    """
    if not references:
        raise ValueError("auroc_lifts needs at least one reference AUROC")
    if any(value != value for value in (auroc, *references)):
        return False
    return bool(auroc >= max(references) + margin)


def chosen_distance(results: Sequence[dict]) -> str:
    """The distance-aware candidate val chose, per distinct seed: ``"gaussian@0.99"`` when every seed chose it,
    else each choice with its number of seeds (``"gaussian@0.99 (2 seeds), knn@0.95 (1 seed)"``)."""
    by_seed = {result["seed"]: result["distance"]["chosen"] for result in results}
    counts = pd.Series(list(by_seed.values())).value_counts(sort=False)
    if len(counts) == 1:
        return str(counts.index[0])
    return ", ".join(f"{name} ({n} seed{'s' * (n > 1)})" for name, n in counts.items())


def signal_table(outputs: dict[str, ClipOutputs]) -> pd.DataFrame:
    """How well each confidence signal predicts that the teacher is right on a clip, by clip group.

    Groups: ``all`` clips, and where the data say which clips show the action,
    ``action`` and ``non-action`` clips separately (within a group the signal must
    rank the teacher's right clips above its wrong ones without the help of the
    action/non-action contrast). Columns: ``signal``, ``group``, ``clips``,
    ``teacher right`` (fraction), ``mean signal``, ``auroc``, ``auprc``.
    """
    signals = confidence_signals(outputs)
    correct = outputs["teacher"].correct
    informative = outputs["teacher"].informative
    groups = {"all": torch.ones_like(correct)}
    if bool((informative >= 0).all()):
        groups.update(clip_groups(informative))
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


def action_selection_table(outputs: dict[str, ClipOutputs]) -> pd.Series:
    """How far clip selection can go on data whose clips are known to show the action or not, per video.

    ``teacher right on action clips``: the teacher's clip accuracy on the action
    clips; ``teacher mean over the action clips``: the video accuracy of the
    teacher's mean softmax over exactly the action clips of each video (a
    selector that finds every action clip and nothing else; videos without one
    count as wrong); ``top clip shows the action (<student>)``: for each student
    with a score (``cd``, ``cd_ctx``, ...), the fraction of videos whose clip of
    highest score is an action clip. Empty where the data do not say which clips
    show the action (real videos).
    """
    teacher = outputs["teacher"]
    action = teacher.informative == 1
    if not bool((teacher.informative >= 0).all()):
        return pd.Series(dtype=float)
    probs = teacher.logits.softmax(-1)
    summed = torch.zeros(teacher.num_videos, probs.shape[1]).index_add_(0, teacher.video[action], probs[action])
    has_action = torch.bincount(teacher.video[action], minlength=teacher.num_videos) > 0
    right = (summed.argmax(1) == teacher.video_labels()) & has_action
    row = {"teacher right on action clips": float(teacher.correct[action].float().mean()),
           "teacher mean over the action clips": float(right.float().mean())}
    for name, out in outputs.items():
        if name != "teacher" and out.score_logit is not None:
            top = [bool(shown[int(score.argmax())]) for score, shown in
                   zip(out.split_by_video(out.score), out.split_by_video(action))]
            row[f"top clip shows the action ({name})"] = sum(top) / len(top)
    return pd.Series(row)


#: what :func:`ablation_table` evaluates: the method's two policies (the CD student only)
ABLATION_POLICIES = ("cd_topk", "cd_gate")


def ablation_table(cfg: Config, variants: dict[str, dict], store: ArtifactStore | None = None) -> pd.DataFrame:
    """The method under config changes: one row per named variant (a dict of dotted overrides of ``cfg``).

    Columns: the CD score's AUROC and AUPRC for "teacher right on a clip", the
    area vs the oracle of ``cd_gate`` and ``cd_topk``, and from ``cd_gate``'s
    points chosen on val its FLOPs ratio and test accuracy at the dense
    teacher's accuracy (NaN: never matched) and its best test accuracy. Untimed;
    only what a variant changes is retrained, and only the policies of
    :data:`ABLATION_POLICIES` with their students are evaluated.
    """
    rows = []
    for name, overrides in progress_bar(variants.items(), desc="ablation"):
        result = run_benchmark(cfg.replace(**{"bench.policies": ABLATION_POLICIES, **overrides}), store, timing=False)
        summary = result["summary"]
        rows.append({
            "variant": name,
            "seed": result["seed"],
            "cd AUROC": result["confidence_auroc"]["cd"],
            "cd AUPRC": result["confidence_auprc"]["cd"],
            "cd_gate area vs oracle": summary["cd_auc_vs_oracle"],
            "cd_topk area vs oracle": summary["auc_vs_oracle"]["cd_topk"],
            "cd_gate FLOPs ratio at dense accuracy": _nan_if_none(summary["cd_gflops_ratio_at_dense_accuracy"]),
            "cd_gate accuracy at matched point": _nan_if_none(summary["cd_test_accuracy_at_matched_point"]),
            "cd_gate best accuracy": summary["cd_best_accuracy"],
        })
    return pd.DataFrame(rows)


def accuracy_table(outputs: dict[str, ClipOutputs]) -> pd.DataFrame:
    """Accuracy of each model of ``outputs`` (teacher and students) on the clips and videos of a split.

    Columns: ``clip accuracy`` on all clips and, where the data say which clips
    show the action, on ``action clips`` and ``non-action clips``; ``video
    accuracy`` of dense averaging (the mean clip softmax of each video).
    """
    rows = []
    for which, out in outputs.items():
        right = out.correct.float()
        row = {"model": which, "clip accuracy": float(right.mean())}
        if bool((out.informative >= 0).all()):
            for group, mask in clip_groups(out.informative).items():
                row[f"{group} clips"] = float(right[mask].mean())
        row["video accuracy"] = out.dense_accuracy()
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


# ----------------------------------------------------------------------------- the numbers the accuracy-vs-compute chapter cites
# Each function returns {glued name: value}: the chapter glues them in a loop and its prose cites them by name.

#: the policies whose matched points, budgets and areas the accuracy-vs-compute chapter cites
MATCHED_CITED = ("method", "cd_gate", "cd_gate_ctx", "cd_topk", "sampler_maxprob", "sampler_ce_all", "sampler_kd",
                 "uniform_k", "random_k", "frame_exit")
BUDGET_CITED = ("method", "cd_gate", "cd_gate_ctx", "cd_topk", "sampler_maxprob", "sampler_ce_all", "sampler_kd",
                "uniform_k", "frame_exit", "oracle")
AREA_CITED = ("sampler_kd", "sampler_ce_all", "cd_gate", "cd_gate_ctx", "frame_exit", "uniform_k")


def _mean_cost(results: Sequence[dict]) -> pd.Series:
    """Every number of the results' ``cost`` blocks, averaged over the results (one per seed)."""
    return pd.DataFrame([r["cost"] for r in results]).mean(numeric_only=True)


def cost_table(results: Sequence[dict]) -> pd.DataFrame:
    """The teacher's and the student's MFLOPs per clip, their ratio and the clips per video (means over
    ``results``, one per seed; the models' FLOPs do not depend on the seed)."""
    cost = _mean_cost(results)
    return pd.Series({
        "teacher MFLOPs per clip": 1e3 * cost["teacher_gflops_per_clip"],
        "student MFLOPs per clip": 1e3 * cost["student_gflops_per_clip"],
        "student / teacher": cost["student_teacher_flops_ratio"],
        "clips per video": cost["clips_per_video"],
    }).round(3).to_frame("value")


def cost_numbers(results: Sequence[dict]) -> dict:
    """The students' cost relative to the teacher's per clip (means over ``results``, one per seed), the method
    validation chose (:func:`method_choice`) with each candidate's validation area, and the sizes of the run:
    clips per video, threads, test and validation videos."""
    cost = _mean_cost(results)
    method = method_choice(results)
    return {
        "student_ratio": float(cost["student_teacher_flops_ratio"]),
        "context_ratio": float(np.mean([r["cost"]["gflops_per_clip"]["cd_ctx"] / r["cost"]["teacher_gflops_per_clip"]
                                        for r in results])),
        "method_policy": method["policy"],
        "method_student": method["student"],
        "method_seeds": method["text"],
        "method_val_area_cd_gate": method["val_auc_vs_oracle"]["cd_gate"],
        "method_val_area_cd_gate_ctx": method["val_auc_vs_oracle"]["cd_gate_ctx"],
        "clips_per_video": int(round(cost["clips_per_video"])),
        "threads": int(results[0]["environment"]["threads"]),
        "n_test": int(results[0]["data"]["test_videos"]),
        "n_val": int(results[0]["data"]["val_videos"]),
    }


def matched_numbers(results: Sequence[dict]) -> dict:
    """The matched points (:func:`matched_accuracy_table`, mean over ``results``) of :data:`MATCHED_CITED`
    (``method``: the policy validation chose): ``matched_{flops,wall,throughput,acc}_<policy>``; the method's
    upper bound (``upper_flops_method``); the dense teacher's accuracies; the wall-clock setup; and three
    verdicts on the method's point (its accuracy against the dense teacher's, its time ratio against its
    FLOPs ratio, batches against one video at a time)."""
    method = method_choice(results)["policy"]
    summary = pd.DataFrame([r["summary"] for r in results])
    dense = summary["dense_teacher_accuracy"].mean()
    matched = pd.concat([matched_accuracy_table(r) for r in results]).groupby("policy", sort=False).mean(
        numeric_only=True)
    matched.loc["method"] = matched.loc[method]
    wall = results[0]["wall_clock"]
    out = {"wall_videos": wall["selected_videos"], "wall_passes": wall["passes"], "wall_batch": wall["throughput_batch"],
           "dense_acc": float(dense), "dense_val_acc": float(summary["dense_teacher_val_accuracy"].mean())}
    for name in MATCHED_CITED:
        for column, tag in (("FLOPs ratio", "flops"), ("wall-clock ratio", "wall"), ("throughput ratio", "throughput"),
                            ("accuracy", "acc")):
            out[f"matched_{tag}_{name}"] = float(matched.loc[name, column])
    upper = pd.concat([matched_accuracy_table(r, upper_bound=True) for r in results])
    out["upper_flops_method"] = float(upper.groupby("policy", sort=False).mean(numeric_only=True).loc[method, "FLOPs ratio"])
    gate = matched.loc["method"]
    out["matched_acc_verdict"] = "above" if gate["accuracy"] > dense else "equal to" if gate["accuracy"] == dense else "below"
    out["wall_vs_flops"] = "above" if gate["wall-clock ratio"] > gate["FLOPs ratio"] else "below"
    out["throughput_vs_latency"] = "below" if gate["throughput ratio"] < gate["wall-clock ratio"] else "above"
    return out


#: the numbers of :func:`matched_numbers` that the accuracy-vs-compute prose cites with their spread over seeds,
#: and the format of each
MATCHED_TEXTS = {
    "dense_acc": ".3f", "dense_val_acc": ".3f", "upper_flops_method": ".1%",
    **{f"matched_{tag}_{name}": (".3f" if tag == "acc" else ".1%")
       for name in ("method", "cd_gate", "cd_gate_ctx", "frame_exit") for tag in ("flops", "wall", "throughput", "acc")},
    **{f"matched_flops_{name}": ".1%" for name in ("sampler_maxprob", "sampler_ce_all", "sampler_kd")},
}


def matched_texts(results: Sequence[dict]) -> dict[str, str]:
    """:data:`MATCHED_TEXTS` as the prose cites them, glued as ``<name>_text``: each seed's :func:`matched_numbers`
    alone through :func:`cdlib.experiment.folds.cited_texts` (the value for one seed, ``mean ± std`` over several)."""
    return cited_texts(matched_numbers, results, MATCHED_TEXTS)


def timing_numbers(breakdown: pd.DataFrame, rates: pd.DataFrame, student: str) -> dict:
    """One video at a time: the teacher's and ``student``'s achieved GFLOP/s (``rates``:
    :func:`achieved_gflop_s_table`; NaN where no timed point ran the student) and their ratio, the shares
    of preprocessing and the student in the method's matched point's time (``breakdown``:
    :func:`time_breakdown_table`), that point's time ratio to the dense teacher (``time_ratio``) and its
    *floor* (``floor_ratio``): the same point with its student's FLOPs run at the teacher's GFLOP/s,

    ``floor = (t_pre + t_dec + t_T + t_S · r_S / r_T) / t_dense``

    (``t`` the stages' milliseconds, ``r`` the achieved GFLOP/s; ``t_S · r_S`` is the student's FLOPs): what the
    point would cost if the student were as efficient per FLOP as the teacher, its preprocessing, decision and
    teacher clips unchanged."""
    latency = rates["latency"]
    at_matched = breakdown.loc[("method", "latency")]
    dense = breakdown.loc[("dense teacher", "latency"), "total"]
    rate_ratio = float(latency["teacher"] / latency.get(student, np.nan))
    fixed = at_matched["preprocess"] + at_matched["decision"] + at_matched["teacher"]
    return {
        "rate_teacher": float(latency["teacher"]),
        "rate_student": float(latency.get(student, np.nan)),
        "rate_ratio": rate_ratio,
        "preprocess_share": float(at_matched["preprocess"] / at_matched["total"]),
        "student_share": float(at_matched["student"] / at_matched["total"]),
        "time_ratio": float(at_matched["total"] / dense),
        "floor_ratio": float((fixed + at_matched["student"] / rate_ratio) / dense),
        "fixed_ratio": float(fixed / dense),
    }


#: the numbers of :func:`cost_numbers` that the accuracy-vs-compute prose cites with their spread over seeds, and
#: the format of each
COST_TEXTS = {"student_ratio": ".1%", "context_ratio": ".1%", "method_val_area_cd_gate": ".1%",
              "method_val_area_cd_gate_ctx": ".1%"}


def cost_texts(results: Sequence[dict]) -> dict[str, str]:
    """:data:`COST_TEXTS` as the prose cites them, glued as ``<name>_text``: each seed's :func:`cost_numbers` alone
    through :func:`cdlib.experiment.folds.cited_texts`."""
    return cited_texts(cost_numbers, results, COST_TEXTS)


#: the numbers of :func:`budget_numbers` that the accuracy-vs-compute prose cites with their spread over seeds,
#: and the format of each
BUDGET_TEXTS = {**{f"at_budget_{name}": ".3f" for name in BUDGET_CITED}, "cd_auc": ".1%", "sampler_auc": ".1%",
                **{f"{name}_auc": ".1%" for name in AREA_CITED}}


def budget_texts(results: Sequence[dict], budgets: Sequence[float], budget: float) -> dict[str, str]:
    """:data:`BUDGET_TEXTS` as the prose cites them, glued as ``<name>_text``: each seed's :func:`budget_numbers`
    alone (its :func:`matched_compute_table` at ``budgets``, which hold ``budget``), then
    :func:`cdlib.experiment.folds.cited_texts`."""
    def numbers_of(runs: Sequence[dict]) -> dict:
        return budget_numbers(runs, pd.concat([matched_compute_table(r, budgets) for r in runs]), budget)

    return cited_texts(numbers_of, results, BUDGET_TEXTS)


def budget_numbers(results: Sequence[dict], compute: pd.DataFrame, budget: float) -> dict:
    """At matched compute: the test accuracy within ``budget`` (``at_budget_<policy>`` for
    :data:`BUDGET_CITED`, from ``compute``, the :func:`matched_compute_table` of every result), the areas
    under the test curves relative to the oracle's (``cd_auc``, ``sampler_auc``, ``<policy>_auc``), and the
    FrameExit verdicts of :func:`frame_exit_comparison`; means over ``results``."""
    method = method_choice(results)["policy"]
    summary = pd.DataFrame([r["summary"] for r in results])
    compute_mean = compute.groupby("policy", sort=False).mean()
    compute_mean.loc["method"] = compute_mean.loc[method]
    out = {"budget": budget}
    for name in BUDGET_CITED:
        out[f"at_budget_{name}"] = float(compute_mean.loc[name, budget])
    out["cd_auc"] = float(summary["cd_auc_vs_oracle"].mean())
    out["sampler_auc"] = float(summary["sampler_maxprob_auc_vs_oracle"].mean())
    for name in AREA_CITED:
        out[f"{name}_auc"] = float(np.mean([r["summary"]["auc_vs_oracle"][name] for r in results]))
    versus = frame_exit_comparison(results, budget)
    out["fe_matched_verdict"], out["fe_budget_verdict"] = versus["matched"], versus["budget"]
    return out


def rho_sweep_numbers(rho_table: pd.DataFrame, key: str, method: str) -> dict:
    """The sweep over the test videos' action fraction (``rho_table``: :func:`sweep_table` over ``key``) at its
    two ends: the best points on validation of the dense teacher, ``method`` (glued as ``method``), FrameExit
    and the other student's gate (``rho_other``), the method's gain over the dense teacher, its matched point
    at the high end, and two verdicts (does the chosen student carry over; does the match)."""
    best = rho_table.groupby(["policy", key])["best accuracy"].mean().unstack(key)
    ratio = rho_table.groupby(["policy", key])["FLOPs ratio at dense accuracy"].mean().unstack(key)
    matched_acc = rho_table.groupby(["policy", key])["accuracy at matched point"].mean().unstack(key)
    low, high = min(best.columns), max(best.columns)
    out = {}
    for name in ("dense_teacher", method, "frame_exit"):
        tag = "method" if name == method else name
        out[f"rho_low_{tag}"], out[f"rho_high_{tag}"] = float(best.loc[name, low]), float(best.loc[name, high])
    other = "cd_gate" if method != "cd_gate" else "cd_gate_ctx"  # the student validation did not choose
    out.update(rho_other=other, rho_low_other=float(best.loc[other, low]), rho_high_other=float(best.loc[other, high]))
    worse_at_both_ends = all(best.loc[method, r] < best.loc[other, r] for r in (low, high))
    out["rho_carry_verdict"] = (
        "the student validation chose carries over worse than the other to action fractions it was not trained on: "
        "the choice holds at the training fraction only" if worse_at_both_ends
        else "the student validation chose carries over at least as well at one end of the sweep")
    out.update(rho_low=low, rho_high=high,
               rho_gain_low=float(best.loc[method, low] - best.loc["dense_teacher", low]),
               rho_gain_high=float(best.loc[method, high] - best.loc["dense_teacher", high]),
               rho_ratio_high=float(ratio.loc[method, high]), rho_matched_acc_high=float(matched_acc.loc[method, high]))
    out["rho_match_verdict"] = (
        "no longer matches the dense teacher there: a point chosen on validation videos like the training ones does "
        "not carry its match over to videos the action fills"
        if matched_acc.loc[method, high] < best.loc["dense_teacher", high] else "still matches the dense teacher there")
    return out


def harder_data_numbers(hard: pd.DataFrame, hard_results: Sequence[dict], easy_rho: float, hard_rho: float) -> dict:
    """The default data (action fraction ``easy_rho``) against the harder data (``hard_rho``), from ``hard``
    (:func:`harder_data_table` of both): areas vs the oracle and AUROCs of each (``<name>_easy``,
    ``<name>_hard``), the best points on the harder data (``hard_<name>``), and the method validation chose
    there (``hard_method``, from ``hard_results``)."""
    by_rho = hard.groupby("rho").mean()
    out = {"hard_rho": hard_rho}
    for tag, rho in (("easy", easy_rho), ("hard", hard_rho)):
        for column, name in (("cd_gate area vs oracle", "area"), ("cd_gate_ctx area vs oracle", "area_ctx"),
                             ("method area vs oracle", "area_method"), ("frame_exit area vs oracle", "area_fe"),
                             ("AUROC of s", "auroc_s"), ("AUROC of s (context)", "auroc_ctx")):
            out[f"{name}_{tag}"] = float(by_rho.loc[rho, column])
    for column, name in (("oracle best", "oracle"), ("cd_gate best (val)", "cd_best"),
                         ("cd_gate_ctx best (val)", "ctx_best"), ("frame_exit best (val)", "fe_best"),
                         ("dense teacher", "dense")):
        out[f"hard_{name}"] = float(by_rho.loc[hard_rho, column])
    choice = method_choice(hard_results)
    out["hard_method"] = f"{choice['policy']} ({choice['text']})"
    return out


def ceiling_numbers(ceiling: pd.DataFrame, hard: pd.DataFrame, easy_rho: float, hard_rho: float) -> dict:
    """What finding exactly the action clips would reach (``ceiling``: one :func:`action_selection_table`
    column per action fraction), how often each student's top clip shows the action, and that ceiling as a
    share of the oracle's best accuracy on the harder data (``hard``: :func:`harder_data_table`)."""
    out = {}
    for tag, rho in (("easy", easy_rho), ("hard", hard_rho)):
        out[f"ceiling_{tag}"] = float(ceiling.loc["teacher mean over the action clips", rho])
        out[f"teacher_action_{tag}"] = float(ceiling.loc["teacher right on action clips", rho])
        for student in ("cd", "cd_ctx"):
            out[f"top_action_{student}_{tag}"] = float(ceiling.loc[f"top clip shows the action ({student})", rho])
    out["ceiling_vs_oracle_hard"] = (float(ceiling.loc["teacher mean over the action clips", hard_rho])
                                     / float(hard.groupby("rho").mean().loc[hard_rho, "oracle best"]))
    return out


def auroc_sweep_table(results: Sequence[dict], key: str) -> pd.DataFrame:
    """One row per result of a sweep over ``key``: the swept value, the seed and every signal's test AUROC."""
    return pd.DataFrame([{key: config_value(r, key), "seed": r["seed"], **r["confidence_auroc"]} for r in results])


def shift_numbers(shift_auroc: pd.DataFrame, shift_table: pd.DataFrame, key: str, method: str) -> dict:
    """The sweep over test corruptions (``shift_auroc``: :func:`auroc_sweep_table`, ``shift_table``:
    :func:`sweep_table`, both over ``key``) at its ends: the signals' AUROCs without and with the strongest
    corruption (``shift_auroc0_*``, ``shift_auroc1_*``), the best points at the strongest
    (``shift_best1_*``; ``method`` glued as ``method``), which signal loses the most, and whether the method
    stays above the dense teacher."""
    from cdlib.experiment.evaluation import SIGNAL_LABELS

    auroc_by_shift = shift_auroc.groupby(key).mean()
    clean, top = min(auroc_by_shift.index), max(auroc_by_shift.index)
    out = {}
    for name in ("cd", "cd_da", "student_maxprob", "ce_all_maxprob", "kd_maxprob"):
        out[f"shift_auroc0_{name}"] = float(auroc_by_shift.loc[clean, name])
        out[f"shift_auroc1_{name}"] = float(auroc_by_shift.loc[top, name])
    shift_best = shift_table.groupby(["policy", key])["best accuracy"].mean().unstack(key)
    for name in ("dense_teacher", "cd_gate", "cd_gate_ctx", "cd_gate_da", "sampler_maxprob", "frame_exit"):
        out[f"shift_best1_{name}"] = float(shift_best.loc[name, top])
    out["shift_best1_method"] = float(shift_best.loc[method, top])
    out["shift_top"] = top
    drops = {name: auroc_by_shift.loc[clean, name] - auroc_by_shift.loc[top, name]
             for name in ("cd", "student_maxprob", "ce_all_maxprob", "kd_maxprob", "teacher_maxprob")}
    loser = max(drops, key=drops.get)
    out["shift_drop_verdict"] = ("the distilled score loses the most" if loser == "cd"
                                 else f"the {SIGNAL_LABELS[loser]} loses the most")
    out["shift_dense_verdict"] = "below" if shift_best.loc[method, top] < shift_best.loc["dense_teacher", top] else "above"
    return out


def distance_numbers(shift_results: Sequence[dict], candidates: pd.DataFrame, shift_auroc: pd.DataFrame,
                     shift_table: pd.DataFrame, key: str) -> dict:
    """The distance-aware score under the corruption sweep: the candidate validation chose, how far apart the
    candidates' val AUROCs are, each method's best candidate at the strongest corruption (``candidates``:
    :func:`distance_table`), the FLOPs of ``cd_gate`` and ``cd_gate_da`` at their matched points without
    corruption, and two verdicts: whether ``cd_da`` lifts the AUROC over ``cd`` at the strongest corruption
    (:func:`auroc_lifts`) and whether ``cd_gate_da`` reaches the dense teacher there."""
    auroc_by_shift = shift_auroc.groupby(key).mean()
    clean, top = min(auroc_by_shift.index), max(auroc_by_shift.index)
    out = {"da_chosen": chosen_distance(shift_results),
           "da_val_gap": float(candidates["val AUROC"].max() - candidates["val AUROC"].min())}
    by_method = candidates.groupby(level="method").max()
    for name in by_method.index:
        out[f"da_best_{name}"] = float(by_method.loc[name, top])
    matched_flops = shift_table.groupby(["policy", key])["FLOPs ratio at dense accuracy"].mean().unstack(key)
    for name in ("cd_gate", "cd_gate_da"):
        out[f"shift_ratio0_{name}"] = float(matched_flops.loc[name, clean])
    lifted = auroc_lifts(auroc_by_shift.loc[top, "cd_da"], auroc_by_shift.loc[top, "cd"])
    out["da_verdict"] = "lifts" if lifted else "does not lift"
    shift_best = shift_table.groupby(["policy", key])["best accuracy"].mean().unstack(key)
    out["da_dense_verdict"] = "above" if shift_best.loc["cd_gate_da", top] >= shift_best.loc["dense_teacher", top] else "below"
    return out


# ----------------------------------------------------------------------------- the same numbers with their spread over seeds

#: the format of each number of the sections below that the accuracy-vs-compute prose cites with its spread over
#: seeds (patterns of :func:`cdlib.experiment.folds.spread_texts`)
SECTION_TEXTS = {
    r"rate_.*": ".1f", r"(student|preprocess)_share|(floor|time|fixed)_ratio": ".1%",
    r"rho_gain_.*": "+.3f", r"rho_ratio_high": ".1%", r"rho_(low|high)_.+|rho_matched_acc_high": ".3f",
    r"top_action_.*|teacher_action_.*|area_.*": ".1%", r"ceiling_vs_oracle_hard": ".0%",
    r"ceiling_(easy|hard)|hard_(oracle|cd_best|ctx_best|fe_best|dense)|auroc_.*": ".3f",
    r"shift_auroc[01]_.*|shift_best1_.*|da_best_.*": ".3f", r"shift_ratio0_.*": ".1%", r"da_val_gap": ".4f",
}


def _seeds_of(frame: pd.DataFrame) -> list:
    return list(dict.fromkeys(frame["seed"]))


def _of_seed(results: Sequence[dict], seed) -> list[dict]:
    return [r for r in results if r["seed"] == seed]


def timing_texts(results: Sequence[dict], student: str) -> dict[str, str]:
    """:func:`timing_numbers` with its spread over seeds (``<name>_text``, formats in :data:`SECTION_TEXTS`), each
    seed's result alone."""
    return spread_texts([timing_numbers(time_breakdown_table([r]), achieved_gflop_s_table([r]), student)
                         for r in results], SECTION_TEXTS)


def rho_sweep_texts(rho_table: pd.DataFrame, key: str, method: str) -> dict[str, str]:
    """:func:`rho_sweep_numbers` with its spread over the seeds of ``rho_table`` (each seed's rows alone)."""
    return spread_texts([rho_sweep_numbers(rows, key, method) for rows in by_seed(rho_table)], SECTION_TEXTS)


def harder_data_texts(hard: pd.DataFrame, hard_results: Sequence[dict], easy_rho: float, hard_rho: float
                      ) -> dict[str, str]:
    """:func:`harder_data_numbers` with its spread over the seeds of ``hard`` (each seed's rows and results alone)."""
    return spread_texts([harder_data_numbers(hard[hard.seed == seed], _of_seed(hard_results, seed), easy_rho, hard_rho)
                         for seed in _seeds_of(hard)], SECTION_TEXTS)


def ceiling_texts(ceilings: Sequence[pd.DataFrame], hard: pd.DataFrame, easy_rho: float, hard_rho: float
                  ) -> dict[str, str]:
    """:func:`ceiling_numbers` with its spread over seeds: ``ceilings`` holds one :func:`action_selection_table`
    frame (one column per action fraction) per seed, in the order of the seeds of ``hard``."""
    seeds = _seeds_of(hard)
    if len(ceilings) != len(seeds):
        raise ValueError(f"ceilings: expected one per seed of hard ({len(seeds)}), got {len(ceilings)}")
    return spread_texts([ceiling_numbers(ceiling, hard[hard.seed == seed], easy_rho, hard_rho)
                         for ceiling, seed in zip(ceilings, seeds)], SECTION_TEXTS)


def shift_texts(shift_results: Sequence[dict], key: str, method: str, budget: float) -> dict[str, str]:
    """:func:`shift_numbers` and :func:`distance_numbers` with their spread over seeds, each seed's results of the
    sweep over ``key`` alone (its :func:`auroc_sweep_table`, :func:`sweep_table` at ``budget`` and
    :func:`distance_table`)."""
    per_seed = []
    for seed in dict.fromkeys(r["seed"] for r in shift_results):
        runs = _of_seed(shift_results, seed)
        auroc, table = auroc_sweep_table(runs, key), sweep_table(runs, key, budget)
        per_seed.append({**shift_numbers(auroc, table, key, method),
                         **distance_numbers(runs, distance_table(runs, key), auroc, table, key)})
    return spread_texts(per_seed, SECTION_TEXTS)
