"""The numbers the book's first and last pages cite: means over seeds of benchmark results, the headline
numbers of the index page, and the conclusions' claims table and numbers.

Like :mod:`cdlib.experiment.tables`, this reads finished results and computes nothing the benchmark caches.
Every mean over seeds (or folds) goes through :func:`cdlib.experiment.folds.aggregate` (:class:`SeedMeans`),
so the book's means are the command line's.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from cdlib.experiment.folds import aggregate, cited_texts, spread_texts
from cdlib.experiment.outputs import ClipOutputs
from cdlib.experiment.tables import (accuracy_table, auroc_lifts, frame_exit_comparison, method_choice,
                                     selected_point, signal_table)
from cdlib.method.selection import CE_BASELINES, ce_baseline_of

CLAIM_COLUMNS = ["claim", "source", "the source says", "this study (embedded data)", "held on seeds"]


def _nan(value) -> float:
    return float("nan") if value is None else float(value)


class SeedMeans:
    """Means over ``results`` (one benchmark result per seed or fold) of the entries the chapters cite.

    The blocks of :data:`cdlib.experiment.folds.AGGREGATED` are read from :func:`~cdlib.experiment.folds.aggregate`
    (a run without a value is left out; NaN where no run has one); :meth:`best` and :meth:`oracle_best` read the
    operating points, which ``aggregate`` does not reduce, and average them the same way.
    """

    def __init__(self, results: Sequence[dict]):
        self.results = list(results)
        self.means = aggregate(self.results)["aggregate"]

    def _get(self, block: str, *keys: str) -> float:
        stat = self.means.get(block, {})
        for key in keys:
            stat = stat.get(key, {})
        return _nan(stat.get("mean"))

    @staticmethod
    def _mean(values) -> float:
        present = [float(v) for v in values if v is not None and v == v]
        return sum(present) / len(present) if present else float("nan")

    def summary(self, key: str) -> float:
        """``summary[key]``, e.g. ``"dense_teacher_accuracy"``."""
        return self._get("summary", key)

    def upper(self, key: str) -> float:
        """``summary.upper_bound[key]``: the same rule chosen on the test labels, an upper bound."""
        return self._get("summary", "upper_bound", key)

    def auroc(self, signal: str) -> float:
        """Test AUROC of ``signal`` for "the teacher is right on this clip" (``confidence_auroc``)."""
        return self._get("confidence_auroc", signal)

    def ratio(self, policy: str) -> float:
        """``policy``'s test FLOPs ratio to the dense teacher at its point matched to it on validation."""
        return self._get("summary", "gflops_ratio_at_dense_accuracy", policy)

    def area(self, policy: str) -> float:
        """Area under ``policy``'s test accuracy-vs-compute curve relative to the oracle's."""
        return self._get("summary", "auc_vs_oracle", policy)

    def best(self, policy: str) -> float:
        """Test accuracy of ``policy``'s point most accurate on validation."""
        return self._mean([(selected_point(r, policy, "best") or {}).get("accuracy") for r in self.results])

    def oracle_best(self) -> float:
        """The oracle's highest test accuracy over its curve."""
        return self._mean([max(p["accuracy"] for p in r["policies"]["oracle"]) for r in self.results])


def saved(ratio: float) -> str:
    """The share of the dense teacher's cost saved at a cost ratio, in words (``"88%"``; NaN: never matched)."""
    return "never matched on validation" if ratio != ratio else f"{1 - ratio:.0%}"


def _baseline(results: Sequence[dict]) -> tuple[dict, str]:
    """The label-only baseline of the headline (the CE student whose softmax ranks the val clips better) and
    its name."""
    from cdlib.experiment.evaluation import SIGNAL_LABELS

    baseline = ce_baseline_of(results)
    return baseline, SIGNAL_LABELS[baseline["signal"]].removesuffix(" max-softmax")


