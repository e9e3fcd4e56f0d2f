"""Command line: ``python -m cdlib <command> ...`` (``--help`` on any command).

Progress goes to stderr; results and the paths of written files go to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys

from cdlib.cli import add_run_options, config_from_args
from cdlib.errors import CdlibError


def store_from_args(args: argparse.Namespace):
    from cdlib.artifacts import ArtifactStore

    return ArtifactStore(args.artifacts)


def cmd_config(args: argparse.Namespace) -> int:
    print(json.dumps(config_from_args(args).to_dict(), indent=2))
    return 0


def cmd_train_teacher(args: argparse.Namespace) -> int:
    from cdlib.runs import dense_accuracy, get_outputs, get_teacher
    from cdlib.train import clip_accuracy

    cfg = config_from_args(args)
    store = store_from_args(args)
    trained = get_teacher(cfg, store)
    test = get_outputs(cfg, "teacher", "test", store)
    print(f"teacher {trained.name} ({trained.key}), profile {cfg.profile}, seed {cfg.seed}, data {cfg.data.source}")
    print(f"clip-level test accuracy:  {clip_accuracy(test['logits'], test['labels']):.4f}")
    print(f"video-level test accuracy: {dense_accuracy(test):.4f}  (dense averaging of clip softmax)")
    return 0


def cmd_train_students(args: argparse.Namespace) -> int:
    from cdlib.runs import STUDENT_VARIANTS, dense_accuracy, get_outputs, get_student
    from cdlib.train import clip_accuracy

    cfg = config_from_args(args)
    store = store_from_args(args)
    for variant in STUDENT_VARIANTS:
        trained = get_student(cfg, variant, store)
        test = get_outputs(cfg, variant, "test", store)
        print(
            f"student {variant} {trained.name} ({trained.key}): clip accuracy "
            f"{clip_accuracy(test['logits'], test['labels']):.4f}, video accuracy {dense_accuracy(test):.4f}"
        )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from cdlib.bench import format_table, run_benchmark, write_json

    cfg = config_from_args(args)
    result = run_benchmark(cfg, store_from_args(args), recompute=args.recompute)
    if args.out:
        write_json(result, args.out)
        print(f"wrote {args.out}")
    print(format_table(result))
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

    p = sub.add_parser("bench", help="run the benchmark (DESIGN.md §4) and write its JSON")
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
