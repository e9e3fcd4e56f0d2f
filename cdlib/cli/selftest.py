"""``python -m cdlib selftest --device cuda``: does cdlib work on this machine's accelerator?

One command for a fresh GPU machine, a few minutes on one modern GPU. Steps,
each printed as PASS, FAIL or SKIP with what it measured:

1. ``environment``: Python, torch, torchvision, numpy, pandas, PyAV, the device.
2. ``models``: every registered model forward on the CPU and on the device from
   the same weights and clips; outputs compared in float32 (TF32 off) and under
   bf16 autocast, relative to the largest output; forward times on both.
3. ``loader``: the DataLoader with two worker processes (pinned memory on CUDA)
   gives the clips of the in-memory bank in the same order, and preprocessing on
   the device matches the CPU.
4. ``train``: a tiny teacher and CD student trained for an epoch each on the
   device with bf16 autocast (float32 on the CPU, where autocast is off by
   default), losses finite.
5. ``benchmark``: the benchmark of a small synthetic config on the device,
   policies evaluated and timed end to end.
6. ``distributed``: a one-process group on the device's backend (nccl on CUDA,
   gloo on the CPU) and an all-reduce.
7. ``video``: the synthetic set written as video files and read back streamed,
   frames exact; skipped, with a message, when PyAV is not installed.

It needs only torch, torchvision, numpy and pandas (no PyAV, tqdm or plotting
stack): on the CPU, ``--device cpu`` makes it a smoke test, and ``--tiny`` the
smallest one (``tests/test_selftest.py`` runs it with those packages blocked).
"""

from __future__ import annotations

import copy
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

#: largest |device - cpu| / max|cpu| accepted for a model's outputs in float32 (TF32 off) and under bf16 autocast
FLOAT32_TOLERANCE = 1e-3
BF16_TOLERANCE = 1e-1


class Skip(Exception):
    """A step that cannot run here (the reason is printed)."""


@dataclass
class StepResult:
    name: str
    status: str  # PASS, FAIL or SKIP
    detail: str
    seconds: float


def _print(text: str = "") -> None:
    print(text, flush=True)


@contextmanager
def _quiet_progress():
    before = os.environ.get("CDLIB_PROGRESS")
    os.environ["CDLIB_PROGRESS"] = "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ["CDLIB_PROGRESS"]
        else:
            os.environ["CDLIB_PROGRESS"] = before


