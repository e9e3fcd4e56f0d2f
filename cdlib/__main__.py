"""Command line: ``python -m cdlib <command> ...`` (``--help`` on any command).

Progress goes to stderr; results and the paths of written files go to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys

from cdlib.cli.options import (
    add_config_options,
    add_device_option,
    add_run_options,
    config_from_args,
    output_file,
    print_skipped,
)
from cdlib.runtime.errors import CdlibError, ConfigError


def store_from_args(args: argparse.Namespace):
    """The artifact store of ``--artifacts`` (default: ``$CDLIB_ARTIFACTS`` or ./artifacts), refused if it
    cannot be a folder."""
    from cdlib.runtime.artifacts import ArtifactStore

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
    from cdlib.experiment.folds import fold_configs

    cfg = config_from_args(args)
    check_source(cfg.data.source)
    return cfg, fold_configs(cfg)


def cmd_config(args: argparse.Namespace) -> int:
    print(json.dumps(config_from_args(args).to_dict(), indent=2))
    return 0


def join_processes(cfg) -> bool:
    """Under torchrun, join the process group on the config's device; True in process 0 (the one that prints)."""
    from cdlib.runtime import distributed

    distributed.init_from_env(cfg.resolved_runtime.device)
    return distributed.is_main()


def cmd_train_teacher(args: argparse.Namespace) -> int:
    from cdlib.data import skipped_videos
    from cdlib.experiment.trained_models import get_outputs, get_teacher, weights_sha256
    from cdlib.experiment.train import clip_accuracy

    _, configs = run_configs(args)
    store = store_from_args(args)
    main_process = join_processes(configs[0])
    for cfg in configs:
        trained = get_teacher(cfg, store)
        test = get_outputs(cfg, "teacher", "test", store)
        if not main_process:
            continue
        scores = {"clip_accuracy": clip_accuracy(test.logits, test.labels), "video_accuracy": test.dense_accuracy(),
                  "weights_sha256": weights_sha256(trained.model)}
        print(f"teacher {trained.name} ({trained.key}), profile {cfg.profile}, seed {cfg.seed}, data {cfg.data.source}")
        print(f"clip-level test accuracy:  {scores['clip_accuracy']:.4f}")
        print(f"video-level test accuracy: {scores['video_accuracy']:.4f}  (dense averaging of clip softmax)")
        print_skipped(skipped_videos(cfg.data, cfg.seed))
        if args.json and len(configs) == 1:
            from cdlib.runtime.artifacts import atomic_write

            atomic_write(args.json, lambda handle: handle.write(json.dumps(scores, indent=1) + "\n"), mode="w")
            print(f"wrote {args.json}")
    return 0


def cmd_train_students(args: argparse.Namespace) -> int:
    from cdlib.data import skipped_videos
    from cdlib.experiment.students import trained_students
    from cdlib.experiment.trained_models import get_outputs, get_student
    from cdlib.experiment.train import clip_accuracy

    _, configs = run_configs(args)
    store = store_from_args(args)
    main_process = join_processes(configs[0])
    for cfg in configs:
        for variant in trained_students():
            trained = get_student(cfg, variant, store)
            test = get_outputs(cfg, variant, "test", store)
            if main_process:
                print(
                    f"student {variant} {trained.name} ({trained.key}), data {cfg.data.source}: clip accuracy "
                    f"{clip_accuracy(test.logits, test.labels):.4f}, video accuracy {test.dense_accuracy():.4f}"
                )
        if main_process:
            print_skipped(skipped_videos(cfg.data, cfg.seed))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from cdlib.experiment.bench import run_benchmark, write_json
    from cdlib.experiment.folds import format_folds, run_folds
    from cdlib.experiment.students import trained_students
    from cdlib.experiment.trained_models import get_outputs
    from cdlib.experiment.tables import format_table
    from cdlib.runtime import distributed

    cfg, configs = run_configs(args)
    if args.out:
        output_file(args.out)
    store = store_from_args(args)
    main_process = join_processes(cfg)
    if distributed.world_size() > 1:
        # Every process trains the models and predicts its share of the clips; then process 0
        # evaluates and times alone (one timing at a time) while the others wait, and they load its result.
        for fold in configs:
            for which in ("teacher", *trained_students()):
                for split in ("val", "test"):
                    get_outputs(fold, which, split, store)
    with distributed.main_first(), distributed.local_only():
        recompute = args.recompute and main_process
        if len(configs) > 1:
            result = run_folds(cfg, store, recompute=recompute, timing=args.timing)
        else:
            result = run_benchmark(configs[0], store, recompute=recompute, timing=args.timing)
    if not main_process:
        return 0
    if args.out:
        write_json(result, args.out)
        print(f"wrote {args.out}")
    print(format_folds(result) if len(configs) > 1 else format_table(result))
    print_skipped(result["data"].get("skipped", []))
    return 0


