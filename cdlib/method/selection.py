"""Choosing operating points and summarising curves: pure functions over a benchmark result's points.

A point is a dict with test ``accuracy`` and ``gflops_per_video`` and val
``val_accuracy`` and ``val_gflops_per_video`` (the ``policies`` block of the
benchmark JSON, :mod:`cdlib.experiment.bench`). :func:`select_points` picks each policy's
``matched`` and ``best`` points on val (and the test-selected upper bounds),
:func:`summarize` makes the ``summary`` block from them and from the areas under
the accuracy-vs-compute curves (:func:`curve_area`), and :func:`ce_baseline`
chooses on val the label-only student the headline compares with.
"""

from __future__ import annotations

import math
from typing import Sequence


# ----------------------------------------------------------------------------- curves, selection and summary

def pareto_front(points: Sequence[dict], accuracy: str = "accuracy", cost: str = "gflops_per_video") -> list[dict]:
    """The points no other point beats: sorted by ``cost``, each more accurate than every cheaper one (the keys
    name the split: test by default, ``"val_accuracy", "val_gflops_per_video"`` for val)."""
    front: list[dict] = []
    for point in sorted(points, key=lambda p: (p[cost], -p[accuracy])):
        if not front or point[accuracy] > front[-1][accuracy]:
            front.append(point)
    return front


def curve_area(points: Sequence[dict], upper: float, accuracy: str = "accuracy", cost: str = "gflops_per_video"
               ) -> float:
    """Area under the best-accuracy-at-most-x step curve over FLOPs ``[0, upper]``.

    ``acc(x) = max{accuracy of p : gflops(p) <= x}`` (0 before the cheapest point);
    ``area = ∫_0^upper acc(x) dx``. The ratio of two such areas over the same range
    compares whole accuracy-vs-compute curves. The keys name the split, as in :func:`pareto_front`.
    """
    area = 0.0
    front = [p for p in pareto_front(points, accuracy, cost) if p[cost] < upper]
    for point, following in zip(front, front[1:] + [None]):
        end = following[cost] if following is not None else upper
        area += point[accuracy] * (end - point[cost])
    return area


#: the method's policy for each student it may use, the per-clip CD student first: validation chooses one
#: (:func:`method_policy`), and the summary's ``cd_*`` keys are that policy's
METHOD_POLICIES = {"cd_gate": "cd", "cd_gate_ctx": "cd_ctx"}

_VAL = {"accuracy": "val_accuracy", "cost": "val_gflops_per_video"}


def method_policy(policies: dict[str, list[dict]]) -> dict | None:
    """Which student the method uses, chosen on val: of the :data:`METHOD_POLICIES` evaluated, the policy whose
    val curve has the largest area relative to the oracle's val curve (:func:`curve_area` on the val keys, over
    the dense teacher's val FLOPs; ties: the earlier). Returns ``policy``, ``student`` and every candidate's
    ``val_auc_vs_oracle``; None when no candidate is evaluated."""
    candidates = [name for name in METHOD_POLICIES if name in policies]
    if not candidates:
        return None
    upper = policies["dense_teacher"][0]["val_gflops_per_video"]
    oracle = curve_area(policies["oracle"], upper, **_VAL)
    areas = {name: curve_area(policies[name], upper, **_VAL) / oracle if oracle > 0 else float("nan")
             for name in candidates}
    chosen = max(candidates, key=lambda name: (_finite(areas[name]), -candidates.index(name)))
    return {"policy": chosen, "student": METHOD_POLICIES[chosen], "val_auc_vs_oracle": areas}


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
                budget: float | None = None, likelihood: str = "val_log_likelihood") -> int | None:
    """Index of the most accurate point whose ``cost`` is at most ``budget`` (None: any cost).

    ``argmax_i accuracy_i`` over ``{i : cost_i <= budget}``; ties in accuracy go
    to the higher ``likelihood`` (the mean log-probability of the true class,
    :func:`cdlib.method.gating.run_policy`; points without one tie there), then
    to the cheaper point, then to the first. None if no point is that cheap.

    Accuracy on a small val split is coarse: on a split of 8 videos hundreds of
    knobs can share the top accuracy, and the cheapest of them is the one that
    got there with the least evidence. The likelihood, a proper score on the same
    videos, tells the tied points apart by how sure they are of the right class.
    """
    within = [i for i, p in enumerate(points) if budget is None or p[cost] <= budget + _TOLERANCE]
    return min(within, key=lambda i: (-points[i][accuracy], -points[i].get(likelihood, 0.0), points[i][cost], i)
               ) if within else None


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
            "upper_bound_best": select_best(points, **test, likelihood="log_likelihood"),
        }
        for name, points in policies.items()
    }


