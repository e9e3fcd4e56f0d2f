"""Device selection, the runtime section, autocast and synchronised timing (on this CPU-only machine)."""

import pytest
import torch

from cdlib.__main__ import main
from cdlib.experiment.config import profile_config
from cdlib.experiment.train import predict
from cdlib.method.cost import flops_per_clip, time_call
from cdlib.models import create_model
from cdlib.runtime.device import Runtime, autocast, resolve_device, resolve_runtime, timed
from cdlib.runtime.errors import ConfigError
from test_train import toy_bank

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


def test_auto_is_cuda_when_available_else_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(" CPU ") == torch.device("cpu")


@no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_unavailable_cuda_is_a_clear_error(name):
    with pytest.raises(ConfigError, match=r"runtime\.device=.*CUDA is not available.*use --device cpu"):
        resolve_device(name)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_unavailable_mps_is_a_clear_error():
    with pytest.raises(ConfigError, match="MPS is not available"):
        resolve_device("mps")


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "gpu"])
def test_unknown_devices_are_rejected_by_name(name):
    with pytest.raises(ConfigError, match="runtime.device"):
        resolve_device(name)


@no_cuda
def test_cli_reports_an_unavailable_device_before_any_work(tmp_path, capsys):
    code = main(["train-teacher", "--device", "cuda", "--artifacts", str(tmp_path)])
    assert code == 2
    assert "error: runtime.device='cuda': CUDA is not available" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing was built


def test_cpu_runtime_is_deterministic_full_precision_and_in_process():
    runtime = profile_config("ci").replace(**{"runtime.device": "cpu"}).resolved_runtime
    assert runtime.device == torch.device("cpu") and runtime.amp_dtype is None and runtime.deterministic
    assert runtime.workers_for(in_memory=True) == 0 and runtime.workers_for(in_memory=False) == 0
    assert not runtime.pin_memory
    assert runtime.numerics() == {"amp": None}
    forced = profile_config("ci").replace(**{"runtime.amp": "on", "runtime.num_workers": 3}).resolved_runtime
    assert forced.amp_dtype == torch.bfloat16 and forced.workers_for(in_memory=True) == 3


def test_a_runtime_section_is_resolved_once_and_torchrun_shares_the_threads(monkeypatch):
    cfg = profile_config("ci").replace(**{"runtime.device": "cpu", "runtime.num_threads": 5})
    runtime = cfg.resolved_runtime
    assert runtime.threads == 5
    # another config with the same section, e.g. another seed, gets the very same object
    assert profile_config("ci", seed=3).replace(**{"runtime.device": "cpu", "runtime.num_threads": 5}).resolved_runtime is runtime
    assert resolve_runtime(cfg.runtime) is runtime
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two processes on this machine: 5 // 2 threads each
    assert cfg.resolved_runtime.threads == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert cfg.resolved_runtime.threads == 1  # never fewer than one


@pytest.mark.parametrize("key, value", [("runtime.amp", "maybe"), ("runtime.deterministic", "yes"),
                                        ("runtime.in_memory", "sometimes"), ("runtime.num_workers", -2),
                                        ("runtime.prefetch_batches", 0)])
def test_bad_runtime_values_are_rejected_by_name(key, value):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        profile_config("ci").replace(**{key: value})


def test_bf16_autocast_prediction_returns_float32_close_to_full_precision():
    bank = toy_bank()
    torch.manual_seed(0)
    model = create_model("student_micro", num_classes=3)
    full = predict(model, bank, batch_size=8)
    half = predict(model, bank, batch_size=8, runtime=Runtime(amp_dtype=torch.bfloat16))
    for key in full:
        assert half[key].dtype == torch.float32
        assert not torch.equal(half[key], full[key])  # autocast did run in bf16
        torch.testing.assert_close(half[key], full[key], atol=0.05 * float(full[key].abs().max()), rtol=0)
    with autocast(Runtime()):
        assert not torch.is_autocast_enabled("cpu")


def test_flops_and_timing_run_on_the_models_device():
    model = create_model("c3d_small", num_classes=4)
    assert flops_per_clip(model, (3, 8, 32, 32)) > 0
    value, seconds = timed(lambda: 3, torch.device("cpu"))
    assert value == 3 and seconds >= 0
    assert time_call(lambda: None, repeats=2, device="cpu") >= 0
