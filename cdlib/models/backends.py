"""Inference backends: the ways a model can be prepared to run the timed pipeline, behind the registry :data:`BACKENDS`.

Each :class:`Backend` turns a model and example inputs into a :class:`Prepared` callable that gives the eager
model's outputs (to rounding, ``tests/test_backends.py``) and records how long the preparation took
(``prepare_s``: export, scripting, compilation, and the warm-up calls that trigger compilation), so that a caller
reports it apart from inference and never counts it as inference time:

- ``eager``: the model in eval mode as it is. Clips from :func:`cdlib.models.preprocess` are channels-last
  3D, so oneDNN's channels-last kernels apply.
- ``torchscript``: :func:`cdlib.models.inference_module` (scripted, frozen, batch norms folded, weights
  pre-packed for oneDNN): the CPU default, measured fastest here (its docstring has the numbers).
- ``compile``: ``torch.compile(..., backend="inductor")`` with the batch dimension marked dynamic, compiled for
  every range of batch sizes it guards on (:data:`COMPILE_BATCHES`) during preparation. On the CPU inductor
  needs a C++ compiler. Only models whose forward takes the clips alone (see :func:`_clips_only`).
- ``onnxruntime``: exported by ``torch.onnx.export`` (dynamo exporter, dynamic batch axis) and run by an
  ``onnxruntime.InferenceSession`` (CUDA's provider on a GPU where onnxruntime has it, else the CPU's, on
  torch's thread count); outputs come back as torch tensors. Only models whose forward takes the clips alone.
- ``bf16``: the eager model under ``torch.autocast("cuda", torch.bfloat16)``; CUDA only.

:func:`resolve_backend` maps ``"auto"`` (``bench.backend``'s default) to ``torchscript`` on the CPU (``eager``,
with a logged message, where TorchScript is missing) and to ``bf16`` on CUDA (``eager`` when the runtime's
autocast is off), what the timed pipeline ran before backends were selectable. A backend that cannot run a
model's signature (the video-context student's ``forward(x, sizes)`` on ONNX or compile) raises
:class:`~cdlib.runtime.errors.ConfigError` saying why, instead of giving other outputs.
"""

from __future__ import annotations

import importlib.util
import inspect
import io
import shutil
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from cdlib.models.core import inference_module
from cdlib.runtime.device import synchronize
from cdlib.runtime.errors import ConfigError
from cdlib.runtime.progress import log
from cdlib.runtime.registry import Registry


class Prepared:
    """A model prepared by a backend: call it like the model (under ``torch.inference_mode``).

    ``backend``: the backend's name; ``prepare_s``: seconds the preparation took, warm-up calls included;
    ``module``: what runs (the model, a ScriptModule, a compiled module or an ONNX session).
    """

    def __init__(self, backend: str, fn: Callable, prepare_s: float = 0.0, module=None):
        self.backend, self.fn, self.prepare_s = backend, fn, prepare_s
        self.module = module if module is not None else fn

    def __call__(self, *args):
        with torch.inference_mode():
            return self.fn(*args)

    def __repr__(self) -> str:
        return f"Prepared({self.backend!r}, prepare_s={self.prepare_s:.3f})"


@dataclass(frozen=True)
class Backend:
    """An inference backend: ``build(model, example_inputs)`` makes the callable, ``check(device)`` returns why it
    is unavailable on ``device`` (None: available), ``needs_example``: whether it must see example inputs."""

    name: str
    build: Callable[[nn.Module, tuple], Callable]
    check: Callable[[torch.device], str | None]
    needs_example: bool = False

    @property
    def description(self) -> str:
        return BACKENDS.describe()[self.name]

    def unavailable_reason(self, device: torch.device | str = "cpu") -> str | None:
        """Why this backend cannot run on ``device`` here, or None if it can."""
        return self.check(torch.device(device))

    def available(self, device: torch.device | str = "cpu") -> bool:
        return self.unavailable_reason(device) is None

    def prepare(self, model: nn.Module, example_inputs: Sequence | None = None) -> Prepared:
        """``model`` (on its device already) prepared to run, timed: the build and warm-up calls on
        ``example_inputs`` (the model's positional arguments; also on their first clip alone, where the first is a
        batch of several clips and the only argument, so that a batch of one is compiled too). ConfigError if the
        backend is unavailable on the model's device or cannot take the model."""
        device = _device_of(model, example_inputs)
        reason = self.unavailable_reason(device)
        if reason is not None:
            raise ConfigError(f"inference backend {self.name!r} is unavailable on {device}: {reason}")
        if self.needs_example and not example_inputs:
            raise ConfigError(f"inference backend {self.name!r} needs example inputs to prepare a model")
        example = tuple(example_inputs or ())
        start = time.perf_counter()
        with torch.inference_mode():
            fn = self.build(model.eval(), example)
            if example:
                fn(*example)
                if len(example) == 1 and example[0].shape[0] > 1:
                    fn(example[0][:1].clone())  # a tensor of its own: a view would be guarded on its base
        synchronize(device)
        return Prepared(self.name, fn, time.perf_counter() - start, getattr(fn, "module", fn))


