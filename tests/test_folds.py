"""Several folds (cdlib.experiment.folds): mean ± std against a direct computation, and ``bench --data <source>:all`` end
to end, with a broken video named on stderr and in ``data.skipped``."""

from __future__ import annotations

import json
import math
import statistics

import pandas as pd
import pytest

from cdlib.__main__ import main
from cdlib.experiment import folds
from cdlib.experiment.config import profile_config


def fake_result(fold, seed, dense, ratio, auroc, skipped=()):
    return {
        "seed": seed,
        "config": {"data": {"source": f"ucf101:/d:{fold}"}},
        "summary": {"dense_teacher_accuracy": dense, "cd_gflops_ratio_at_dense_accuracy": ratio, "selection": "val",
                    "gflops_ratio_at_dense_accuracy": {"cd_gate": ratio, "oracle": 0.25}},
        "confidence_auroc": {"cd": auroc},
        "data": {"skipped": [{"path": p, "reason": "truncated"} for p in skipped]},
    }


def test_aggregate_against_a_direct_computation():
    results = [fake_result(1, 0, 0.5, 0.4, 0.8, ["/d/a.avi"]), fake_result(2, 0, 0.7, None, 0.9, ["/d/a.avi"]),
               fake_result(3, 0, 0.75, 0.6, 0.7, ["/d/b.avi"])]
    over = folds.aggregate(results, source="ucf101:/d:all")
    summary = over["aggregate"]["summary"]
    dense = summary["dense_teacher_accuracy"]
    assert dense["n"] == 3 and dense["mean"] == pytest.approx(statistics.mean([0.5, 0.7, 0.75]))
    assert dense["std"] == pytest.approx(statistics.stdev([0.5, 0.7, 0.75]))  # the sample std, n - 1
    ratio = summary["cd_gflops_ratio_at_dense_accuracy"]  # not reached in fold 2: missing, not zero
    assert ratio == {"mean": pytest.approx(0.5), "std": pytest.approx(math.sqrt(0.02)), "n": 2}
    assert summary["gflops_ratio_at_dense_accuracy"]["oracle"] == {"mean": 0.25, "std": 0.0, "n": 3}
    assert "selection" not in summary  # text is not averaged
    assert over["aggregate"]["confidence_auroc"]["cd"]["mean"] == pytest.approx(0.8)
    assert "upper_bound" not in over["aggregate"]  # blocks the results lack are left out
    assert over["runs"] == [{"fold": 1, "seed": 0}, {"fold": 2, "seed": 0}, {"fold": 3, "seed": 0}]
    assert over["data"]["skipped"] == [{"path": "/d/a.avi", "reason": "truncated"},
                                       {"path": "/d/b.avi", "reason": "truncated"}]
    single = folds.aggregate(results[:1])
    assert single["aggregate"]["summary"]["dense_teacher_accuracy"] == {"mean": 0.5, "std": None, "n": 1}
    assert folds.mean_std_text(dense) == f"{statistics.mean([0.5, 0.7, 0.75]):.3f} ± {statistics.stdev([0.5, 0.7, 0.75]):.3f}"
    assert folds.mean_std_text({"mean": 0.5, "std": None, "n": 1}) == "0.500"
    assert folds.mean_std_text({"mean": None, "std": None, "n": 0}) == "none"


def test_fold_table_lists_each_run_then_mean_std_and_count():
    results = [fake_result(1, 0, 0.5, 0.4, 0.8), fake_result(2, 0, 0.7, None, 0.9)]
    table = folds.fold_table(folds.aggregate(results), keys=["dense_teacher_accuracy", "gflops_ratio_at_dense_accuracy.cd_gate"])
    assert list(table.columns) == ["fold 1", "fold 2", "mean", "std", "n"]
    assert list(table.index) == ["dense_teacher_accuracy", "gflops_ratio_at_dense_accuracy.cd_gate"]
    assert math.isnan(table.loc["gflops_ratio_at_dense_accuracy.cd_gate", "fold 2"])
    assert table.loc["gflops_ratio_at_dense_accuracy.cd_gate", "n"] == 1
    seeds = [fake_result(1, 0, 0.5, 0.4, 0.8), fake_result(1, 1, 0.7, 0.4, 0.9)]
    assert list(folds.fold_table(folds.aggregate(seeds)).columns[:2]) == ["fold 1, seed 0", "fold 1, seed 1"]


