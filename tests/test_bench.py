"""The benchmark (cdlib.experiment.bench, evaluation, timing; cdlib.method.selection) and the trained models and
outputs it builds on (cdlib.experiment.clips, students, trained_models, ...): curve summaries and the selection rules against direct computations, the wall-clock ratio on a
fake clock, the JSON contract of the benchmark module on a tiny end-to-end run, caching, and which config
fields retrain which models."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
import torch

from cdlib.__main__ import main
from cdlib.experiment import clips, context_student, distance_student, exit_gate, students, timing, trained_models
from cdlib.experiment.bench import benchmark_spec, run_benchmark
from cdlib.experiment.config import profile_config
from cdlib.experiment.evaluation import video_outputs
from cdlib.experiment.outputs import ClipOutputs
from cdlib.experiment.tables import (
    BUDGET_AXIS,
    accuracy_table,
    config_value,
    format_table,
    headline_table,
    achieved_gflop_s_table,
    matched_accuracy_table,
    matched_compute_table,
    signal_table,
    sweep_table,
    time_breakdown_table,
    timing_numbers,
)
from cdlib.experiment.timing import STAGES, StageTimer, TimedPipeline, measure_wall_clock
from cdlib.method.calibration import auroc
from cdlib.method.cost import achieved_gflop_s, fastest_parts, fastest_totals, ratio_of_totals, time_interleaved
from cdlib.method.gating import get_policy, list_policies, run_policy
from cdlib.method.selection import ce_baseline, curve_area, pareto_front, select_best, select_matched, select_points, summarize
from cdlib.runtime.errors import ConfigError

TINY = {
    "data.num_classes": 3, "data.height": 16, "data.width": 16, "data.video_length": 32,
    "data.num_train": 12, "data.num_val": 6, "data.num_test": 6,
    "teacher_train.epochs": 1, "teacher_train.batch_size": 16,
    "student_train.epochs": 1, "student_train.batch_size": 16,
    "bench.thetas": "0.5,1.01", "bench.random_repeats": 2, "bench.wall_videos": 2, "bench.wall_repeats": 1,
    "bench.throughput_batch": 4,
}


def tiny_config(**overrides):
    return profile_config("ci", 0).replace(**{**TINY, **overrides})


def point(gflops, accuracy, val_gflops=None, val_accuracy=None):
    """An operating point; on val the same as on test unless given."""
    return {"gflops_per_video": gflops, "accuracy": accuracy,
            "val_gflops_per_video": gflops if val_gflops is None else val_gflops,
            "val_accuracy": accuracy if val_accuracy is None else val_accuracy}


def test_pareto_front_keeps_only_points_no_cheaper_point_beats():
    points = [point(3, 0.5), point(1, 0.6), point(2, 0.55), point(4, 0.9), point(4, 0.7), point(5, 0.9)]
    assert pareto_front(points) == [point(1, 0.6), point(4, 0.9)]


def test_curve_area_matches_the_step_integral():
    points = [point(1, 0.5), point(3, 0.8), point(2, 0.4)]
    # acc(x) = 0 on [0, 1), 0.5 on [1, 3), 0.8 on [3, 4]
    assert curve_area(points, upper=4) == pytest.approx(0.5 * 2 + 0.8 * 1)
    # points beyond the range do not count
    assert curve_area(points, upper=2) == pytest.approx(0.5 * 1)
    assert curve_area([point(5, 1.0)], upper=4) == 0.0


def val(gflops, accuracy, test_gflops=0.0, test_accuracy=0.0):
    """A point that is (gflops, accuracy) on val and something else on test."""
    return point(test_gflops, test_accuracy, gflops, accuracy)


def test_select_matched_is_the_cheapest_point_reaching_the_target_on_val():
    points = [val(3, 0.8), val(1, 0.5, test_accuracy=0.9), val(2, 0.8)]
    assert select_matched(points, 0.8) == 2
    assert select_matched(points, 0.5) == 1
    # the test split is not looked at, unless the keys say so (the upper bound)
    assert select_matched(points, 0.85, accuracy="accuracy", cost="gflops_per_video") == 1
    # ties in cost go to the more accurate point, then to the first
    tied = [val(2, 0.8), val(2, 0.9), val(2, 0.9), val(3, 1.0)]
    assert select_matched(tied, 0.8) == 1


def test_select_matched_when_no_point_reaches_the_dense_teacher():
    points = [val(1, 0.5), val(2, 0.79)]
    assert select_matched(points, 0.8) is None
    assert select_matched([], 0.8) is None


def test_select_best_ties_go_to_the_cheaper_point_then_the_first():
    points = [val(3, 0.9), val(2, 0.9), val(2, 0.9, test_accuracy=1.0), val(1, 0.5)]
    assert select_best(points) == 1
    assert select_best(points, budget=1.5) == 3  # the most accurate point within the budget
    assert select_best(points, budget=2) == 1  # the budget is inclusive
    assert select_best(points, budget=0.5) is None  # nothing that cheap
    assert select_best(points, accuracy="accuracy", cost="gflops_per_video") == 2


def test_select_best_ties_in_accuracy_go_to_the_higher_likelihood_before_the_cost():
    def scored(gflops, accuracy, val_likelihood, test_likelihood=-0.9):
        return {**val(gflops, accuracy), "val_log_likelihood": val_likelihood, "log_likelihood": test_likelihood}

    points = [scored(1, 0.9, -0.7, test_likelihood=-0.1), scored(3, 0.9, -0.2), scored(2, 0.9, -0.2), scored(1, 0.8, 0.0)]
    assert select_best(points) == 2  # the likelihood first (-0.2 over -0.7), then the cheaper of the two at -0.2
    assert select_best(points, budget=1) == 0  # within the budget, the accuracy still comes first
    assert select_best(points, likelihood="log_likelihood") == 0  # the key names the split, as the others do
    # the upper bound breaks its ties by the test likelihood
    policies = {"dense_teacher": [{**point(10, 0.6), "log_likelihood": 0.0}],
                "uniform_k": [{**point(1, 0.9, 1, 0.9), "val_log_likelihood": -0.1, "log_likelihood": -0.5},
                              {**point(2, 0.9, 2, 0.9), "val_log_likelihood": -0.3, "log_likelihood": -0.2}]}
    selected = select_points(policies)["uniform_k"]
    assert selected["best"] == 0 and selected["upper_bound_best"] == 1


def test_a_policy_with_a_single_point():
    (only,) = [val(4, 0.7, test_gflops=5, test_accuracy=0.6)]
    assert select_best([only]) == 0
    assert select_matched([only], 0.7) == 0
    assert select_matched([only], 0.71) is None
    assert select_best([only], budget=3) is None


def hand_policies():
    """Hand-made curves; the dense teacher is 0.6 accurate on val, 0.65 on test, at 10 GFLOPs."""
    policies = {name: [point(10, 0.6)] for name in list_policies()}
    policies["dense_teacher"] = [{**point(10, 0.65, 10, 0.6), "wall_ratio_to_dense": 1.0,
                                  "throughput_wall_ratio_to_dense": 1.0}]
    policies["oracle"] = [point(1, 1.0)]
    policies["sampler_maxprob"] = [point(5, 0.6)]
    policies["cd_gate"] = [
        # on val: reaches 0.6 first at 3 GFLOPs (index 1), best 0.75 (index 2, the cheaper of two ties)
        {**val(2, 0.5, test_gflops=2, test_accuracy=0.7), "wall_ratio_to_dense": 0.25},
        {**val(3, 0.6, test_gflops=3.5, test_accuracy=0.62), "wall_ratio_to_dense": 0.45,
         "throughput_wall_ratio_to_dense": 0.4},
        val(5, 0.75, test_gflops=5, test_accuracy=0.66),
        val(6, 0.75, test_gflops=6, test_accuracy=0.8),
    ]
    return policies


def test_select_points_chooses_on_val_and_the_upper_bound_on_test():
    picks = select_points(hand_policies())["cd_gate"]
    assert picks == {"matched": 1, "best": 2, "upper_bound_matched": 0, "upper_bound_best": 3}
    assert select_points(hand_policies())["dense_teacher"] == dict.fromkeys(picks, 0)


def test_summarize_against_hand_computed_values():
    policies = hand_policies()
    s = summarize(policies)
    assert s["selection"] == "val" and s["upper_bound"]["selection"] == "test"
    assert s["dense_teacher_accuracy"] == 0.65 and s["dense_teacher_val_accuracy"] == 0.6
    assert s["dense_teacher_gflops_per_video"] == 10
    # the point matched on val (index 1): its test FLOPs, test accuracy and wall-clock ratios
    assert s["cd_gflops_ratio_at_dense_accuracy"] == pytest.approx(0.35)
    assert s["cd_test_accuracy_at_matched_point"] == 0.62  # below the dense teacher's 0.65 on test: it can be
    assert s["cd_wall_ratio_at_dense_accuracy"] == 0.45
    assert s["cd_throughput_wall_ratio_at_dense_accuracy"] == 0.4
    # the point best on val (index 2): its test accuracy, not the best test accuracy of any point
    assert s["cd_best_accuracy"] == 0.66 and s["cd_accuracy_gain"] == pytest.approx(0.01)
    assert s["gflops_ratio_at_dense_accuracy"]["sampler_maxprob"] == pytest.approx(0.5)
    assert s["gflops_ratio_at_dense_accuracy"]["uniform_k"] == pytest.approx(1.0)
    assert s["test_accuracy_at_matched_point"]["cd_gate"] == 0.62
    # the upper bound: points chosen on test
    ub = s["upper_bound"]
    assert ub["cd_gflops_ratio_at_dense_accuracy"] == pytest.approx(0.2)
    assert ub["cd_test_accuracy_at_matched_point"] == 0.7
    assert ub["cd_wall_ratio_at_dense_accuracy"] == 0.25
    assert ub["cd_throughput_wall_ratio_at_dense_accuracy"] is None  # that point was not timed in batches
    assert ub["cd_best_accuracy"] == 0.8 and ub["cd_accuracy_gain"] == pytest.approx(0.15)
    assert set(ub) - {"selection"} < set(s)
    # areas under the test curves
    oracle_area = 1.0 * 9
    assert s["cd_auc_vs_oracle"] == pytest.approx((0.7 * 4 + 0.8 * 4) / oracle_area)  # front (2, 0.7), (6, 0.8)
    assert s["sampler_maxprob_auc_vs_oracle"] == pytest.approx(0.6 * 5 / oracle_area)
    policies["cd_gate"] = [val(2, 0.5, test_gflops=2, test_accuracy=0.9)]  # never matches on val
    s = summarize(policies)
    assert s["cd_gflops_ratio_at_dense_accuracy"] is None and s["cd_test_accuracy_at_matched_point"] is None
    assert s["cd_wall_ratio_at_dense_accuracy"] is None
    assert s["upper_bound"]["cd_gflops_ratio_at_dense_accuracy"] == pytest.approx(0.2)
    policies["oracle"] = [point(10, 1.0)]  # no oracle point below the dense teacher's cost: no area to compare
    assert pd.isna(summarize(policies)["cd_auc_vs_oracle"])


def test_the_method_uses_the_student_whose_val_curve_covers_more_of_the_oracles():
    from cdlib.method.selection import method_policy

    policies = hand_policies()
    method = method_policy(policies)
    # val areas over [0, 10]: cd_gate 0.5·1 + 0.6·2 + 0.75·5 = 5.45; cd_gate_ctx's one point costs 10: 0; oracle 9
    assert method["policy"] == "cd_gate" and method["student"] == "cd"
    assert method["val_auc_vs_oracle"] == pytest.approx({"cd_gate": 5.45 / 9, "cd_gate_ctx": 0.0})
    # a context student better on val, worse on test: val decides, and the summary's cd_* keys follow it
    policies["cd_gate_ctx"] = [val(1, 0.9, test_gflops=1, test_accuracy=0.3)]
    s = summarize(policies)
    assert s["method"]["policy"] == "cd_gate_ctx" and s["method"]["student"] == "cd_ctx"
    assert s["method"]["val_auc_vs_oracle"]["cd_gate_ctx"] == pytest.approx(0.9 * 9 / 9)
    assert s["cd_auc_vs_oracle"] == pytest.approx(0.3 * 9 / 9) == s["auc_vs_oracle"]["cd_gate_ctx"]
    assert s["cd_best_accuracy"] == 0.3 and s["cd_gflops_ratio_at_dense_accuracy"] == pytest.approx(0.1)
    # ties go to the per-clip student, and without either candidate there is no method
    policies["cd_gate_ctx"] = policies["cd_gate"]
    assert method_policy(policies)["policy"] == "cd_gate"
    assert method_policy({k: v for k, v in policies.items() if not k.startswith("cd_gate")}) is None


def test_method_choice_frame_exit_comparison_and_harder_data_table():
    from cdlib.experiment.tables import frame_exit_comparison, harder_data_table, method_choice

    def result(seed, chosen, areas, fe_ratio, method_ratio, fe_budget_acc, method_budget_acc):
        points = {"dense_teacher": [point(10, 0.6)], "oracle": [point(1, 1.0)],
                  chosen: [point(2, method_budget_acc)], "frame_exit": [point(2, fe_budget_acc)]}
        return {"seed": seed, "policies": points, "config": {"data": {"informative_fraction": 0.2}},
                "confidence_auroc": {"cd": 0.8, "cd_ctx": 0.9},
                "summary": {"method": {"policy": chosen, "val_auc_vs_oracle": areas},
                            "gflops_ratio_at_dense_accuracy": {chosen: method_ratio, "frame_exit": fe_ratio},
                            "test_accuracy_at_matched_point": {chosen: 0.7, "frame_exit": 0.65},
                            "best_accuracy": {chosen: 0.9, "frame_exit": 0.8}, "dense_teacher_accuracy": 0.6,
                            "auc_vs_oracle": {chosen: 0.95, "frame_exit": 0.7}, "cd_auc_vs_oracle": 0.95}}

    results = [result(0, "cd_gate_ctx", {"cd_gate": 0.8, "cd_gate_ctx": 0.9}, 0.3, 0.1, 0.7, 0.9),
               result(1, "cd_gate_ctx", {"cd_gate": 0.7, "cd_gate_ctx": 0.8}, None, 0.2, 0.8, 0.9),
               result(2, "cd_gate", {"cd_gate": 0.9, "cd_gate_ctx": 0.7}, 0.3, 0.4, 0.9, 0.9)]
    choice = method_choice(results)
    assert choice["policy"] == "cd_gate_ctx" and choice["count"] == 2 and choice["text"].endswith("in 2 of 3 runs")
    assert choice["val_auc_vs_oracle"] == pytest.approx({"cd_gate": 0.8, "cd_gate_ctx": 0.8})
    assert "every run" in method_choice(results[:2])["text"] and "one run" in method_choice(results[:1])["text"]
    versus = frame_exit_comparison(results[:2], 0.25)
    # mean matched FLOPs ratios: the method 0.15, frame_exit 0.3 (seed 1 never matched: left out of its mean)
    assert versus["matched"].startswith("cd_gate_ctx beats frame_exit") and "15.0%" in versus["matched"]
    assert "30.0%" in versus["matched"]
    # within 25% of the dense teacher's FLOPs: 0.9 against the mean 0.75 of 0.7 and 0.8
    assert versus["budget"].startswith("cd_gate_ctx beats frame_exit") and "0.900 against 0.750" in versus["budget"]
    assert frame_exit_comparison(results[2:], 0.25)["matched"].startswith("frame_exit beats cd_gate")
    assert frame_exit_comparison(results[1:2], 0.25)["matched"].endswith("frame_exit never matched on validation")
    table = harder_data_table(results)
    assert list(table["seed"]) == [0, 1, 2] and (table["rho"] == 0.2).all()
    assert table.loc[0, "cd_gate_ctx best (val)"] == 0.9 and pd.isna(table.loc[0, "cd_gate best (val)"])
    assert table.loc[2, "cd_gate area vs oracle"] == 0.95 and table.loc[0, "oracle best"] == 1.0
    assert table.loc[1, "AUROC of s (context)"] == 0.9


class FakeClock:
    """A clock the timed calls advance by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_time_interleaved_pairs_the_calls_and_the_ratio_is_of_totals():
    clock = FakeClock()
    seconds_of = {"dense": [10.0, 10.0, 10.0], "adaptive": [1.0, 1.0, 100.0]}  # adaptive: teacher on video 2
    slowdown = [1.0, 2.0, 1.0]  # pass 1: the whole machine twice slower
    disturbed = {(0, "dense", 1): 7.0, (2, "adaptive", 2): 500.0}  # other work hits single runs
    order = []

    def call(name):
        def run(unit):
            order.append((name, unit))
            r = (len(order) - 3) // 6  # 2 warm-up calls, then 2 calls x 3 units per pass
            if r >= 0:
                clock.now += seconds_of[name][unit] * slowdown[r] + disturbed.get((r, name, unit), 0.0)
        return run

    seen = []

    def after(j, r, u):
        seen.append((j, r, u))
        clock.now += 1000.0  # outside the timed call: no time below counts it

    seconds = time_interleaved([call("dense"), call("adaptive")], [0, 1, 2], passes=3, clock=clock, after=after)
    # warm-up on the first unit, then unit after unit with the calls side by side
    assert order[:2] == [("dense", 0), ("adaptive", 0)]
    # the hook follows each timed call (not the warm-up)
    assert seen == [(j, r, u) for r in range(3) for u in range(3) for j in range(2)]
    assert order[2:8] == [("dense", 0), ("adaptive", 0), ("dense", 1), ("adaptive", 1), ("dense", 2), ("adaptive", 2)]
    assert len(order) == 2 + 3 * 6
    assert seconds.shape == (2, 3, 3)
    assert seconds[1, 1].tolist() == [2.0, 2.0, 200.0] and seconds[1, 2, 2] == 600.0 and seconds[0, 0, 1] == 17.0
    # each video by its fastest pass: totals 30 (dense) and 102 (adaptive), whatever hit the other passes
    assert fastest_totals(seconds).tolist() == [30.0, 102.0]
    ratio = ratio_of_totals(seconds, reference=0)
    assert ratio.tolist() == pytest.approx([1.0, 102 / 30])
    # not the median over videos of per-video ratios, which would call the policy ten times cheaper
    fastest = seconds.amin(dim=1)
    assert (fastest[1] / fastest[0]).median().item() == pytest.approx(0.1)


