"""Seeds side by side (:mod:`cdlib.experiment.parallel`): the same results as one after another, in order."""

from __future__ import annotations

import os

import pytest
import torch

from cdlib.experiment.parallel import map_configs
from cdlib.experiment.trained_models import get_teacher
from cdlib.runtime.artifacts import ArtifactStore
from test_bench import tiny_config


def side_by_side(*seeds: int, processes: int = 2):
    return [tiny_config(**{"seed": seed, "runtime.num_threads": 1, "runtime.seed_processes": processes})
            for seed in seeds]


def teacher_weights(cfg, store: ArtifactStore) -> dict[str, torch.Tensor]:
    return get_teacher(cfg, store).model.state_dict()


def process_and_threads(cfg) -> tuple[int, int, int]:
    return cfg.seed, os.getpid(), torch.get_num_threads()


def fails_on_seed_one(cfg) -> int:
    if cfg.seed == 1:
        raise ValueError("seed 1 went wrong")
    return cfg.seed


def test_seeds_side_by_side_train_the_weights_they_train_one_after_another(tmp_path):
    configs = side_by_side(0, 1)
    together = map_configs(teacher_weights, configs, ArtifactStore(tmp_path / "together"))
    apart = [teacher_weights(cfg, ArtifactStore(tmp_path / "apart")) for cfg in configs]
    for seed, (a, b) in enumerate(zip(together, apart)):
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), f"seed {seed}: other weights in its own process"
    assert not all(torch.equal(together[0][k], together[1][k]) for k in together[0])  # in the configs' order


def test_each_config_runs_in_its_own_process_on_its_own_threads():
    runs = map_configs(process_and_threads, side_by_side(2, 0, 1, processes=3))
    assert [seed for seed, _, _ in runs] == [2, 0, 1]
    assert len({pid for _, pid, _ in runs} | {os.getpid()}) == 4
    assert {threads for _, _, threads in runs} == {1}


def test_one_process_computes_in_the_calling_process():
    runs = map_configs(process_and_threads, side_by_side(0, 1, processes=1))
    assert [(seed, pid) for seed, pid, _ in runs] == [(0, os.getpid()), (1, os.getpid())]
    assert map_configs(process_and_threads, []) == []


def test_an_error_in_one_process_is_raised_in_the_caller():
    with pytest.raises(ValueError, match="seed 1 went wrong"):
        map_configs(fails_on_seed_one, side_by_side(0, 1))


def test_run_benchmarks_trains_side_by_side_and_gives_the_numbers_of_one_run_at_a_time(tmp_path, monkeypatch):
    from cdlib.experiment import bench

    configs = side_by_side(0, 1)
    results = bench.run_benchmarks(configs, ArtifactStore(tmp_path / "together"))
    alone = bench.run_benchmark(configs[0], ArtifactStore(tmp_path / "alone"))
    assert [r["seed"] for r in results] == [0, 1]
    untimed = ("accuracy", "gflops_per_video", "val_accuracy")
    for name, points in alone["policies"].items():
        assert [[p[k] for k in untimed] for p in results[0]["policies"][name]] == [[p[k] for k in untimed] for p in points]
    assert results[0]["confidence_auroc"] == alone["confidence_auroc"]
    assert results[0]["wall_clock"] is not None  # timed, in this process
    # stored results are read back without starting a process
    monkeypatch.setattr(bench, "map_configs", lambda *args, **kwargs: pytest.fail("trained again"))
    assert [r["seed"] for r in bench.run_benchmarks(configs, ArtifactStore(tmp_path / "together"))] == [0, 1]
