"""The numbers the chapters glue (cdlib.experiment.claims and the book's helpers in cdlib.experiment.tables): means
over seeds through folds.aggregate against a direct computation, the one AUROC-lift rule, and the conclusions'
claims table and numbers on a tiny benchmark run."""

from __future__ import annotations

import math
import statistics

import pytest

from cdlib.experiment import claims, tables
from cdlib.experiment.bench import run_benchmark
from cdlib.experiment.config import profile_config
from cdlib.experiment.evaluation import collect_outputs
from cdlib.runtime.artifacts import ArtifactStore

TINY = {
    "data.num_classes": 3, "data.height": 16, "data.width": 16, "data.video_length": 32,
    "data.num_train": 12, "data.num_val": 6, "data.num_test": 6,
    "teacher_train.epochs": 1, "teacher_train.batch_size": 16,
    "student_train.epochs": 1, "student_train.batch_size": 16,
    "bench.thetas": "0.5,1.01", "bench.random_repeats": 2, "bench.wall_videos": 2, "bench.wall_repeats": 1,
    "bench.throughput_batch": 4,
}


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


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    store = ArtifactStore(tmp_path_factory.mktemp("artifacts"))
    cfg = profile_config("ci", 0).replace(**TINY)
    return cfg, store, run_benchmark(cfg, store)


def test_claims_table_and_conclusions_numbers_on_a_tiny_run(tiny_run):
    cfg, store, result = tiny_run
    results = [result]
    table = claims.claims_table(results, results, results, shift=1.0, hard_rho=0.2, budget=0.25)
    assert list(table.columns) == claims.CLAIM_COLUMNS[1:] and len(table) == 11
    assert table.index[0] == "accuracy gain over dense averaging"
    assert f"{100 * result['summary']['cd_accuracy_gain']:+.1f} points" in table.iloc[0, -1]
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