#: every inference backend by name (:class:`~cdlib.runtime.registry.Registry`); ``bench.backend`` names one
BACKENDS: Registry[Backend] = Registry("inference backend")


def register_backend(name: str, description: str, check: Callable[[torch.device], str | None], *,
                     needs_example: bool = False):
    """Decorator adding ``build(model, example_inputs) -> callable`` to :data:`BACKENDS` as ``name``."""

    def decorate(build):
        BACKENDS.register(name, Backend(name, build, check, needs_example), description)
        return build

    return decorate


def list_backends() -> list[str]:
    """The registered backend names, in registration order."""
    return BACKENDS.names()


def get_backend(name: str) -> Backend:
    """The backend registered as ``name``; ConfigError naming the known ones if there is none."""
    return BACKENDS.get(name)


def resolve_backend(name: str, device: torch.device | str = "cpu", amp_dtype: torch.dtype | None = torch.bfloat16
                    ) -> Backend:
    """The backend ``name`` stands for on ``device``: a registered one as it is, ``"auto"`` as the module docstring
    says (``amp_dtype``: the runtime's autocast dtype, None for full precision). ConfigError for an unknown name."""
    device = torch.device(device)
    if name != "auto":
        return get_backend(name)
    if device.type == "cuda":
        return get_backend("bf16" if amp_dtype == torch.bfloat16 else "eager")
    if device.type == "cpu":
        reason = get_backend("torchscript").unavailable_reason(device)
        if reason is None:
            return get_backend("torchscript")
        log(f"inference backend auto: torchscript is unavailable ({reason}); using eager")
    return get_backend("eager")


# ----------------------------------------------------------------------------- helpers


def _device_of(model: nn.Module, example_inputs) -> torch.device:
    for value in example_inputs or ():
        if isinstance(value, torch.Tensor):
            return value.device
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _at_least_two(x: torch.Tensor) -> torch.Tensor:
    """``x``, or a batch of two copies of its one clip: dynamo and torch.export specialise a batch of one, so a
    dynamic batch is traced on at least two."""
    return x if x.shape[0] > 1 else torch.cat([x, x])


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return torch.contiguous_format


