"""The numbers of the real-videos chapter: the sizes of a real data set's folds, and the benchmark's results as
mean ± std over folds (:func:`cdlib.experiment.folds.aggregate`) in words.

Like :mod:`cdlib.experiment.tables`, this only reads what the benchmark computes and is hashed into no artifact
key. Each ``*_numbers`` function returns ``{glued name: value}``: the chapter glues them in a loop and its prose
cites them by name.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from cdlib.experiment.config import Config
from cdlib.experiment.folds import mean_std_text, spread_text
from cdlib.experiment.tables import method_choice
from cdlib.experiment.trained_models import get_outputs


def count_text(values) -> str:
    """``"8"``, or ``"7 to 8"`` when the folds differ."""
    low, high = int(min(values)), int(max(values))
    return f"{low}" if low == high else f"{low} to {high}"


def data_numbers(datasets: Sequence[dict], sizes: pd.DataFrame, cfg: Config) -> dict:
    """The data set in numbers, from each fold's ``{split: dataset}`` (``datasets``) and the table of their sizes
    (``sizes``: one row per fold, a column per split and ``skipped``): videos and classes, folds, videos per
    split (a range where folds differ), clips per video, what one test or val video weighs in an accuracy, the
    skipped files, the clip size and length of ``cfg``, and the chance level."""
    first = datasets[0]
    test = first["test"]
    videos = {split: {ds.meta(i).name for i in range(len(ds))} for split, ds in first.items()}
    clip_counts = [ds[split].meta(i).num_clips for ds in datasets for split in ds for i in range(len(ds[split]))]
    return {
        "n_videos": len(set().union(*videos.values())),
        "n_classes": int(test.num_classes),
        "n_folds": len(datasets),
        "n_train": count_text(sizes["train"]),
        "n_val": count_text(sizes["val"]),
        "n_test": count_text(sizes["test"]),
        "clips_min": int(min(clip_counts)),
        "clips_max": int(max(clip_counts)),
        "point_per_video": 1 / int(sizes["test"].min()),
        "point_per_val_video": 1 / int(sizes["val"].min()),
        "skipped": int(sizes["skipped"].sum()),
        "size": f"{cfg.data.height}×{cfg.data.width}",
        "clip_length": int(cfg.data.clip_length),
        "chance": 1 / test.num_classes,
    }


def _ratio_text(stat: dict, runs: int) -> str:
    return ("never matched on validation" if stat["n"] == 0 else
            mean_std_text(stat, "{:.1%}") + ("" if stat["n"] == runs else f" ({stat['n']} of {runs} runs)"))


def fold_numbers(over_folds: dict, configs: Sequence[Config], num_classes: int, store=None) -> dict:
    """The benchmark over folds (``over_folds``: :func:`cdlib.experiment.folds.aggregate` of one result per run
    of ``configs``) in words, each as mean ± std over the folds: the dense teacher's accuracy (and as a multiple
    of chance, ``1 / num_classes``), the method's best point and gain, its matched point's FLOPs, the AUROCs, each cited
    policy's matched FLOPs and best point, the share of test clips where the teacher is right, the cheapest
    policy matched in every run, and whether the method's best point (``real_best``, each run's own method) falls
    below the dense teacher on average (``store``: the artifact store of the teacher's outputs)."""
    results = over_folds["results"]
    summary = over_folds["aggregate"]["summary"]
    auroc = over_folds["aggregate"]["confidence_auroc"]
    runs = len(results)
    method = method_choice(results)
    out = {
        "real_dense": mean_std_text(summary["dense_teacher_accuracy"]),
        "real_dense_vs_chance": spread_text([r["summary"]["dense_teacher_accuracy"] * num_classes for r in results],
                                            ".1f"),
        "real_best": mean_std_text(summary["cd_best_accuracy"]),
        "real_gain": mean_std_text(summary["cd_accuracy_gain"], "{:+.3f}"),
    }
    ratio = summary["cd_gflops_ratio_at_dense_accuracy"]
    if ratio["n"] == 0:
        out["real_ratio"] = "an undefined share of its FLOPs (no point matched the teacher on validation in any fold)"
    else:
        where = "" if ratio["n"] == runs else f" (in the {ratio['n']} of {runs} runs where it does)"
        out["real_ratio"] = f"{mean_std_text(ratio, '{:.1%}')} of its FLOPs{where}"
    out["real_auroc_cd"] = mean_std_text(auroc["cd"])
    out["real_auroc_ctx"] = mean_std_text(auroc["cd_ctx"])
    out["real_method"] = method["policy"]
    best_stat = summary["best_accuracy"]
    # Said of the point cited as real_best (each run's own method): the method named over all runs can differ from
    # one run's, and its best point may then be on the other side of the dense teacher.
    below = summary["cd_best_accuracy"]["mean"] < summary["dense_teacher_accuracy"]["mean"]
    out["real_fallback_verdict"] = (
        "here it cannot: with so few validation videos, many points are perfect on validation, the likelihood "
        "that breaks their tie rests on the same few videos, and the method's point most accurate on validation "
        "is below the dense teacher on test"
        if below else
        "here the method's point most accurate on validation is at least as accurate on test as the dense teacher")
    out["real_method_text"] = method["text"]
    for name in ("cd_gate", "cd_gate_ctx", "frame_exit", "uniform_k"):
        out[f"real_best_{name}"] = mean_std_text(best_stat[name])
        out[f"real_ratio_{name}"] = _ratio_text(summary["gflops_ratio_at_dense_accuracy"][name], runs)
    out["real_auroc_ce"] = mean_std_text(auroc["student_maxprob"])
    out["real_auroc_kd"] = mean_std_text(auroc["kd_maxprob"])
    right = [float(get_outputs(c, "teacher", "test", store).correct.float().mean()) for c in configs]
    out["real_teacher_right"] = spread_text(right, ".1%")
    ratios = {name: stat["mean"] for name, stat in summary["gflops_ratio_at_dense_accuracy"].items()
              if name not in ("dense_teacher", "oracle") and stat["n"] == runs}
    if not ratios:
        out["real_cheapest"] = "no policy has a point matched on validation in every fold"
    else:
        cheapest = min(ratios, key=ratios.get)
        blind = cheapest in ("uniform_k", "random_k")
        out["real_cheapest"] = (
            f"the cheapest policy whose point matched on validation in every fold is {cheapest}, "
            f"with {ratios[cheapest]:.1%} of its FLOPs on average"
            + (": where every clip shows the action, picking clips without looking at them is enough" if blind else ""))
    return out
