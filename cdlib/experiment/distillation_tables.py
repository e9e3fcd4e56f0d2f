"""The tables and numbers of the distillation chapter: the student ladder's losses, the confidence signals'
AUROCs by clip group, and the ablation of the confidence target.

Like :mod:`cdlib.experiment.tables`, this only reads what the benchmark's modules compute and is hashed into no
artifact key. Each ``*_numbers`` function returns ``{glued name: value}``: the chapter glues them in a loop and
its prose cites them by name. A number the prose cites comes as ``<name>_text``, the number alone for one seed and
its mean ± std over several (:func:`cdlib.experiment.folds.spread_texts`, formats in :data:`CITED`), from each
seed's own numbers; the words (verdicts, the chosen baseline) come from the means over the seeds.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from cdlib.experiment.config import Config
from cdlib.experiment.folds import by_seed, mean_table, spread_texts
from cdlib.experiment.outputs import ClipOutputs
from cdlib.experiment.students import loss_weights, student_train_config, trained_students
from cdlib.experiment.tables import signal_table
from cdlib.method import selection
from cdlib.models import model_spec

#: the students' softmax signals the distilled score is compared with
STUDENT_SOFTMAXES = ("student_maxprob", "ce_all_maxprob", "kd_maxprob")


#: the format of each number the chapter's prose cites, by name (patterns of :func:`cdlib.experiment.folds.spread_texts`)
CITED = {
    r"acc_.*|teacher_right_all": ".1%",
    r"auroc_gap": "+.3f",
    r"teacher_T": ".2f",
    r"(auroc|auprc|mean|val_auroc|abl)_.*": ".3f",
}


def _texts_and_words(values: dict, per_run: Sequence[dict]) -> dict:
    """The words of ``values`` (the numbers over every run together: verdicts, names) and the cited numbers of each
    run alone with their spread (``<name>_text``, :func:`cdlib.experiment.folds.spread_texts` with :data:`CITED`)."""
    words = {name: value for name, value in values.items() if isinstance(value, str)}
    return {**words, **spread_texts(per_run, CITED)}


def ladder(cfg: Config) -> tuple[pd.DataFrame, dict[str, str]]:
    """Each trained student's loss weights (one row per student: ``alpha``, ``beta``, ``gamma``, ``tau``, ...)
    and the clips it trains on (``"action"`` or ``"all"``)."""
    weights = pd.DataFrame({v: loss_weights(cfg, v) for v in trained_students()}).T
    clips = {v: student_train_config(cfg, v).clips for v in trained_students()}
    return weights, clips


def ladder_numbers(cfg: Config) -> dict:
    """The student network's name and description, the CD student's ``gamma`` and ``tau``, and the confidence
    target."""
    weights, _ = ladder(cfg)
    return {
        "student_name": cfg.student,
        "student_what": model_spec(cfg.student).description,
        "gamma": float(weights.loc["cd", "gamma"]),
        "tau": float(weights.loc["cd", "tau"]),
        "target": cfg.distill.target,
    }


def accuracy_numbers(accuracy_tables: Sequence[pd.DataFrame]) -> dict:
    """Every model's accuracy on action clips, non-action clips and videos, ``acc_<model>_<action|non|video>_text``,
    with its spread over the seeds, from one :func:`cdlib.experiment.tables.accuracy_table` per seed."""
    return _texts_and_words({}, [_accuracy_values(accuracy) for accuracy in accuracy_tables])


def _accuracy_values(accuracy: pd.DataFrame) -> dict:
    out = {}
    for model in accuracy.index:
        for column, tag in (("action clips", "action"), ("non-action clips", "non"), ("video accuracy", "video")):
            out[f"acc_{model}_{tag}"] = float(accuracy.loc[model, column])
    return out


def signal_numbers(signals: pd.DataFrame, val_outputs: Sequence[dict[str, ClipOutputs]]) -> dict:
    """From the test :func:`cdlib.experiment.tables.signal_table` of every seed (``signals``, concatenated, with a
    ``seed`` column when there are several) and the val outputs of each seed in the same order (``val_outputs``:
    :func:`cdlib.experiment.evaluation.collect_outputs` on val): with its spread over the seeds (``<name>_text``),
    each signal's AUROC on all, action and non-action clips and its AUPRC on all clips, the mean signal on action
    and non-action clips, the label-only baseline's val and test AUROCs and the distilled score's gap to it; and, from
    the seeds' means, which label-only baseline validation chose (:func:`cdlib.method.selection.ce_baseline`) and the
    verdicts the prose states. A seed's numbers use its own baseline choice."""
    runs = by_seed(signals) if "seed" in signals else [signals]
    if len(runs) != len(val_outputs):
        raise ValueError(f"val_outputs: expected one per seed of signals ({len(runs)}), got {len(val_outputs)}")
    per_run = [_signal_values(run, [val]) for run, val in zip(runs, val_outputs)]
    return _texts_and_words(_signal_values(signals, val_outputs), per_run)


