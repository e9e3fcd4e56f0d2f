"""Seeds side by side: :func:`map_configs` computes ``fn(cfg, ...)`` for several configs, each in its own process.

The book's chapters compute the same things for every seed, and nothing of one seed depends on another, so
the seeds can run at the same time. On a CPU that pays off because most of the training here is bound by the
cost of each operation, not by arithmetic, and a second thread does little for it. Measured on this project's
2-core machine (full profile, batches of 64 clips, interleaved runs):

==============================================  =========================  ==============================
training step                                   one process, two threads   three one-thread processes
==============================================  =========================  ==============================
the student (``student_fusion``), contiguous    24.6 ms                    49 ms each: 1.5× the work done
the student, channels-last (this version)       15.6–16.9 ms               25–30 ms each: 1.8×
the teacher (``c3d_small``)                     158 ms                     440 ms each: 1.08×
==============================================  =========================  ==============================

``runtime.seed_processes`` says how many configs run at once (the ``full`` profile: its three seeds, on
``runtime.num_threads=1`` thread each); 1 computes them one after another in the calling process, as before.
A result does not depend on which of the two ran it: each process computes ``fn(cfg)`` with ``cfg``'s own
threads and seeds, and the artifacts it stores are keyed as they would be in the calling process. The
wall clock is never measured in here: :func:`cdlib.experiment.bench.run_benchmarks` trains every seed's models
side by side and then times each seed alone.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Sequence

from cdlib.experiment.config import Config
from cdlib.runtime.device import configure_backend
from cdlib.runtime.progress import progress_bar

__all__ = ["map_configs"]


def _call(fn: Callable[..., Any], cfg: Config, args: tuple, kwargs: dict) -> Any:
    configure_backend(cfg.resolved_runtime)  # this process's threads and determinism flags, from cfg
    return fn(cfg, *args, **kwargs)


def map_configs(fn: Callable[..., Any], configs: Sequence[Config], *args: Any, desc: str = "seeds",
                **kwargs: Any) -> list:
    """``[fn(cfg, *args, **kwargs) for cfg in configs]``, up to ``configs[0].runtime.seed_processes`` at once.

    With several processes, each config runs in a fresh (``spawn``) Python process, so ``fn`` must be a
    module-level function and its arguments and result picklable; an exception in one is raised here. The
    results are in the order of ``configs`` whichever finished first.
    """
    processes = min(len(configs), configs[0].runtime.seed_processes) if configs else 0
    if processes <= 1:
        return [fn(cfg, *args, **kwargs) for cfg in configs]
    # spawn, not fork: a forked child inherits the parent's torch thread pool and, in a notebook, the kernel's state
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_call, fn, cfg, args, kwargs): i for i, cfg in enumerate(configs)}
        results: list = [None] * len(configs)
        for future in progress_bar(as_completed(futures), total=len(futures), desc=f"{desc} ({processes} at once)"):
            results[futures[future]] = future.result()
    return results
