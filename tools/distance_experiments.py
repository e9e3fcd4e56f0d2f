"""Experiments of the distance-aware confidence (``cd_da`` / ``cd_gate_da``) on the CI profile.

For each seed and test shift: train (or load) the teacher and the student ladder through
:func:`cdlib.bench.collect_outputs`, fit each distance-aware confidence of :mod:`cdlib.distance`
on the train and val splits, and measure on the test split

- the AUROC of every confidence signal for "the teacher is right on a clip";
- ``cd_gate`` with the distilled score ``s`` and with each ``s_da`` (that is ``cd_gate_da``):
  best accuracy, FLOPs ratio at the dense teacher's accuracy, area vs the oracle, each both
  *test-selected* (today's benchmark: the best point on the test curve) and *val-selected*
  (the knob chosen on the unshifted val split, then read on test).

Usage::

    python tools/distance_experiments.py --seeds 0 --shifts 0,0.3,1.0 --out /tmp/edge/results.json
    python tools/distance_experiments.py --seeds 0 --shifts 0 --set data.informative_fraction=0.2 --methods none
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from cdlib import bench, distance, runs
from cdlib.calibration import auroc
from cdlib.config import apply_overrides, profile_config
from cdlib.gating import VideoOutputs, run_policy
from cdlib.train import set_determinism

#: the distance-aware variants tried: name -> fit_student_confidence arguments
METHODS = {
    "gda": {"method": "gaussian"},
    "gda_q95": {"method": "gaussian", "quantile": 0.95},
    "gda_q999": {"method": "gaussian", "quantile": 0.999},
    "gda_shared": {"method": "gaussian", "shared": True},
    "knn": {"method": "knn", "k": 10},
}


def videos_of(teacher: dict, student_logits: torch.Tensor, score: torch.Tensor) -> list[VideoOutputs]:
    counts = torch.bincount(teacher["video"]).tolist()
    labels = [int(chunk[0]) for chunk in torch.split(teacher["labels"], counts)]
    return [VideoOutputs.precomputed(s, t, sc, y) for s, t, sc, y in
            zip(torch.split(student_logits, counts), torch.split(teacher["logits"], counts),
                torch.split(score.float(), counts), labels)]


def policy_curve(name: str, videos: list[VideoOutputs], cost: dict, thetas) -> list[dict]:
    n = max(v.num_clips for v in videos)
    knobs = [None] if name == "dense_teacher" else list(range(1, n + 1)) if name == "oracle" else \
        [(theta, k) for theta in thetas for k in range(1, n + 1)]
    points = []
    for knob in knobs:
        run = run_policy(name, videos, knob)
        points.append({"knob": knob, "accuracy": run["accuracy"],
                       "gflops_per_video": (run["teacher_clips_per_video"] * cost["teacher_gflops_per_clip"]
                                            + run["student_clips_per_video"] * cost["student_gflops_per_clip"])})
    return points


def gate_summary(test_curve: list[dict], val_curve: list[dict], test_ref: dict, val_ref: dict) -> dict:
    """cd_gate(-like) numbers on test: test-selected, and at the knobs val selects."""
    upper = test_ref["dense"]["gflops_per_video"]
    dense_test, dense_val = test_ref["dense"]["accuracy"], val_ref["dense"]["accuracy"]
    by_knob = {tuple(p["knob"]): p for p in test_curve}
    hit_test = bench.first_reaching(test_curve, dense_test)
    hit_val = bench.first_reaching(val_curve, dense_val)
    best_val = max(val_curve, key=lambda p: (p["accuracy"], -p["gflops_per_video"]))
    at_hit = by_knob[tuple(hit_val["knob"])] if hit_val else None
    return {
        "best_accuracy": max(p["accuracy"] for p in test_curve),
        "ratio_at_dense": hit_test["gflops_per_video"] / upper if hit_test else None,
        "auc_vs_oracle": bench.curve_area(test_curve, upper) / bench.curve_area(test_ref["oracle"], upper),
        "val_selected_best_accuracy": by_knob[tuple(best_val["knob"])]["accuracy"],
        "val_selected_best_knob": list(best_val["knob"]),
        "val_selected_ratio_at_dense": at_hit["gflops_per_video"] / upper if at_hit else None,
        "val_selected_accuracy_at_dense": at_hit["accuracy"] if at_hit else None,
    }


def evaluate(cfg, methods: dict, store=None) -> dict:
    set_determinism(cfg.bench.num_threads)
    started = time.time()
    test = {w: runs.get_outputs(cfg, w, "test", store) for w in ("teacher", "ce", "cd")}  # no KD student needed
    val = {w: runs.get_outputs(cfg, w, "val", store) for w in ("teacher", "cd")}
    cost = bench.measure_cost(cfg, store)
    correct = bench.teacher_correct(test["teacher"])
    signals = {"cd": torch.sigmoid(test["cd"]["score_logit"]),
               "student_maxprob": test["ce"]["logits"].softmax(-1).amax(-1)}
    scores_test = {"cd": signals["cd"]}
    scores_val = {"cd": torch.sigmoid(val["cd"]["score_logit"])}
    fitted = {}
    for name, kwargs in methods.items():
        confidence = distance.fit_student_confidence(cfg, store, **kwargs)
        scores_test[name] = distance.distance_aware_outputs(cfg, confidence, "test", store)["score"]
        scores_val[name] = distance.distance_aware_outputs(cfg, confidence, "val", store)["score"]
        fitted[name] = {"reference": confidence.gate.reference, "scale": confidence.gate.scale}
        signals[f"cd_da_{name}"] = scores_test[name]
    refs = {}
    for split, out in (("test", {"teacher": test["teacher"], "cd": test["cd"]}), ("val", val)):
        videos = videos_of(out["teacher"], out["cd"]["logits"], torch.ones(len(out["teacher"]["video"])))
        refs[split] = {"dense": policy_curve("dense_teacher", videos, cost, ())[0],
                       "oracle": policy_curve("oracle", videos, cost, ())}
    gates = {}
    for name in scores_test:
        test_curve = policy_curve("cd_gate", videos_of(test["teacher"], test["cd"]["logits"], scores_test[name]),
                                  cost, cfg.bench.thetas)
        val_curve = policy_curve("cd_gate", videos_of(val["teacher"], val["cd"]["logits"], scores_val[name]),
                                 cost, cfg.bench.thetas)
        gates[name] = gate_summary(test_curve, val_curve, refs["test"], refs["val"])
    return {
        "seed": cfg.seed,
        "test_shift": cfg.data.test_shift,
        "informative_fraction": cfg.data.informative_fraction,
        "student": cfg.student,
        "dense_teacher_accuracy": refs["test"]["dense"]["accuracy"],
        "val_dense_teacher_accuracy": refs["val"]["dense"]["accuracy"],
        "student_teacher_flops_ratio": cost["student_teacher_flops_ratio"],
        "confidence_auroc": {name: auroc(s, correct) for name, s in signals.items()},
        "cd_gate": gates,
        "gates_fitted": fitted,
        "seconds": time.time() - started,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--shifts", default="0,0.3,1.0")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated, or 'none'")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", required=True, help="JSON lines file (appended)")
    args = parser.parse_args(argv)
    methods = {} if args.methods == "none" else {m: METHODS[m] for m in args.methods.split(",")}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for shift in [float(s) for s in args.shifts.split(",")]:
            cfg = apply_overrides(profile_config("ci", seed), [*args.set, f"data.test_shift={shift}"])
            result = evaluate(cfg, methods)
            result["overrides"] = args.set
            with open(args.out, "a") as handle:
                handle.write(json.dumps(result) + "\n")
            auc = {k: round(v, 3) for k, v in result["confidence_auroc"].items()}
            print(f"seed {seed} shift {shift} {args.set}: dense {result['dense_teacher_accuracy']:.3f} auroc {auc}",
                  file=sys.stderr, flush=True)
            for name, g in result["cd_gate"].items():
                print(f"   {name}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                              for k, v in g.items()), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