def test_test_only_data_fields_do_not_retrain_models():
    cfg = tiny_config()
    for key, value in (("data.test_shift", 0.5), ("data.test_informative_fraction", 1.0), ("data.num_test", 9)):
        other = cfg.replace(**{key: value})
        for which in ("teacher", *students.STUDENTS):
            assert students.model_spec_of(other, which) == students.model_spec_of(cfg, which), (key, which)
        assert clips.data_spec(other, "test") != clips.data_spec(cfg, "test")
        assert clips.data_spec(other, "val") == clips.data_spec(cfg, "val")
    trained_on = cfg.replace(**{"data.informative_fraction": 0.5})
    assert students.model_spec_of(trained_on, "teacher") != students.model_spec_of(cfg, "teacher")
    # a test rho equal to the training one is the default test split (test_synthetic checks the videos): one key
    same = cfg.replace(**{"data.test_informative_fraction": cfg.data.informative_fraction})
    assert clips.data_spec(same, "test") == clips.data_spec(cfg, "test")


def test_the_ce_student_trains_on_the_teachers_clips_and_the_others_on_every_clip():
    """ce: the teacher's clips; ce_all, kd and cd: every clip."""
    cfg = tiny_config(**{"teacher_train.clips": "action", "student_train.clips": "all"})
    assert students.student_train_config(cfg, "ce").clips == "action"
    assert students.student_train_config(cfg, "ce_all") == students.student_train_config(cfg, "kd")  # the same clips
    assert students.loss_weights(cfg, "ce_all") == students.loss_weights(cfg, "ce")  # the same loss
    assert students.student_spec(cfg, "ce_all") != students.student_spec(cfg, "ce")
    assert students.student_train_config(cfg, "kd").clips == "all"
    assert students.student_train_config(cfg, "cd").clips == "all"
    assert students.student_spec(cfg, "ce")["train"]["clips"] == "action"
    assert students.student_train_config(cfg.replace(ce_student_clips="all"), "ce").clips == "all"
    with pytest.raises(ConfigError, match="ce_student_clips"):
        students.student_train_config(cfg.replace(ce_student_clips="some"), "ce")
    with pytest.raises(ConfigError, match="unknown student 'xx'"):
        students.student_train_config(cfg, "xx")
    with pytest.raises(ConfigError, match="derived"):
        students.loss_weights(cfg, "cd_da")


