"""Command-line options shared by the commands of ``python -m cdlib`` (see :mod:`cdlib.__main__`)."""

from __future__ import annotations

import argparse


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """``--profile``, ``--seed`` and ``--set``: the options that make a config (:func:`config_from_args`)."""
    parser.add_argument("--profile", default="ci", choices=("ci", "full"), help="config profile (default: ci)")
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
    parser.add_argument(
        "--data",
        default=None,
        metavar="SOURCE",
        help="synthetic (default), ucf101:<root>[:fold], hmdb51:<root>:<split_dir>[:fold] or kinetics:<root>",
    )
    parser.add_argument("--artifacts", default=None, metavar="DIR", help="artifact store (default: ./artifacts)")
    add_device_option(parser)


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device``: sets ``runtime.device`` (see :mod:`cdlib.device`)."""
    parser.add_argument("--device", default=None, metavar="DEVICE",
                        help="auto (default: cuda if available, else cpu), cpu, cuda, cuda:N or mps")


def config_from_args(args: argparse.Namespace, source: str | None = None):
    """The config of ``--profile``/``--seed``/``--set``, with ``data.source`` from ``source`` or ``--data``."""
    from cdlib.config import apply_overrides, profile_config

    overrides = list(args.overrides)
    source = source if source is not None else getattr(args, "data", None)
    if source is not None:
        overrides.insert(0, f"data.source={source}")
    if getattr(args, "device", None) is not None:
        overrides.insert(0, f"runtime.device={args.device}")
    return apply_overrides(profile_config(args.profile, args.seed), overrides)
