"""Command line: ``python -m cdlib <command> ...`` (``--help`` on any command).

Progress goes to stderr; results and the paths of written files go to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys

from cdlib.cli import add_run_options, config_from_args, output_file, print_skipped
from cdlib.errors import CdlibError, ConfigError


def store_from_args(args: argparse.Namespace):
    """The artifact store of ``--artifacts`` (default: ``$CDLIB_ARTIFACTS`` or ./artifacts), refused if it
    cannot be a folder."""
    from cdlib.artifacts import ArtifactStore

    store = ArtifactStore(args.artifacts)
    try:
        store.root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{store.root}: cannot use it as the artifact store ({exc.strerror or exc}); "
                          "give a folder with --artifacts or $CDLIB_ARTIFACTS") from None
    return store


def run_configs(args: argparse.Namespace):
    """The config of the arguments, refused if its data source cannot be used, and one config per fold."""
    from cdlib.data.sources import check_source
    from cdlib.folds import fold_configs

    cfg = config_from_args(args)
    check_source(cfg.data.source)
    return cfg, fold_configs(cfg)


def cmd_config(args: argparse.Namespace) -> int:
    print(json.dumps(config_from_args(args).to_dict(), indent=2))
    return 0


def cmd_train_teacher(args: argparse.Namespace) -> int:
    from cdlib.data import skipped_videos
    from cdlib.runs import dense_accuracy, get_outputs, get_teacher
    from cdlib.train import clip_accuracy

    _, configs = run_configs(args)
    store = store_from_args(args)
    for cfg in configs:
        trained = get_teacher(cfg, store)
        test = get_outputs(cfg, "teacher", "test", store)
        print(f"teacher {trained.name} ({trained.key}), profile {cfg.profile}, seed {cfg.seed}, data {cfg.data.source}")
        print(f"clip-level test accuracy:  {clip_accuracy(test['logits'], test['labels']):.4f}")
        print(f"video-level test accuracy: {dense_accuracy(test):.4f}  (dense averaging of clip softmax)")
        print_skipped(skipped_videos(cfg.data, cfg.seed))
    return 0


def cmd_train_students(args: argparse.Namespace) -> int:
    from cdlib.data import skipped_videos
    from cdlib.runs import STUDENT_VARIANTS, dense_accuracy, get_outputs, get_student
    from cdlib.train import clip_accuracy

    _, configs = run_configs(args)
    store = store_from_args(args)
    for cfg in configs:
        for variant in STUDENT_VARIANTS:
            trained = get_student(cfg, variant, store)
            test = get_outputs(cfg, variant, "test", store)
            print(
                f"student {variant} {trained.name} ({trained.key}), data {cfg.data.source}: clip accuracy "
                f"{clip_accuracy(test['logits'], test['labels']):.4f}, video accuracy {dense_accuracy(test):.4f}"
            )
        print_skipped(skipped_videos(cfg.data, cfg.seed))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from cdlib.bench import format_table, run_benchmark, write_json
    from cdlib.folds import format_folds, run_folds

    cfg, configs = run_configs(args)
    if args.out:
        output_file(args.out)
    store = store_from_args(args)
    if len(configs) > 1:
        result = run_folds(cfg, store, recompute=args.recompute)
    else:
        result = run_benchmark(configs[0], store, recompute=args.recompute)
    if args.out:
        write_json(result, args.out)
        print(f"wrote {args.out}")
    print(format_folds(result) if len(configs) > 1 else format_table(result))
    print_skipped(result["data"].get("skipped", []))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cdlib",
        description="Confidence distillation for efficient action recognition: train, benchmark, build the book.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("config", help="print the resolved config as JSON")
    add_run_options(p)
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("train-teacher", help="train (or load) the teacher; print clip- and video-level test accuracy")
    add_run_options(p)
    p.set_defaults(func=cmd_train_teacher)

    p = sub.add_parser("train-students", help="train (or load) the CE, KD and CD students")
    add_run_options(p)
    p.set_defaults(func=cmd_train_students)

    p = sub.add_parser("bench", help="run the benchmark and write its JSON (schema: cdlib/bench.py; folds: cdlib/folds.py)")
    add_run_options(p)
    p.add_argument("--out", default=None, metavar="FILE", help="write the benchmark JSON here")
    p.add_argument("--recompute", action="store_true", help="re-evaluate (and re-time) even if a cached result exists")
    p.set_defaults(func=cmd_bench)

    from cdlib.book import add_book_commands
    from cdlib.data.cli import add_data_commands

    add_data_commands(sub)
    add_book_commands(sub)

    from cdlib.estimate import add_estimate_command

    add_estimate_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CdlibError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
