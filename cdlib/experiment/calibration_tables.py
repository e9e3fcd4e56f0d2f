"""The tables and numbers of the calibration chapter, from the toy runs (:mod:`cdlib.experiment.toy`) and the
probes of the video models (:mod:`cdlib.experiment.probes`).

Like :mod:`cdlib.experiment.tables`, this only reads what those modules compute, so that a relabelled column
changes no artifact key (the probes' key hashes :mod:`cdlib.experiment.probes`, not this module). Each
``*_numbers`` function returns ``{glued name: value}``, means over seeds that the chapter's claims check; each
``*_texts`` function the same numbers of each seed alone as the prose cites them, ``<name>_text``, the value for one
seed and mean ± std over several (formats in :data:`CITED`). The chapter glues them in a loop and its prose cites
them by name.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from cdlib.experiment import probes, toy
from cdlib.experiment.folds import by_seed, spread_table, spread_texts
from cdlib.experiment.trained_models import get_outputs, teacher_temperature

#: short column names of the probe tables
DISPLAY_NAMES = {"confidence": "conf.", "confidence_ts": "conf. (T)", "confident_wrong": "sure & wrong"}
#: the metrics of a calibration table, as :func:`cdlib.experiment.probes.teacher_calibration` names them
CALIBRATION_METRICS = ["temperature", "accuracy", "ece", "adaptive_ece", "nll", "brier"]
#: the two scalings of the softmax and the tag each one's glued names end with
SCALINGS = (("raw", "raw"), ("temperature", "ts"))
#: the format of every number the chapter's prose cites with its spread over seeds (``<name>_text``; patterns of
#: :func:`cdlib.experiment.folds.spread_texts`, the first that matches a name gives its format)
CITED = {
    r"teacher_T|toy_T": ".2f",
    r"probe_(action|non_action)_accuracy|probe_.*_confident_wrong": ".1%",
    r"toy_far99_.*|toy_far_s_above_half|toy_far_s_da_below_001": ".0%",
    r"toy_plane99_.*": ".1%",
    r"toy_far_(conf|min)_.*": ".4f",
    r"toy_far_s_da": ".2g",
    r"(teacher|probe|student|toy)_.*": ".3f",
}


def toy_calibration_numbers(runs: Sequence[toy.ToyRun]) -> dict:
    """The toy MLP's fitted temperature, accuracy, and test ECE, adaptive ECE, NLL and Brier score raw and
    temperature-scaled (``toy_<metric>_raw``, ``toy_<metric>_ts``), means over ``runs`` (one per seed)."""
    cal = pd.concat([r.calibration().assign(seed=r.seed) for r in runs])
    mean = cal.groupby("scaling")[CALIBRATION_METRICS].mean()
    out = {"toy_T": float(mean.loc["temperature", "temperature"]), "toy_acc": float(mean.loc["raw", "accuracy"])}
    for scaling, tag in SCALINGS:
        for metric in ("ece", "adaptive_ece", "nll", "brier"):
            out[f"toy_{metric}_{tag}"] = float(mean.loc[scaling, metric])
    return out


def toy_calibration_texts(runs: Sequence[toy.ToyRun]) -> dict[str, str]:
    """:func:`toy_calibration_numbers` of each run alone, with their spread over seeds (formats in :data:`CITED`)."""
    return spread_texts([toy_calibration_numbers([run]) for run in runs], CITED)


def confidence_grids(run: toy.ToyRun, near: float, far: float, resolution: int = 301) -> dict:
    """The toy MLP's max-softmax over the squares ``[-near, near]²`` and ``[-far, far]²``, raw and with its
    fitted temperature: ``{(scaling, "near" | "far"): ConfidenceGrid}``."""
    grids = {}
    for scaling, t in (("raw", 1.0), ("temperature", run.temperature)):
        grids[scaling, "near"] = toy.confidence_grid(run.model, near, resolution, temperature=t)
        grids[scaling, "far"] = toy.confidence_grid(run.model, far, resolution, temperature=t)
    return grids


def toy_plane_numbers(grids: dict, threshold: float = 0.99) -> dict:
    """The share of the far square (:func:`confidence_grids`) where the confidence is at least ``threshold``,
    raw and temperature-scaled."""
    return {f"toy_plane99_{tag}": float((grids[scaling, "far"].confidence >= threshold).mean())
            for scaling, tag in SCALINGS}


def toy_plane_texts(grids: Sequence[dict]) -> dict[str, str]:
    """:func:`toy_plane_numbers` of each run's own :func:`confidence_grids` (``grids``: one per run), with their
    spread over seeds (formats in :data:`CITED`)."""
    return spread_texts([toy_plane_numbers(run_grids) for run_grids in grids], CITED)


def toy_ray_table(runs: Sequence[toy.ToyRun], directions, alphas) -> pd.DataFrame:
    """The toy MLP's confidence at ``alpha * d`` for every run, direction and distance, raw and temperature-scaled
    (:func:`cdlib.experiment.toy.ray_confidence` with ``seed`` and ``scaling`` columns)."""
    return pd.concat(
        [toy.ray_confidence(r.model, directions, alphas, temperature=t).assign(seed=r.seed, scaling=scaling)
         for r in runs for scaling, t in (("raw", 1.0), ("temperature", r.temperature))],
        ignore_index=True,
    )


def toy_ray_numbers(rays: pd.DataFrame) -> dict:
    """From :func:`toy_ray_table`: at the farthest distance the mean confidence (mean over seeds), the lowest of
    any direction, and the share of directions at least 99% sure; at distance 1 the mean confidence; each raw
    and temperature-scaled; and the number of directions."""
    farthest = rays[rays.alpha == rays.alpha.max()]
    far = farthest.groupby(["scaling", "seed"]).confidence
    far_mean = far.mean().groupby("scaling").mean()
    far_min = far.min().groupby("scaling").min()
    far99 = farthest.assign(sure=lambda d: d.confidence >= 0.99).groupby("scaling").sure.mean()
    near = rays[rays.alpha == 1].groupby("scaling").confidence.mean()
    out = {}
    for scaling, tag in SCALINGS:
        out[f"toy_far_conf_{tag}"] = float(far_mean[scaling])
        out[f"toy_far_min_{tag}"] = float(far_min[scaling])
        out[f"toy_far99_{tag}"] = float(far99[scaling])
        out[f"toy_near_conf_{tag}"] = float(near[scaling])
    out["toy_n_dirs"] = int(rays.direction.nunique())
    return out


def toy_ray_texts(rays: pd.DataFrame) -> dict[str, str]:
    """:func:`toy_ray_numbers` of each seed's rays alone, with their spread over seeds (formats in :data:`CITED`)."""
    return spread_texts([toy_ray_numbers(part) for part in by_seed(rays)], CITED)