def test_students_and_signals_are_registries_the_benchmark_reads():
    from cdlib.experiment import evaluation

    assert students.trained_students() == ["ce", "ce_all", "kd", "cd"]
    assert list(students.STUDENTS) == [*students.trained_students(), "cd_da", "cd_ctx"]
    assert all(students.STUDENTS.describe().values())
    cfg = tiny_config()
    assert students.model_spec_of(cfg, "cd_da") == distance_student.distance_spec(cfg)
    assert students.model_spec_of(cfg, "cd_ctx") == context_student.context_spec(cfg)
    with pytest.raises(ConfigError, match="either loss"):
        students.register_student("broken", "neither trained nor derived", students.StudentVariant())
    students.register_student("kd_twin", "a second KD student",
                              students.StudentVariant(loss=students.STUDENTS["kd"].loss))
    evaluation.register_signal("kd_twin_maxprob", "its max-softmax", lambda outputs: outputs["kd_twin"].score,
                               reads=["kd_twin"])
    try:
        assert students.trained_students()[-1] == "kd_twin"
        assert students.loss_weights(cfg, "kd_twin") == students.loss_weights(cfg, "kd")
        outputs = {name: ClipOutputs(logits=torch.zeros(2, 3), labels=torch.zeros(2, dtype=torch.long),
                                          video=torch.zeros(2, dtype=torch.long), position=torch.arange(2),
                                          informative=torch.ones(2, dtype=torch.int8), score_logit=torch.zeros(2))
                   for name in ("teacher", *students.STUDENTS)}
        assert list(evaluation.confidence_signals(outputs)) == evaluation.SIGNALS.names()
        assert evaluation.SIGNALS.names()[-1] == "kd_twin_maxprob"
    finally:
        students.STUDENTS.unregister("kd_twin")
        evaluation.SIGNALS.unregister("kd_twin_maxprob")


def test_signals_whose_models_were_not_evaluated_are_left_out():
    from cdlib.experiment import evaluation

    outputs = {name: ClipOutputs(logits=torch.tensor([[2.0, 0.0], [0.0, 1.0]]), labels=torch.zeros(2, dtype=torch.long),
                                      video=torch.zeros(2, dtype=torch.long), position=torch.arange(2),
                                      informative=torch.ones(2, dtype=torch.int8), score_logit=torch.tensor([0.0, 3.0]))
               for name in ("teacher", "cd")}
    signals = evaluation.confidence_signals(outputs)
    assert list(signals) == ["cd", "cd_maxprob", "teacher_maxprob"]
    assert torch.allclose(signals["cd"], torch.sigmoid(torch.tensor([0.0, 3.0])))
    assert torch.allclose(signals["teacher_maxprob"], torch.softmax(outputs["teacher"].logits, 1).amax(1))


def test_the_ce_baseline_of_the_ce_students_that_were_evaluated():
    assert ce_baseline({"student_maxprob": 0.6})["student"] == "ce"
    assert ce_baseline({"ce_all_maxprob": 0.6, "cd": 0.9})["policy"] == "sampler_ce_all"
    assert ce_baseline({"cd": 0.9}) is None


def test_bench_policies_are_checked_when_the_config_is_built():
    from cdlib.experiment.evaluation import evaluated_policies, evaluated_students

    with pytest.raises(ConfigError, match=r"bench\.policies.*unknown policy 'cd_gat'"):
        tiny_config(**{"bench.policies": "cd_gate,cd_gat"})
    cfg = tiny_config(**{"bench.policies": "cd_gate,sampler_maxprob"})
    assert cfg.bench.policies == ("cd_gate", "sampler_maxprob")
    assert evaluated_policies(cfg) == ["dense_teacher", "sampler_maxprob", "cd_gate", "oracle"]
    assert evaluated_students(cfg) == ["ce", "cd"]
    assert evaluated_policies(tiny_config()) == list_policies()
    assert evaluated_students(tiny_config()) == list(students.STUDENTS)


