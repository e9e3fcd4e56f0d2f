"""The numbers the chapters glue (cdlib.experiment.claims, and the chapters' helpers in cdlib.experiment.tables) and
the figures of cdlib.book.figures: means over seeds through folds.aggregate against a direct computation, the one
AUROC-lift rule, and every chapter's numbers on a tiny benchmark run against the result they come from."""

from __future__ import annotations

import copy
import math
import statistics

import matplotlib
import pandas as pd
import pytest

from cdlib.book import figures
from cdlib.experiment import bench, claims, tables
from cdlib.experiment.evaluation import SIGNAL_LABELS, collect_outputs
from test_bench import tiny_config  # noqa: F401 - the benchmark tests' tiny config, which tiny_run (conftest) reads



def fake_result(seed, dense, ratio, auroc, best):
    return {
        "seed": seed,
        "config": {"data": {"source": "synthetic"}},
        "summary": {"dense_teacher_accuracy": dense, "gflops_ratio_at_dense_accuracy": {"cd_gate": ratio},
                    "auc_vs_oracle": {"cd_gate": 0.5 + seed / 10}, "upper_bound": {"cd_accuracy_gain": 0.1}},
        "confidence_auroc": {"cd": auroc},
        "policies": {"cd_gate": [{"accuracy": 0.2}, {"accuracy": best}], "oracle": [{"accuracy": 0.3},
                                                                                   {"accuracy": best + 0.1}]},
        "selected": {"cd_gate": {"best": 1}},
    }


def test_seed_means_against_a_direct_computation():
    results = [fake_result(0, 0.5, 0.4, 0.8, 0.6), fake_result(1, 0.7, None, 0.9, 0.7), fake_result(2, 0.75, 0.6, 0.7, 0.8)]
    means = claims.SeedMeans(results)
    assert means.summary("dense_teacher_accuracy") == pytest.approx(statistics.mean([0.5, 0.7, 0.75]))
    assert means.ratio("cd_gate") == pytest.approx(0.5)  # not reached in one seed: missing, not zero
    assert means.auroc("cd") == pytest.approx(0.8)
    assert means.area("cd_gate") == pytest.approx(0.6)
    assert means.upper("cd_accuracy_gain") == pytest.approx(0.1)
    assert means.best("cd_gate") == pytest.approx(0.7)  # the point selected as "best", not the curve's maximum
    assert means.oracle_best() == pytest.approx(0.8)
    assert math.isnan(means.ratio("frame_exit")) and math.isnan(means.auroc("kd_maxprob"))  # absent: NaN
    assert math.isnan(claims.SeedMeans([fake_result(0, 0.5, None, 0.8, 0.6)]).ratio("cd_gate"))


def test_saved_in_words():
    assert claims.saved(0.25) == "75%"
    assert claims.saved(float("nan")) == "never matched on validation"


def test_auroc_lift_is_one_rule_with_one_margin():
    assert tables.AUROC_LIFT == 0.05
    assert tables.auroc_lifts(0.80, 0.70)
    assert not tables.auroc_lifts(0.74, 0.70)
    assert tables.auroc_lifts(0.80, 0.70, 0.74) and not tables.auroc_lifts(0.80, 0.70, 0.76)  # above every reference
    assert not tables.auroc_lifts(float("nan"), 0.5) and not tables.auroc_lifts(0.9, float("nan"))
    assert tables.auroc_lifts(0.72, 0.70, margin=0.01)
    with pytest.raises(ValueError):
        tables.auroc_lifts(0.8)


