"""The ``data`` command group of ``python -m cdlib``.

- ``python -m cdlib data export-synthetic <dir> [--profile ci] [--seed 0] [--set key=value ...]``
  writes the synthetic set as videos in the UCF101 layout (:mod:`cdlib.data.export`);
  point the study at it with ``--data ucf101:<dir>``.
- ``python -m cdlib data scan <source> [--split train] [--strict]`` builds the
  splits of a data source (``ucf101:<root>[:fold]``, ...; fold ``all``: every fold),
  decoding every video into the cache, and prints each split's summary and skip report.
- ``python -m cdlib data verify [NAME ...]`` checks the shipped sets in ``data/``
  against their ``SHA256SUMS`` (:mod:`cdlib.data.shipped`).
"""

from __future__ import annotations

import argparse

from cdlib.cli.options import add_config_options, config_from_args


def cmd_export_synthetic(args: argparse.Namespace) -> int:
    from cdlib.data.export import export_synthetic

    cfg = config_from_args(args)
    splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
    out = export_synthetic(
        cfg.data, args.dir, seed=cfg.seed, splits=splits, fps=args.fps, codec=args.codec, overwrite=args.overwrite
    )
    print(out)
    print(f"use it with: --data ucf101:{out}")
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    from cdlib.data import SPLITS, build_dataset
    from cdlib.data.layouts import build_layout_dataset
    from cdlib.data.sources import check_source, fold_sources

    cfg = config_from_args(args, args.source)
    check_source(cfg.data.source)
    splits = SPLITS if args.split == "all" else (args.split,)
    for source in fold_sources(cfg.data.source):
        data_cfg = cfg.replace(**{"data.source": source}).data
        for split in splits:
            if source == "synthetic":
                dataset = build_dataset(data_cfg, split, seed=cfg.seed)
                print(f"synthetic, {split} split: {len(dataset)} videos, {dataset.num_classes} classes")
                continue
            dataset = build_layout_dataset(data_cfg, split, seed=cfg.seed, strict=args.strict, cache_dir=args.cache_dir)
            print(dataset.report())
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from cdlib.data.shipped import check_shipped

    for name, count in check_shipped(tuple(args.names) or None).items():
        print(f"{name}: {count} files match SHA256SUMS")
    return 0


def add_data_commands(subparsers) -> argparse.ArgumentParser:
    """Register ``data export-synthetic`` and ``data scan`` on the main CLI's subparsers.

    Each sets ``func`` (``args.func(args)`` returns the exit code).
    """
    data = subparsers.add_parser("data", help="export the synthetic set as videos; scan a real data set")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")

    p = sub.add_parser(
        "export-synthetic",
        help="write the synthetic set as .avi files in the UCF101 layout",
        description="Write the synthetic set as lossless .avi files in the UCF101 layout "
        "(train+val in trainlist01.txt, val also in vallist01.txt, test in testlist01.txt).",
    )
    p.add_argument("dir", help="output folder (new or empty)")
    add_config_options(p)
    p.add_argument("--splits", default="train,val,test", help="comma-separated splits to export (default: all)")
    p.add_argument("--fps", type=int, default=25, help="frame rate written in the files (default: 25)")
    p.add_argument("--codec", default="ffv1", choices=("ffv1", "mpeg4"), help="ffv1: lossless (default); mpeg4: smaller")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    p.set_defaults(func=cmd_export_synthetic)

    p = sub.add_parser(
        "scan",
        help="build the splits of a data source and print the skip report",
        description="Decode every video of a data source into the decode cache and report skipped files. "
        "SOURCE: ucf101:<root>[:fold], ucf101:<root>:<annotation_dir>[:fold], hmdb51:<root>:<split_dir>[:fold], "
        "kinetics:<root>.",
    )
    p.add_argument("source", help="data source, e.g. ucf101:data/weizmann-rgb:1 or ucf101:data/weizmann-rgb:all")
    add_config_options(p)
    p.add_argument("--split", default="all", choices=("all", "train", "val", "test"), help="split to scan (default: all)")
    p.add_argument("--strict", action="store_true", help="stop at the first broken video or missing class")
    p.add_argument("--cache-dir", default=None, metavar="DIR", help="decode cache (default: <artifacts>/decoded)")
    p.set_defaults(func=cmd_scan)

    from cdlib.data.shipped import SHIPPED

    p = sub.add_parser("verify", help="check the shipped data sets in data/ against their SHA256SUMS",
                       description="Check every file of the shipped data sets against its SHA256SUMS: "
                       + "; ".join(f"{name}: {what}" for name, what in SHIPPED.items()))
    p.add_argument("names", nargs="*", metavar="NAME", help=f"shipped sets: {', '.join(SHIPPED)} (default: all)")
    p.set_defaults(func=cmd_verify)
    return data