def _clips_only(backend: str, model: nn.Module, example: tuple, why: str) -> None:
    """ConfigError unless ``model`` is called with the clips alone (its forward takes no other argument, and it is
    no video-context model that is told its videos' sizes)."""
    parameters = list(inspect.signature(model.forward).parameters.values())
    extra = [p.name for p in parameters[1:] if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if extra or len(example) > 1 or getattr(model, "video_context", False):
        args = ", ".join(p.name for p in parameters)
        raise ConfigError(f"inference backend {backend!r} cannot run {type(model).__name__}: its forward takes "
                          f"({args}), and {why}; use eager or torchscript for it")


def _no_torchscript() -> str | None:
    missing = [f for f in ("script", "freeze", "optimize_for_inference") if not hasattr(torch.jit, f)]
    return f"this torch ({torch.__version__}) has no torch.jit.{', torch.jit.'.join(missing)}" if missing else None


def _always(device: torch.device) -> str | None:
    return None


# ----------------------------------------------------------------------------- the backends


@register_backend("eager", "the model in eval mode as it is (channels-last clips: oneDNN's channels-last kernels)",
                  _always)
def _eager(model: nn.Module, example: tuple):
    return model


def _torchscript_check(device: torch.device) -> str | None:
    return _no_torchscript()


@register_backend("torchscript", "TorchScript: scripted, frozen, batch norms folded, weights pre-packed for oneDNN "
                  "(cdlib.models.inference_module); the CPU default", _torchscript_check)
def _torchscript(model: nn.Module, example: tuple):
    return inference_module(model)


def _compile_check(device: torch.device) -> str | None:
    if not hasattr(torch, "compile") or importlib.util.find_spec("torch._inductor") is None:
        return f"this torch ({torch.__version__}) has no torch.compile with inductor"
    if device.type == "cpu":
        import torch._inductor.config as inductor_config

        compiler = inductor_config.cpp.cxx[0] if inductor_config.cpp.cxx and inductor_config.cpp.cxx[0] else None
        candidates = [compiler] if compiler else ["g++", "clang++", "c++"]
        if not any(shutil.which(c) for c in candidates):
            return f"inductor on the CPU needs a C++ compiler and none of {', '.join(candidates)} is on PATH"
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        return "inductor on CUDA needs triton, which is not installed"
    if device.type not in ("cpu", "cuda"):
        return f"inductor is not set up here for {device.type}"
    return None


#: the batch sizes a compiled model is compiled for while it is prepared: dynamo specialises a batch of one, and
#: on the CPU the fake convolution guards a dynamic batch to 2..15, so 16 and more is a third graph (seen with
#: torch 2.14); a larger batch makes sure that every range the pipeline calls is compiled before any timing
COMPILE_BATCHES = (2, 1, 16, 64)


class _Compiled:
    """A compiled model that marks its clips' batch dimension dynamic on calls with more than one clip."""

    def __init__(self, model: nn.Module):
        self.module = torch.compile(model, backend="inductor", dynamic=None)

    def __call__(self, x: torch.Tensor, *rest):
        if x.shape[0] > 1:
            torch._dynamo.maybe_mark_dynamic(x, 0)
        return self.module(x, *rest)


@register_backend("compile", "torch.compile with inductor, dynamic batch; the compilation (on the example batch and "
                  "a batch of one) is preparation", _compile_check, needs_example=True)
def _compile(model: nn.Module, example: tuple):
    _clips_only("compile", model, example,
                "torch.compile specialises on a Python list argument (the video-context student's sizes: its "
                "length and values), so every new batch of videos would recompile inside the timed calls and count "
                "compilation as inference")
    compiled = _Compiled(model)
    x = example[0]
    try:
        # dynamo guards on whether the clips were made under inference mode (the pipeline's) or not (a caller's):
        # both are compiled, and the dynamic batch is traced before any batch of one
        for inference in (False, True):
            for batch in COMPILE_BATCHES:
                with torch.inference_mode(inference):
                    clips = x[torch.arange(batch) % x.shape[0]].contiguous(memory_format=_memory_format(x))
                compiled(clips)
    except Exception as exc:  # inductor's failures come as many types (a missing compiler, a lowering error, ...)
        raise ConfigError(f"inference backend 'compile': torch.compile (inductor) failed on "
                          f"{type(model).__name__}: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}") from exc
    return compiled


def _onnx_check(device: torch.device) -> str | None:
    missing = [m for m in ("onnxruntime", "onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        return f"{', '.join(missing)} not installed (pip install onnxruntime onnx onnxscript)"
    if device.type not in ("cpu", "cuda"):
        return f"onnxruntime runs on cpu or cuda here, not {device.type}"
    return None


class _OnnxSession:
    """An ONNX Runtime session called like the model: torch tensors in, torch tensors out, on ``device``."""

    def __init__(self, session, device: torch.device, tuple_output: bool):
        self.module, self.device, self.tuple_output = session, device, tuple_output
        self.input_name = session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor, *rest):
        if rest:
            raise ConfigError(f"inference backend 'onnxruntime': the exported model takes the clips only, "
                              f"called with {len(rest)} more argument(s)")
        import numpy as np

        outputs = self.module.run(None, {self.input_name: np.ascontiguousarray(x.detach().cpu().numpy())})
        tensors = tuple(torch.from_numpy(o).to(self.device) for o in outputs)
        return tensors if self.tuple_output else tensors[0]


@register_backend("onnxruntime", "exported with torch.onnx.export (dynamic batch) and run by onnxruntime "
                  "(CUDA's provider on a GPU, else the CPU's); clips-only models", _onnx_check, needs_example=True)
def _onnxruntime(model: nn.Module, example: tuple):
    _clips_only("onnxruntime", model, example,
                "an ONNX graph keeps every Python argument but the clips as a constant of the export (the "
                "video-context student's sizes: its batch would always be split into the example's videos)")
    import onnxruntime as ort

    x = _at_least_two(example[0])
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = model(x.clone())
        program = torch.onnx.export(model, (x.clone(),), dynamo=True, input_names=["clips"],
                                    dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), verbose=False)
        buffer = io.BytesIO()
        program.save(buffer)
    device = x.device
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the thread count the other backends run on
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(buffer.getvalue(), options, providers=providers)
    return _OnnxSession(session, device, isinstance(reference, tuple))


def _bf16_check(device: torch.device) -> str | None:
    if device.type != "cuda":
        return f"bf16 autocast inference is for CUDA only, not {device.type}"
    if not torch.cuda.is_available():
        return "torch sees no GPU"
    return None


class _Autocast:
    def __init__(self, model: nn.Module):
        self.module = model

    def __call__(self, *args):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return self.module(*args)


@register_backend("bf16", "the eager model under torch.autocast('cuda', torch.bfloat16) (CUDA only): the GPU default",
                  _bf16_check)
def _bf16(model: nn.Module, example: tuple):
    return _Autocast(model)