def test_claims_table_and_conclusions_numbers_on_a_tiny_run(tiny_run):
    cfg, store, result = tiny_run
    results = [result]
    table = claims.claims_table(results, results, results, shift=1.0, hard_rho=0.2, budget=0.25)
    assert list(table.columns) == claims.CLAIM_COLUMNS[1:] and len(table) == 11
    assert table.index[0] == "accuracy gain over dense averaging"
    assert f"{100 * result['summary']['cd_accuracy_gain']:+.1f} points" in table.iloc[0]["this study (embedded data)"]
    held = table["held on seeds"]
    assert held["accuracy gain over dense averaging"] == f"{int(result['summary']['cd_accuracy_gain'] > 0)} of 1"
    assert held["state of the art"] == "—"
    auroc = result["confidence_auroc"]
    baseline = claims.ce_baseline_of(results)["signal"]
    expected = int(auroc["cd"] > auroc[baseline])
    assert held["the distilled score predicts where the teacher is right better than a student's softmax"] == f"{expected} of 1"
    assert claims.claims_table(results * 2, results * 2, results * 2, shift=1.0, hard_rho=0.2)["held on seeds"][
        "accuracy gain over dense averaging"].endswith("of 2")
    with pytest.raises(ValueError, match="one result per seed"):
        claims.held_on_seeds(results * 2, results, results, "cd_gate", claims.ce_baseline_of(results))
    numbers = claims.conclusions_numbers(results, results, results, [collect_outputs(cfg, store)], shift=1.0,
                                         hard_rho=0.2, budget=0.25)
    summary = result["summary"]
    assert numbers["dense"] == summary["dense_teacher_accuracy"]
    assert numbers["auroc_cd"] == result["confidence_auroc"]["cd"]
    assert numbers["gain"] == pytest.approx(100 * summary["cd_accuracy_gain"])
    assert numbers["method"] == summary["method"]["policy"]
    assert numbers["best_uniform"] == tables.selected_point(result, "uniform_k", "best")["accuracy"]
    assert numbers["saved"] == claims.saved(summary["cd_gflops_ratio_at_dense_accuracy"] or float("nan"))
    lifted = tables.auroc_lifts(numbers["auroc_da_shift"], numbers["auroc_cd_shift"], numbers["auroc_ce_shift"])
    assert (numbers["da_shift_verdict"] == "repairs it on these data") == (
        lifted and numbers["best_da_shift"] >= numbers["dense_shift"])
    assert numbers["clip_shape"] == "×".join(str(n) for n in result["cost"]["input_shape"][1:])
    # the prose's texts: the value alone for one seed, mean ± std over two (identical seeds: a std of 0)
    outputs = [collect_outputs(cfg, store)]
    one = claims.conclusions_texts(results, results, results, outputs, shift=1.0, hard_rho=0.2)
    assert one["dense_text"] == f"{summary['dense_teacher_accuracy']:.3f}"
    assert one["gain_text"] == f"{100 * summary['cd_accuracy_gain']:+.1f}"
    assert set(one) <= {f"{name}_text" for name in claims.CONCLUSIONS_CITED}
    two = claims.conclusions_texts(results * 2, results * 2, results * 2, outputs * 2, shift=1.0, hard_rho=0.2)
    assert two["auroc_cd_text"] == f"{result['confidence_auroc']['cd']:.3f} ± 0.000"
    with pytest.raises(ValueError, match="per seed"):
        claims.conclusions_texts(results * 2, results, results, outputs, shift=1.0, hard_rho=0.2)


def test_index_numbers_on_a_tiny_run(tiny_run):
    _, _, result = tiny_run
    numbers = claims.index_numbers([result, result])  # two identical seeds: their mean is the run's value
    summary = result["summary"]
    assert numbers["intro_dense_acc"] == pytest.approx(summary["dense_teacher_accuracy"])
    assert numbers["intro_upper_gain"] == pytest.approx(100 * summary["upper_bound"]["cd_accuracy_gain"])
    assert numbers["intro_auroc_cd"] == pytest.approx(result["confidence_auroc"]["cd"])
    assert numbers["intro_method"] == summary["method"]["policy"]
    assert numbers["intro_n_val"] == result["data"]["val_videos"]
    assert {numbers["intro_ce_name"], numbers["intro_ce_other"]} == {"CE student (action clips)", "CE student (all clips)"}
    # the prose's texts: the value alone for one seed, mean ± std over seeds (two identical seeds: a std of 0)
    one, two = claims.index_texts([result]), claims.index_texts([result, result])
    assert set(one) == {f"{name}_text" for name in claims.INDEX_CITED}
    assert one["intro_dense_acc_text"] == f"{summary['dense_teacher_accuracy']:.3f}"
    assert two["intro_cd_area_text"] == f"{summary['cd_auc_vs_oracle']:.1%} ± 0.0%"


