"""Where a run computes and with what numerics: device selection, bf16 autocast, determinism, synchronisation.

:func:`resolve_runtime` turns the ``runtime`` section of a config
(:class:`cdlib.experiment.config.RuntimeConfig`) into a :class:`Runtime`: a
:class:`torch.device`, the autocast dtype, the determinism switch, the loader
settings and this process's thread count. It does so once per process for each
section; every layer reads the result as ``cfg.resolved_runtime``. Training and prediction
(:mod:`cdlib.experiment.train`) take a ``Runtime``; without one they run on the CPU in full
precision, as the book's CI profile does.

Devices: ``auto`` is ``cuda`` when torch sees a GPU, else ``cpu`` (``mps`` is
never picked automatically); ``cuda``, ``cuda:N`` and ``mps`` must be
available or :class:`~cdlib.runtime.errors.ConfigError` says why not. Under
``torchrun`` with CUDA, every process takes ``cuda:LOCAL_RANK``.

What determinism holds
----------------------
- CPU (deterministic by default): the same command twice gives bitwise the
  same weights and outputs, for the same thread count and torch build.
- CUDA (``deterministic=auto`` is *off*): ``cudnn.benchmark`` picks the fastest
  convolution algorithm per shape, which can differ from run to run, and bf16
  autocast rounds; two runs agree to within training noise, not bitwise.
  ``runtime.deterministic=on`` selects cuDNN's deterministic algorithms and
  PyTorch's deterministic kernels (``CUBLAS_WORKSPACE_CONFIG`` is set for you);
  operations with no deterministic CUDA kernel (e.g. the backward pass of
  adaptive average pooling in 3D) then warn instead of failing, and stay the
  only source of run-to-run differences.
- The order of clips, the clips of every batch and the learning rate never
  depend on the device, the number of loader workers or processes
  (:mod:`cdlib.experiment.train`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from cdlib.runtime.errors import ConfigError

#: ``runtime.in_memory=auto`` keeps a split in memory when its decoded clips take at most this many bytes
IN_MEMORY_LIMIT_BYTES = 2 * 1024**3

#: worker processes per training process for streamed data on an accelerator (``runtime.num_workers=-1``)
AUTO_WORKERS = 8


def _cuda_unavailable_reason() -> str:
    if torch.version.cuda is None:
        return f"this torch build ({torch.__version__}) has no CUDA support"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    hint = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
    return f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU{hint}"


def resolve_device(name: str = "auto") -> torch.device:
    """The :class:`torch.device` named by ``runtime.device``: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Under ``torchrun`` (``LOCAL_RANK`` set), ``cuda`` and ``auto`` on a GPU
    machine mean ``cuda:LOCAL_RANK``. Raises :class:`ConfigError` for an
    unknown name or a device this machine does not have, saying which.
    """
    text = str(name).strip().lower()
    local_rank = os.environ.get("LOCAL_RANK")
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"runtime.device={name!r}: CUDA is not available: {_cuda_unavailable_reason()}; "
                              "use --device cpu")
        count = torch.cuda.device_count()
        if text == "cuda":
            index = int(local_rank) if local_rank is not None else torch.cuda.current_device()
        else:
            suffix = text.split(":", 1)[1]
            if not suffix.isdigit():
                raise ConfigError(f"runtime.device={name!r}: expected cuda:N with N a GPU index")
            index = int(suffix)
            if local_rank is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
                raise ConfigError(f"runtime.device={name!r}: under torchrun name the device 'cuda' "
                                  "(each process takes cuda:LOCAL_RANK)")
        if index >= count:
            raise ConfigError(f"runtime.device={name!r}: no GPU with index {index}; this machine has {count}")
        return torch.device("cuda", index)
    if text == "mps":
        if not torch.backends.mps.is_available():
            why = "this torch build has no MPS support" if not torch.backends.mps.is_built() else "no MPS device"
            raise ConfigError(f"runtime.device={name!r}: MPS is not available ({why}); use --device cpu")
        return torch.device("mps")
    raise ConfigError(f"runtime.device: unknown device {name!r}; expected auto, cpu, cuda, cuda:N or mps")


@dataclass(frozen=True)
class Runtime:
    """A resolved ``runtime`` section (see :mod:`cdlib.runtime.device`).

    ``amp_dtype`` is the autocast dtype (``torch.bfloat16``) or None for full
    precision; ``threads`` the torch thread count of this process (None: leave
    it); ``num_workers`` -1 means auto (:meth:`workers_for`).
    """

    device: torch.device = torch.device("cpu")
    amp_dtype: torch.dtype | None = None
    deterministic: bool = True
    num_workers: int = 0
    prefetch_batches: int = 2
    in_memory: str = "auto"
    sync_batchnorm: bool = True
    threads: int | None = None

    @property
    def pin_memory(self) -> bool:
        return self.device.type == "cuda"

    def workers_for(self, in_memory: bool) -> int:
        """Loader worker processes: ``num_workers``, or for auto (-1) none for in-memory data or on
        the CPU (workers would take cores from the model), else :data:`AUTO_WORKERS` capped by the CPUs
        per process."""
        if self.num_workers >= 0:
            return self.num_workers
        if in_memory or self.device.type == "cpu":
            return 0
        per_process = (os.cpu_count() or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        return max(0, min(AUTO_WORKERS, per_process - 1))

    def numerics(self) -> dict:
        """What of the runtime changes computed numbers beyond rounding (artifacts are keyed by it): the
        autocast dtype. Not the device: float32 on a GPU and on the CPU differ by rounding only."""
        return {"amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else None}


def resolve_runtime(section) -> Runtime:
    """The :class:`Runtime` of a config's ``runtime`` section (:class:`cdlib.experiment.config.RuntimeConfig`,
    which has validated every value), for this process; a config hands it out as ``cfg.resolved_runtime``.

    Each distinct section is resolved once per process (the device checked, the thread count worked out), so
    every layer that asks gets the same object. On the CPU each of the ``LOCAL_WORLD_SIZE`` processes started
    by torchrun on this machine gets ``num_threads // LOCAL_WORLD_SIZE`` threads (at least 1); on an
    accelerator the thread count is left alone.
    """
    settings = tuple(sorted(dataclasses.asdict(section).items()))
    return _resolved(settings, os.environ.get("LOCAL_WORLD_SIZE", "1"), os.environ.get("LOCAL_RANK"),
                     os.environ.get("WORLD_SIZE", "1"))


@functools.cache  # keyed by the torchrun variables too: resolve_device and the thread share read them
def _resolved(settings: tuple, local_world_size: str, local_rank: str | None, world_size: str) -> Runtime:
    rc = dict(settings)
    device = resolve_device(rc["device"])
    use_amp = rc["amp"] == "on" or (rc["amp"] == "auto" and device.type == "cuda")
    threads = None  # on an accelerator the CPU threads are torch's default
    if device.type == "cpu":
        threads = max(1, rc["num_threads"] // max(1, int(local_world_size)))
    return Runtime(
        device=device,
        amp_dtype=torch.bfloat16 if use_amp else None,
        deterministic=rc["deterministic"] == "on" or (rc["deterministic"] == "auto" and device.type == "cpu"),
        num_workers=rc["num_workers"],
        prefetch_batches=rc["prefetch_batches"],
        in_memory=rc["in_memory"],
        sync_batchnorm=bool(rc["sync_batchnorm"]),
        threads=threads,
    )


def set_determinism(num_threads: int | None = None) -> None:
    """Deterministic algorithms and, if given, a fixed thread count."""
    torch.use_deterministic_algorithms(True)
    # Deterministic mode also fills every new tensor with NaN by default, which costs
    # ~20% of a training step here; our kernels write all memory they allocate.
    torch.utils.deterministic.fill_uninitialized_memory = False
    if num_threads:
        torch.set_num_threads(num_threads)


def configure_backend(runtime: Runtime) -> None:
    """Thread count and determinism flags of ``runtime`` (see the module docstring for what they guarantee)."""
    if runtime.deterministic:
        if runtime.device.type == "cuda":
            # cuBLAS reads this when it creates its handle; without it deterministic mode raises on matmuls.
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        set_determinism(runtime.threads)
        if runtime.device.type != "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.use_deterministic_algorithms(False)
        if runtime.device.type == "cuda":
            torch.backends.cudnn.deterministic = False
            torch.backends.cudnn.benchmark = True
        if runtime.threads:
            torch.set_num_threads(runtime.threads)


def autocast(runtime: Runtime | None):
    """bf16 autocast on the runtime's device when ``amp`` is on, else a no-op context."""
    if runtime is None or runtime.amp_dtype is None:
        return nullcontext()
    return torch.autocast(device_type=runtime.device.type, dtype=runtime.amp_dtype)