def index_numbers(results: Sequence[dict]) -> dict:
    """The headline numbers of the index page, by the name each is glued under, as means over ``results``
    (one benchmark result per seed): the dense teacher's test accuracy, the method's matched and best points
    (and their upper bounds), the AUROCs of the distilled scores and of both label-trained students' softmax
    (the baseline is the one that ranks the validation clips better, :func:`cdlib.method.selection.ce_baseline`),
    the method validation chose, and the number of validation videos."""
    from cdlib.experiment.evaluation import SIGNAL_LABELS

    m = SeedMeans(results)
    method = method_choice(results)
    baseline = ce_baseline_of(results)
    other = next(signal for signal, _ in CE_BASELINES.values() if signal != baseline["signal"])
    return {
        "intro_dense_acc": m.summary("dense_teacher_accuracy"),
        "intro_cd_best": m.summary("cd_best_accuracy"),
        "intro_cd_gain": 100 * m.summary("cd_accuracy_gain"),
        "intro_cd_ratio": 100 * m.summary("cd_gflops_ratio_at_dense_accuracy"),
        "intro_cd_matched_acc": m.summary("cd_test_accuracy_at_matched_point"),
        "intro_upper_ratio": 100 * m.upper("cd_gflops_ratio_at_dense_accuracy"),
        "intro_upper_gain": 100 * m.upper("cd_accuracy_gain"),
        "intro_auroc_cd": m.auroc("cd"),
        "intro_auroc_ctx": m.auroc("cd_ctx"),
        "intro_cd_area": m.summary("cd_auc_vs_oracle"),
        "intro_method": method["policy"],
        "intro_method_text": method["text"],
        "intro_auroc_ce": m.auroc(baseline["signal"]),
        "intro_auroc_ce_other": m.auroc(other),
        "intro_ce_name": SIGNAL_LABELS[baseline["signal"]].removesuffix(" max-softmax"),
        "intro_ce_other": SIGNAL_LABELS[other].removesuffix(" max-softmax"),
        "intro_n_val": int(results[0]["data"]["val_videos"]),
    }


#: the index page's numbers that its prose cites with their spread over seeds, and the format of each
INDEX_CITED = {"intro_dense_acc": ".3f", "intro_cd_area": ".1%", "intro_cd_ratio": ".1f",
               "intro_cd_matched_acc": ".3f", "intro_cd_best": ".3f", "intro_cd_gain": "+.1f",
               "intro_upper_ratio": ".1f", "intro_upper_gain": "+.1f", "intro_auroc_cd": ".3f",
               "intro_auroc_ctx": ".3f", "intro_auroc_ce": ".3f", "intro_auroc_ce_other": ".3f"}


def index_texts(results: Sequence[dict]) -> dict[str, str]:
    """The numbers of :data:`INDEX_CITED` as the prose cites them, glued as ``<name>_text``
    (:func:`cdlib.experiment.folds.cited_texts` over :func:`index_numbers`): the value alone for one seed and
    ``mean ± std`` over several."""
    return cited_texts(index_numbers, results, INDEX_CITED)