def test_accuracy_vs_compute_numbers_on_a_tiny_run(tiny_run):
    cfg, store, result = tiny_run
    results = [result]
    method = tables.method_choice(results)
    cost = tables.cost_numbers(results)
    assert cost["student_ratio"] == pytest.approx(result["cost"]["student_teacher_flops_ratio"])
    assert cost["method_policy"] == method["policy"] and cost["n_test"] == result["data"]["test_videos"]
    other = {**result, "cost": {**result["cost"], "teacher_gflops_per_clip": 3 * result["cost"]["teacher_gflops_per_clip"]}}
    table = tables.cost_table([result, other])["value"]  # the mean over the two runs, in MFLOPs
    assert table["teacher MFLOPs per clip"] == pytest.approx(2e3 * result["cost"]["teacher_gflops_per_clip"], abs=1e-3)
    assert table["student / teacher"] == pytest.approx(result["cost"]["student_teacher_flops_ratio"], abs=1e-3)
    matched = tables.matched_numbers(results)
    table = tables.matched_accuracy_table(result)
    assert matched["matched_flops_method"] == pytest.approx(table.loc[method["policy"], "FLOPs ratio"], nan_ok=True)
    assert matched["matched_acc_cd_gate"] == pytest.approx(table.loc["cd_gate", "accuracy"], nan_ok=True)
    assert matched["dense_acc"] == result["summary"]["dense_teacher_accuracy"]
    assert {f"matched_{t}_{n}" for t in ("flops", "wall", "throughput", "acc") for n in tables.MATCHED_CITED} <= set(matched)
    texts = tables.matched_texts(results)  # one seed: each cited number alone, formatted as the prose cites it
    assert set(texts) == {f"{name}_text" for name in tables.MATCHED_TEXTS} and set(tables.MATCHED_TEXTS) <= set(matched)
    assert texts["dense_acc_text"] == f"{matched['dense_acc']:.3f}"
    flops = matched["matched_flops_method"]
    assert texts["matched_flops_method_text"] == (f"{flops:.1%}" if flops == flops else "n/a")
    compute = tables.matched_compute_table(result, (0.1, 0.25))
    at_budget = tables.budget_numbers(results, compute, 0.25)
    assert at_budget["at_budget_oracle"] == pytest.approx(compute.loc["oracle", 0.25], nan_ok=True)
    assert at_budget["cd_gate_auc"] == pytest.approx(result["summary"]["auc_vs_oracle"]["cd_gate"])
    assert at_budget["fe_matched_verdict"] == tables.frame_exit_comparison(results, 0.25)["matched"]
    one, two = tables.budget_texts(results, (0.1, 0.25), 0.25), tables.budget_texts(results * 2, (0.1, 0.25), 0.25)
    assert set(one) == {f"{name}_text" for name in tables.BUDGET_TEXTS}
    assert one["cd_gate_auc_text"] == f"{at_budget['cd_gate_auc']:.1%}"
    assert two["cd_gate_auc_text"] == f"{at_budget['cd_gate_auc']:.1%} ± 0.0%"  # two identical seeds
    assert tables.cost_texts(results)["student_ratio_text"] == f"{cost['student_ratio']:.1%}"
    timing = tables.timing_numbers(tables.time_breakdown_table(results), tables.achieved_gflop_s_table(results),
                                   method["student"])
    assert 0 < timing["preprocess_share"] < 1 and timing["rate_teacher"] > 0