def test_benchmark_json_holds_every_contract_key(tiny_run):
    cfg, _, result = tiny_run
    assert result["version"] == 2 and result["profile"] == "ci" and result["seed"] == 0
    assert set(result) >= {"data", "config_hash", "cost", "policies", "selected", "confidence_auroc",
                           "confidence_auroc_val", "summary", "wall_clock"}
    assert result["data"]["val_videos"] == 6 and result["data"]["test_videos"] == 6
    assert set(result["cost"]) >= {"teacher_gflops_per_clip", "student_gflops_per_clip", "clips_per_video"}
    assert result["cost"]["clips_per_video"] == 4
    assert set(result["policies"]) == set(list_policies())
    for name, points in result["policies"].items():
        assert points, name
        for p in points:
            assert set(p) >= {"knob", "accuracy", "gflops_per_video", "teacher_clips_per_video", "val_accuracy",
                              "val_gflops_per_video", "wall_s_per_video", "wall_ratio_to_dense", "wall_videos"}
            assert 0 <= p["accuracy"] <= 1 and 0 <= p["val_accuracy"] <= 1
            assert p["gflops_per_video"] >= 0 and p["wall_s_per_video"] > 0
    # each policy sweeps its knob over its whole range: k = 1..N, k x coverage for cd_topk, theta x k x lambda x
    # coverage for cd_gate
    assert [p["knob"] for p in result["policies"]["uniform_k"]] == [1, 2, 3, 4]
    assert len(result["policies"]["cd_gate"]) == 2 * 4 * 3 * 3
    assert {p["knob"][2] for p in result["policies"]["cd_gate"]} == {0.0, 0.5, 1.0}
    assert {p["knob"][3] for p in result["policies"]["cd_gate"]} == {0.0, 0.25, 1.0}
    assert [p["knob"] for p in result["policies"]["cd_topk"]][:4] == [[1, 0.0], [1, 0.25], [1, 1.0], [2, 0.0]]
    # the coverage-1 points that read no student are uniform_k's points
    uniform = {p["knob"]: p for p in result["policies"]["uniform_k"]}
    for p in result["policies"]["cd_topk"] + [p for p in result["policies"]["cd_gate"] if p["knob"][0] > 1
                                               and p["knob"][2] == 0.0]:
        if p["knob"][-1] == 1.0:
            same = uniform[p["knob"][-3 if len(p["knob"]) == 4 else 0]]
            assert p["student_clips_per_video"] == 0
            assert {key: p[key] for key in ("accuracy", "gflops_per_video", "teacher_clips_per_video",
                                            "val_accuracy", "val_gflops_per_video")} == \
                {key: same[key] for key in ("accuracy", "gflops_per_video", "teacher_clips_per_video",
                                            "val_accuracy", "val_gflops_per_video")}
    assert set(result["confidence_auroc"]) >= {"cd", "student_maxprob", "ce_all_maxprob", "kd_maxprob"}
    summary = result["summary"]
    keys = {"cd_gflops_ratio_at_dense_accuracy", "cd_test_accuracy_at_matched_point", "cd_best_accuracy",
            "cd_accuracy_gain", "cd_wall_ratio_at_dense_accuracy", "cd_throughput_wall_ratio_at_dense_accuracy",
            "gflops_ratio_at_dense_accuracy"}
    assert set(summary) >= keys | {"dense_teacher_accuracy", "dense_teacher_gflops_per_video", "cd_auc_vs_oracle",
                                   "sampler_maxprob_auc_vs_oracle", "selection", "upper_bound", "ce_baseline"}
    assert summary["selection"] == "val" and set(summary["upper_bound"]) >= keys
    assert summary["ce_baseline"]["student"] in ("ce", "ce_all")
    # the summary reads the points that select_points names
    assert result["selected"] == select_points(result["policies"])
    best = result["policies"]["cd_gate"][result["selected"]["cd_gate"]["best"]]
    assert summary["cd_best_accuracy"] == best["accuracy"]
    assert summary["upper_bound"]["cd_best_accuracy"] == max(p["accuracy"] for p in result["policies"]["cd_gate"])
    dense = result["policies"]["dense_teacher"][0]
    assert dense["wall_ratio_to_dense"] == 1.0 and dense["throughput_wall_ratio_to_dense"] == 1.0
    assert dense["gflops_per_video"] == pytest.approx(4 * result["cost"]["teacher_gflops_per_clip"])
    assert dense["teacher_clips_per_video"] == 4
    # the selected points are timed on every test video (fewer than bench.wall_selected_videos), the rest on 2
    assert {k: v for k, v in result["wall_clock"].items() if k not in ("achieved_gflop_s", "prepare_s")} == {
        "selected_videos": 6, "curve_videos": 2, "passes": 1, "throughput_batch": 4, "threads": cfg.runtime.num_threads,
        "backend": "torchscript"}  # bench.backend=auto on the CPU
    # each timed model's preparation (scripting and warm-up), reported apart from the timed points
    prepare_s = result["wall_clock"]["prepare_s"]
    assert set(prepare_s) >= {"teacher", *timed_students(result)}
    assert ("exit_teacher" in prepare_s) == ("frame_exit" in result["policies"])
    assert min(prepare_s.values()) > 0
    for name, picks in result["selected"].items():
        for index, p in enumerate(result["policies"][name]):
            timed = index in picks.values()
            assert p["wall_videos"] == (6 if timed else 2) and ("throughput_wall_ratio_to_dense" in p) == timed
            # where the time went, in each mode the point was timed in: parts of the measured time per video
            for prefix, total in [("", "wall_s_per_video")] + [("throughput_", "throughput_s_per_video")] * timed:
                parts = [p[f"{prefix}{stage}_s"] for stage in ("preprocess", "student", "decision", "teacher")]
                assert min(parts) >= 0 and sum(parts) <= p[total] + 1e-9, (name, index, prefix)
            assert ("throughput_teacher_s" in p) == timed
    rates = result["wall_clock"]["achieved_gflop_s"]
    assert set(rates) == {"latency", "throughput"}
    for mode in rates.values():
        assert set(mode) == {"teacher", *timed_students(result)} and min(mode.values()) > 0


def clip_outputs(logits, labels, video, score_logit=None, informative=None) -> ClipOutputs:
    """Outputs on clips stored video by video (positions counted within each video)."""
    position = torch.cat([torch.arange(n) for n in torch.bincount(video).tolist()])
    informative = torch.full_like(video, -1, dtype=torch.int8) if informative is None else informative
    return ClipOutputs(logits=logits, labels=labels, video=video, position=position, informative=informative,
                            score_logit=score_logit)


def test_clip_outputs_per_video_against_direct_computation():
    """Videos of 3, 1 and 2 clips: the per-video views of the per-clip outputs, computed clip by clip."""
    torch.manual_seed(0)
    video, labels = torch.tensor([0, 0, 0, 1, 2, 2]), torch.tensor([1, 1, 1, 0, 2, 2])
    out = clip_outputs(torch.randn(6, 3), labels, video, score_logit=torch.randn(6))
    assert out.num_videos == 3 and out.video_labels().tolist() == [1, 0, 2]
    pieces = out.split_by_video(out.logits)
    assert [p.shape[0] for p in pieces] == [3, 1, 2]
    for v, piece in enumerate(pieces):
        torch.testing.assert_close(piece, out.logits[video == v])
    assert out.correct.tolist() == [int(out.logits[m].argmax()) == int(labels[m]) for m in range(6)]
    torch.testing.assert_close(out.score, 1 / (1 + torch.exp(-out.score_logit)))
    assert clip_outputs(out.logits, labels, video).score is None  # the teacher has no confidence head
    probs = torch.stack([out.logits[video == v].softmax(-1).mean(0) for v in range(3)])
    torch.testing.assert_close(out.video_probs(), probs)
    assert out.dense_accuracy() == pytest.approx(float((probs.argmax(1) == torch.tensor([1, 0, 2])).float().mean()))


def test_teacher_only_videos_carry_no_student():
    """Per-clip outputs cut into videos: without a student, the videos hold the teacher's clips and nothing in
    the student's place; with one, its logits and sigmoid scores."""
    clips, labels = torch.tensor([0, 0, 0, 1, 1]), torch.tensor([2, 2, 2, 0, 0])
    teacher = clip_outputs(torch.randn(5, 3), labels, clips)
    student = clip_outputs(torch.randn(5, 3), labels, clips, score_logit=torch.randn(5))
    bare = video_outputs(teacher, None)
    assert [(v.student_logits, v.student_score, v.num_clips, v.label) for v in bare] == [(None, None, 3, 2),
                                                                                          (None, None, 2, 0)]
    torch.testing.assert_close(bare[1].teacher(torch.tensor([0, 1])), teacher.logits[3:])
    with_student = video_outputs(teacher, student)
    torch.testing.assert_close(with_student[1].student_logits, student.logits[3:])
    torch.testing.assert_close(with_student[0].student_score, torch.sigmoid(student.score_logit[:3]))
    assert get_policy("uniform_k").fn(bare[0], 2).teacher_clips == 2
    with pytest.raises(ConfigError, match="cd_gate: needs the outputs of the 'cd' student"):
        run_policy("cd_gate", bare, (0.5, 1))