def claims_table(results: Sequence[dict], shifted: Sequence[dict], hard: Sequence[dict], shift: float,
                 hard_rho: float, budget: float = 0.25) -> pd.DataFrame:
    """The claims of the thesis and the paper beside what this study measured, one row per claim.

    ``results``, ``shifted`` and ``hard``: one benchmark result per seed on the default data, with
    ``data.test_shift = shift``, and on the harder data (action fraction ``hard_rho``); ``budget``: the
    compute budget of the FrameExit comparison (:func:`cdlib.experiment.tables.frame_exit_comparison`).
    """
    m, s, h = SeedMeans(results), SeedMeans(shifted), SeedMeans(hard)
    method = method_choice(results)
    versus = frame_exit_comparison(results, budget)
    baseline, baseline_name = _baseline(results)
    rows = [
        ("accuracy gain over dense averaging", "arXiv abstract",
         '"significant improvements in action recognition accuracy (up to 20%)" on three data sets; '
         "relative to what, and in which unit, not stated",
         f"{100 * m.summary('cd_accuracy_gain'):+.1f} points at the method's point most accurate on validation "
         f"(upper bound, chosen on test: {100 * m.upper('cd_accuracy_gain'):+.1f})"),
        ("compute saved", "arXiv abstract",
         '"computational efficiency (more than 40%)"; relative to what, and at which accuracy, not stated',
         f"at the method's point matched to the dense teacher on validation: "
         f"{saved(m.summary('cd_gflops_ratio_at_dense_accuracy'))} "
         f"of FLOPs, {saved(m.summary('cd_wall_ratio_at_dense_accuracy'))} of wall-clock time one video at a time, "
         f"{saved(m.summary('cd_throughput_wall_ratio_at_dense_accuracy'))} in batches; test accuracy "
         f"{m.summary('cd_test_accuracy_at_matched_point'):.3f} vs {m.summary('dense_teacher_accuracy'):.3f} "
         f"(upper bound: {saved(m.upper('cd_gflops_ratio_at_dense_accuracy'))} of FLOPs)"),
        ("state of the art", "thesis abstract",
         '"state-of-the-art results in action recognition accuracy and computational efficiency" on '
         '"three action recognition datasets"; no numbers',
         "not tested: no public benchmark here"),
        ("UCF101 accuracy", "leaderboard listing of the arXiv paper",
         "91.2% (3-fold) with a 3D ResNeXt-101 teacher",
         "not tested: no UCF101 here; the pipeline runs on a small real set (real videos chapter)"),
        ("a ReLU network's confidence can be high where it is wrong", "both abstracts",
         '"even a well-calibrated model can produce incorrect but high confidence predictions"',
         "shown for the MLP of a toy problem and for the video teacher in the calibration chapter"),
        ("the distilled score predicts where the teacher is right better than a student's softmax",
         "ours (our reading of the method)", "",
         f"AUROC {m.auroc('cd'):.3f} vs {m.auroc(baseline['signal']):.3f} ({baseline_name}, the stronger on "
         f"validation); {m.auroc('student_maxprob'):.3f} / {m.auroc('ce_all_maxprob'):.3f} (CE on action / all "
         f"clips), {m.auroc('kd_maxprob'):.3f} (KD)"),
        ("compute to match the dense teacher: distilled score vs label-trained softmax", "ours", "",
         f"{m.ratio(method['policy']):.0%} ({method['policy']}) vs {m.ratio(baseline['policy']):.0%} "
         f"({baseline['policy']}) of the FLOPs, at points matched on validation"),
        ("a student that sees the whole video finds the action", "ours", "",
         f"area vs oracle {m.area('cd_gate_ctx'):.3f} (context student) vs {m.area('cd_gate'):.3f} (per-clip "
         f"student); at rho = {hard_rho:g}: {h.area('cd_gate_ctx'):.3f} vs {h.area('cd_gate'):.3f}; "
         f"validation chose {method['policy']} ({method['text']})"),
        ("the method against FrameExit", "ours", "",
         f"matched accuracy: {versus['matched']}; within {budget:.0%} of the dense teacher's FLOPs: "
         f"{versus['budget']}"),
        ("the distilled score under corruptions absent from training", "ours", "",
         f"AUROC {s.auroc('cd'):.3f}, {baseline_name} softmax {s.auroc(baseline['signal']):.3f} "
         f"(test_shift = {shift:g})"),
        ("a distance-aware score survives those corruptions", "ours", "",
         f"AUROC {s.auroc('cd_da'):.3f} (cd_da) vs {s.auroc('cd'):.3f}; best point on validation "
         f"{s.best('cd_gate_da'):.3f} vs dense teacher {s.summary('dense_teacher_accuracy'):.3f} "
         f"(test_shift = {shift:g}); without corruption AUROC {m.auroc('cd_da'):.3f} vs {m.auroc('cd'):.3f} and "
         f"{m.ratio('cd_gate_da'):.0%} vs {m.ratio('cd_gate'):.0%} of the FLOPs at matched accuracy"),
    ]
    held = held_on_seeds(results, shifted, hard, method["policy"], baseline)
    rows = [(*row, held.get(row[0], "—")) for row in rows]
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS).set_index("claim")