def test_sweep_numbers_on_a_tiny_run(tiny_run):
    cfg, store, result = tiny_run
    key = "data.test_informative_fraction"
    rho_table = tables.sweep_table(bench.sweep(cfg, key, (0.25, 1.0), store), key)
    method = tables.method_choice([result])["policy"]
    rho = tables.rho_sweep_numbers(rho_table, key, method)
    best = rho_table.set_index(["policy", key])["best accuracy"]
    assert rho["rho_low"] == 0.25 and rho["rho_high"] == 1.0
    assert rho["rho_gain_high"] == pytest.approx(best[(method, 1.0)] - best[("dense_teacher", 1.0)])
    assert rho["rho_other"] != method
    key_shift = "data.test_shift"
    shift_results = bench.sweep(cfg, key_shift, (0.0, 1.0), store)
    shift_table = tables.sweep_table(shift_results, key_shift)
    aurocs = tables.auroc_sweep_table(shift_results, key_shift)
    assert list(aurocs[key_shift]) == [0.0, 1.0] and aurocs.loc[1, "cd"] == shift_results[1]["confidence_auroc"]["cd"]
    shift = tables.shift_numbers(aurocs, shift_table, key_shift, method)
    assert shift["shift_top"] == 1.0 and shift["shift_auroc1_cd"] == shift_results[1]["confidence_auroc"]["cd"]
    candidates = tables.distance_table(shift_results, key_shift)
    distance = tables.distance_numbers(shift_results, candidates, aurocs, shift_table, key_shift)
    auroc = shift_results[1]["confidence_auroc"]
    assert (distance["da_verdict"] == "lifts") == tables.auroc_lifts(auroc["cd_da"], auroc["cd"])
    assert distance["da_chosen"] == shift_results[0]["distance"]["chosen"]
    # one seed: the texts are the numbers as the prose formats them
    assert tables.rho_sweep_texts(rho_table, key, method)["rho_gain_high_text"] == f"{rho['rho_gain_high']:+.3f}"
    texts = tables.shift_texts(shift_results, key_shift, method, 0.25)
    assert texts["shift_auroc1_cd_text"] == f"{shift['shift_auroc1_cd']:.3f}"
    assert texts["da_val_gap_text"] == f"{distance['da_val_gap']:.4f}"
    matplotlib.use("Agg")
    shown = ["oracle", "cd_gate", "uniform_k", "dense_teacher"]
    for fig in (figures.rho_sweep_figure(rho_table, key, shown),
                figures.shift_figure(shift_table, aurocs, key_shift, shown[1:])):
        assert len(fig.axes) == 2
    assert fig.axes[1].get_ylabel() == "AUROC: teacher right on a clip"