def summarize(policies: dict[str, list[dict]]) -> dict:
    """The ``summary`` block of the benchmark JSON (keys: :mod:`cdlib.experiment.bench`) from every evaluated
    policy's points (``dense_teacher`` and ``oracle`` among them). The ``cd_*`` keys are those of the method's policy chosen on
    val (:func:`method_policy`, the ``method`` key); they and the ``sampler_maxprob`` keys are None where that
    policy is not evaluated."""
    selected = select_points(policies)
    method = method_policy(policies)
    chosen = method["policy"] if method is not None else "cd_gate"
    dense = policies["dense_teacher"][0]
    upper = dense["gflops_per_video"]
    oracle_area = curve_area(policies["oracle"], upper)

    def area_vs_oracle(name: str) -> float | None:  # NaN when the oracle has no point cheaper than the dense teacher
        if name not in policies:
            return None
        return curve_area(policies[name], upper) / oracle_area if oracle_area > 0 else float("nan")

    def at(name: str, which: str, key: str):
        index = selected[name][which] if name in policies else None
        return policies[name][index].get(key) if index is not None else None

    def selection_keys(matched: str, best: str) -> dict:
        ratio = {name: (at(name, matched, "gflops_per_video") / upper if selected[name][matched] is not None else None)
                 for name in policies}
        return {
            "cd_gflops_ratio_at_dense_accuracy": ratio.get(chosen),
            "cd_test_accuracy_at_matched_point": at(chosen, matched, "accuracy"),
            "cd_wall_ratio_at_dense_accuracy": at(chosen, matched, "wall_ratio_to_dense"),
            "cd_throughput_wall_ratio_at_dense_accuracy": at(chosen, matched, "throughput_wall_ratio_to_dense"),
            "cd_best_accuracy": at(chosen, best, "accuracy"),
            "cd_accuracy_gain": at(chosen, best, "accuracy") - dense["accuracy"] if chosen in policies else None,
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
        "method": method,
        "cd_auc_vs_oracle": area_vs_oracle(chosen),
        "sampler_maxprob_auc_vs_oracle": area_vs_oracle("sampler_maxprob"),
        "auc_vs_oracle": {name: area_vs_oracle(name) for name in policies},
        "upper_bound": {"selection": "test", **selection_keys("upper_bound_matched", "upper_bound_best")},
    }


# ----------------------------------------------------------------------------- the label-only baseline

#: the two label-only students: their max-softmax signal and the sampler policy it drives
CE_BASELINES = {"ce": ("student_maxprob", "sampler_maxprob"), "ce_all": ("ce_all_maxprob", "sampler_ce_all")}


def ce_baseline(val_auroc: dict[str, float]) -> dict | None:
    """The label-only student the headline comparison uses: the stronger of the two, chosen on val.

    Of ``ce`` (trained on the teacher's clips) and ``ce_all`` (trained on every
    clip, as the distilled students are), the one whose max-softmax has the
    higher AUROC for "teacher right on a clip" on the val clips (ties: ``ce``),
    so that the distilled score is compared with the better label-only signal
    without looking at the test split. Returns ``student``, its ``signal`` and
    ``policy`` names and the two ``val_auroc`` values; of one student where the
    other was not evaluated (its signal is not in ``val_auroc``), None where neither was.
    """
    scores = {student: val_auroc[signal] for student, (signal, _) in CE_BASELINES.items() if signal in val_auroc}
    if not scores:
        return None
    student = max(scores, key=lambda name: (_finite(scores[name]), name == "ce"))
    signal, policy = CE_BASELINES[student]
    return {"student": student, "signal": signal, "policy": policy, "val_auroc": scores}


def ce_baseline_of(results: Sequence[dict]) -> dict:
    """:func:`ce_baseline` on the val AUROCs of benchmark ``results`` (one per seed), averaged over them."""
    signals = [signal for signal, _ in CE_BASELINES.values()]
    return ce_baseline({name: sum(r["confidence_auroc_val"][name] for r in results) / len(results) for name in signals})


def _finite(value: float) -> float:
    return value if value == value else -math.inf  # NaN (one class only) ranks last