def _cheaper(ratio: float, other: float) -> bool:
    """Whether a FLOPs ratio at matched accuracy beats ``other``'s (NaN: never matched on validation)."""
    return ratio == ratio and (other != other or ratio < other)


def held_on_seeds(results: Sequence[dict], shifted: Sequence[dict], hard: Sequence[dict], method: str,
                  baseline: dict) -> dict[str, str]:
    """For each claim of :func:`claims_table` that this study tests seed by seed, on how many seeds it held, as
    ``"k of n"`` (the others are "—" in the table: not tested here, or shown by a chapter's figures).

    ``results``, ``shifted`` and ``hard`` hold one result per seed, in the same order; each claim is tested on
    each seed's results alone, as the statement in its row says:

    - accuracy gain: the method's best point on validation beats the dense teacher on test;
    - compute saved: the method has a point matched on validation that costs less than the dense teacher;
    - distilled score vs softmax: the distilled score's test AUROC beats the baseline's softmax;
    - compute to match: the method (``method``) needs fewer FLOPs than the baseline's policy (or the baseline
      never matches);
    - whole video: the context student's gate covers more of the oracle's area than the per-clip one, on the
      default and on the harder data;
    - FrameExit: the method needs fewer FLOPs than ``frame_exit`` to match the dense teacher;
    - corruptions: the distilled score still beats the baseline's softmax under shift;
    - distance-aware: ``cd_da`` beats ``cd`` in AUROC under shift and its gate's best point reaches the dense
      teacher there.
    """
    if not len(results) == len(shifted) == len(hard):
        raise ValueError(f"held_on_seeds: one result per seed in each of results, shifted and hard, got "
                         f"{len(results)}, {len(shifted)} and {len(hard)}")
    tests = {
        "accuracy gain over dense averaging": lambda m, s, h: m.summary("cd_accuracy_gain") > 0,
        "compute saved": lambda m, s, h: m.summary("cd_gflops_ratio_at_dense_accuracy") < 1,
        "the distilled score predicts where the teacher is right better than a student's softmax":
            lambda m, s, h: m.auroc("cd") > m.auroc(baseline["signal"]),
        "compute to match the dense teacher: distilled score vs label-trained softmax":
            lambda m, s, h: _cheaper(m.ratio(method), m.ratio(baseline["policy"])),
        "a student that sees the whole video finds the action":
            lambda m, s, h: m.area("cd_gate_ctx") > m.area("cd_gate") and h.area("cd_gate_ctx") > h.area("cd_gate"),
        "the method against FrameExit": lambda m, s, h: _cheaper(m.ratio(method), m.ratio("frame_exit")),
        "the distilled score under corruptions absent from training":
            lambda m, s, h: s.auroc("cd") > s.auroc(baseline["signal"]),
        "a distance-aware score survives those corruptions":
            lambda m, s, h: s.auroc("cd_da") > s.auroc("cd") and s.best("cd_gate_da") >= s.summary("dense_teacher_accuracy"),
    }
    runs = [(SeedMeans([r]), SeedMeans([sr]), SeedMeans([hr])) for r, sr, hr in zip(results, shifted, hard)]
    return {claim: f"{sum(bool(test(*run)) for run in runs)} of {len(runs)}" for claim, test in tests.items()}