def test_harder_data_and_ceiling_numbers_by_hand():
    hard = pd.DataFrame([
        {"rho": 0.5, "seed": 0, "dense teacher": 0.6, "oracle best": 0.9, "cd_gate best (val)": 0.7,
         "cd_gate_ctx best (val)": 0.72, "frame_exit best (val)": 0.65, "cd_gate area vs oracle": 0.8,
         "cd_gate_ctx area vs oracle": 0.85, "frame_exit area vs oracle": 0.7, "sampler_maxprob area vs oracle": 0.6,
         "method area vs oracle": 0.85, "AUROC of s": 0.75, "AUROC of s (context)": 0.8},
        {"rho": 0.2, "seed": 0, "dense teacher": 0.4, "oracle best": 0.8, "cd_gate best (val)": 0.5,
         "cd_gate_ctx best (val)": 0.6, "frame_exit best (val)": 0.45, "cd_gate area vs oracle": 0.6,
         "cd_gate_ctx area vs oracle": 0.7, "frame_exit area vs oracle": 0.5, "sampler_maxprob area vs oracle": 0.4,
         "method area vs oracle": 0.7, "AUROC of s": 0.65, "AUROC of s (context)": 0.7}])
    chosen = {"summary": {"method": {"policy": "cd_gate_ctx", "val_auc_vs_oracle": {"cd_gate": 0.5, "cd_gate_ctx": 0.6}}}}
    numbers = tables.harder_data_numbers(hard, [chosen], 0.5, 0.2)
    assert numbers["area_easy"] == 0.8 and numbers["area_ctx_hard"] == 0.7 and numbers["hard_oracle"] == 0.8
    assert numbers["hard_method"] == "cd_gate_ctx (chosen on validation; one run)"
    rows = ["teacher mean over the action clips", "teacher right on action clips",
            "top clip shows the action (cd)", "top clip shows the action (cd_ctx)"]
    ceiling = pd.DataFrame({0.5: [0.7, 0.8, 0.9, 0.95], 0.2: [0.6, 0.5, 0.8, 0.9]}, index=rows)
    numbers = tables.ceiling_numbers(ceiling, hard, 0.5, 0.2)
    assert numbers["ceiling_hard"] == 0.6 and numbers["top_action_cd_ctx_easy"] == 0.95
    assert numbers["ceiling_vs_oracle_hard"] == pytest.approx(0.6 / 0.8)
    # a second seed: the numbers with their spread, each seed's rows alone
    second = hard.assign(seed=1, **{"cd_gate area vs oracle": [0.9, 0.8]})
    both = pd.concat([hard, second])
    texts = tables.harder_data_texts(both, [{**chosen, "seed": 0}, {**chosen, "seed": 1}], 0.5, 0.2)
    assert texts["area_easy_text"] == f"85.0% ± {statistics.stdev([0.8, 0.9]):.1%}"
    assert texts["hard_oracle_text"] == "0.800 ± 0.000"
    ceilings = tables.ceiling_texts([ceiling, ceiling / 2], both, 0.5, 0.2)
    assert ceilings["ceiling_hard_text"] == f"0.450 ± {statistics.stdev([0.6, 0.3]):.3f}"
    with pytest.raises(ValueError, match="one per seed"):
        tables.ceiling_texts([ceiling], both, 0.5, 0.2)


def test_calibration_numbers_of_the_toy():
    from cdlib.experiment import calibration_tables as ct, toy

    runs = [toy.run_toy(seed=0, steps=100)]
    numbers = ct.toy_calibration_numbers(runs)
    cal = runs[0].calibration().set_index("scaling")
    assert numbers["toy_T"] == pytest.approx(cal.loc["temperature", "temperature"])
    assert numbers["toy_ece_ts"] == pytest.approx(cal.loc["temperature", "ece"])
    grids = ct.confidence_grids(runs[0], 3.0, 40.0, resolution=21)
    plane = ct.toy_plane_numbers(grids)
    assert plane["toy_plane99_raw"] == pytest.approx(float((grids["raw", "far"].confidence >= 0.99).mean()))
    alphas, directions = toy.log_alphas(1, 1e4, 5), toy.random_directions(8, seed=0)
    rays = ct.toy_ray_table(runs, directions, alphas)
    assert set(rays.scaling) == {"raw", "temperature"} and len(rays) == 2 * 8 * 5
    rays_numbers = ct.toy_ray_numbers(rays)
    far = rays[(rays.alpha == rays.alpha.max()) & (rays.scaling == "raw")].confidence
    assert rays_numbers["toy_n_dirs"] == 8 and rays_numbers["toy_far_min_raw"] == pytest.approx(far.min())
    assert rays_numbers["toy_far99_raw"] == pytest.approx((far >= 0.99).mean())
    signal_rays = ct.toy_signal_rays([toy.distill_toy(runs[0], n_transfer=200, steps=50)], directions, alphas)
    signals = ct.toy_signal_numbers(signal_rays)
    assert signals["toy_far_s_da"] == pytest.approx(signal_rays[signal_rays.alpha == alphas[-1]].s_da.mean())
    # with two seeds every cited number is each seed's own, as mean ± std
    two = [runs[0], toy.run_toy(seed=1, steps=100)]
    each = [ct.toy_calibration_numbers([run])["toy_ece_ts"] for run in two]
    assert ct.toy_calibration_texts(two)["toy_ece_ts_text"] == f"{statistics.mean(each):.3f} ± {statistics.stdev(each):.3f}"
    two_rays = ct.toy_ray_table(two, directions, alphas)
    each = [ct.toy_ray_numbers(two_rays[two_rays.seed == seed])["toy_far_min_raw"] for seed in (0, 1)]
    assert ct.toy_ray_texts(two_rays)["toy_far_min_raw_text"] == f"{statistics.mean(each):.4f} ± {statistics.stdev(each):.4f}"
    assert ct.toy_plane_texts([grids])["toy_plane99_raw_text"] == format(plane["toy_plane99_raw"], ".1%")
    assert ct.toy_signal_texts(signal_rays)["toy_far_s_da_text"] == format(signals["toy_far_s_da"], ".2g")
    matplotlib.use("Agg")
    assert len(figures.toy_confidence_map(runs[0], grids, 3.0).axes) == 5  # four maps and the colour bar
    assert len(figures.toy_rays_figure(rays, [0], shown_directions=4).axes) == 2
    assert len(figures.toy_signal_rays_figure(signal_rays, toy.TOY_SIGNALS).axes) == 1