def cmd_selftest(args: argparse.Namespace) -> int:
    from cdlib.cli.selftest import run_selftest

    return 0 if run_selftest(args.device or "auto", tiny=args.tiny, artifacts=args.artifacts) else 1


def cmd_bench_data(args: argparse.Namespace) -> int:
    from cdlib.cli.bench_data import run_data_benchmark

    config_from_args(args)  # checks the options before any work
    run_data_benchmark(args.profile, args.seed, args.overrides, scales=args.scales, workers=args.workers,
                       out=args.out, workdir=args.workdir, in_memory=args.in_memory)
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
    p.add_argument("--json", default=None, metavar="FILE",
                   help="also write {clip_accuracy, video_accuracy, weights_sha256} to FILE")
    p.set_defaults(func=cmd_train_teacher)

    p = sub.add_parser("train-students", help="train (or load) the CE, KD and CD students")
    add_run_options(p)
    p.set_defaults(func=cmd_train_students)

    p = sub.add_parser("bench", help="run the benchmark and write its JSON "
                       "(schema: cdlib/experiment/bench.py; folds: cdlib/experiment/folds.py)")
    add_run_options(p)
    p.add_argument("--out", default=None, metavar="FILE", help="write the benchmark JSON here")
    p.add_argument("--recompute", action="store_true", help="re-evaluate (and re-time) even if a cached result exists")
    p.add_argument("--no-timing", dest="timing", action="store_false",
                   help="skip the wall-clock measurement: accuracy, FLOPs and areas only, minutes sooner (a cached "
                   "timed result is returned where there is one)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "selftest",
        help="check a GPU machine: every model on CPU and device, tiny training with bf16, the benchmark",
        description="Runs every registered model on the CPU and on the device and compares outputs, trains a tiny "
        "teacher and CD student with bf16 autocast, runs the benchmark on a small synthetic config, and prints "
        "PASS/FAIL per step with measured time ratios. Needs only torch, torchvision, numpy and pandas.",
    )
    add_device_option(p)
    p.add_argument("--tiny", action="store_true", help="smallest sizes (a smoke test, as in make test)")
    p.add_argument("--artifacts", default=None, metavar="DIR", help="where to train (default: a temporary folder)")
    p.set_defaults(func=cmd_selftest)

    p = sub.add_parser(
        "bench-data",
        help="memory and loader throughput on the synthetic set exported as video files",
        description="Exports the synthetic set as video files at several multiples of its training videos, trains "
        "the teacher one epoch from each (streamed, a fresh process each) and reports peak resident memory; "
        "measures the loader's clips/s with each worker count.",
    )
    add_config_options(p)
    p.add_argument("--scales", default="1,4", type=lambda t: [int(x) for x in t.split(",")],
                   help="multiples of data.num_train to export and train on (default: 1,4)")
    p.add_argument("--workers", default="0,2", type=lambda t: [int(x) for x in t.split(",")],
                   help="loader worker counts to time (default: 0,2)")
    p.add_argument("--in-memory", action="store_true", help="also train each scale with the clips in memory")
    p.add_argument("--workdir", default=None, metavar="DIR", help="keep exported videos and caches here")
    p.add_argument("--out", default=None, metavar="FILE", help="write the measurements as JSON")
    p.set_defaults(func=cmd_bench_data)

    from cdlib.book.execute import add_book_commands
    from cdlib.cli.data import add_data_commands

    add_data_commands(sub)
    add_book_commands(sub)

    from cdlib.cli.backends import add_backends_command
    from cdlib.cli.estimate import add_estimate_command

    add_estimate_command(sub)
    add_backends_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CdlibError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if "cdlib.runtime.distributed" in sys.modules:  # a command joined torchrun's processes: leave cleanly
            sys.modules["cdlib.runtime.distributed"].shutdown()


if __name__ == "__main__":
    sys.exit(main())
