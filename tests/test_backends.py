"""The inference backends (cdlib.models.backends): each gives the eager model's outputs, at any batch size.

Every registered backend that is available here is prepared once per model (torch.compile takes tens of seconds
on a CPU: once per model, reused across the batch sizes) on a small teacher and student with random weights, and
compared with the eager model on clips from :func:`cdlib.models.preprocess` at two batch sizes (1 and 5: the
batch is dynamic). Unavailable backends (bf16 without CUDA; onnxruntime where it is not installed) are skipped
with the reason.
"""

from __future__ import annotations

import pytest
import torch

from cdlib.experiment.config import make_config
from cdlib.method.cost import timing_model
from cdlib.models import create_model, preprocess
from cdlib.models import backends as backends_module
from cdlib.models.backends import BACKENDS, Prepared, get_backend, resolve_backend
from cdlib.runtime.errors import ConfigError

#: how far a backend's outputs may be from eager's. Not bitwise: TorchScript folds the frozen batch norms into the
#: convolutions, and oneDNN's pre-packed, inductor's generated and onnxruntime's kernels sum in other orders, so
#: float32 rounding differs (seen here: up to ~3e-8 on outputs of order 0.1); far below any difference in a model.
ATOL, RTOL = 1e-5, 1e-4
MODELS = ("c3d_small", "student_fusion")  # a registered teacher and student (tuple outputs)
BATCHES = (1, 5)
NUM_CLASSES = 6