def test_the_distance_aware_student_is_evaluated_counted_and_reported(tiny_run):
    cfg, store, result = tiny_run
    cost = result["cost"]
    assert set(cost["gflops_per_clip"]) == {"teacher", *students.STUDENTS, "frame_exit_gate"}  # and frame_exit's gate
    # the distance runs inside the cd_da student: more FLOPs than the CD student, counted in its policy
    assert cost["gflops_per_clip"]["cd_da"] > cost["gflops_per_clip"]["cd"] == cost["student_gflops_per_clip"]
    for name, student in (("cd_gate", "cd"), ("cd_gate_da", "cd_da")):
        for p in result["policies"][name]:
            expected = (p["student_clips_per_video"] * cost["gflops_per_clip"][student]
                        + p["teacher_clips_per_video"] * cost["teacher_gflops_per_clip"])
            assert p["gflops_per_video"] == pytest.approx(expected)
    # every (method, quantile) tried, val's choice reported, and cd_da is the chosen candidate's score
    block = result["distance"]
    assert list(block["candidates"]) == [f"{m}@{q:g}" for m in cfg.distance.methods for q in cfg.distance.quantiles]
    chosen = block["candidates"][block["chosen"]]
    assert chosen["val_auroc"] == max(c["val_auroc"] for c in block["candidates"].values())
    assert chosen["test_auroc"] == pytest.approx(result["confidence_auroc"]["cd_da"], abs=1e-6)
    summary = result["summary"]
    for name in result["policies"]:
        best = result["selected"][name]["best"]
        assert summary["best_accuracy"][name] == result["policies"][name][best]["accuracy"]


def timed_students(result):
    """The students that the timed selected points run (on every test video: the tiny run times them all)."""
    return {get_policy(name).student for name, picks in result["selected"].items() for i in picks.values()
            if i is not None and result["policies"][name][i]["student_clips_per_video"] > 0}


def test_the_wall_clock_on_a_fake_clock(tiny_run):
    """Each reading of the clock is one tick after the last. The stage boundaries of a call read it too, so its
    stages add up to its time less the two ticks of the readings around it (one call per video one at a time, one
    per batch of 4 in batches): a stage left out of the split would take at least a tick more away. Each model's
    achieved GFLOP/s is its GFLOPs over its ticks; a model forward takes one tick here."""
    cfg, store, result = tiny_run
    policies = {name: [dict(p) for p in points] for name, points in result["policies"].items()}
    ticks = iter(range(10**9))
    clock = lambda: float(next(ticks))  # noqa: E731 - each reading one second after the last
    gflops = result["cost"]["gflops_per_clip"]
    wall = measure_wall_clock(cfg, policies, result["selected"], gflops, store, clock=clock)
    assert wall["selected_videos"] == 6 and wall["curve_videos"] == 2
    dense = policies["dense_teacher"][0]
    modes = [("", "wall_s_per_video", 1.0)]
    for name, points in policies.items():
        for index, p in enumerate(points):
            selected = index in result["selected"][name].values() or name == "dense_teacher"
            for prefix, total, calls_per_video in modes + ([("throughput_", "throughput_s_per_video", 2 / 6)]
                                                            if selected else []):
                parts = [p[f"{prefix}{stage}_s"] for stage in STAGES]
                assert min(parts) >= 0 and parts[STAGES.index("decision")] > 0, (name, prefix)
                assert sum(parts) == pytest.approx(p[total] - 2 * calls_per_video), (name, index, prefix)
            assert p["wall_ratio_to_dense"] == pytest.approx(p["wall_s_per_video"] / dense["wall_s_per_video"])
    for prefix in ("", "throughput_"):
        assert dense[f"{prefix}student_s"] == 0 and dense[f"{prefix}teacher_s"] > 0
        student = policies["dense_student"][0]
        assert student[f"{prefix}teacher_s"] == 0 and student[f"{prefix}student_s"] > 0
    # a forward is one tick: 4 clips a tick one video at a time, 24 clips in two ticks in batches
    clips = result["cost"]["clips_per_video"]
    for mode, clips_per_tick in (("latency", clips), ("throughput", 6 * clips / 2)):
        rates = wall["achieved_gflop_s"][mode]
        assert set(rates) == {"teacher", *timed_students(result)}
        for model, rate in rates.items():
            assert rate == pytest.approx(clips_per_tick * gflops[model]), (mode, model)


def test_batches_give_the_decisions_of_one_video_at_a_time(tiny_run):
    """The throughput pipeline (student over the batch, one gathered teacher call) decides as the latency one."""
    cfg, store, result = tiny_run
    pipeline = TimedPipeline(cfg, 6, store)
    for name, picks in result["selected"].items():
        spec = get_policy(name)
        for index in {i for i in picks.values() if i is not None}:
            knob = result["policies"][name][index]["knob"]
            knob = tuple(knob) if isinstance(knob, list) else knob
            batched = pipeline.run_batch(spec, knob, range(1, 5), torch.Generator().manual_seed(3))
            alone = [pipeline.run_video(spec, knob, v, torch.Generator().manual_seed(3)) for v in range(1, 5)]
            for b, a in zip(batched, alone):
                assert (b.teacher_clips, b.student_clips) == (a.teacher_clips, a.student_clips), name
                if name != "random_k":  # one generator across the batch, one per video alone
                    torch.testing.assert_close(b.probs, a.probs, atol=1e-4, rtol=1e-4)


class _CountingNet:
    """A stand-in network for TimedPipeline: per-clip outputs that depend only on the clip, and the clips of every
    call counted (the student returns its logits and score logits, the teacher its logits)."""

    def __init__(self, student: bool, clock: FakeClock | None = None, seconds_per_clip: float = 0.0):
        self.student, self.calls = student, []
        self.clock, self.seconds_per_clip = clock, seconds_per_clip

    def __call__(self, x):
        self.calls.append(x.shape[0])
        if self.clock is not None:
            self.clock.now += self.seconds_per_clip * x.shape[0]
        features = x.flatten(1)
        logits = torch.stack([features[:, :4].sum(1), features[:, 4:8].sum(1), features[:, 8:12].sum(1)], 1)
        return (logits, features[:, 12]) if self.student else logits.flip(1)


def _fake_pipeline(clip_counts, clock: FakeClock | None = None):
    """A TimedPipeline on random uint8 clips of the given counts, its models the counting stand-ins; with
    ``clock``, its stages read it and the student advances it by 1 s per clip, the teacher by 100 s."""
    pipeline = object.__new__(TimedPipeline)
    g = torch.Generator().manual_seed(0)
    pipeline.runtime = None
    pipeline.stages = StageTimer(clock) if clock is not None else StageTimer()
    pipeline.clips = [torch.randint(0, 256, (n, 2, 2, 2, 3), generator=g, dtype=torch.uint8) for n in clip_counts]
    pipeline.labels = [v % 3 for v in range(len(clip_counts))]
    pipeline.teacher = _CountingNet(False, clock, 100.0)
    pipeline.students = {"cd": _CountingNet(True, clock, 1.0)}
    pipeline.video_context = set()
    return pipeline


def test_the_stages_split_each_call_by_where_its_time_went(monkeypatch):
    """On a clock that only the stages advance (preprocessing 10^6 s a call, the student 1 s and the teacher 100 s
    a clip, the policy 10^4 s a call), each stage holds exactly its own time, the teacher's forwards called from
    inside the decision included (one video at a time, the lazy teacher; in batches, the gathered call), and the
    stages sum to the call's time; the clips each model ran are counted."""
    counts = [3, 5, 5, 2]
    clock = FakeClock()
    pipeline = _fake_pipeline(counts, clock)
    real_preprocess = timing.preprocess

    def preprocess(clips):
        clock.now += 1e6
        return real_preprocess(clips)

    monkeypatch.setattr(timing, "preprocess", preprocess)
    for name, knob in (("dense_teacher", None), ("dense_student", None), ("uniform_k", 2),
                       ("cd_gate", (0.5, 2, 0.5, 0.25)), ("cd_gate", (1.01, 2, 0.0, 1.0))):
        spec, policy_calls = get_policy(name), []

        def fn(video, knob, generator=None, spec=spec, policy_calls=policy_calls):
            policy_calls.append(1)
            clock.now += 1e4
            return spec.fn(video, knob, generator=generator)

        timed_spec = dataclasses.replace(spec, fn=fn)
        one_at_a_time = [lambda v=v: [pipeline.run_video(timed_spec, knob, v, torch.Generator())]
                         for v in range(len(counts))]
        in_a_batch = lambda: pipeline.run_batch(timed_spec, knob, range(len(counts)), torch.Generator())  # noqa: E731
        for call in (*one_at_a_time, in_a_batch):
            policy_calls.clear()
            start = clock.now
            decisions = call()
            seconds, clips = StageTimer.split(pipeline.stages.record())
            teacher, student = (sum(getattr(d, f"{m}_clips") for d in decisions) for m in ("teacher", "student"))
            assert seconds == {"preprocess": 1e6, "student": float(student), "decision": 1e4 * len(policy_calls),
                               "teacher": 100.0 * teacher}, (name, knob)
            assert sum(seconds.values()) == clock.now - start
            assert clips == {"student": float(student), "teacher": float(teacher)}
        assert len(policy_calls) >= len(counts)  # the batch ran each video's policy, twice where it was stopped