@contextmanager
def _no_tf32():
    """Full float32 matmuls and convolutions on CUDA (TF32 would differ from the CPU by ~1e-3)."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def _relative_error(reference, other) -> float:
    pairs = zip(reference, other) if isinstance(reference, tuple) else [(reference, other)]
    worst = 0.0
    for ref, out in pairs:
        scale = float(ref.abs().max()) or 1.0
        worst = max(worst, float((out.float().cpu() - ref).abs().max()) / scale)
    return worst


def _as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


def small_config(device: str, tiny: bool):
    """The synthetic config the train and benchmark steps use (CI models, a few dozen short videos)."""
    from cdlib.experiment.config import profile_config

    n = 48 if tiny else 256
    overrides = {
        "data.num_classes": 4, "data.video_length": 48, "data.num_train": n, "data.num_val": n // 4,
        "data.num_test": n // 4, "teacher_train.epochs": 1, "student_train.epochs": 1,
        "teacher_train.batch_size": 16, "student_train.batch_size": 16,
        "bench.thetas": "0.5,0.9,1.01", "bench.random_repeats": 1,
        "bench.wall_selected_videos": 4 if tiny else 32, "bench.wall_videos": 2 if tiny else 8,
        "bench.wall_repeats": 1 if tiny else 3,
        # bf16 autocast where it is the default (CUDA). On this project's CPU (AMD EPYC, avx512_bf16), torch's
        # bf16 autocast training of 3D CNNs was seen to turn the forward pass NaN within a few steps now and then.
        "runtime.device": device, "runtime.amp": "auto",
    }
    return profile_config("ci").replace(**overrides)


class SelfTest:
    def __init__(self, device_name: str, tiny: bool, artifacts: str | None):
        self.device_name = device_name
        self.tiny = tiny
        self.artifacts = artifacts
        self.results: list[StepResult] = []
        self.ratios: list[str] = []
        self.device: torch.device | None = None

    def step(self, name: str, fn) -> None:
        start = time.perf_counter()
        try:
            status, detail = "PASS", fn()
        except Skip as exc:
            status, detail = "SKIP", str(exc)
        except Exception as exc:  # a failed step is reported, and the next steps still run
            status = "FAIL"
            detail = f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_exc(limit=6))
        result = StepResult(name, status, detail or "", time.perf_counter() - start)
        self.results.append(result)
        lines = result.detail.rstrip().splitlines() or [""]
        _print(f"[{result.status}] {name} ({result.seconds:.1f} s): {lines[0]}")
        for line in lines[1:]:
            _print(f"        {line}")

    # -- steps ----------------------------------------------------------------

    def environment(self) -> str:
        import numpy
        import pandas
        import torchvision

        from cdlib.runtime.device import resolve_device

        self.device = resolve_device(self.device_name)
        try:
            import av

            pyav = f"PyAV {av.__version__}"
        except ImportError:
            pyav = "PyAV not installed (the video step is skipped)"
        what = str(self.device)
        if self.device.type == "cuda":
            props = torch.cuda.get_device_properties(self.device)
            what += f" = {props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}"
        return (f"device {what}; Python {platform.python_version()}, torch {torch.__version__}, "
                f"torchvision {torchvision.__version__}, numpy {numpy.__version__}, pandas {pandas.__version__}, "
                f"{pyav}; {os.cpu_count()} CPUs")

    def models(self) -> str:
        from cdlib.method.cost import time_call
        from cdlib.models import create_model, list_models, model_spec, preprocess
        from cdlib.runtime.device import Runtime, autocast, place_model

        runtime = Runtime(device=self.device, amp_dtype=torch.bfloat16)
        rows, failures = [], []
        # --tiny (the CPU smoke test of make test): the small models built for the synthetic data only; the
        # torchvision networks take minutes each on two CPU cores
        names = [name for name in list_models()
                 if not self.tiny or model_spec(name).builder.__module__ == "cdlib.models.small"]
        for name in names:
            spec = model_spec(name)
            channels, frames, height, width = spec.input_shape
            generator = torch.Generator().manual_seed(0)
            clips = torch.randint(0, 256, (2, frames, height, width, channels), dtype=torch.uint8, generator=generator)
            torch.manual_seed(0)
            model = create_model(name, num_classes=5).eval()
            with torch.no_grad():
                x = preprocess(clips)
                reference = _as_tuple(model(x))
                cpu_s = time_call(lambda: model(x), repeats=1 if self.tiny else 3)
                on_device = place_model(copy.deepcopy(model), runtime)
                xd = preprocess(clips.to(self.device))
                with _no_tf32():
                    fp32 = _relative_error(reference, _as_tuple(on_device(xd)))
                with autocast(runtime):
                    bf16 = _relative_error(reference, _as_tuple(on_device(xd)))
                    dev_s = time_call(lambda: on_device(xd), repeats=1 if self.tiny else 3, device=self.device)
            ok = fp32 <= FLOAT32_TOLERANCE and bf16 <= BF16_TOLERANCE
            if not ok:
                failures.append(name)
            rows.append(f"{name:<16} fp32 err {fp32:.1e}  bf16 err {bf16:.1e}  cpu {cpu_s * 1e3:7.1f} ms  "
                        f"{self.device.type} bf16 {dev_s * 1e3:7.1f} ms  ratio {cpu_s / dev_s:6.1f}x"
                        + ("" if ok else "  <- outside tolerance"))
            self.ratios.append(f"forward {name} (batch 2): cpu / {self.device.type} bf16 = {cpu_s / dev_s:.1f}x")
            del on_device
        head = (f"{len(rows)} models, outputs within {FLOAT32_TOLERANCE:g} (fp32) and {BF16_TOLERANCE:g} (bf16) "
                "of the CPU's, relative to the largest output")
        if failures:
            raise AssertionError(f"outside tolerance: {', '.join(failures)}\n" + "\n".join(rows))
        return head + "\n" + "\n".join(rows)

    def loader(self) -> str:
        from cdlib.data import ClipBank, build_dataset
        from cdlib.data.loading import BatchPlan, StreamedClips, clip_loader
        from cdlib.models import preprocess
        from cdlib.runtime.device import Runtime

        cfg = small_config(self.device_name, tiny=True)
        dataset = build_dataset(cfg.data, "val", seed=0)
        bank = ClipBank.from_dataset(dataset, progress=False)
        streamed = StreamedClips.from_dataset(dataset)
        order = torch.randperm(len(bank), generator=torch.Generator().manual_seed(0))
        batches = [order[i : i + 8] for i in range(0, len(order), 8)]
        runtime = Runtime(device=self.device, num_workers=2)
        start = time.perf_counter()
        seen = 0
        for (clips, idx), batch in zip(clip_loader(streamed, BatchPlan(batches), runtime), batches):
            if not torch.equal(idx, batch) or not torch.equal(clips, bank.clips[batch]):
                raise AssertionError("the streamed loader gave other clips than the in-memory bank")
            on_device = preprocess(clips.to(self.device, non_blocking=True))
            if not torch.allclose(on_device.cpu(), preprocess(clips), atol=1e-5):
                raise AssertionError(f"preprocessing on {self.device} differs from the CPU's")
            seen += len(idx)
        seconds = time.perf_counter() - start
        pinned = " (pinned memory)" if runtime.pin_memory else ""
        return (f"{seen} clips in {len(batches)} batches through 2 workers{pinned}, same clips and order as in memory; "
                f"{seen / seconds:.0f} clips/s")

    def _store(self):
        from cdlib.runtime.artifacts import ArtifactStore

        return ArtifactStore(self.artifacts)

    def train(self) -> str:
        from cdlib.experiment.trained_models import get_student, get_teacher

        cfg = small_config(self.device_name, self.tiny)
        store = self._store()
        start = time.perf_counter()
        teacher = get_teacher(cfg, store)
        teacher_s = time.perf_counter() - start
        student = get_student(cfg, "cd", store)
        student_s = time.perf_counter() - start - teacher_s
        for trained in (teacher, student):
            for record in trained.history:
                bad = {k: v for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)
                       and k not in ("train_kd", "train_bce")}
                if bad:
                    raise AssertionError(f"{trained.name}: non-finite training values {bad}")
        last_t, last_s = teacher.history[-1], student.history[-1]

        precision = "bf16 autocast" if cfg.resolved_runtime.amp_dtype is not None else "float32"
        return (f"{precision} on {self.device}: teacher {cfg.teacher} loss {last_t['train_loss']:.3f}, "
                f"val clip accuracy {last_t['val_clip_accuracy']:.3f} ({teacher_s:.1f} s); "
                f"CD student {cfg.student} loss {last_s['train_loss']:.3f} ({student_s:.1f} s, with teacher outputs)")

    def benchmark(self) -> str:
        from cdlib.experiment.bench import run_benchmark

        cfg = small_config(self.device_name, self.tiny)
        result = run_benchmark(cfg, self._store(), recompute=True)
        summary = result["summary"]
        dense = result["policies"]["dense_teacher"][0]
        walls = [p.get("wall_s_per_video") for points in result["policies"].values() for p in points]
        if not walls or any(w is None or not math.isfinite(w) or w <= 0 for w in walls):
            raise AssertionError("some operating points have no positive wall-clock time")
        ratio = summary.get("cd_wall_ratio_at_dense_accuracy")
        self.ratios.append(f"benchmark: dense teacher {dense['wall_s_per_video'] * 1e3:.1f} ms/video on {self.device}; "
                           "cd_gate wall-clock / dense teacher at the point matched on val = "
                           + (f"{ratio:.3f}" if ratio is not None else "none matched"))
        return (f"{sum(len(p) for p in result['policies'].values())} operating points of "
                f"{len(result['policies'])} policies evaluated and timed on {self.device}; "
                f"dense teacher accuracy {summary['dense_teacher_accuracy']:.3f}")

    def distributed(self) -> str:
        import socket

        import torch.distributed as dist

        if dist.is_initialized():
            raise Skip("already inside a process group (run the self-check without torchrun)")
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        device = self.device if self.device.type in ("cuda", "cpu") else torch.device("cpu")
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
        try:
            value = torch.ones(3, device=device)
            dist.all_reduce(value)
            if value.tolist() != [1.0, 1.0, 1.0]:
                raise AssertionError(f"all_reduce over one process changed the tensor: {value.tolist()}")
        finally:
            dist.destroy_process_group()
        return f"{backend} process group of one on {device}: all_reduce correct (multi-GPU runs: torchrun, see README)"

    def video(self) -> str:
        try:
            import av  # noqa: F401
        except ImportError:
            raise Skip("PyAV (av) is not importable: video files cannot be decoded on this machine; the synthetic "
                       "data and every step above work without it (pip install av to read UCF101 and friends)")
        from cdlib.data import build_dataset
        from cdlib.data.export import export_synthetic
        from cdlib.data.layouts import build_layout_dataset
        from cdlib.data.loading import StreamedClips
        from cdlib.models import create_model, preprocess

        cfg = small_config(self.device_name, tiny=True).replace(**{"data.num_train": 4, "data.num_val": 4,
                                                                     "data.num_test": 4})
        with tempfile.TemporaryDirectory(prefix="cdlib-selftest-video-") as tmp:
            root = export_synthetic(cfg.data, Path(tmp) / "videos", seed=0, progress=False)
            real = cfg.replace(**{"data.source": f"ucf101:{root}"})
            files = build_layout_dataset(real.data, "train", seed=0, cache_dir=Path(tmp) / "cache", progress=False)
            streamed = StreamedClips.from_dataset(files)
            synthetic = build_dataset(cfg.data, "train", seed=0)
            for i in range(len(synthetic)):
                if not torch.equal(streamed.video_clips(i), synthetic[i][0]):
                    raise AssertionError(f"video {i}: decoded frames differ from the synthetic ones (ffv1 is lossless)")
            model = create_model(cfg.teacher, num_classes=streamed.num_classes).eval().to(self.device)
            with torch.no_grad():
                logits = model(preprocess(streamed.read(torch.arange(len(streamed))).to(self.device)))
            if not bool(torch.isfinite(logits).all()):
                raise AssertionError("non-finite teacher outputs on decoded clips")
        return (f"{len(synthetic)} videos written (ffv1), decoded and streamed: frames exact; "
                f"teacher ran on their {len(streamed)} clips on {self.device}")

    def run(self) -> bool:
        _print(f"cdlib self-check on device {self.device_name!r}" + (" (tiny)" if self.tiny else ""))
        self.step("environment", self.environment)
        if self.device is None:
            return self.report()
        with _quiet_progress():
            for name in ("models", "loader", "train", "benchmark", "distributed", "video"):
                self.step(name, getattr(self, name))
        return self.report()

    def report(self) -> bool:
        _print()
        if self.ratios:
            _print("measured wall-clock ratios:")
            for line in self.ratios:
                _print(f"  {line}")
        counts = {s: sum(r.status == s for r in self.results) for s in ("PASS", "FAIL", "SKIP")}
        ok = counts["FAIL"] == 0
        _print(f"self-check {'PASSED' if ok else 'FAILED'}: {counts['PASS']} passed, {counts['FAIL']} failed, "
               f"{counts['SKIP']} skipped, {sum(r.seconds for r in self.results):.0f} s")
        return ok


def run_selftest(device: str = "auto", tiny: bool = False, artifacts: str | os.PathLike | None = None) -> bool:
    """Run every step (see the module docstring); print PASS/FAIL/SKIP per step; True when none failed.

    Trains in ``artifacts`` (default: a temporary folder, removed afterwards).
    """
    if artifacts is not None:
        return SelfTest(device, tiny, str(artifacts)).run()
    with tempfile.TemporaryDirectory(prefix="cdlib-selftest-") as tmp:
        return SelfTest(device, tiny, tmp).run()


if __name__ == "__main__":  # pragma: no cover - python -m cdlib.cli.selftest
    sys.exit(0 if run_selftest(sys.argv[1] if len(sys.argv) > 1 else "auto") else 1)