def conclusions_numbers(results: Sequence[dict], shifted: Sequence[dict], hard: Sequence[dict],
                        outputs: Sequence[dict[str, ClipOutputs]], shift: float, hard_rho: float,
                        budget: float = 0.25) -> dict:
    """Every number and verdict the conclusions chapter's prose cites, by the name it is glued under.

    ``results``, ``shifted``, ``hard``, ``shift``, ``hard_rho``, ``budget``: as for :func:`claims_table`;
    ``outputs``: each seed's per-clip outputs (:func:`cdlib.experiment.evaluation.collect_outputs`), for the
    AUROCs on action clips and the accuracy of the CE student on all clips. The verdict ``da_shift_verdict``
    applies :func:`cdlib.experiment.tables.auroc_lifts` (the distance-aware score against the better of the
    distilled score and the label-trained softmax, under shift) and asks that its best point reach the dense
    teacher there.
    """
    m, s, h = SeedMeans(results), SeedMeans(shifted), SeedMeans(hard)
    method = method_choice(results)
    method_hard = method_choice(hard)["policy"]
    versus = frame_exit_comparison(results, budget)
    baseline, baseline_name = _baseline(results)
    policy, signal = method["policy"], baseline["signal"]
    by_group = pd.concat([signal_table(o) for o in outputs]).groupby(["signal", "group"])["auroc"].mean()
    ce_all_action = pd.concat([accuracy_table(o) for o in outputs]).loc["ce_all", "action clips"].mean()
    cost = results[0]["cost"]
    softmaxes = ("student_maxprob", "ce_all_maxprob", "kd_maxprob")
    shift_words = []
    if s.auroc("cd") < 0.5:
        shift_words.append("below chance: the head ranks corrupted clips above the clips where the teacher is right")
    if s.auroc("cd") < s.auroc(signal):
        shift_words.append("below the label-trained student's softmax")
    da_repairs = (auroc_lifts(s.auroc("cd_da"), s.auroc("cd"), s.auroc(signal))
                  and s.best("cd_gate_da") >= s.summary("dense_teacher_accuracy"))
    return {
        "gain": 100 * m.summary("cd_accuracy_gain"),
        "gain_upper": 100 * m.upper("cd_accuracy_gain"),
        "saved": saved(m.summary("cd_gflops_ratio_at_dense_accuracy")),
        "saved_upper": saved(m.upper("cd_gflops_ratio_at_dense_accuracy")),
        "saved_wall": saved(m.summary("cd_wall_ratio_at_dense_accuracy")),
        "saved_throughput": saved(m.summary("cd_throughput_wall_ratio_at_dense_accuracy")),
        "matched_acc": m.summary("cd_test_accuracy_at_matched_point"),
        "auroc_cd": m.auroc("cd"),
        "auroc_ce": m.auroc("student_maxprob"),
        "auroc_ce_all": m.auroc("ce_all_maxprob"),
        "auroc_kd": m.auroc("kd_maxprob"),
        "baseline_name": baseline_name,
        "auroc_baseline": m.auroc(signal),
        "baseline_policy": baseline["policy"],
        "ratio_cd": m.ratio(policy),
        "method": policy,
        "method_text": method["text"],
        "method_hard": method_hard,
        "area_ctx": m.area("cd_gate_ctx"),
        "area_gate": m.area("cd_gate"),
        "area_ctx_hard": h.area("cd_gate_ctx"),
        "area_gate_hard": h.area("cd_gate"),
        "area_fe": m.area("frame_exit"),
        "area_fe_hard": h.area("frame_exit"),
        "fe_matched": versus["matched"],
        "fe_budget": versus["budget"],
        "budget": budget,
        "ctx_verdict": ("needs the context student" if m.area("cd_gate_ctx") > m.area("cd_gate")
                        and h.area("cd_gate_ctx") > h.area("cd_gate")
                        else "does not need the context student on both data sets"),
        "best_ctx": m.best("cd_gate_ctx"),
        "ratio_sampler": m.ratio(baseline["policy"]),
        "area_cd": m.summary("cd_auc_vs_oracle"),
        "area_sampler": m.area(baseline["policy"]),
        "dense": m.summary("dense_teacher_accuracy"),
        "best_sampler": m.best(baseline["policy"]),
        "best_uniform": m.best("uniform_k"),
        "best_cd": m.best(policy),
        "softmax_verdict": "a weaker" if m.auroc("cd") > max(m.auroc(n) for n in softmaxes) else "not a weaker",
        "shift": shift,
        "auroc_cd_shift": s.auroc("cd"),
        "auroc_ce_shift": s.auroc(signal),
        "auroc_teacher_shift": s.auroc("teacher_maxprob"),
        "best_cd_shift": s.best(policy),
        "hard_rho": hard_rho,
        "area_hard": h.summary("cd_auc_vs_oracle"),
        "best_hard": h.best(method_hard),
        "oracle_hard": h.oracle_best(),
        "auroc_da": m.auroc("cd_da"),
        "auroc_da_shift": s.auroc("cd_da"),
        "best_da_shift": s.best("cd_gate_da"),
        "ratio_da": m.ratio("cd_gate_da"),
        "da_shift_verdict": "repairs it on these data" if da_repairs else "does not repair it on these data",
        "best_sampler_shift": s.best(baseline["policy"]),
        "dense_shift": s.summary("dense_teacher_accuracy"),
        "shift_verdict": " and ".join(shift_words) if shift_words else "still above the softmax signals",
        "shift_accuracy_verdict": "below" if s.best(policy) < s.summary("dense_teacher_accuracy") else "above",
        "auroc_cd_action": float(by_group.loc[("cd", "action")]),
        "auroc_ce_action": float(by_group.loc[(signal, "action")]),
        "acc_ce_all_action": float(ce_all_action),
        "teacher_gflops": cost["teacher_gflops_per_clip"],
        "clip_shape": "×".join(str(n) for n in cost["input_shape"][1:]),
    }


