"""Several processes training one model: ``torch.distributed`` and ``DistributedDataParallel``, launched by torchrun.

::

    torchrun --standalone --nproc_per_node=N -m cdlib train-teacher ...     # N processes, one machine
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d \\
             --rdzv-endpoint=HOST:29400 --rdzv-id=JOB -m cdlib bench ...   # on each of two machines

torchrun starts the processes and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``
and the rendezvous; :func:`init_from_env` joins the process group (``nccl`` on
CUDA, ``gloo`` on the CPU). A plain ``python -m cdlib`` run, or torchrun with one
process, is a world of one: nothing here does anything then.

What the processes share and what they split:

- Training (:func:`cdlib.experiment.train.train_model`): every process computes the same
  global epoch order from ``(seed, epoch)`` and takes its contiguous slice of
  each global batch (:func:`local_part`); DDP averages the gradients, and each
  process's loss is scaled by ``world · n_local / n_global`` so that the average
  is the gradient of the global batch's mean loss, as one process computes it.
- Prediction (:func:`cdlib.experiment.train.predict`): the fixed batches of clips are dealt
  round-robin to the processes (:func:`shard`) and gathered back in clip order;
  each batch is computed exactly as one process computes it, so outputs are
  identical whatever the world size.
- Artifacts (:func:`get_or_create`): every process builds collectively, process 0
  alone writes (atomically), the others wait on a barrier and load what it wrote.
  The artifact folder must therefore be shared by all machines (``--artifacts``
  on a shared filesystem); a process that cannot see process 0's file says so.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist

from cdlib.runtime.errors import CdlibError

#: how long a process waits for the others at a collective (process 0 alone may time the benchmark meanwhile)
TIMEOUT = timedelta(hours=2)

_local_depth = 0


class DistributedError(CdlibError):
    """The processes of a torchrun job disagree or cannot see each other's files."""


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Processes working together now: the process group's size, 1 outside one or inside :func:`local_only`."""
    return dist.get_world_size() if is_initialized() and _local_depth == 0 else 1


def rank() -> int:
    return dist.get_rank() if is_initialized() and _local_depth == 0 else 0


def is_main() -> bool:
    """Whether this is process 0 (the one that prints and writes); True outside torchrun."""
    return (dist.get_rank() if is_initialized() else int(os.environ.get("RANK", "0"))) == 0


def init_from_env(device: torch.device) -> bool:
    """Join torchrun's process group when ``WORLD_SIZE > 1`` (idempotent); True when in one."""
    if is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_available():
        raise DistributedError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=TIMEOUT, device_id=device if device.type == "cuda" else None)
    return True


def shutdown() -> None:
    """Leave the process group (at the end of a command)."""
    if is_initialized():
        dist.destroy_process_group()


@contextmanager
def local_only():
    """Inside, this process works alone (world size 1): for work process 0 does while the others wait."""
    global _local_depth
    _local_depth += 1
    try:
        yield
    finally:
        _local_depth -= 1


@contextmanager
def main_first():
    """Process 0 runs the block first (filling caches), then the others run it."""
    if world_size() > 1 and not is_main():
        barrier()
    yield
    if world_size() > 1 and is_main():
        barrier()


def launched_world_size() -> int:
    """The size of the process group even inside :func:`local_only` (for artifact keys)."""
    return dist.get_world_size() if is_initialized() else 1


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def barrier() -> None:
    if world_size() > 1:
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of process ``src`` on every process (pickled; tensors included)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=_collective_device())
    return box[0]


def all_gather_objects(obj: Any) -> list:
    """``[obj of process 0, obj of process 1, ...]`` on every process."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sums of ``values`` over the processes (float64)."""
    if world_size() == 1:
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor)
    return tensor.tolist()


def local_part(batch: torch.Tensor) -> torch.Tensor:
    """This process's contiguous slice of a global batch: sizes differ by at most one, earlier ranks larger."""
    if world_size() == 1:
        return batch
    return torch.tensor_split(batch, world_size())[rank()]


def shard(items: Sequence) -> list:
    """This process's share of ``items``, dealt round-robin: items ``rank, rank + world, ...``."""
    return list(items[rank() :: world_size()])


def unshard(shares: list[list]) -> list:
    """Inverse of :func:`shard`: the items in their original order from every process's share."""
    world = len(shares)
    total = sum(len(s) for s in shares)
    return [shares[i % world][i // world] for i in range(total)]


def wrap(model: torch.nn.Module, device: torch.device, sync_batchnorm: bool,
         unused_parameters: bool = False) -> torch.nn.Module:
    """``model`` in :class:`~torch.nn.parallel.DistributedDataParallel` (its batch norms made
    :class:`~torch.nn.SyncBatchNorm` on CUDA when ``sync_batchnorm``; SyncBatchNorm needs a GPU).

    ``unused_parameters``: some parameters get no gradient from the loss (a student's confidence
    head when its loss weight is 0); DDP then looks for them after every backward pass.
    """
    if sync_batchnorm and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids,
                                                     find_unused_parameters=unused_parameters)


def get_or_create(store, kind: str, spec: dict, build: Callable, collective: bool = True) -> Any:
    """:meth:`cdlib.runtime.artifacts.ArtifactStore.get_or_create` for a world of processes.

    Process 0 decides whether the artifact exists. If not, ``build(work_dir)``
    runs on every process (``collective=True``: training and prediction, which
    talk to each other) or on process 0 alone (``collective=False``, inside
    :func:`local_only`); process 0 saves the result, the others wait at a barrier
    and then load process 0's file, so all of them return the same bits.
    """
    if world_size() == 1:
        return store.get_or_create(kind, spec, build)
    payload = store.load(kind, spec) if is_main() else None
    if not broadcast_object(payload is not None):
        directory = store.directory(kind, spec)
        directory.mkdir(parents=True, exist_ok=True)
        barrier()
        if collective:
            payload = build(directory)
        elif is_main():
            with local_only():
                payload = build(directory)
        if is_main():
            store.save(kind, spec, payload)
    barrier()
    if is_main():
        return payload
    loaded = store.load(kind, spec)
    if loaded is None:
        raise DistributedError(
            f"process {rank()} cannot read {store.directory(kind, spec)}, written by process 0: "
            "every machine of a multi-node run needs the same artifact folder (--artifacts on a shared filesystem)"
        )
    return loaded