def test_the_timed_pipeline_runs_no_student_for_a_knob_that_reads_none():
    """cd_gate at θ > 1, c = 1 and λ = 0 (or k ≥ N) and cd_topk at c = 1 read no student: the pipeline does not
    run it (one video at a time and in batches), and the decision is uniform_k's; other knobs run it on every clip
    of the videos they read it for."""
    counts = [3, 5, 5, 2]
    pipeline = _fake_pipeline(counts)
    student = pipeline.students["cd"]
    gate, topk, uniform = get_policy("cd_gate"), get_policy("cd_topk"), get_policy("uniform_k")

    def run(spec, knob):
        student.calls.clear()
        alone = [pipeline.run_video(spec, knob, v, torch.Generator()) for v in range(len(counts))]
        alone_calls = list(student.calls)
        student.calls.clear()
        batched = pipeline.run_batch(spec, knob, range(len(counts)), torch.Generator())
        for b, a in zip(batched, alone):
            assert (b.teacher_clips, b.student_clips) == (a.teacher_clips, a.student_clips)
            torch.testing.assert_close(b.probs, a.probs)
        return alone, alone_calls, list(student.calls)

    for knob in ((1.01, 2, 0.0, 1.0), (2.0, 3, 0.0, 1.0), (1.01, 5, 0.5, 1.0)):
        decisions, alone_calls, batch_calls = run(gate, knob)
        assert alone_calls == [] and batch_calls == [], knob
        reference = [pipeline.run_video(uniform, knob[1], v, torch.Generator()) for v in range(len(counts))]
        for decision, expected in zip(decisions, reference):
            assert decision.student_clips == 0 and decision.teacher_clips == expected.teacher_clips
            assert torch.equal(decision.probs, expected.probs)
    decisions, alone_calls, batch_calls = run(topk, (2, 1.0))
    assert alone_calls == [] and batch_calls == [] and all(d.student_clips == 0 for d in decisions)
    # λ > 0 at k = 3: the student term reads the student on the videos of more than 3 clips only
    decisions, alone_calls, batch_calls = run(gate, (1.01, 3, 0.5, 1.0))
    assert alone_calls == [5, 5] and batch_calls == [10]
    assert [d.student_clips for d in decisions] == [0, 5, 5, 0]
    for knob in ((0.5, 2, 0.0, 1.0), (1.01, 2, 0.0, 0.25), (1.01, 2)):  # these read it on every video
        decisions, alone_calls, batch_calls = run(gate, knob)
        assert alone_calls == counts and batch_calls == [sum(counts)], knob
        assert [d.student_clips for d in decisions] == counts
    assert run(topk, (2, 0.0))[1:] == (counts, [sum(counts)])


def test_fastest_parts_are_the_parts_of_each_units_fastest_pass():
    """Against a direct loop: per call and unit, the parts of the pass with the least total, summed over units."""
    g = torch.Generator().manual_seed(0)
    seconds = torch.rand(3, 4, 5, generator=g, dtype=torch.float64)
    parts = torch.rand(3, 4, 5, 2, generator=g, dtype=torch.float64)
    expected = torch.zeros(3, 2, dtype=torch.float64)
    for j in range(3):
        for u in range(5):
            fastest = min(range(4), key=lambda r: float(seconds[j, r, u]))
            expected[j] += parts[j, fastest, u]
    torch.testing.assert_close(fastest_parts(seconds, parts), expected)
    # parts that split each call's time sum to its fastest total
    split = torch.stack([0.25 * seconds, 0.75 * seconds], dim=-1)
    torch.testing.assert_close(fastest_parts(seconds, split).sum(dim=1), fastest_totals(seconds))


def test_achieved_gflop_s_is_gflops_over_seconds():
    # 12 clips of a 0.5-GFLOP model in 0.25 s: 6 GFLOPs in a quarter of a second
    assert achieved_gflop_s(12 * 0.5, 0.25) == pytest.approx(24.0)
    assert achieved_gflop_s(3.0, 1.5) == 3.0 / 1.5
    for seconds in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="seconds must be positive"):
            achieved_gflop_s(1.0, seconds)


def test_ce_baseline_is_the_ce_student_with_the_higher_val_auroc():
    assert ce_baseline({"student_maxprob": 0.6, "ce_all_maxprob": 0.7})["student"] == "ce_all"
    chosen = ce_baseline({"student_maxprob": 0.7, "ce_all_maxprob": 0.6})
    assert chosen == {"student": "ce", "signal": "student_maxprob", "policy": "sampler_maxprob",
                      "val_auroc": {"ce": 0.7, "ce_all": 0.6}}
    assert ce_baseline({"student_maxprob": 0.6, "ce_all_maxprob": 0.6})["student"] == "ce"  # ties
    assert ce_baseline({"student_maxprob": float("nan"), "ce_all_maxprob": 0.4})["student"] == "ce_all"


def test_second_run_loads_the_cached_result(tiny_run):
    cfg, store, result = tiny_run
    # wall-clock times differ between two measurements: equal ones were loaded, not measured again
    assert run_benchmark(cfg, store) == result


def test_a_test_only_override_evaluates_new_test_videos_with_the_same_models(tiny_run):
    cfg, store, _ = tiny_run
    trained = {kind: sorted((store.root / kind).iterdir()) for kind in ("teacher", "student-cd")}
    other = cfg.replace(**{"data.test_informative_fraction": 1.0})
    shifted = trained_models.get_outputs(other, "teacher", "test", store)
    base = trained_models.get_outputs(cfg, "teacher", "test", store)
    assert bool((shifted.informative == 1).all()) and not bool((base.informative == 1).all())
    assert not torch.equal(shifted.logits, base.logits)
    assert {kind: sorted((store.root / kind).iterdir()) for kind in trained} == trained  # nothing retrained


