"""Dataclass configs, the ``ci`` and ``full`` profiles, and dotted overrides.

A run is fully described by a :class:`Config`. Profiles give the defaults
(``ci``: minutes on 2 CPU cores; ``full``: bigger data, more epochs, 3 seeds);
``--set key=value`` overrides any field by its dotted path, e.g.
``data.informative_fraction=0.2``. Unknown keys and values that do not parse as
the field's type raise :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from cdlib.errors import ConfigError


@dataclass
class DataConfig:
    """What videos to use and how they are cut into clips.

    ``source`` is ``synthetic`` (the embedded generator, DESIGN.md §2.1) or a
    real layout: ``ucf101:<root>[:fold]``, ``hmdb51:<root>:<split_dir>[:fold]``,
    ``kinetics:<root>``. The knobs below the line apply to the synthetic set
    only; ``height``, ``width`` and ``clip_length`` apply to both.
    """

    source: str = "synthetic"
    height: int = 32
    width: int = 32
    clip_length: int = 8  # T: frames per clip
    # --- real videos only ---
    max_clips: int = 0  # keep at most this many clips per video (0: all)
    val_fraction: float = 0.15  # real layouts without a val split hold this out of train
    # --- synthetic only ---
    num_classes: int = 8  # K
    video_length: int = 96  # L: frames per video (N = L // T clips)
    informative_fraction: float = 0.3  # rho: fraction of the video showing the action
    distractor_rate: float = 0.6  # probability that a non-action clip shows a distractor
    distractor_salience: float = 0.6  # distractor contrast relative to the action sprite
    noise_level: float = 0.06  # std of per-pixel sensor noise (frames in [0, 1])
    test_shift: float = 0.0  # strength of corruptions present only in the test split
    test_informative_fraction: float = 0.0  # rho of the test split only (0: same as informative_fraction)
    num_train: int = 1200
    num_val: int = 160
    num_test: int = 400


@dataclass
class TrainConfig:
    """Optimisation settings for one model."""

    epochs: int = 6
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    clips_per_video: int = 0  # clips sampled per video per epoch (0: all)
    # "all": every clip with its video's label; "action": only clips known to show
    # the action (synthetic data; clips of real videos count as action clips, as
    # trimmed data sets such as UCF101 are mostly action from start to end).
    clips: str = "all"


@dataclass
class DistillConfig:
    """The confidence-distillation loss of DESIGN.md §1.2 (CD student)."""

    alpha: float = 1.0  # weight of CE to the labels
    beta: float = 1.0  # weight of tau^2 * KL to the teacher
    gamma: float = 5.0  # weight of BCE between the score and the confidence target
    tau: float = 2.0  # distillation temperature
    target: str = "true_class_prob"
    calibrated_teacher: bool = False  # targets from the temperature-scaled teacher


@dataclass
class BenchConfig:
    """Operating points and measurement settings of the benchmark."""

    # cd_gate exit thresholds; a value above 1 never exits
    thetas: tuple[float, ...] = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.01)
    random_repeats: int = 5  # draws averaged for random_k
    wall_videos: int = 8  # videos timed per operating point
    wall_repeats: int = 4  # passes over all operating points (see cdlib.bench.measure_wall_clock)
    num_threads: int = 2


@dataclass
class RuntimeConfig:
    """Where and how a run executes: device, numerics, data loading (the README's "Running at scale").

    None of these changes which clips a model sees or in what order. Trained
    models and their outputs are keyed by the autocast dtype, and trained models
    also by how many processes' batch norms see separate slices of each batch
    (DDP on the CPU); the device and the loader settings key nothing.
    """

    device: str = "auto"  # auto (cuda if available, else cpu), cpu, cuda, cuda:N, mps
    amp: str = "auto"  # bf16 autocast for training and inference: auto (on for cuda only), on, off
    deterministic: str = "auto"  # auto (on for cpu; off on cuda/mps, with cudnn.benchmark), on, off
    num_workers: int = -1  # DataLoader worker processes; -1: auto (0 for in-memory data, else a few per process)
    prefetch_batches: int = 2  # batches each worker loads ahead (bounded prefetch); >= 1
    in_memory: str = "auto"  # keep a split's decoded clips in memory: auto (if at most 2 GiB), on, off
    sync_batchnorm: bool = True  # DDP on CUDA: SyncBatchNorm over the global batch (gloo on CPU cannot)


@dataclass
class Config:
    profile: str = "ci"
    seed: int = 0
    teacher: str = "c3d_small"
    student: str = "student_fusion"
    data: DataConfig = field(default_factory=DataConfig)
    teacher_train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=12, clips="action"))
    student_train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=12, clips_per_video=4))
    # Clips the CE student trains on: "teacher" (those of teacher_train.clips), "all" or "action".
    # The KD and CD students always take student_train.clips.
    ce_student_clips: str = "teacher"
    distill: DistillConfig = field(default_factory=DistillConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **dotted: Any) -> "Config":
        """A copy with dotted-path overrides applied, e.g. ``replace(**{"data.height": 64})``."""
        return apply_overrides(self, dotted)


PROFILES = ("ci", "full")


def profile_config(profile: str = "ci", seed: int = 0) -> Config:
    """The default :class:`Config` of a profile (``ci`` or ``full``)."""
    if profile == "ci":
        return Config(profile="ci", seed=seed)
    if profile == "full":
        return Config(
            profile="full",
            seed=seed,
            data=DataConfig(num_train=3000, num_val=400, num_test=1000),
            teacher_train=TrainConfig(epochs=24, clips="action"),
            student_train=TrainConfig(epochs=30, clips_per_video=6),
            bench=BenchConfig(random_repeats=10, wall_videos=24, wall_repeats=5),
        )
    raise ConfigError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")


def full_profile_seeds() -> tuple[int, ...]:
    """Seeds over which the ``full`` profile reports mean ± std."""
    return (0, 1, 2)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _parse_value(key: str, text: Any, annotation: Any) -> Any:
    """Parse ``text`` (a string from the command line, or an already typed value)."""
    origin = typing.get_origin(annotation)
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(annotation)
        items = text if isinstance(text, (list, tuple)) else [t for t in str(text).split(",") if t.strip()]
        return tuple(_parse_value(key, item, item_type) for item in items)
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{key}: union-typed fields cannot be overridden")
    if annotation is bool:
        if isinstance(text, bool):
            return text
        lowered = str(text).strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected a boolean (true/false), got {text!r}")
    if annotation is int:
        if isinstance(text, bool) or (isinstance(text, float) and not text.is_integer()):
            raise ConfigError(f"{key}: expected an integer, got {text!r}")
        try:
            return int(text) if not isinstance(text, str) else int(text.strip())
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {text!r}") from None
    if annotation is float:
        if isinstance(text, bool):
            raise ConfigError(f"{key}: expected a number, got {text!r}")
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {text!r}") from None
    if annotation is str:
        if not isinstance(text, str):
            raise ConfigError(f"{key}: expected a string, got {text!r}")
        return text
    raise ConfigError(f"{key}: fields of type {annotation!r} cannot be overridden")


def apply_overrides(config: Config, overrides: dict[str, Any] | list[str]) -> Config:
    """Return a copy of ``config`` with dotted-path overrides applied.

    ``overrides`` is a mapping ``{"data.informative_fraction": 0.2}`` or a list of
    ``"key=value"`` strings as given to ``--set``. Raises :class:`ConfigError` for
    unknown keys, malformed items and values of the wrong type.
    """
    if isinstance(overrides, (list, tuple)):
        pairs = {}
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} is not of the form key=value")
            key, value = item.split("=", 1)
            pairs[key.strip()] = value
        overrides = pairs
    result = dataclasses.replace(config)
    # Copy the nested sections so the original config is never mutated.
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if dataclasses.is_dataclass(value):
            setattr(result, f.name, dataclasses.replace(value))
    for key, raw in overrides.items():
        parts = key.split(".")
        target: Any = result
        for depth, part in enumerate(parts):
            hints = _field_types(type(target))
            if part not in hints:
                where = ".".join(parts[:depth]) or "the config"
                known = ", ".join(sorted(hints))
                raise ConfigError(f"unknown config key {key!r}: {where} has no field {part!r} (known: {known})")
            if depth < len(parts) - 1:
                target = getattr(target, part)
                if not dataclasses.is_dataclass(target):
                    raise ConfigError(f"unknown config key {key!r}: {'.'.join(parts[: depth + 1])} is not a section")
            else:
                annotation = hints[part]
                if dataclasses.is_dataclass(annotation):
                    raise ConfigError(f"config key {key!r} is a section; set one of its fields instead")
                setattr(target, part, _parse_value(key, raw, annotation))
    if result.profile not in PROFILES:
        raise ConfigError(f"profile: unknown profile {result.profile!r}; expected one of {', '.join(PROFILES)}")
    return result


def config_hash(obj: Any, length: int = 16) -> str:
    """Stable hash of a config (dataclass or JSON-able value)."""
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
