"""``python -m cdlib bench-data``: memory and loader throughput of streamed data (not a test: a measurement).

1. The synthetic set of the config is exported as video files in the UCF101
   layout (:func:`cdlib.data.export.export_synthetic`, lossless ffv1) at each
   multiple ``s`` of ``data.num_train`` (validation and test splits unchanged).
2. For each, a fresh process trains the teacher for one epoch from the files,
   streamed (``runtime.in_memory=off``), and reports its peak resident memory
   (``VmHWM``) after the scan that decodes every video into the decode cache,
   and at the end. Streaming keeps the peak flat in the number of videos; with
   ``--in-memory`` the same runs with the clips in memory show the contrast.
3. The loader's clips/s over one epoch of the teacher's training order, with
   each worker count, on the 1× export (decode cache warm), and on the embedded
   synthetic set in memory and streamed (rendered on demand): the measurement
   behind ``runtime.in_memory=auto`` keeping the synthetic set in memory.

Each measurement runs in its own process, so that peaks do not carry over.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cdlib.runtime.progress import log

_CHILD = "from cdlib.cli.bench_data import _child; _child()"


def _high_water_mb() -> float:
    """Peak resident memory of this process so far (``VmHWM`` of /proc/self/status), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource  # not Linux: ru_maxrss (KiB on Linux, bytes on macOS)

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def _child() -> None:
    """One measurement in this process: ``sys.argv[1]`` is a JSON job; prints a JSON result line."""
    job = json.loads(sys.argv[1])
    from cdlib.experiment.config import apply_overrides, profile_config

    cfg = apply_overrides(profile_config(job["profile"], job["seed"]), job["overrides"])
    if job["kind"] == "train":
        from cdlib.experiment.clips import get_clips
        from cdlib.experiment.trained_models import get_teacher

        start = time.perf_counter()
        get_clips(cfg, "train")
        get_clips(cfg, "val")
        scanned = time.perf_counter()
        after_scan = _high_water_mb()
        get_teacher(cfg)
        result = {"scan_s": scanned - start, "train_s": time.perf_counter() - scanned,
                  "peak_rss_after_scan_mb": after_scan, "peak_rss_mb": _high_water_mb()}
    else:
        import torch

        from cdlib.data.loading import BatchPlan, clip_loader
        from cdlib.experiment.clips import get_clips
        from cdlib.experiment.train import epoch_order, epoch_seed

        source = get_clips(cfg, "train")
        order = epoch_order(source, cfg.teacher_train, torch.Generator().manual_seed(epoch_seed(cfg.seed, 0)))
        size = cfg.teacher_train.batch_size
        loader = clip_loader(source, BatchPlan(order[i : i + size] for i in range(0, len(order), size)),
                             cfg.resolved_runtime)
        start = time.perf_counter()
        clips = sum(len(idx) for _, idx in loader)
        seconds = time.perf_counter() - start
        result = {"clips": clips, "seconds": seconds, "clips_per_s": clips / seconds, "source_kind": type(source).__name__}
    print("RESULT " + json.dumps(result), flush=True)


def _run_child(base: dict, overrides: dict, kind: str, artifacts: Path) -> dict:
    job = {**base, "kind": kind, "overrides": [*base["overrides"], *(f"{k}={v}" for k, v in overrides.items())]}
    env = {**os.environ, "CDLIB_ARTIFACTS": str(artifacts), "CDLIB_PROGRESS": "0"}
    project = Path(__file__).resolve().parents[2]  # the folder holding cdlib/
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(project), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(job)], capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"bench-data {kind} run failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def run_data_benchmark(profile: str = "ci", seed: int = 0, overrides=(), scales=(1, 4), workers=(0, 2), out=None,
                       workdir=None, in_memory: bool = False) -> dict:
    """Run the measurements of the module docstring on the config of ``profile``, ``seed`` and ``overrides``
    (``key=value`` strings); print a summary; write JSON to ``out`` if given."""
    from cdlib.data.export import export_synthetic
    from cdlib.experiment.config import apply_overrides, profile_config

    cfg = apply_overrides(profile_config(profile, seed), list(overrides))
    if cfg.data.source != "synthetic":
        raise SystemExit("bench-data exports the synthetic set: leave data.source at synthetic")
    base = {"profile": profile, "seed": seed, "overrides": list(overrides)}
    context = tempfile.TemporaryDirectory(prefix="cdlib-bench-data-") if workdir is None else None
    root = Path(context.name if context is not None else workdir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    result = {"config": {"profile": profile, "seed": seed, "overrides": list(overrides),
                         "num_train": cfg.data.num_train, "teacher": cfg.teacher,
                         "batch_size": cfg.teacher_train.batch_size},
              "cpus": os.cpu_count(), "memory": [], "loader": []}
    try:
        for scale in scales:
            videos = root / f"videos-x{scale}"
            num_train = cfg.data.num_train * scale
            if not (videos / "synthetic_export.json").is_file():
                log(f"bench-data: exporting {num_train} training videos to {videos}")
                export_synthetic(cfg.replace(**{"data.num_train": num_train}).data, videos, seed=seed, overwrite=True)
            for mode in ("off", "on") if in_memory else ("off",):
                log(f"bench-data: training one epoch at {scale}x, in_memory={mode}")
                run = _run_child(base, {"data.num_train": num_train, "data.source": f"ucf101:{videos}",
                                        "teacher_train.epochs": 1, "runtime.in_memory": mode,
                                        "runtime.num_workers": 0}, "train", root / f"artifacts-x{scale}-{mode}")
                result["memory"].append({"scale": scale, "train_videos": num_train, "in_memory": mode, **run})
        first = scales[0]
        for count in workers:
            for label, data in (
                (f"videos x{first} (decode cache)", {"data.num_train": cfg.data.num_train * first,
                                                    "data.source": f"ucf101:{root / f'videos-x{first}'}",
                                                    "runtime.in_memory": "off"}),
                ("synthetic, streamed (rendered)", {"runtime.in_memory": "off"}),
                ("synthetic, in memory", {"runtime.in_memory": "on"}),
            ):
                log(f"bench-data: loader on {label}, {count} workers")
                run = _run_child(base, {**data, "runtime.num_workers": count}, "loader", root / f"artifacts-x{first}-off")
                result["loader"].append({"data": label, "workers": count, **run})
    finally:
        if context is not None:
            context.cleanup()
    _print_summary(result)
    if out:
        from cdlib.runtime.artifacts import atomic_write

        atomic_write(out, lambda handle: handle.write(json.dumps(result, indent=1) + "\n"), mode="w")
        print(f"wrote {out}")
    return result


def _print_summary(result: dict) -> None:
    print("peak resident memory, one training epoch of the teacher from video files:")
    base = {row["in_memory"]: row["peak_rss_mb"] for row in result["memory"] if row["scale"] == result["memory"][0]["scale"]}
    for row in result["memory"]:
        ratio = row["peak_rss_mb"] / base[row["in_memory"]]
        print(f"  {row['scale']}x ({row['train_videos']} videos), in_memory={row['in_memory']}: "
              f"peak {row['peak_rss_mb']:.0f} MiB ({ratio:.2f}x the {result['memory'][0]['scale']}x run; "
              f"{row['peak_rss_after_scan_mb']:.0f} MiB after the scan), scan {row['scan_s']:.0f} s, "
              f"training {row['train_s']:.0f} s")
    print("loader throughput over one epoch of the teacher's order:")
    for row in result["loader"]:
        print(f"  {row['data']}, {row['workers']} workers: {row['clips_per_s']:.0f} clips/s "
              f"({row['clips']} clips in {row['seconds']:.1f} s)")
