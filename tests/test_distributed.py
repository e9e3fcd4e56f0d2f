"""DDP over two CPU processes (gloo, launched by torchrun) against one process.

What must hold, and what cannot:

- A model without batch norm takes the same optimiser steps in two processes as
  in one (same global batches, gradients of the global mean loss), up to float
  rounding of the all-reduce: weights agree within :data:`DDP_TOLERANCE` after
  two epochs, including a short last batch that leaves one process without clips.
- A model with batch norm does not: on the CPU each process normalises its half
  of the batch (gloo cannot run SyncBatchNorm, which needs CUDA), so its batch
  statistics and running averages differ from one process's. We check that both
  processes hold identical weights (DDP keeps the replicas in sync) and that it
  trains; closeness to one process is the end-to-end check of the README
  (video accuracy within 0.03), not a unit test.
- Sharded prediction equals one process's prediction exactly.
- A run killed after an epoch and relaunched ends as the uninterrupted run.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cdlib.runtime import distributed

TESTS = Path(__file__).resolve().parent
PROJECT = TESTS.parent
#: largest weight difference accepted between 1 and 2 processes (model without batch norm, 8 AdamW steps)
DDP_TOLERANCE = 1e-5


def torchrun(args, nproc=2, check=True):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1", "CDLIB_PROGRESS": "0"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                           *map(str, args)], capture_output=True, text=True, env=env, cwd=PROJECT, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def load_ranks(out: Path, world: int = 2) -> list[dict]:
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(world)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One process, in this process: the same cases without torchrun."""
    import ddp_cases

    out = tmp_path_factory.mktemp("one")
    ddp_cases.set_determinism(1)
    return {"train": ddp_cases.train_runs(out, None), "predict": ddp_cases.predict_run()}


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    out = tmp_path_factory.mktemp("two")
    torchrun([TESTS / "ddp_cases.py", out])
    return out, load_ranks(out)


def test_two_processes_match_one_without_batch_norm(reference, two):
    _, ranks = two
    assert [r["world"] for r in ranks] == [2, 2]
    one = reference["train"]["plain"]
    for rank in ranks:
        got = rank["train"]["plain"]
        for name, value in one["state"].items():
            torch.testing.assert_close(got["state"][name], value, atol=DDP_TOLERANCE, rtol=0, msg=name)
        for a, b in zip(got["history"], one["history"]):
            assert a.keys() == b.keys()
            assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
            assert a["val_clip_accuracy"] == b["val_clip_accuracy"]


def test_batch_norm_replicas_stay_identical(two):
    _, ranks = two
    first, second = (r["train"]["batchnorm"] for r in ranks)
    for name, value in first["state"].items():
        assert torch.equal(value, second["state"][name]), name
    assert first["history"] == second["history"]
    assert first["history"][-1]["train_loss"] < first["history"][0]["train_loss"]


def test_sharded_prediction_equals_one_process_exactly(reference, two):
    _, ranks = two
    for rank in ranks:
        assert rank["predict"].keys() == reference["predict"].keys()
        for key, value in reference["predict"].items():
            assert torch.equal(rank["predict"][key], value), key


def test_process_zero_writes_artifacts_and_the_others_load_them(two):
    _, ranks = two
    zero, one = (r["artifacts"] for r in ranks)
    assert zero["calls"] == {"collective": 1, "alone": 1}
    assert one["calls"] == {"collective": 1, "alone": 0}  # waited for process 0, then loaded its file
    for kind in ("collective", "alone"):
        assert zero["got"][kind]["rank"] == one["got"][kind]["rank"] == 0  # everyone holds process 0's payload
    assert torch.equal(zero["got"]["alone"]["value"], torch.ones(2))  # built alone: a world of one
    assert torch.equal(one["again"]["value"], torch.ones(2))


def test_killed_run_resumes_on_relaunch(two, tmp_path):
    _, uninterrupted = two
    stopped = torchrun([TESTS / "ddp_cases.py", tmp_path, "--stop-after", "0"], check=False)
    assert stopped.returncode != 0
    assert (tmp_path / "work-plain" / "checkpoint.pt").exists()
    torchrun([TESTS / "ddp_cases.py", tmp_path])
    for rank, expected in zip(load_ranks(tmp_path), uninterrupted):
        for name in ("plain", "batchnorm"):
            assert rank["train"][name]["history"] == expected["train"][name]["history"], name
            for key, value in expected["train"][name]["state"].items():
                assert torch.equal(rank["train"][name]["state"][key], value), (name, key)


def test_shard_and_local_part_outside_a_process_group():
    assert distributed.world_size() == 1 and distributed.rank() == 0
    assert distributed.shard([1, 2, 3]) == [1, 2, 3]
    assert distributed.unshard([[0, 2, 4], [1, 3]]) == [0, 1, 2, 3, 4]
    batch = torch.arange(5)
    assert torch.equal(distributed.local_part(batch), batch)


def test_torchrun_train_teacher_writes_json(tmp_path):
    json_file = tmp_path / "scores.json"
    tiny = ["data.num_classes=3", "data.video_length=32", "data.num_train=12", "data.num_val=3", "data.num_test=6",
            "teacher_train.epochs=1", "teacher_train.batch_size=8"]
    proc = torchrun(["-m", "cdlib", "train-teacher", "--artifacts", tmp_path / "artifacts", "--json", json_file,
                     *(a for s in tiny for a in ("--set", s))])
    assert proc.stdout.count("video-level test accuracy") == 1  # process 0 alone reports
    scores = json.loads(json_file.read_text())
    assert set(scores) == {"clip_accuracy", "video_accuracy", "weights_sha256"}
    assert 0 <= scores["video_accuracy"] <= 1 and len(scores["weights_sha256"]) == 64
    (spec_file,) = (tmp_path / "artifacts" / "teacher").glob("*/spec.json")
    assert json.loads(spec_file.read_text())["spec"]["numerics"]["batchnorm_processes"] == 2