def _clips(batch: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return preprocess(torch.randint(0, 256, (batch, 8, 32, 32, 3), dtype=torch.uint8, generator=generator))


@pytest.fixture(scope="module")
def models(one_thread):
    torch.manual_seed(0)
    return {name: create_model(name, NUM_CLASSES).eval() for name in MODELS}


@pytest.fixture(scope="module")
def prepared(models):
    """``(model, backend) -> Prepared``, each prepared once, on a batch of the largest size, when first asked."""
    cache = {}

    def get(model: str, backend: str) -> Prepared:
        if (model, backend) not in cache:
            cache[model, backend] = get_backend(backend).prepare(models[model], (_clips(max(BATCHES), seed=99),))
        return cache[model, backend]

    return get


def _outputs(result) -> tuple[torch.Tensor, ...]:
    return result if isinstance(result, tuple) else (result,)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("backend", BACKENDS.names())
def test_every_available_backend_gives_the_eager_outputs_at_any_batch(models, prepared, model, backend):
    reason = get_backend(backend).unavailable_reason("cpu")
    if reason is not None:
        pytest.skip(f"{backend}: {reason}")
    module = prepared(model, backend)
    assert module.backend == backend and module.prepare_s > 0
    # a compiled model was compiled for both batch sizes while it was prepared: no compilation is timed as inference
    with torch._dynamo.config.patch(error_on_recompile=True):
        for batch in BATCHES:
            x = _clips(batch, seed=batch)
            with torch.inference_mode():
                expected = _outputs(models[model](x))
            actual = _outputs(module(x))
            assert len(actual) == len(expected) and actual[0].shape == (batch, NUM_CLASSES)
            for a, e in zip(actual, expected):
                torch.testing.assert_close(a, e, atol=ATOL, rtol=RTOL, msg=lambda m: f"{backend}, {batch} clips: {m}")
        if backend == "compile":  # and for the pipeline's other calls: clips gathered from a video, big batches
            x = _clips(40, seed=7)
            for clips in (x[torch.tensor([3])], x[torch.tensor([0, 5, 9])], x[:16], x):
                module(clips)


def test_auto_is_torchscript_on_the_cpu_and_bf16_on_cuda(monkeypatch, capsys):
    assert resolve_backend("auto", "cpu").name == "torchscript"
    assert resolve_backend("auto", "cuda").name == "bf16"  # resolving needs no GPU
    assert resolve_backend("auto", "cuda", amp_dtype=None).name == "eager"  # runtime.amp=off: eager float32
    assert resolve_backend("onnxruntime", "cpu").name == "onnxruntime"
    assert not get_backend("bf16").available("cpu")
    monkeypatch.setattr(backends_module, "_no_torchscript", lambda: "no torch.jit here")
    monkeypatch.setenv("CDLIB_PROGRESS", "1")
    assert resolve_backend("auto", "cpu").name == "eager"
    assert "torchscript is unavailable (no torch.jit here); using eager" in capsys.readouterr().err


def test_timing_model_takes_a_backend_and_records_its_preparation(models):
    model = models["student_fusion"]
    frozen = timing_model(model)  # the signature of before: auto, on the CPU
    assert isinstance(frozen, Prepared) and frozen.backend == "torchscript"
    assert isinstance(frozen.module, torch.jit.ScriptModule) and frozen.prepare_s > 0
    eager = timing_model(model, None, "eager")
    assert eager.backend == "eager" and eager.module is model
    with pytest.raises(ConfigError, match="'compile' needs example inputs"):
        timing_model(model, None, "compile")
    with pytest.raises(ConfigError, match="'bf16' is unavailable on cpu: bf16 autocast inference is for CUDA only"):
        timing_model(model, None, "bf16", (_clips(1, 0),))


def test_an_unknown_backend_fails_config_validation():
    assert make_config("ci", 0, None, []).bench.backend == "auto"
    assert make_config("ci", 0, None, ["bench.backend=torchscript"]).bench.backend == "torchscript"
    with pytest.raises(ConfigError, match=r"bench\.backend.*unknown inference backend 'tensorrt'; "
                                          r"known: auto, eager, torchscript, compile, onnxruntime, bf16"):
        make_config("ci", 0, None, ["bench.backend=tensorrt"])


@pytest.mark.parametrize("backend", ["onnxruntime", "compile"])
def test_a_backend_that_cannot_take_the_context_students_sizes_says_so(models, backend):
    """The video-context student's forward takes ``(x, sizes)``, a list of ints that ONNX would freeze into the
    graph and torch.compile would recompile on: both refuse it before any export or compilation."""
    from cdlib.method.context import context_student

    reason = get_backend(backend).unavailable_reason("cpu")
    if reason is not None:
        pytest.skip(f"{backend}: {reason}")
    student = context_student(create_model("student_fusion", NUM_CLASSES), "gru", 8)
    with pytest.raises(ConfigError, match=rf"'{backend}' cannot run VideoContextStudent: its forward takes "
                                          r"\(x, sizes\).*use eager or torchscript"):
        get_backend(backend).prepare(student, (_clips(3, 0),))
    # the backends that can take it give its outputs, with the videos' sizes too
    x = _clips(5, 1)
    frozen = get_backend("torchscript").prepare(student, (x,))
    with torch.inference_mode():
        for a, e in zip(frozen(x, [2, 3]), student(x, [2, 3])):
            torch.testing.assert_close(a, e, atol=ATOL, rtol=RTOL)


def test_the_backends_command_prints_a_table(capsys):
    from cdlib.__main__ import main

    assert main(["backends", "--profile", "ci", "--backends", "eager,torchscript,bf16", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "ms @ 1 clip" in out and "ms @ 12 clips" in out and "prepare_s" in out
    for row in ("teacher c3d_small", "student student_fusion", "eager", "torchscript"):
        assert row in out
    assert "skipped bf16: bf16 autocast inference is for CUDA only" in out
    assert main(["backends", "--backends", "tensorrt"]) == 2  # an unknown name: the CLI's error, exit code 2



def test_the_timed_pipeline_runs_on_the_configured_backend_and_reports_its_preparation(tmp_path):
    """bench.backend reaches the timed pipeline: every model prepared by it, its preparation seconds reported
    apart (the teacher only here, to keep it short: test_bench checks prepare_s of every timed model under auto)."""
    from test_bench import tiny_config  # the benchmark tests' tiny config, shared

    from cdlib.experiment.bench import run_benchmark
    from cdlib.runtime.artifacts import ArtifactStore

    cfg = tiny_config(**{"bench.backend": "eager", "bench.policies": "dense_teacher", "bench.wall_videos": 0})
    wall = run_benchmark(cfg, ArtifactStore(tmp_path))["wall_clock"]
    assert wall["backend"] == "eager" and set(wall["prepare_s"]) == {"teacher"} and wall["prepare_s"]["teacher"] > 0