def test_fold_configs(weizmann_rgb_dir):
    cfg = profile_config("ci")
    assert folds.fold_configs(cfg) == [cfg]
    many = folds.fold_configs(cfg.replace(**{"data.source": f"ucf101:{weizmann_rgb_dir}:all"}))
    assert [c.data.source for c in many] == [f"ucf101:{weizmann_rgb_dir}:{f}" for f in (1, 2, 3)]
    assert all(c.replace(**{"data.source": "synthetic"}) == cfg for c in many)


TINY = {
    "data.height": 16, "data.width": 16, "teacher_train.epochs": 1, "teacher_train.batch_size": 16,
    "student_train.epochs": 1, "student_train.batch_size": 16, "student_train.clips_per_video": 0,
    "bench.thetas": "0.5,1.01", "bench.random_repeats": 2, "bench.wall_videos": 2, "bench.wall_repeats": 1,
}


def test_bench_runs_every_fold_and_names_a_broken_video(tmp_path, make_ucf101_tree, write_video, make_frames, capsys):
    tree = make_ucf101_tree(tmp_path / "tree")  # folds 1 and 2; group 2 is in train in both
    broken = tree / "Alpha" / "v_Alpha_g02_c01.avi"
    broken.write_bytes(write_video(tmp_path / "long.avi", make_frames(200, 64, 64)).read_bytes()[:3000])
    out = tmp_path / "r.json"
    args = ["bench", "--data", f"ucf101:{tree}:all", "--artifacts", str(tmp_path / "store"), "--out", str(out)]
    args += [arg for key, value in TINY.items() for arg in ("--set", f"{key}={value}")]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert f"skipped {broken}: " in captured.err and "fold 1" in captured.out and "mean" in captured.out
    result = json.loads(out.read_text())
    assert [run["fold"] for run in result["runs"]] == [1, 2]
    assert [r["config"]["data"]["source"] for r in result["results"]] == [f"ucf101:{tree}:1", f"ucf101:{tree}:2"]
    assert [item["path"] for item in result["data"]["skipped"]] == [str(broken)]
    assert "truncated" in result["data"]["skipped"][0]["reason"]
    for fold_result in result["results"]:
        assert fold_result["data"]["skipped"] == result["data"]["skipped"]
    dense = [r["summary"]["dense_teacher_accuracy"] for r in result["results"]]
    assert result["aggregate"]["summary"]["dense_teacher_accuracy"] == {
        "mean": pytest.approx(statistics.mean(dense)), "std": pytest.approx(statistics.stdev(dense)), "n": 2}


def test_bench_refuses_a_named_source_before_any_work(tmp_path, capsys):
    code = main(["bench", "--data", f"ucf101:{tmp_path / 'typo'}", "--artifacts", str(tmp_path / "store")])
    err = capsys.readouterr().err
    assert code != 0 and f"{tmp_path / 'typo'}: data root does not exist" in err and "Accepted data sources" in err
    assert not (tmp_path / "store").exists()


def test_bench_refuses_an_output_path_it_cannot_write_before_any_work(tmp_path, capsys):
    code = main(["bench", "--out", str(tmp_path), "--artifacts", str(tmp_path / "store")])
    assert code != 0 and f"{tmp_path}: --out names a folder" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["bench", "--out", str(blocker / "r.json"), "--artifacts", str(tmp_path / "store")])
    assert code != 0 and f"cannot create its folder {blocker}" in capsys.readouterr().err
    code = main(["bench", "--artifacts", str(blocker)])
    assert code != 0 and f"{blocker}: cannot use it as the artifact store" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()


def test_mean_std_text_signs_the_mean_only():
    assert folds.mean_std_text({"mean": 0.01, "std": 0.02, "n": 2}, "{:+.3f}") == "+0.010 ± 0.020"