def toy_signal_rays(distilled: Sequence[toy.ToyDistillation], directions, alphas) -> pd.DataFrame:
    """The four toy confidences (:data:`cdlib.experiment.toy.TOY_SIGNALS`) along the rays, for every run."""
    return pd.concat([d.rays(directions, alphas).assign(seed=d.run.seed) for d in distilled], ignore_index=True)


def toy_signal_numbers(signal_rays: pd.DataFrame) -> dict:
    """From :func:`toy_signal_rays`: each signal's mean at distance 1 and at the farthest distance, the share of
    far points where ``s`` is above 0.5 and where ``s_da`` is below 0.01."""
    at_alpha = signal_rays.groupby("alpha")[list(toy.TOY_SIGNALS)].mean()
    far_alpha = float(signal_rays.alpha.max())
    out = {}
    for signal in toy.TOY_SIGNALS:
        out[f"toy_near_{signal}"] = float(at_alpha.loc[1.0, signal])
        out[f"toy_far_{signal}"] = float(at_alpha.loc[far_alpha, signal])
    far_points = signal_rays[signal_rays.alpha == far_alpha]
    out["toy_far_s_above_half"] = float((far_points.s > 0.5).mean())
    out["toy_far_s_da_below_001"] = float((far_points.s_da < 0.01).mean())
    return out


