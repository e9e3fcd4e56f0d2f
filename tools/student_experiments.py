"""Experiments for a CD student that comes closer to the oracle (CI profile, test split, no shift).

Each variant is a set of config overrides (student model, training clips, epochs, loss weights);
only the CD student is trained for it (the teacher is shared). For each variant, seed and ρ
(``data.informative_fraction``) it reports ``cd_gate``'s area vs the oracle, best accuracy and FLOPs
ratio at the dense teacher's accuracy, the student's cost per clip relative to the teacher's, the
score's AUROC for "teacher right on a clip", the student's clip accuracy on action clips, and how
often ``cd_gate`` exits early at each θ (and how accurately).

Usage::

    python tools/student_experiments.py --variants base,all_clips --seeds 0 --rhos 0.2,0.3 --out r.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from cdlib import bench, runs
from cdlib.calibration import auroc
from cdlib.config import apply_overrides, profile_config
from cdlib.cost import flops_per_clip
from cdlib.gating import VideoOutputs, run_policy
from cdlib.models import register_model
from cdlib.models.small import FusionStudent
from cdlib.train import set_determinism


@register_model("student_fusion8", "student", (3, 8, 32, 32), "2D CNN on all 8 frames stacked as channels, half resolution")
def student_fusion8(num_classes: int, **kwargs):
    return FusionStudent(num_classes, frame_stride=1, **kwargs)


@register_model("student_fusion_full", "student", (3, 8, 32, 32), "narrow 2D CNN on every 2nd frame at full resolution")
def student_fusion_full(num_classes: int, **kwargs):
    return FusionStudent(num_classes, widths=(16, 32, 64), spatial_factor=1, **kwargs)


#: name -> dotted config overrides of the CI profile
VARIANTS = {
    "base": {},
    "all_clips": {"student_train.clips_per_video": 0},
    "epochs24": {"student_train.epochs": 24},
    "gamma10": {"distill.gamma": 10.0},
    "frames8": {"student": "student_fusion8"},
    "frames8_all_clips": {"student": "student_fusion8", "student_train.clips_per_video": 0},
    "full_res": {"student": "student_fusion_full"},
    "clips8": {"student_train.clips_per_video": 8},
    # no cross-entropy to the video's label: on a non-action clip it asks for a class the clip does not show
    "alpha0": {"distill.alpha": 0.0},
    "alpha01": {"distill.alpha": 0.1},
    "alpha0_all_clips": {"distill.alpha": 0.0, "student_train.clips_per_video": 0},
}


def videos_of(teacher: dict, student: dict) -> list[VideoOutputs]:
    counts = torch.bincount(teacher["video"]).tolist()
    labels = [int(chunk[0]) for chunk in torch.split(teacher["labels"], counts)]
    return [VideoOutputs.precomputed(s, t, torch.sigmoid(sc), y) for s, t, sc, y in
            zip(torch.split(student["logits"], counts), torch.split(teacher["logits"], counts),
                torch.split(student["score_logit"], counts), labels)]


def evaluate(cfg, store=None) -> dict:
    set_determinism(cfg.bench.num_threads)
    started = time.time()
    trained = runs.get_model(cfg, "cd", store)
    train_seconds = time.time() - started
    teacher = runs.get_outputs(cfg, "teacher", "test", store)
    student = runs.get_outputs(cfg, "cd", "test", store)
    shape = (3, cfg.data.clip_length, cfg.data.height, cfg.data.width)
    ratio = flops_per_clip(trained.model, shape) / flops_per_clip(runs.get_model(cfg, "teacher", store).model, shape)
    return {**gate_metrics(cfg, teacher, student, ratio), "train_seconds": train_seconds, "history": trained.history}


def gate_metrics(cfg, teacher: dict, student: dict, ratio: float) -> dict:
    """cd_gate vs the oracle on the test outputs of the teacher and a CD student costing ``ratio`` teachers per clip."""
    videos = videos_of(teacher, student)
    n = max(v.num_clips for v in videos)
    dense = run_policy("dense_teacher", videos, None)["accuracy"]
    oracle = [{"accuracy": run_policy("oracle", videos, k)["accuracy"], "gflops_per_video": float(k)}
              for k in range(1, n + 1)]
    gate = []
    for theta in cfg.bench.thetas:
        for k in range(1, n + 1):
            run = run_policy("cd_gate", videos, (theta, k))
            gate.append({"knob": [theta, k], "accuracy": run["accuracy"],
                         "gflops_per_video": run["teacher_clips_per_video"] + ratio * run["student_clips_per_video"]})
    hit = bench.first_reaching(gate, dense)
    action = teacher["informative"] == 1
    correct = bench.teacher_correct(teacher)
    exits = {}
    for theta in cfg.bench.thetas:
        out = [v for v in videos if v.student_estimate[1] >= theta]
        exits[str(theta)] = {"fraction": len(out) / len(videos),
                             "accuracy": sum(int(v.student_estimate[0].argmax()) == v.label for v in out) / len(out)
                             if out else None}
    return {
        "seed": cfg.seed,
        "informative_fraction": cfg.data.informative_fraction,
        "student": cfg.student,
        "student_teacher_flops_ratio": ratio,
        "cd_auc_vs_oracle": bench.curve_area(gate, n) / bench.curve_area(oracle, n),
        "cd_best_accuracy": max(p["accuracy"] for p in gate),
        "cd_gflops_ratio_at_dense_accuracy": hit["gflops_per_video"] / n if hit else None,
        "dense_teacher_accuracy": dense,
        "oracle_best_accuracy": max(p["accuracy"] for p in oracle),
        "cd_auroc": auroc(torch.sigmoid(student["score_logit"]), correct),
        "student_action_clip_accuracy": float((student["logits"].argmax(-1) == student["labels"])[action].float().mean()),
        "early_exit": exits,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default="base")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--rhos", default="0.3")
    parser.add_argument("--out", required=True, help="JSON lines file (appended)")
    args = parser.parse_args(argv)
    for seed in [int(s) for s in args.seeds.split(",")]:
        for rho in [float(r) for r in args.rhos.split(",")]:
            for name in args.variants.split(","):
                overrides = {**VARIANTS[name], "data.informative_fraction": rho}
                cfg = apply_overrides(profile_config("ci", seed), overrides)
                result = {"variant": name, "overrides": overrides, **evaluate(cfg)}
                with open(args.out, "a") as handle:
                    handle.write(json.dumps(result) + "\n")
                print(f"{name} seed {seed} rho {rho}: area vs oracle {result['cd_auc_vs_oracle']:.3f}, best "
                      f"{result['cd_best_accuracy']:.3f}, ratio@dense {result['cd_gflops_ratio_at_dense_accuracy']}, "
                      f"cost {result['student_teacher_flops_ratio']:.4f}, auroc {result['cd_auroc']:.3f}, action acc "
                      f"{result['student_action_clip_accuracy']:.3f}, exit@0.5 {result['early_exit']['0.5']}, "
                      f"train {result['train_seconds']:.0f}s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