def test_spread_text_is_the_value_alone_for_one_run_and_mean_plus_minus_std_over_several():
    values = [0.91, 0.94, 0.875]
    mean, std = statistics.mean(values), statistics.stdev(values)  # stdev: the sample standard deviation
    assert folds.spread_text(values, ".3f") == f"{mean:.3f} ± {std:.3f}"
    assert folds.spread_text([0.25, 0.5], ".1%") == f"37.5% ± {statistics.stdev([0.25, 0.5]):.1%}"
    assert folds.spread_text([-2.0, 4.0], "+.1f") == f"+1.0 ± {statistics.stdev([-2.0, 4.0]):.1f}"  # no sign on the std
    assert folds.spread_text([0.5], ".3f") == "0.500"
    assert folds.spread_text([None, float("nan"), 0.5], ".3f") == "0.500 (1 of 3 runs)"  # runs without a value
    assert folds.spread_text([0.5, None, 0.75], ".2f") == f"0.62 ± {statistics.stdev([0.5, 0.75]):.2f} (2 of 3 runs)"
    assert folds.spread_text([None], ".3f") == "n/a"


def test_spread_texts_format_every_number_a_pattern_names():
    runs = [{"acc_a": 0.5, "auroc_b": 0.7, "word": "yes", "none": None}, {"acc_a": 0.75, "auroc_b": None, "none": None}]
    texts = folds.spread_texts(runs, {r"acc_.*": ".1%", r"auroc_.*|none": ".3f"})
    assert texts == {"acc_a_text": f"62.5% ± {statistics.stdev([0.5, 0.75]):.1%}", "auroc_b_text": "0.700 (1 of 2 runs)",
                     "none_text": "n/a"}  # words are not numbers; a name no pattern matches is left out
    assert folds.spread_texts(runs, {r"acc": ".1%"}) == {}  # a pattern matches the whole name


def test_spread_table_is_mean_plus_minus_std_per_cell():
    first = pd.DataFrame({"model": ["t", "s"], "acc": [0.5, 0.25], "name": ["x", "y"]}).set_index("model")
    second = first.assign(acc=[0.75, 0.25])
    table = folds.spread_table([first, second], "model", ".2f")
    assert list(table.index) == ["t", "s"] and list(table.columns) == ["acc"]  # first-seen order, numbers only
    assert table.loc["t", "acc"] == f"0.62 ± {statistics.stdev([0.5, 0.75]):.2f}" and table.loc["s", "acc"] == "0.25 ± 0.00"
    assert folds.spread_table([first], "model").loc["t", "acc"] == "0.500"  # one run: the value alone
    grouped = folds.spread_table([first.reset_index().assign(g=1)], ["model", "g"])
    assert grouped.loc[("s", 1), "acc"] == "0.250"


def test_by_seed_cuts_a_table_into_each_seeds_rows_in_first_seen_order():
    table = pd.DataFrame({"seed": [2, 0, 2, 1], "x": [1, 2, 3, 4]})
    assert [part.x.tolist() for part in folds.by_seed(table)] == [[1, 3], [2], [4]]


def test_mean_table_is_the_mean_per_cell_in_first_seen_order():
    first = pd.DataFrame({"model": ["t", "s"], "acc": [0.5, 0.25], "name": ["x", "y"]}).set_index("model")
    third = first.assign(acc=[0.75, 0.5])
    table = folds.mean_table([first, first.assign(acc=[1.0, 0.0]), third], "model")
    assert list(table.index) == ["t", "s"] and list(table.columns) == ["acc"]
    assert table.loc["t", "acc"] == statistics.mean([0.5, 1.0, 0.75])
    assert table.loc["s", "acc"] == statistics.mean([0.25, 0.0, 0.5])


def test_cited_texts_take_each_run_alone():
    runs = [{"x": 0.25, "y": 1.0}, {"x": 0.75, "y": None}]

    def numbers_of(results):
        assert len(results) == 1  # one run at a time
        return results[0]

    texts = folds.cited_texts(numbers_of, runs, {"x": ".2f", "y": ".1f"})
    assert texts == {"x_text": f"0.50 ± {statistics.stdev([0.25, 0.75]):.2f}", "y_text": "1.0 (1 of 2 runs)"}