def place_model(model: nn.Module, runtime: Runtime | None) -> nn.Module:
    """Move ``model`` (in place) to the runtime's device; on CUDA with its 3D (2D) convolution weights in
    ``channels_last_3d`` (``channels_last``), the layout cuDNN's bf16 kernels run fastest on, matching the
    clips :func:`cdlib.models.preprocess` makes. On the CPU the weights keep their layout."""
    device = runtime.device if runtime is not None else torch.device("cpu")
    model.to(device)
    if device.type == "cuda":
        for param in model.parameters():
            if param.dim() == 5:
                param.data = param.data.contiguous(memory_format=torch.channels_last_3d)
            elif param.dim() == 4:
                param.data = param.data.contiguous(memory_format=torch.channels_last)
    return model


def to_device(tensor: torch.Tensor, runtime: Runtime | None) -> torch.Tensor:
    """``tensor`` on the runtime's device (asynchronous from pinned memory)."""
    if runtime is None or runtime.device.type == "cpu":
        return tensor
    return tensor.to(runtime.device, non_blocking=True)


def synchronize(device: torch.device | str | None) -> None:
    """Wait for the work queued on ``device`` (CUDA, MPS) to finish; nothing to wait for on the CPU."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(fn, device: torch.device | str | None = None) -> tuple[object, float]:
    """``(fn(), seconds)``: wall-clock time of ``fn`` with ``device`` synchronised before and after, so
    that asynchronous GPU work is counted to its end and work queued before is not."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return result, time.perf_counter() - start