def test_cli_writes_the_json_and_prints_the_table(tiny_run, tmp_path, capsys):
    cfg, store, result = tiny_run
    out = tmp_path / "r.json"
    args = ["bench", "--profile", "ci", "--seed", "0", "--artifacts", str(store.root), "--out", str(out)]
    args += [arg for key, value in TINY.items() for arg in ("--set", f"{key}={value}")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "cd_gate" in printed and "dense teacher" in printed
    assert json.loads(out.read_text())["summary"] == json.loads(json.dumps(result["summary"]))


def test_cli_no_timing_asks_for_the_untimed_benchmark(tiny_run, monkeypatch, capsys):
    from cdlib.experiment import bench as bench_module

    _, store, _ = tiny_run
    asked, real = [], bench_module.run_benchmark
    monkeypatch.setattr(bench_module, "run_benchmark", lambda *a, **kw: asked.append(kw["timing"]) or real(*a, **kw))
    args = ["bench", "--profile", "ci", "--seed", "0", "--artifacts", str(store.root)]
    args += [arg for key, value in TINY.items() for arg in ("--set", f"{key}={value}")]
    assert main([*args, "--no-timing"]) == 0 and main(args) == 0
    assert asked == [False, True]
    assert "dense teacher" in capsys.readouterr().out


def hand_result():
    """A benchmark result with the hand-made curves of :func:`hand_policies` (dense teacher at 10 GFLOPs)."""
    policies = hand_policies()
    for name, points in policies.items():
        for i, p in enumerate(points):
            p.update(knob=[0.9, i + 1, 1.0] if name == "cd_gate" else None, teacher_clips_per_video=i + 1,
                     wall_s_per_video=1.0, wall_videos=100)
            p.setdefault("wall_ratio_to_dense", 1.0)
    policies["dense_student"] = [point(0.5, 0.3)]
    return {"seed": 0, "policies": policies, "selected": select_points(policies), "summary": summarize(policies),
            "config": {"data": {"test_shift": 0.5}}}


def test_the_matched_tables_read_the_points_chosen_on_val():
    result = hand_result()
    matched = matched_accuracy_table(result)
    row = matched.loc["cd_gate"]
    assert row["knob"] == "[0.9, 2, 1.0]" and row["val accuracy"] == 0.6 and row["accuracy"] == 0.62
    assert row["FLOPs ratio"] == pytest.approx(0.35) and row["teacher clips/video"] == 2
    assert row["wall-clock ratio"] == 0.45 and row["throughput ratio"] == 0.4 and row["timed videos"] == 100
    assert matched.loc["dense_student"].isna()[["accuracy", "FLOPs ratio"]].all()  # never matched on val
    upper = matched_accuracy_table(result, upper_bound=True).loc["cd_gate"]
    assert upper["accuracy"] == 0.7 and upper["FLOPs ratio"] == pytest.approx(0.2)
    # within a budget on val: the most accurate val point, its test accuracy
    compute = matched_compute_table(result, budgets=(0.1, 0.25, 0.5))
    assert list(compute.columns) == [0.1, 0.25, 0.5] and compute.columns.name == BUDGET_AXIS  # keyed by value
    assert compute.loc["cd_gate", 0.25] == 0.7 and compute.loc["cd_gate", 0.5] == 0.66
    assert pd.isna(compute.loc["cd_gate", 0.1]) and compute.loc["dense_student", 0.1] == 0.3
    # the chapter's selection: the mean over seeds, by the budget's value
    means = pd.concat([compute, compute]).groupby("policy", sort=False).mean()
    assert means.loc["cd_gate", 0.25] == 0.7 and list(means.columns) == [0.1, 0.25, 0.5]
    headline = headline_table(result).loc["cd_gate"]
    assert headline["best accuracy"] == 0.66 and headline["best accuracy (upper bound)"] == 0.8
    assert headline["matched: accuracy"] == 0.62 and headline["best: FLOPs ratio"] == pytest.approx(0.5)


def timed_point(preprocess, student, decision, teacher, scale=0.5):
    """A point timed in both modes: seconds per stage one video at a time, ``scale`` times that in batches, each
    total a millisecond above its stages (the calls' entry and exit)."""
    stages = dict(preprocess=preprocess, student=student, decision=decision, teacher=teacher)
    point = {f"{stage}_s": value for stage, value in stages.items()}
    point.update({f"throughput_{stage}_s": scale * value for stage, value in stages.items()})
    return {**point, "wall_s_per_video": sum(stages.values()) + 1e-3,
            "throughput_s_per_video": scale * sum(stages.values()) + 1e-3}


def test_the_time_breakdown_tables_average_the_stages_and_the_rates_over_results():
    def result(seed, matched):
        return {"seed": seed, "summary": {"method": {"policy": "cd_gate",
                                                     "val_auc_vs_oracle": {"cd_gate": 0.5, "cd_gate_ctx": 0.4}}},
                "policies": {"dense_teacher": [timed_point(0.01, 0.0, 0.002, 0.1 * (seed + 1))],
                             "dense_student": [timed_point(0.01, 0.02, 0.002, 0.0)],
                             "cd_gate": [timed_point(0.01, 0.02, 0.004, 0.03), timed_point(0.01, 0.02, 0.004, 0.05)]},
                "selected": {"cd_gate": {"matched": matched}},
                "wall_clock": {"achieved_gflop_s": {"latency": {"teacher": 10.0 * (seed + 1), "cd": 2.0},
                                                    "throughput": {"teacher": 40.0, "cd": 4.0 + seed}}}}

    table = time_breakdown_table([result(0, 1), result(1, 1)])
    assert list(table.columns) == ["preprocess", "student", "decision", "teacher", "total"]
    assert table.index.names == ["point", "mode"]
    assert table.loc[("dense teacher", "latency")].tolist() == pytest.approx([10, 0, 2, 150, 163])  # ms, mean
    assert table.loc[("dense teacher", "throughput")].tolist() == pytest.approx([5, 0, 1, 75, 82])
    assert table.loc[("method", "latency")].tolist() == pytest.approx([10, 20, 4, 50, 85])  # cd_gate's point 1
    unmatched = time_breakdown_table([result(0, None)])
    assert unmatched.loc[("method", "latency")].isna().all() and not unmatched.loc["dense student"].isna().any().any()
    rates = achieved_gflop_s_table([result(0, 1), result(1, 1)])
    assert rates.index.name == "model" and list(rates.columns) == ["latency", "throughput"]
    assert rates.loc["teacher"].tolist() == [15.0, 40.0] and rates.loc["cd"].tolist() == [2.0, 4.5]
    numbers = timing_numbers(table, rates, "cd")
    assert numbers["rate_ratio"] == pytest.approx(7.5) and numbers["time_ratio"] == pytest.approx(85 / 163)
    # the method's 20 ms of student at the teacher's 15 GFLOP/s instead of its 2: 20 · 2/15 ms, the rest unchanged
    assert numbers["floor_ratio"] == pytest.approx((10 + 4 + 50 + 20 * 2 / 15) / 163)
    assert numbers["fixed_ratio"] == pytest.approx(64 / 163)


def test_sweep_table_reads_the_swept_value_from_each_result():
    result = hand_result()
    assert config_value(result, "data.test_shift") == 0.5
    table = sweep_table([result], "data.test_shift", budget=0.5)
    row = table[table.policy == "cd_gate"].iloc[0]
    assert row["data.test_shift"] == 0.5 and row["best accuracy"] == 0.66
    assert row["best accuracy (upper bound)"] == 0.8
    assert row["accuracy within budget"] == 0.66 and row["FLOPs ratio at dense accuracy"] == pytest.approx(0.35)
    assert row["accuracy at matched point"] == 0.62 and row["dense teacher accuracy"] == 0.65
    assert pd.isna(table[table.policy == "dense_student"].iloc[0]["FLOPs ratio at dense accuracy"])


def outputs_for_tables():
    """Teacher and student outputs on 4 clips of 2 videos: clips 0 and 2 show the action."""
    labels, video = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 1, 1])
    informative = torch.tensor([1, 0, 1, 0], dtype=torch.int8)
    teacher = clip_outputs(torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, 3.0], [0.0, 2.0]]), labels, video,
                           informative=informative)
    by_student = {v: clip_outputs(torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), labels, video,
                                  score_logit=torch.tensor([2.0, -2.0, 1.0, 0.0]), informative=informative)
                  for v in students.STUDENTS}
    return {"teacher": teacher, **by_student}


def test_accuracy_table_by_clip_group_and_video():
    table = accuracy_table(outputs_for_tables())
    # teacher: right on clips 0, 2, 3; wrong on 1; both videos right by dense averaging
    assert table.loc["teacher", "clip accuracy"] == 0.75
    assert table.loc["teacher", "action clips"] == 1.0 and table.loc["teacher", "non-action clips"] == 0.5
    assert table.loc["teacher", "video accuracy"] == 1.0
    assert table.loc["ce", "clip accuracy"] == 0.75 and table.loc["ce", "action clips"] == 0.5


def test_action_selection_table_against_a_direct_count():
    from cdlib.experiment.tables import action_selection_table

    # video 0: clips 0 (action, teacher says 0), 1 (action, says 1), 2 (no action, says 0), label 0;
    # video 1: clips 3 (no action, says 1), 4 (action, says 0), label 1; video 2: clip 5 (no action), label 1
    video, labels = torch.tensor([0, 0, 0, 1, 1, 2]), torch.tensor([0, 0, 0, 1, 1, 1])
    logits = torch.tensor([[3.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 3.0]])
    informative = torch.tensor([1, 1, 0, 0, 1, 0], dtype=torch.int8)
    teacher = clip_outputs(logits, labels, video, informative=informative)
    # the student's top clip: video 0 clip 1 (action), video 1 clip 3 (not), video 2 clip 5 (not)
    cd = clip_outputs(logits, labels, video, score_logit=torch.tensor([0.0, 2.0, 1.0, 3.0, -1.0, 0.0]),
                      informative=informative)
    table = action_selection_table({"teacher": teacher, "cd": cd})
    assert table["teacher right on action clips"] == pytest.approx(1 / 3)  # right on clip 0 only
    # the mean over the action clips: video 0 (clips 0, 1) right, video 1 (clip 4) wrong, video 2 has none
    assert table["teacher mean over the action clips"] == pytest.approx(1 / 3)
    assert table["top clip shows the action (cd)"] == pytest.approx(1 / 3)
    real = clip_outputs(logits, labels, video)  # no annotation: nothing to say
    assert action_selection_table({"teacher": real, "cd": cd}).empty


def test_signal_table_against_direct_auroc():
    outputs = outputs_for_tables()
    table = signal_table(outputs).set_index(["signal", "group"])
    right = torch.tensor([True, False, True, True])
    cd = torch.sigmoid(outputs["cd"].score_logit)
    # AUROC by counting pairs (right clip, wrong clip) ordered correctly: 3 of 3
    assert table.loc[("cd", "all"), "auroc"] == 1.0 == auroc(cd, right)
    assert table.loc[("cd", "all"), "teacher right"] == 0.75
    assert table.loc[("cd", "all"), "mean signal"] == pytest.approx(float(cd.mean()))
    assert table.loc[("cd", "non-action"), "clips"] == 2
    # on the action clips the teacher is always right: AUROC is undefined there
    assert pd.isna(table.loc[("cd", "action"), "auroc"])
    assert set(table.index.get_level_values("signal")) >= {"cd", "student_maxprob", "kd_maxprob", "teacher_maxprob"}


def test_an_untimed_request_returns_the_cached_timed_result(tiny_run):
    cfg, store, result = tiny_run
    assert run_benchmark(cfg, store, timing=False) == result
    assert not (store.root / "bench" / store.key(benchmark_spec(cfg, timing=False))).exists()