def test_calibration_numbers_of_the_probes_on_a_tiny_run(tiny_run):
    from cdlib.experiment import calibration_tables as ct, probes

    cfg, store, _ = tiny_run
    alphas = (1.0, 4.0)
    calibration = probes.teacher_calibration(cfg, store).assign(seed=0)
    numbers = ct.teacher_calibration_numbers(calibration)
    row = calibration.set_index(["clips", "scaling"]).loc[("action", "temperature")]
    assert numbers["teacher_ece_action_ts"] == pytest.approx(row["ece"])
    other = calibration.assign(ece=calibration.ece + 0.1)  # a second seed, ECE 0.1 higher everywhere
    texts = ct.teacher_calibration_texts([calibration, other])
    assert texts["teacher_ece_action_ts_text"] == f"{row['ece'] + 0.05:.3f} ± {statistics.stdev([0.0, 0.1]):.3f}"
    assert texts["teacher_T_text"] == f"{numbers['teacher_T']:.2f} ± 0.00"
    table = ct.teacher_calibration_table([calibration, other])
    assert table.loc[("action", "temperature"), "ece"] == texts["teacher_ece_action_ts_text"]
    rel = ct.mean_reliability(ct.teacher_reliability(cfg, store, n_bins=5))
    assert set(rel.columns) >= {"accuracy", "accuracy_std", "confidence", "count"}
    probe = probes.teacher_probe(cfg, store, alphas=alphas, max_clips=20, num_noise=10).assign(seed=0)
    table = ct.probe_table(probe)
    numbers = ct.probe_numbers(table, alphas)
    assert numbers["alpha_max"] == 4 and numbers["probe_num_noise"] == 10
    noise = probe[probe.group == "noise"]
    assert numbers["probe_noise_confidence"] == pytest.approx(noise.confidence.mean())
    shifted = pd.concat([probe, probe.assign(seed=1, confidence=probe.confidence / 2)], ignore_index=True)
    each = [noise.confidence.mean(), noise.confidence.mean() / 2]
    assert ct.probe_texts(shifted, alphas)["probe_noise_confidence_text"] == (
        f"{statistics.mean(each):.3f} ± {statistics.stdev(each):.3f}")
    spread = ct.probe_spread_table(shifted)
    assert spread.loc[("noise", 1.0), "conf."] == ct.probe_texts(shifted, alphas)["probe_noise_confidence_text"]
    assert set(ct.student_probe_texts(probe, alphas)) >= {"student_noise_confidence_text", "student_action_accuracy_text"}
    student = ct.student_probe_numbers(table, alphas)
    assert student["student_scaledmax_accuracy"] == pytest.approx(table.loc[("scaled", 4.0), "accuracy"])
    by_alpha = ct.scaled_by_alpha(probe)
    assert list(by_alpha.index.get_level_values("kind").unique()) == list(ct.SCALED_KINDS)
    matplotlib.use("Agg")
    assert len(figures.reliability_figure(rel).axes) == 4
    assert len(figures.probe_ecdf_figure(probe, 4.0).axes) == 2
    assert len(figures.probe_alpha_figure(by_alpha, alphas).axes) == 2


