"""The benchmark (cdlib.bench) and the runs it builds on (cdlib.runs): curve summaries against direct
computations, the JSON contract of DESIGN.md §4.2 on a tiny end-to-end run, caching, and which config
fields retrain which models."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from cdlib import runs
from cdlib.__main__ import main
from cdlib.artifacts import ArtifactStore
from cdlib.bench import (
    accuracy_table,
    benchmark_spec,
    best_within,
    config_value,
    curve_area,
    first_reaching,
    matched_accuracy_table,
    matched_compute_table,
    pareto_front,
    run_benchmark,
    signal_table,
    summarize,
    sweep_table,
)
from cdlib.calibration import auroc
from cdlib.config import profile_config
from cdlib.errors import ConfigError
from cdlib.gating import list_policies

TINY = {
    "data.num_classes": 3, "data.height": 16, "data.width": 16, "data.video_length": 32,
    "data.num_train": 12, "data.num_val": 6, "data.num_test": 6,
    "teacher_train.epochs": 1, "teacher_train.batch_size": 16,
    "student_train.epochs": 1, "student_train.batch_size": 16,
    "bench.thetas": "0.5,1.01", "bench.random_repeats": 2, "bench.wall_videos": 2, "bench.wall_repeats": 1,
}


def tiny_config(**overrides):
    return profile_config("ci", 0).replace(**{**TINY, **overrides})


def point(gflops, accuracy):
    return {"gflops_per_video": gflops, "accuracy": accuracy}


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


def test_first_reaching_is_the_cheapest_point_at_or_above_the_accuracy():
    points = [point(3, 0.8), point(1, 0.5), point(2, 0.8)]
    assert first_reaching(points, 0.8) == point(2, 0.8)
    assert first_reaching(points, 0.9) is None


def test_summarize_against_hand_computed_values():
    dense = {**point(10, 0.6), "wall_s_per_video": 2.0, "wall_ratio_to_dense": 1.0}
    policies = {name: [point(10, 0.6)] for name in list_policies()}
    policies["dense_teacher"] = [dense]
    policies["oracle"] = [point(1, 1.0)]
    policies["sampler_maxprob"] = [point(5, 0.6)]
    policies["cd_gate"] = [{**point(2, 0.5), "wall_s_per_video": 0.5, "wall_ratio_to_dense": 0.3},
                           {**point(4, 0.7), "wall_s_per_video": 1.0, "wall_ratio_to_dense": 0.45}]
    s = summarize(policies)
    assert s["dense_teacher_accuracy"] == 0.6 and s["dense_teacher_gflops_per_video"] == 10
    assert s["cd_gflops_ratio_at_dense_accuracy"] == pytest.approx(0.4)
    assert s["cd_wall_ratio_at_dense_accuracy"] == 0.45  # the paired ratio of the matched point
    assert s["cd_best_accuracy"] == 0.7 and s["cd_accuracy_gain"] == pytest.approx(0.1)
    oracle_area = 1.0 * 9
    assert s["cd_auc_vs_oracle"] == pytest.approx((0.5 * 2 + 0.7 * 6) / oracle_area)
    assert s["sampler_maxprob_auc_vs_oracle"] == pytest.approx(0.6 * 5 / oracle_area)
    policies["cd_gate"] = [point(2, 0.5)]
    assert summarize(policies)["cd_gflops_ratio_at_dense_accuracy"] is None
    policies["oracle"] = [point(10, 1.0)]  # no oracle point below the dense teacher's cost: no area to compare
    assert pd.isna(summarize(policies)["cd_auc_vs_oracle"])


def test_test_only_data_fields_do_not_retrain_models():
    cfg = tiny_config()
    for key, value in (("data.test_shift", 0.5), ("data.test_informative_fraction", 1.0), ("data.num_test", 9)):
        other = cfg.replace(**{key: value})
        for which in ("teacher", *runs.STUDENT_VARIANTS):
            assert runs.model_spec_of(other, which) == runs.model_spec_of(cfg, which), (key, which)
        assert runs.data_spec(other, "test") != runs.data_spec(cfg, "test")
        assert runs.data_spec(other, "val") == runs.data_spec(cfg, "val")
    trained_on = cfg.replace(**{"data.informative_fraction": 0.5})
    assert runs.model_spec_of(trained_on, "teacher") != runs.model_spec_of(cfg, "teacher")


def test_the_ce_student_trains_on_the_teachers_clips_and_the_others_on_every_clip():
    cfg = tiny_config(**{"teacher_train.clips": "action", "student_train.clips": "all"})
    assert runs.student_train_config(cfg, "ce").clips == "action"
    assert runs.student_train_config(cfg, "kd").clips == "all"
    assert runs.student_train_config(cfg, "cd").clips == "all"
    assert runs.student_spec(cfg, "ce")["train"]["clips"] == "action"
    assert runs.student_train_config(cfg.replace(ce_student_clips="all"), "ce").clips == "all"
    with pytest.raises(ConfigError, match="ce_student_clips"):
        runs.student_train_config(cfg.replace(ce_student_clips="some"), "ce")
    with pytest.raises(ValueError, match="variant"):
        runs.student_train_config(cfg, "xx")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    store = ArtifactStore(tmp_path_factory.mktemp("artifacts"))
    cfg = tiny_config()
    return cfg, store, run_benchmark(cfg, store)


def test_benchmark_json_holds_every_contract_key(tiny_run):
    cfg, _, result = tiny_run
    assert result["version"] == 1 and result["profile"] == "ci" and result["seed"] == 0
    assert set(result) >= {"data", "config_hash", "cost", "policies", "confidence_auroc", "summary"}
    assert set(result["cost"]) >= {"teacher_gflops_per_clip", "student_gflops_per_clip", "clips_per_video"}
    assert result["cost"]["clips_per_video"] == 4
    assert set(result["policies"]) == set(list_policies())
    for name, points in result["policies"].items():
        assert points, name
        for p in points:
            assert set(p) >= {"knob", "accuracy", "gflops_per_video", "teacher_clips_per_video", "wall_s_per_video",
                              "wall_ratio_to_dense"}
            assert 0 <= p["accuracy"] <= 1 and p["gflops_per_video"] >= 0 and p["wall_s_per_video"] > 0
    # each policy sweeps its knob over its whole range: k = 1..N, theta x k for cd_gate
    assert [p["knob"] for p in result["policies"]["uniform_k"]] == [1, 2, 3, 4]
    assert len(result["policies"]["cd_gate"]) == 2 * 4
    assert set(result["confidence_auroc"]) >= {"cd", "student_maxprob", "kd_maxprob"}
    assert set(result["summary"]) >= {
        "dense_teacher_accuracy", "dense_teacher_gflops_per_video", "cd_gflops_ratio_at_dense_accuracy",
        "cd_best_accuracy", "cd_accuracy_gain", "cd_auc_vs_oracle", "sampler_maxprob_auc_vs_oracle",
        "cd_wall_ratio_at_dense_accuracy",
    }
    dense = result["policies"]["dense_teacher"][0]
    assert dense["wall_ratio_to_dense"] == 1.0
    assert result["policies"]["dense_student"][0]["wall_ratio_to_dense"] < 1  # no teacher at all
    assert dense["gflops_per_video"] == pytest.approx(4 * result["cost"]["teacher_gflops_per_clip"])
    assert dense["teacher_clips_per_video"] == 4


def test_second_run_loads_the_cached_result(tiny_run):
    cfg, store, result = tiny_run
    # wall-clock times differ between two measurements: equal ones were loaded, not measured again
    assert run_benchmark(cfg, store) == result


def test_a_test_only_override_evaluates_new_test_videos_with_the_same_models(tiny_run):
    cfg, store, _ = tiny_run
    trained = {kind: sorted((store.root / kind).iterdir()) for kind in ("teacher", "student-cd")}
    other = cfg.replace(**{"data.test_informative_fraction": 1.0})
    shifted, base = runs.get_outputs(other, "teacher", "test", store), runs.get_outputs(cfg, "teacher", "test", store)
    assert bool((shifted["informative"] == 1).all()) and not bool((base["informative"] == 1).all())
    assert not torch.equal(shifted["logits"], base["logits"])
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


def hand_result():
    """A benchmark result with hand-made curves: dense teacher at 10 GFLOPs and 0.6 accuracy."""
    dense = {**point(10, 0.6), "knob": None, "teacher_clips_per_video": 4, "wall_s_per_video": 2.0,
             "wall_ratio_to_dense": 1.0}
    policies = {name: [{**point(10, 0.6), "knob": 4, "teacher_clips_per_video": 4, "wall_s_per_video": 2.0,
                        "wall_ratio_to_dense": 1.0}]
                for name in list_policies()}
    policies["dense_teacher"] = [dense]
    policies["oracle"] = [{**point(2.5, 1.0), "knob": 1, "teacher_clips_per_video": 1, "wall_s_per_video": 2.0,
                           "wall_ratio_to_dense": 1.0}]
    policies["cd_gate"] = [
        {**point(1, 0.5), "knob": [0.5, 1], "teacher_clips_per_video": 0.5, "wall_s_per_video": 0.4,
         "wall_ratio_to_dense": 0.2},
        {**point(3, 0.7), "knob": [0.9, 1], "teacher_clips_per_video": 1, "wall_s_per_video": 0.8,
         "wall_ratio_to_dense": 0.4},
        {**point(6, 0.8), "knob": [0.9, 2], "teacher_clips_per_video": 2, "wall_s_per_video": 1.2,
         "wall_ratio_to_dense": 0.6},
    ]
    policies["dense_student"] = [{**point(0.5, 0.3), "knob": None, "teacher_clips_per_video": 0,
                                  "wall_s_per_video": 0.2, "wall_ratio_to_dense": 0.1}]
    return {"seed": 0, "policies": policies, "summary": summarize(policies),
            "config": {"data": {"test_shift": 0.5}}}


def test_best_within_and_the_matched_tables():
    result = hand_result()
    cd = result["policies"]["cd_gate"]
    assert best_within(cd, 2.9) == 0.5 and best_within(cd, 3) == 0.7 and best_within(cd, 100) == 0.8
    assert best_within(cd, 0.5) != best_within(cd, 0.5)  # NaN: nothing that cheap
    matched = matched_accuracy_table(result)
    assert matched.loc["cd_gate", "knob"] == "[0.9, 1]"
    assert matched.loc["cd_gate", "FLOPs ratio"] == pytest.approx(0.3)
    assert matched.loc["cd_gate", "wall-clock ratio"] == pytest.approx(0.4)
    assert matched.loc["cd_gate", "teacher clips/video"] == 1
    assert matched.loc["dense_student"].isna()[["accuracy", "FLOPs ratio"]].all()
    compute = matched_compute_table(result, budgets=(0.1, 0.5))
    assert list(compute.columns) == ["≤ 10%", "≤ 50%"]
    assert compute.loc["cd_gate", "≤ 10%"] == 0.5 and compute.loc["cd_gate", "≤ 50%"] == 0.7
    assert compute.loc["dense_student", "≤ 10%"] == 0.3 and pd.isna(compute.loc["uniform_k", "≤ 10%"])


def test_sweep_table_reads_the_swept_value_from_each_result():
    result = hand_result()
    assert config_value(result, "data.test_shift") == 0.5
    table = sweep_table([result], "data.test_shift", budget=0.5)
    row = table[table.policy == "cd_gate"].iloc[0]
    assert row["data.test_shift"] == 0.5 and row["best accuracy"] == 0.8
    assert row["accuracy within budget"] == 0.7 and row["FLOPs ratio at dense accuracy"] == pytest.approx(0.3)
    assert row["dense teacher accuracy"] == 0.6
    assert pd.isna(table[table.policy == "dense_student"].iloc[0]["FLOPs ratio at dense accuracy"])


def outputs_for_tables():
    """Teacher and student outputs on 4 clips of 2 videos: clips 0 and 2 show the action."""
    labels = torch.tensor([0, 0, 1, 1])
    base = {"labels": labels, "video": torch.tensor([0, 0, 1, 1]), "position": torch.tensor([0, 1, 0, 1]),
            "informative": torch.tensor([1, 0, 1, 0], dtype=torch.int8)}
    teacher = {**base, "logits": torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, 3.0], [0.0, 2.0]])}
    students = {v: {**base, "logits": torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]),
                    "score_logit": torch.tensor([2.0, -2.0, 1.0, 0.0])} for v in runs.STUDENT_VARIANTS}
    return {"teacher": teacher, **students}


def test_accuracy_table_by_clip_group_and_video():
    table = accuracy_table(outputs_for_tables())
    # teacher: right on clips 0, 2, 3; wrong on 1; both videos right by dense averaging
    assert table.loc["teacher", "clip accuracy"] == 0.75
    assert table.loc["teacher", "action clips"] == 1.0 and table.loc["teacher", "non-action clips"] == 0.5
    assert table.loc["teacher", "video accuracy"] == 1.0
    assert table.loc["ce", "clip accuracy"] == 0.75 and table.loc["ce", "action clips"] == 0.5


def test_signal_table_against_direct_auroc():
    outputs = outputs_for_tables()
    table = signal_table(outputs).set_index(["signal", "group"])
    right = torch.tensor([True, False, True, True])
    cd = torch.sigmoid(outputs["cd"]["score_logit"])
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