def _signal_values(signals: pd.DataFrame, val_outputs: Sequence[dict[str, ClipOutputs]]) -> dict:
    from cdlib.experiment.evaluation import SIGNAL_LABELS

    auroc = signals.groupby(["signal", "group"])["auroc"].mean()
    auprc = signals.groupby(["signal", "group"])["auprc"].mean()
    out = {}
    for name in signals.signal.unique():
        for group, tag in (("all", "all"), ("action", "action"), ("non-action", "non")):
            out[f"auroc_{name}_{tag}"] = float(auroc.loc[(name, group)])
        out[f"auprc_{name}_all"] = float(auprc.loc[(name, "all")])
    mean_signal = signals.groupby(["signal", "group"])["mean signal"].mean()
    for name in ("cd", "student_maxprob", "ce_all_maxprob"):
        out[f"mean_{name}_action"] = float(mean_signal.loc[(name, "action")])
        out[f"mean_{name}_non"] = float(mean_signal.loc[(name, "non-action")])
    val_signals = pd.concat([signal_table(o) for o in val_outputs]).groupby(["signal", "group"])["auroc"].mean()
    baseline = selection.ce_baseline(val_signals.xs("all", level="group").to_dict())
    out["baseline_signal"] = SIGNAL_LABELS[baseline["signal"]]
    for student, value in baseline["val_auroc"].items():
        out[f"val_auroc_{student}"] = value
    out["auroc_baseline"] = float(auroc.loc[(baseline["signal"], "all")])
    out["auroc_gap"] = float(auroc.loc[("cd", "all")] - auroc.loc[(baseline["signal"], "all")])
    out["teacher_right_all"] = float(signals[signals.group == "all"]["teacher right"].mean())
    out["cd_vs_teacher"] = "better" if auroc.loc[("cd", "all")] > auroc.loc[("teacher_maxprob", "all")] else "worse"
    softmax_action = max(auroc.loc[(name, "action")] for name in STUDENT_SOFTMAXES)
    out["within_action"] = ("the distilled score is better too" if auroc.loc[("cd", "action")] > softmax_action
                            else "the distilled score is no better than a student's own softmax")
    best_student = max(auroc.loc[(name, "all")] for name in STUDENT_SOFTMAXES)
    out["answer"] = "Yes, on these data" if auroc.loc[("cd", "all")] > best_student else "No, not on these data"
    return out


def ablation_numbers(ablations: Sequence[pd.DataFrame], temperatures: Sequence[float]) -> dict:
    """From one :func:`cdlib.experiment.tables.ablation_table` over the confidence targets per seed and the teacher's
    temperature on each: with their spread over the seeds (``<name>_text``), the AUROCs of the default, the
    calibrated-teacher, the best label-free and the ``correct`` targets and the temperature; and, from the seeds'
    means, the best target by the distilled score's AUROC, what the temperature does to the targets, and whether the
    targets that use the label beat those that do not."""
    if len(ablations) != len(temperatures):
        raise ValueError(f"temperatures: expected one per ablation table ({len(ablations)}), got {len(temperatures)}")
    per_run = [_ablation_values(mean_table([ablation], "variant"), t) for ablation, t in zip(ablations, temperatures)]
    return _texts_and_words(_ablation_values(mean_table(ablations, "variant"), sum(temperatures) / len(temperatures)),
                            per_run)


def _ablation_values(ablation_mean: pd.DataFrame, temperature: float) -> dict:
    cd_auroc = ablation_mean["cd AUROC"]
    label_free = [f"target={t}" for t in ("max_prob", "neg_entropy") if f"target={t}" in cd_auroc.index]
    label_based = [f"target={t}" for t in ("true_class_prob", "correct") if f"target={t}" in cd_auroc.index]
    labels_win = bool(label_free and label_based and cd_auroc[label_based].min() > cd_auroc[label_free].max())
    return {
        "abl_best": cd_auroc.idxmax().removeprefix("target="),
        "abl_default": float(cd_auroc["target=true_class_prob"]),
        "abl_calibrated": float(cd_auroc["target=true_class_prob, calibrated teacher"]),
        "abl_label_free": float(cd_auroc[label_free].max()) if label_free else float("nan"),
        "abl_correct": float(cd_auroc.get("target=correct", float("nan"))),
        "teacher_T": temperature,
        "calibration_effect": "flattens" if temperature > 1 else "sharpens",
        "label_verdict": (
            "both targets that use the label beat both that do not; a label-free target inherits the teacher's "
            "overconfidence on distractors (it is sure there, and wrong), the failure of the previous chapter moved "
            "from the student to its target" if labels_win else
            "using the label in the target does not help consistently on these data"),
    }