def test_distillation_numbers_on_a_tiny_run(tiny_run):
    from cdlib.experiment import distillation_tables as dt
    from cdlib.experiment.students import trained_students
    from cdlib.experiment.trained_models import get_student

    cfg, store, _ = tiny_run
    weights, clips = dt.ladder(cfg)
    assert clips == {"ce": "action", "ce_all": "all", "kd": "all", "cd": "all"}
    ladder = dt.ladder_numbers(cfg)
    assert ladder["gamma"] == weights.loc["cd", "gamma"] and ladder["target"] == cfg.distill.target
    outputs = collect_outputs(cfg, store)
    accuracy = tables.accuracy_table(outputs)
    action = accuracy.loc["teacher", "action clips"]
    assert dt.accuracy_numbers([accuracy])["acc_teacher_action_text"] == f"{action:.1%}"  # one seed: the number
    two = accuracy.copy()
    two.loc["teacher", "action clips"] = action / 2  # a second seed: mean ± sample std of the two
    assert dt.accuracy_numbers([accuracy, two])["acc_teacher_action_text"] == \
        f"{statistics.mean([action, action / 2]):.1%} ± {statistics.stdev([action, action / 2]):.1%}"
    signals = tables.signal_table(outputs)
    val = collect_outputs(cfg, store, split="val")
    numbers = dt.signal_numbers(signals, [val])
    row = signals[(signals.signal == "cd") & (signals.group == "all")].iloc[0]
    assert numbers["auroc_cd_all_text"] == f"{row['auroc']:.3f}" and numbers["auprc_cd_all_text"] == f"{row['auprc']:.3f}"
    auroc = signals[signals.group == "all"].set_index("signal")["auroc"]
    baseline = next(name for name, label in SIGNAL_LABELS.items() if label == numbers["baseline_signal"])
    assert numbers["auroc_gap_text"] == f"{auroc['cd'] - auroc[baseline]:+.3f}"
    best_softmax = max(auroc[n] for n in dt.STUDENT_SOFTMAXES)
    assert (numbers["answer"] == "Yes, on these data") == (auroc["cd"] > best_softmax)
    # two seeds (here the same run twice): a spread of 0, one val split per seed
    twice = pd.concat([signals.assign(seed=0), signals.assign(seed=1)])
    assert dt.signal_numbers(twice, [val, val])["auroc_cd_all_text"] == f"{row['auroc']:.3f} ± 0.000"
    with pytest.raises(ValueError, match="one per seed"):
        dt.signal_numbers(twice, [val])
    matplotlib.use("Agg")
    histories = {v: get_student(cfg, v, store).history for v in trained_students()}
    assert len(figures.ladder_history_figure(histories).axes) == 3
    assert len(figures.signals_figure(outputs, signals).axes) == 2


def test_ablation_numbers_by_hand():
    from cdlib.experiment import distillation_tables as dt

    ablation = pd.DataFrame({"cd AUROC": [0.8, 0.6, 0.75, 0.65, 0.78]}, index=[
        "target=true_class_prob", "target=max_prob", "target=correct", "target=neg_entropy",
        "target=true_class_prob, calibrated teacher"])
    ablation = ablation.rename_axis("variant")
    numbers = dt.ablation_numbers([ablation], [1.5])
    assert numbers["abl_best"] == "true_class_prob" and numbers["abl_label_free_text"] == "0.650"
    assert numbers["abl_correct_text"] == "0.750" and numbers["calibration_effect"] == "flattens"
    assert numbers["teacher_T_text"] == "1.50"
    assert numbers["label_verdict"].startswith("both targets that use the label beat")
    other = ablation.copy()
    other.loc["target=neg_entropy", "cd AUROC"] = 0.9
    assert dt.ablation_numbers([other], [0.9])["label_verdict"].startswith("using the label")
    # two seeds: the numbers with their spread, the verdicts from the means
    both = dt.ablation_numbers([ablation, other], [1.5, 0.9])
    assert both["abl_label_free_text"] == f"{statistics.mean([0.65, 0.9]):.3f} ± {statistics.stdev([0.65, 0.9]):.3f}"
    assert both["calibration_effect"] == "flattens"  # the mean temperature, 1.2
    assert both["label_verdict"].startswith("using the label")  # mean label-free 0.775 above mean correct 0.75


