"""Command-line options shared by the commands of ``python -m cdlib`` (see :mod:`cdlib.__main__`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DATA_HELP = ("synthetic (default), ucf101:<root>[:fold], ucf101:<root>:<annotation_dir>[:fold], "
             "hmdb51:<root>:<split_dir>[:fold] or kinetics:<root>; fold 'all' runs every fold and reports mean ± std")


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """``--profile``, ``--seed`` and ``--set``: the options that make a config (:func:`config_from_args`)."""
    from cdlib.experiment.config import PROFILES

    parser.add_argument("--profile", default="ci", choices=tuple(PROFILES), help="config profile (default: ci)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data generation, initialisation and order")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field by its dotted path, e.g. data.informative_fraction=0.2 (repeatable)",
    )


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The config options plus ``--data`` and ``--artifacts``, shared by every command that trains or evaluates."""
    add_config_options(parser)
    parser.add_argument("--data", default=None, metavar="SOURCE", help=DATA_HELP)
    parser.add_argument("--artifacts", default=None, metavar="DIR", help="artifact store (default: ./artifacts)")
    add_device_option(parser)


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device``: sets ``runtime.device`` (see :mod:`cdlib.runtime.device`)."""
    parser.add_argument("--device", default=None, metavar="DEVICE",
                        help="auto (default: cuda if available, else cpu), cpu, cuda, cuda:N or mps")


def config_from_args(args: argparse.Namespace, source: str | None = None):
    """The config of ``--profile``/``--seed``/``--set``, with ``data.source`` from ``source`` or ``--data``
    (:func:`cdlib.experiment.config.make_config`, the path the book's chapters take too)."""
    from cdlib.experiment.config import make_config

    source = source if source is not None else getattr(args, "data", None)
    overrides = list(args.overrides)
    if getattr(args, "device", None) is not None:
        overrides.insert(0, f"runtime.device={args.device}")
    return make_config(args.profile, args.seed, source, overrides)


def output_file(path, option: str = "--out") -> Path:
    """The file ``path`` will be written to, checked before any work: not a folder, in a folder that can be
    created and written. Refused with :class:`~cdlib.runtime.errors.ConfigError` naming it otherwise."""
    from cdlib.runtime.errors import ConfigError

    out = Path(path).expanduser()
    if out.is_dir():
        raise ConfigError(f"{out}: {option} names a folder; give a file name, e.g. {out / 'results.json'}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{out}: {option}: cannot create its folder {out.parent} ({exc.strerror or exc})") from None
    if not os.access(out.parent, os.W_OK):
        raise ConfigError(f"{out}: {option}: the folder {out.parent} is not writable")
    return out


def print_skipped(skipped: list[dict], file=None) -> None:
    """Every skipped or rejected video, by path and reason, on stderr."""
    file = file if file is not None else sys.stderr
    if skipped:
        print(f"{len(skipped)} video(s) skipped:", file=file)
    for item in skipped:
        print(f"  skipped {item['path']}: {item['reason']}", file=file)
    file.flush()
