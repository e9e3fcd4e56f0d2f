"""``python -m cdlib backends``: the inference backends (:mod:`cdlib.models.backends`) compared on a profile's models.

Builds the config's teacher and student (random initialisation: only their time matters) for
``data.num_classes`` classes, prepares each with every backend available on the config's device (or those of
``--backends``), and prints per model and backend the milliseconds per call on 1 and 12 clips of the config's
clip shape (the fastest of ``--repeats`` calls after a warm-up, :func:`cdlib.method.cost.time_call`), on
``runtime.num_threads`` threads, and the seconds the preparation took (export or compilation, warm-up included).
Backends unavailable here are listed with the reason; one that cannot take a model is shown with its error.
"""

from __future__ import annotations

import argparse

#: clips per call of the table's columns: one clip (a selective policy's teacher call) and twelve (a whole video)
CLIPS = (1, 12)


def compare_backends(cfg, backends: list[str] | None = None, repeats: int = 10, clips=CLIPS):
    """``(table, skipped)``: the pandas table of ms per call at each of ``clips`` and ``prepare_s``, indexed by
    model and backend, and ``{backend: why}`` for the backends left out (unavailable here, or failing on a model)."""
    import pandas as pd
    import torch

    from cdlib.method.cost import time_call
    from cdlib.models import create_model, preprocess
    from cdlib.models.backends import BACKENDS, get_backend
    from cdlib.runtime.device import configure_backend, place_model
    from cdlib.runtime.errors import ConfigError

    runtime = cfg.resolved_runtime
    configure_backend(runtime)  # the threads (runtime.num_threads on the CPU) and determinism of every run
    device = runtime.device
    names = list(BACKENDS) if not backends else [get_backend(b).name for b in backends]
    skipped = {n: get_backend(n).unavailable_reason(device) for n in names}
    skipped = {n: why for n, why in skipped.items() if why is not None}
    generator = torch.Generator().manual_seed(cfg.seed)
    shape = (cfg.data.clip_length, cfg.data.height, cfg.data.width, 3)
    inputs = {n: preprocess(torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=generator)).to(device)
              for n in clips}
    rows = []
    for role, name in (("teacher", cfg.teacher), ("student", cfg.student)):
        torch.manual_seed(cfg.seed)
        model = place_model(create_model(name, cfg.data.num_classes).eval(), runtime)
        for backend in names:
            if backend in skipped:
                continue
            try:
                prepared = get_backend(backend).prepare(model, (inputs[max(clips)],))
            except ConfigError as exc:
                skipped[f"{backend} ({name})"] = str(exc)
                continue
            row = {"model": f"{role} {name}", "backend": backend}
            for n in clips:
                row[f"ms @ {n} clip{'s' * (n > 1)}"] = 1e3 * time_call(lambda: prepared(inputs[n]), repeats,
                                                                       device=device)
            row["prepare_s"] = prepared.prepare_s
            rows.append(row)
    return pd.DataFrame(rows).set_index(["model", "backend"]), skipped


def cmd_backends(args: argparse.Namespace) -> int:
    from cdlib.cli.options import config_from_args

    cfg = config_from_args(args)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else None
    table, skipped = compare_backends(cfg, backends, args.repeats)
    runtime = cfg.resolved_runtime
    threads = f"{runtime.threads} threads" if runtime.threads else "torch's default threads"
    print(f"inference backends on {runtime.device}, {threads}, clips of "
          f"{cfg.data.clip_length}x{cfg.data.height}x{cfg.data.width}, fastest of {args.repeats} calls after a warm-up")
    print(table.to_string(float_format=lambda v: f"{v:.3f}") if len(table) else "(no backend ran)")
    for backend, why in skipped.items():
        print(f"skipped {backend}: {why}")
    return 0


def add_backends_command(sub) -> None:
    """``python -m cdlib backends``."""
    from cdlib.cli.options import add_config_options, add_device_option

    p = sub.add_parser("backends", help="compare the inference backends on the profile's teacher and student",
                       description=__doc__.split("\n\n", 1)[1])
    add_config_options(p)
    add_device_option(p)
    p.add_argument("--backends", default=None, metavar="NAMES",
                   help="comma-separated backends to compare (default: every registered one available here)")
    p.add_argument("--repeats", type=int, default=10, help="timed calls per measurement, after a warm-up (default 10)")
    p.set_defaults(func=cmd_backends)