def toy_signal_texts(signal_rays: pd.DataFrame) -> dict[str, str]:
    """:func:`toy_signal_numbers` of each seed's rays alone, with their spread over seeds (formats in :data:`CITED`)."""
    return spread_texts([toy_signal_numbers(part) for part in by_seed(signal_rays)], CITED)


def teacher_calibration_table(per_seed: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The teacher's calibration per ``(clips, scaling)`` (``per_seed``: one
    :func:`cdlib.experiment.probes.teacher_calibration` table per seed), each metric as mean ± std over the seeds
    (:func:`cdlib.experiment.folds.spread_table`)."""
    return spread_table([table[["clips", "scaling", *CALIBRATION_METRICS]] for table in per_seed], ["clips", "scaling"])


def teacher_calibration_numbers(calibration: pd.DataFrame) -> dict:
    """From the per-seed :func:`cdlib.experiment.probes.teacher_calibration` tables (concatenated): the teacher's
    temperature, its clip accuracy on action and on all clips, and their ECE, adaptive ECE, NLL and Brier score raw
    and scaled (``teacher_<metric>_<clips>_<raw|ts>``), means over seeds."""
    cal = calibration.groupby(["clips", "scaling"])[CALIBRATION_METRICS].mean()
    out = {"teacher_T": float(cal.loc[("all", "temperature"), "temperature"])}
    for clips in ("action", "all"):
        out[f"teacher_acc_{clips}"] = float(cal.loc[(clips, "raw"), "accuracy"])
        for scaling, tag in SCALINGS:
            for metric in ("ece", "adaptive_ece", "nll", "brier"):
                out[f"teacher_{metric}_{clips}_{tag}"] = float(cal.loc[(clips, scaling), metric])
    return out


def teacher_calibration_texts(per_seed: Sequence[pd.DataFrame]) -> dict[str, str]:
    """:func:`teacher_calibration_numbers` of each seed's table alone, as the prose cites them with their spread
    over seeds (``<name>_text``, formats in :data:`CITED`)."""
    return spread_texts([teacher_calibration_numbers(table) for table in per_seed], CITED)


def teacher_reliability(cfg, store=None, n_bins: int = 15) -> pd.DataFrame:
    """The teacher's reliability table on the test clips (:func:`cdlib.experiment.probes.reliability_table`,
    raw and with its temperature fitted on validation), with a ``seed`` column."""
    out = get_outputs(cfg, "teacher", "test", store)
    return probes.reliability_table(out.logits, out.labels, out.informative, teacher_temperature(cfg, store),
                                    n_bins=n_bins).assign(seed=cfg.seed)


def mean_reliability(reliability: pd.DataFrame) -> pd.DataFrame:
    """Per bin of :func:`teacher_reliability` tables (one per seed): the mean and std over seeds of the accuracy,
    and the mean confidence and number of clips."""
    return reliability.groupby(["clips", "scaling", "lower", "upper"]).agg(
        accuracy=("accuracy", "mean"), accuracy_std=("accuracy", "std"),
        confidence=("confidence", "mean"), count=("count", "mean")).reset_index()


#: the columns of the probe tables the chapter shows
PROBE_SHOWN = ["clips", "accuracy", "confidence", "confidence_ts", "confident_wrong"]


def probe_table(probe: pd.DataFrame) -> pd.DataFrame:
    """Per group and input scale, the mean over seeds of :func:`cdlib.experiment.probes.summarize_probe`'s
    :data:`PROBE_SHOWN` columns."""
    return probes.summarize_probe(probe).groupby(["group", "alpha"], observed=True)[PROBE_SHOWN].mean()


def probe_spread_table(probe: pd.DataFrame) -> pd.DataFrame:
    """:func:`probe_table` with each cell as mean ± std over the seeds of ``probe`` (one seed: the value alone), the
    columns under their short names (:data:`DISPLAY_NAMES`)."""
    table = spread_table([probe_table(part) for part in by_seed(probe)], ["group", "alpha"])
    return table.rename(columns=DISPLAY_NAMES)


def probe_numbers(table: pd.DataFrame, alphas: Sequence[float]) -> dict:
    """From the teacher's :func:`probe_table`: accuracy, confidence (raw and scaled) and the share confident and
    wrong on action, non-action and noise clips (``probe_<action|non_action|noise>_<column>``) and on the scaled clips at ``alpha`` = 1 and the largest of
    ``alphas``; that largest scale, and the numbers of noise and of scaled clips."""
    a_max = float(max(alphas))

    def at(group, alpha=1.0):
        return table.loc[(group, float(alpha))]

    out = {}
    columns = ("accuracy", "confidence", "confidence_ts", "confident_wrong")
    for group in ("action", "non-action", "noise"):
        for column in columns:
            out[f"probe_{group.replace('-', '_')}_{column}"] = float(at(group)[column])
    for column in columns:
        out[f"probe_scaled1_{column}"] = float(at("scaled", 1)[column])
        out[f"probe_scaledmax_{column}"] = float(at("scaled", a_max)[column])
    out["alpha_max"] = int(a_max)
    out["probe_num_noise"] = int(at("noise")["clips"])
    out["probe_num_scaled"] = int(at("scaled", 1)["clips"])
    return out


def student_probe_numbers(table: pd.DataFrame, alphas: Sequence[float]) -> dict:
    """From the CE student's :func:`probe_table`: accuracy, confidence and the share confident and wrong per
    group (``student_<group>_<column>``; scaled clips at ``alpha`` = 1 and the largest of ``alphas``)."""
    out = {}
    for group, alpha, tag in (("action", 1, "action"), ("non-action", 1, "non_action"), ("noise", 1, "noise"),
                              ("scaled", 1, "scaled1"), ("scaled", float(max(alphas)), "scaledmax")):
        for column in ("accuracy", "confidence", "confident_wrong"):
            out[f"student_{tag}_{column}"] = float(table.loc[(group, float(alpha)), column])
    return out


def probe_texts(probe: pd.DataFrame, alphas: Sequence[float]) -> dict[str, str]:
    """:func:`probe_numbers` of each seed's teacher probe alone (``probe``: the probes of every seed, with a ``seed``
    column), with their spread over seeds (formats in :data:`CITED`)."""
    return spread_texts([probe_numbers(probe_table(part), alphas) for part in by_seed(probe)], CITED)


def student_probe_texts(probe: pd.DataFrame, alphas: Sequence[float]) -> dict[str, str]:
    """:func:`student_probe_numbers` of each seed's student probe alone, with their spread over seeds."""
    return spread_texts([student_probe_numbers(probe_table(part), alphas) for part in by_seed(probe)], CITED)


#: the two kinds of scaled clips the input-scale figure shows
SCALED_KINDS = ("all sampled clips", "of which action clips")


def scaled_by_alpha(probe: pd.DataFrame) -> pd.DataFrame:
    """The scaled clips of a probe table, per kind (:data:`SCALED_KINDS`) and input scale: mean and std over seeds
    of each seed's mean confidence (raw and scaled) and accuracy."""
    scaled = probe[probe.group == "scaled"]
    kinds = dict(zip(SCALED_KINDS, (scaled, scaled[scaled.informative == 1])))
    rows = []
    for kind, data in kinds.items():
        per_seed = data.groupby(["seed", "alpha"]).agg(confidence=("confidence", "mean"),
                                                       confidence_ts=("confidence_ts", "mean"),
                                                       accuracy=("correct", "mean")).reset_index()
        rows.append(per_seed.assign(kind=kind))
    return pd.concat(rows).groupby(["kind", "alpha"]).agg(["mean", "std"])