class FakeVideos:
    """A data set of ``n`` videos of ``clips`` clips each (two frames of 4×4 RGB), class ``i % classes``."""

    class_names = ["bend", "jack", "wave"]

    def __init__(self, n, clips=3, classes=3, prefix="v"):
        self.n, self.clips, self.num_classes, self.prefix = n, clips, classes, prefix

    def __len__(self):
        return self.n

    def meta(self, i):
        from types import SimpleNamespace
        return SimpleNamespace(name=f"{self.prefix}{i}", num_clips=self.clips + i % 2, label=i % self.num_classes)

    def __getitem__(self, i):
        import torch
        return torch.rand(self.clips + i % 2, 2, 4, 4, 3), i % self.num_classes


def test_real_videos_numbers(tiny_run):
    from cdlib.experiment import folds, real_tables

    assert real_tables.count_text([8, 8]) == "8" and real_tables.count_text([8, 7, 8]) == "7 to 8"
    cfg, store, result = tiny_run
    datasets = [{"train": FakeVideos(6, prefix="a"), "val": FakeVideos(2, prefix="b"), "test": FakeVideos(4, prefix="c")},
                {"train": FakeVideos(5, prefix="a"), "val": FakeVideos(2, prefix="b"), "test": FakeVideos(5, prefix="c")}]
    sizes = pd.DataFrame([{"train": 6, "val": 2, "test": 4, "skipped": 1}, {"train": 5, "val": 2, "test": 5, "skipped": 0}])
    numbers = real_tables.data_numbers(datasets, sizes, cfg)
    assert numbers["n_videos"] == 12 and numbers["n_folds"] == 2 and numbers["n_train"] == "5 to 6"
    assert numbers["point_per_video"] == 0.25 and numbers["skipped"] == 1 and numbers["chance"] == 1 / 3
    assert (numbers["clips_min"], numbers["clips_max"]) == (3, 4)
    over = folds.aggregate([result, result])
    numbers = real_tables.fold_numbers(over, [cfg], 3, store)
    summary = result["summary"]
    assert numbers["real_dense"] == f"{summary['dense_teacher_accuracy']:.3f} ± 0.000"
    assert numbers["real_dense_vs_chance"] == f"{3 * summary['dense_teacher_accuracy']:.1f} ± 0.0"  # two folds
    assert numbers["real_method"] == summary["method"]["policy"]
    below = summary["cd_best_accuracy"] < summary["dense_teacher_accuracy"]
    assert numbers["real_fallback_verdict"].startswith("here it cannot" if below else "here the method's point")
    # The verdict follows the cited best point (real_best, real_gain), also where it and the method's own differ:
    # seen on the full profile, where one fold's choice put it 0.014 below the dense teacher.
    for shift in (-0.2, 0.2):
        moved = copy.deepcopy(result)
        moved["summary"]["cd_best_accuracy"] = summary["dense_teacher_accuracy"] + shift
        verdict = real_tables.fold_numbers(folds.aggregate([moved, moved]), [cfg], 3, store)["real_fallback_verdict"]
        assert verdict.startswith("here it cannot" if shift < 0 else "here the method's point"), shift
    right = float(collect_outputs(cfg, store)["teacher"].correct.float().mean())
    assert numbers["real_teacher_right"] == f"{right:.1%}"  # one config: the value alone
    matplotlib.use("Agg")
    assert len(figures.frames_figure(datasets[0]["test"], columns=2).axes) == 3 * 2