#: the conclusions' numbers that vary by seed, which its prose cites with their spread over seeds, and the format
#: of each
CONCLUSIONS_CITED = {
    "gain": "+.1f", "gain_upper": "+.1f", "matched_acc": ".3f", "dense": ".3f", "best_cd": ".3f",
    "auroc_cd": ".3f", "auroc_ce": ".3f", "auroc_ce_all": ".3f", "auroc_kd": ".3f", "auroc_baseline": ".3f",
    "auroc_cd_action": ".3f", "auroc_ce_action": ".3f", "acc_ce_all_action": ".1%",
    "ratio_cd": ".1%", "ratio_sampler": ".1%", "ratio_da": ".1%",
    "area_cd": ".1%", "area_sampler": ".1%", "area_ctx": ".1%", "area_gate": ".1%", "area_ctx_hard": ".1%",
    "area_gate_hard": ".1%", "area_fe": ".1%", "area_fe_hard": ".1%", "area_hard": ".1%",
    "best_uniform": ".3f", "best_sampler": ".3f", "best_hard": ".3f", "oracle_hard": ".3f",
    "auroc_cd_shift": ".3f", "auroc_ce_shift": ".3f", "auroc_teacher_shift": ".3f", "auroc_da_shift": ".3f",
    "auroc_da": ".3f", "best_cd_shift": ".3f", "dense_shift": ".3f", "best_sampler_shift": ".3f",
    "best_da_shift": ".3f",
}


def conclusions_texts(results: Sequence[dict], shifted: Sequence[dict], hard: Sequence[dict],
                      outputs: Sequence[dict[str, ClipOutputs]], shift: float, hard_rho: float,
                      budget: float = 0.25) -> dict[str, str]:
    """The numbers of :data:`CONCLUSIONS_CITED` as the prose cites them, glued as ``<name>_text``: each seed's
    :func:`conclusions_numbers` alone (its own choices, the method validation chose on it among them), then
    :func:`cdlib.experiment.folds.spread_texts`: the value alone for one seed and ``mean ± std`` over several. The
    arguments are those of :func:`conclusions_numbers`, one entry per seed in each sequence."""
    if not len(results) == len(shifted) == len(hard) == len(outputs):
        raise ValueError(f"expected one result, shifted result, harder-data result and outputs per seed, got "
                         f"{len(results)}, {len(shifted)}, {len(hard)} and {len(outputs)}")
    per_seed = [conclusions_numbers([r], [s], [h], [o], shift, hard_rho, budget)
                for r, s, h, o in zip(results, shifted, hard, outputs)]
    return spread_texts(per_seed, CONCLUSIONS_CITED)