def test_a_newly_registered_policy_appears_in_the_results_and_the_figures(tiny_run, tmp_path, request):
    """Nothing lists the policies by hand: one registered here reaches the JSON, the summary and the plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cdlib.book.viz import plot_accuracy_vs_compute, plot_sweep
    from cdlib.method import gating

    def first_k(video, k, *, generator=None, memo=None):
        """Teacher mean over the first ``min(k, N)`` clips."""
        return gating._teacher_mean(video, torch.arange(min(k, video.num_clips)), 0)

    gating.register_policy(gating.PolicySpec("first_k", first_k, "k", None, False, False, "teacher on the first k clips"))
    request.addfinalizer(lambda: gating.POLICIES.unregister("first_k"))
    _, store, _ = tiny_run
    result = run_benchmark(tiny_config(), store, recompute=True, timing=False)
    points = result["policies"]["first_k"]
    assert [p["knob"] for p in points] == [1, 2, 3, 4]
    assert points[-1]["accuracy"] == result["policies"]["dense_teacher"][0]["accuracy"]  # all clips: dense
    assert "first_k" in result["summary"]["auc_vs_oracle"]
    ax = plot_accuracy_vs_compute([result])
    assert "first_k" in ax.get_legend_handles_labels()[1]
    table = pd.DataFrame([{"policy": name, "x": 1.0, "accuracy": pts[0]["accuracy"]}
                          for name, pts in result["policies"].items()])
    ax = plot_sweep(table, "x", "accuracy")
    assert "first_k" in ax.get_legend_handles_labels()[1]
    plt.close("all")


def test_the_method_page_names_every_registered_piece_and_every_key_of_a_real_result(tiny_run):
    """book/method.md is the reference a reader opens: no registered policy, confidence target, student
    variant or inference backend, and no top-level key, data key or selection of a real benchmark result, may be missing from it."""
    import re
    from pathlib import Path

    from cdlib.method.losses import list_targets
    from cdlib.models.backends import list_backends

    page = (Path(__file__).resolve().parent.parent / "book" / "method.md").read_text()
    named = set(re.findall(r"`([^`]+)`", page))
    _, _, result = tiny_run
    selections = {key for picks in result["selected"].values() for key in picks}
    expected = [*list_policies(), *list_targets(), *students.STUDENTS, *list_backends(), *result, *selections,
                "val_videos", "test_videos", "skipped", "backend", "prepare_s"]
    assert [name for name in expected if name not in named] == []


def test_distance_table_averages_each_candidate_over_seeds_per_swept_value():
    from cdlib.experiment.tables import chosen_distance, distance_table

    def result(seed, shift, chosen, aurocs):
        candidates = {f"{m}@0.99": {"method": m, "quantile": 0.99, "val_auroc": v, "test_auroc": t}
                      for m, (v, t) in aurocs.items()}
        return {"seed": seed, "config": {"data": {"test_shift": shift}},
                "distance": {"chosen": chosen, "candidates": candidates}}

    results = [result(0, 0.0, "gaussian@0.99", {"gaussian": (0.8, 0.9), "knn": (0.7, 0.6)}),
               result(0, 1.0, "gaussian@0.99", {"gaussian": (0.8, 0.5), "knn": (0.7, 0.4)}),
               result(1, 0.0, "knn@0.99", {"gaussian": (0.6, 0.7), "knn": (0.9, 0.8)}),
               result(1, 1.0, "knn@0.99", {"gaussian": (0.6, 0.3), "knn": (0.9, 0.2)})]
    table = distance_table(results, "data.test_shift")
    assert list(table.columns) == ["val AUROC", 0.0, 1.0]
    assert table.loc[("gaussian", 0.99), "val AUROC"] == pytest.approx(0.7)  # once per seed, not per shift
    assert table.loc[("gaussian", 0.99), 1.0] == pytest.approx(0.4)
    assert table.loc[("knn", 0.99), 0.0] == pytest.approx(0.7)
    assert chosen_distance(results) == "gaussian@0.99 (1 seed), knn@0.99 (1 seed)"
    assert chosen_distance(results[:2]) == "gaussian@0.99"


def test_a_benchmark_of_some_policies_trains_only_their_students_and_gives_their_numbers(tiny_run, monkeypatch):
    """bench.policies=cd_gate: the teacher and the CD student only, and the same points as the full benchmark."""
    cfg, store, full = tiny_run
    from cdlib.experiment import evaluation

    built = []

    def recording(function):
        def call(config, which, *args, **kwargs):
            built.append(which)
            return function(config, which, *args, **kwargs)
        return call

    for module in (trained_models, distance_student, context_student, exit_gate, evaluation):  # where each is looked up
        for name in ("get_model", "get_outputs"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, recording(getattr(module, name)))
    result = run_benchmark(cfg.replace(**{"bench.policies": "cd_gate"}), store, timing=False)
    assert set(built) == {"teacher", "cd"}
    assert list(result["policies"]) == ["dense_teacher", "cd_gate", "oracle"]
    for name, points in result["policies"].items():
        keys = ("knob", "accuracy", "gflops_per_video", "val_accuracy", "val_gflops_per_video")
        assert [[p[k] for k in keys] for p in points] == [[p[k] for k in keys] for p in full["policies"][name]], name
    assert set(result["confidence_auroc"]) == {"cd", "cd_maxprob", "teacher_maxprob"}
    assert result["confidence_auroc"]["cd"] == full["confidence_auroc"]["cd"]
    assert set(result["cost"]["gflops_per_clip"]) == {"teacher", "cd"}
    summary = result["summary"]
    for key in ("cd_auc_vs_oracle", "cd_best_accuracy", "cd_gflops_ratio_at_dense_accuracy", "dense_teacher_accuracy"):
        assert summary[key] == full["summary"][key], key
    assert summary["sampler_maxprob_auc_vs_oracle"] is None and summary["ce_baseline"] is None
    assert result["distance"] is None
    printed = format_table(result)  # what `bench` prints: the cd_gate lines, no CE baseline
    assert "cd_gate at the best point on val" in printed and "CE baseline" not in printed


def test_harder_data_retrains_on_the_fraction_for_the_method_and_the_ce_sampler(monkeypatch):
    from cdlib.experiment import bench

    calls = []
    monkeypatch.setattr(bench, "run_benchmark", lambda cfg, store=None, timing=True: calls.append((cfg, timing)))
    bench.harder_data(tiny_config(), 0.2)
    (cfg, timing), = calls
    assert cfg.data.informative_fraction == 0.2 and not timing
    assert cfg.bench.policies == bench.HARDER_DATA_POLICIES == ("sampler_maxprob", "cd_gate", "cd_gate_ctx", "frame_exit")
    assert cfg.replace(**{"data.informative_fraction": 0.3, "bench.policies": ()}) == tiny_config()


def test_accuracy_vs_compute_figure_fills_the_column_with_few_curves_per_panel_and_leaves_no_policy_out(tiny_run):
    """Every panel: the method emphasised, at most viz.MAX_CURVES coloured curves, each in its policy's colour;
    every policy of the result drawn in some panel; the figure as wide as the book's column, no text smaller
    than the caption's once shown there."""
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt

    from cdlib.book import viz

    _, _, result = tiny_run
    viz.setup()
    fig = viz.accuracy_vs_compute_figure([result], "cd_gate")
    assert fig.get_size_inches()[0] == pytest.approx(viz.FIGURE_WIDTH_IN)
    drawn = set()
    labels = {label: name for name, (label, _) in viz.POLICY_STYLE.items()}
    for ax in fig.axes:
        handles = dict(zip(*reversed(ax.get_legend_handles_labels())))
        coloured = {labels[label]: handle for label, handle in handles.items() if label in labels}
        assert len(set(coloured) - {"dense_teacher", "dense_student"}) <= viz.MAX_CURVES
        widths = {name: h.get_linewidth() for name, h in coloured.items() if hasattr(h, "get_linewidth")}
        assert widths["cd_gate"] == max(widths.values())
        for name, handle in coloured.items():
            line = handle if hasattr(handle, "get_color") else handle.lines[0]
            assert mcolors.same_color(line.get_color(), viz.POLICY_STYLE[name][1])
        drawn |= set(coloured)
        if "other policies (grey)" in handles:
            drawn |= set(result["policies"]) - set(coloured)
    assert drawn >= set(result["policies"])
    shown_px_per_pt = viz.CONTENT_WIDTH_PX / (viz.FIGURE_WIDTH_IN * 72)
    sizes = [text.get_fontsize() for text in fig.findobj(plt.Text) if text.get_text()]
    assert min(sizes) * shown_px_per_pt >= viz.CAPTION_FONT_PX
    plt.close("all")
