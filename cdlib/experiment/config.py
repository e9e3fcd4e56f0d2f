"""Dataclass configs, the ``ci``, ``full`` and ``ucf101`` profiles, dotted overrides, and their validation.

A run is fully described by a :class:`Config`. Profiles give the defaults
(``ci``: minutes on 2 CPU cores; ``full``: bigger data, more epochs, 3 seeds);
``--set key=value`` overrides any field by its dotted path, e.g.
``data.informative_fraction=0.2``. :func:`make_config` is the one path from a
profile, a seed, a data source and overrides to a config, shared by the command
line and the book's chapters.

Validation happens in one place: whenever a config or one of its sections is
built, replaced (``dataclasses.replace``, :meth:`Config.replace`) or assigned to.
The sections are pydantic dataclasses, so

- each field declares its type and range next to its default
  (``tau: Annotated[float, Field(gt=0)] = 2.0``);
- names are checked against the registry that defines them
  (``teacher: Annotated[str, registered("teacher model", _teacher_models)]``): models,
  confidence targets, inference backends, profiles, and the forms of ``data.source``;
- the few rules that tie fields together are in the sections' ``_consistent``
  validators (e.g. ``data.video_length >= data.clip_length``);
- every problem is reported at once, in one :class:`~cdlib.runtime.errors.ConfigError`
  that names each dotted key.

Pydantic (rather than hand-written checks or OmegaConf structured configs) because
the sections stay standard dataclasses (``dataclasses.asdict`` and
``dataclasses.replace`` work, and the artifact keys, hashes of ``asdict``, are
unchanged), constraints are declarative, all errors come at once, and it parses the
strings of ``--set`` into the field types (``3``, ``0.2``, ``true``/``off``). OmegaConf
parses dotted overrides too but checks types only: every range would still be
hand-written, and it returns DictConfig objects instead of these dataclasses.

To add a field, declare it in its section with a type and, where it has one, a
range or a registry: ``workers: Annotated[int, Field(ge=0)] = 0``. To add a profile,
add a function ``seed -> Config`` to :data:`PROFILES`.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Annotated, Any, Callable, Literal, Sequence

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic.dataclasses import dataclass

from cdlib.runtime.errors import ConfigError

# ----------------------------------------------------------------------------- validation helpers

_SECTION_CONFIG = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def registered(kind: str, names: Callable[[], Sequence[str]]) -> AfterValidator:
    """A validator accepting only the names ``names()`` returns (a registry's list, read when checked)."""

    def check(value: str) -> str:
        known = list(names())
        if value not in known:
            raise ValueError(f"unknown {kind} {value!r}; known: {', '.join(known)}")
        return value

    return AfterValidator(check)


def _teacher_models() -> list[str]:
    from cdlib.models import list_models

    return list_models("teacher")


def _student_models() -> list[str]:
    from cdlib.models import list_models

    return list_models("student")


def _confidence_targets() -> list[str]:
    from cdlib.method.losses import list_targets

    return list_targets()


def _policies() -> list[str]:
    from cdlib.method.gating import list_policies

    return list_policies()


def _backends() -> list[str]:
    from cdlib.models.backends import list_backends

    return ["auto", *list_backends()]


def _profiles() -> list[str]:
    return list(PROFILES)


def _data_source(value: str) -> str:
    """``synthetic`` or a well-formed real source (:func:`cdlib.data.sources.parse_source`; whether its
    folders exist is checked where the data set is opened, :func:`cdlib.data.sources.check_source`)."""
    if value != "synthetic":
        from cdlib.data.sources import parse_source

        parse_source(value)
    return value


def _comma_separated(value: Any) -> Any:
    """``"0.5,0.9"`` (as ``--set`` gives it) → ``("0.5", "0.9")``; anything else unchanged."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


Positive = Annotated[int, Field(ge=1)]
Count = Annotated[int, Field(ge=0)]  # 0 has a meaning (none, or all: see the field's comment)
UnitInterval = Annotated[float, Field(ge=0, le=1)]

#: a message that already starts with the dotted key it is about (cross-field checks write those)
_NAMED_MESSAGE = re.compile(r"^[A-Za-z_][\w.]*: ")


def _problems(exc: ValidationError, prefix: str) -> list[str]:
    """One line per error of ``exc``, each starting with the dotted key it is about."""
    lines = []
    for error in exc.errors(include_url=False):
        key = ".".join([prefix] * bool(prefix) + [str(part) for part in error["loc"]]) or "config"
        message = error["msg"]
        if error["type"] == "value_error":  # raised by our validators, which say what they got
            message = message.removeprefix("Value error, ")
            lines.extend(message.splitlines() if _NAMED_MESSAGE.match(message) else [f"{key}: {message}"])
        else:
            lines.append(f"{key}: {message} (got {error['input']!r})")
    return lines


def _invalid(problems: list[str]) -> ConfigError:
    """One error for all ``problems`` (kept as the list ``problems`` on the exception)."""
    error = ConfigError(f"invalid config ({len(problems)} problem{'s' * (len(problems) > 1)}):\n  " + "\n  ".join(problems))
    error.problems = list(problems)
    return error


def _section(prefix: str):
    """Make ``cls`` a validated pydantic dataclass whose errors are :class:`ConfigError`\\ s naming dotted keys
    (``prefix`` is the section's key when the class is built on its own, e.g. ``data``)."""

    def decorate(cls):
        cls = dataclass(config=_SECTION_CONFIG)(cls)
        init, assign = cls.__init__, cls.__setattr__

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            try:
                init(self, *args, **kwargs)
            except ValidationError as exc:
                raise _invalid(_problems(exc, prefix)) from None

        @functools.wraps(assign)
        def __setattr__(self, name, value):
            try:
                assign(self, name, value)
            except ValidationError as exc:
                raise _invalid(_problems(exc, prefix)) from None

        cls.__init__, cls.__setattr__ = __init__, __setattr__
        return cls

    return decorate


# ----------------------------------------------------------------------------- the config


@_section("data")
class DataConfig:
    """What videos to use and how they are cut into clips.

    ``source`` is ``synthetic`` (the embedded generator, :mod:`cdlib.data.synthetic`)
    or a real layout: ``ucf101:<root>[:<annotation_dir>][:fold]``,
    ``hmdb51:<root>:<split_dir>[:fold]``, ``kinetics:<root>``, where ``fold`` may be
    ``all`` (:mod:`cdlib.experiment.folds`). The knobs below the line apply to the synthetic set
    only; ``height``, ``width`` and ``clip_length`` apply to both.
    """

    source: Annotated[str, AfterValidator(_data_source)] = "synthetic"
    height: Annotated[int, Field(ge=8)] = 32
    width: Annotated[int, Field(ge=8)] = 32
    clip_length: Positive = 8  # T: frames per clip
    # --- real videos only ---
    max_clips: Count = 0  # keep at most this many clips per video (0: all)
    val_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.15  # real layouts without a val split hold this out of train
    # --- synthetic only ---
    num_classes: Annotated[int, Field(ge=2)] = 8  # K
    video_length: Positive = 96  # L: frames per video (N = L // T clips)
    informative_fraction: Annotated[float, Field(gt=0, le=1)] = 0.3  # rho: fraction of the video showing the action
    distractor_rate: UnitInterval = 0.6  # probability that a non-action clip shows a distractor
    distractor_salience: UnitInterval = 0.6  # distractor contrast relative to the action sprite
    noise_level: Annotated[float, Field(ge=0)] = 0.06  # std of per-pixel sensor noise (frames in [0, 1])
    test_shift: UnitInterval = 0.0  # strength of corruptions present only in the test split
    test_informative_fraction: UnitInterval = 0.0  # rho of the test split only (0: same as informative_fraction)
    num_train: Positive = 1200
    num_val: Positive = 160
    num_test: Positive = 400

    @model_validator(mode="after")
    def _consistent(self):
        from cdlib.data.synthetic import PATTERNS

        problems = []
        if self.num_classes > len(PATTERNS):
            problems.append(f"data.num_classes: the synthetic set has {len(PATTERNS)} classes, got {self.num_classes}")
        if self.video_length < self.clip_length:
            problems.append(f"data.video_length: must be >= data.clip_length ({self.clip_length}), got {self.video_length}")
        for name in ("informative_fraction", "test_informative_fraction"):
            rho = getattr(self, name)
            if rho > 0 and round(rho * self.video_length) < 1:
                problems.append(f"data.{name}: must give at least one frame of action, round(rho * "
                                f"data.video_length ({self.video_length})) >= 1, got {rho}")
        for name in ("num_train", "num_val", "num_test"):
            if getattr(self, name) < self.num_classes:
                problems.append(f"data.{name}: must be >= data.num_classes ({self.num_classes}) so that every "
                                f"class appears, got {getattr(self, name)}")
        if problems:
            raise ValueError("\n".join(problems))
        return self


@_section("train")
class TrainConfig:
    """Optimisation settings for one model."""

    epochs: Positive = 6
    batch_size: Positive = 64
    lr: Annotated[float, Field(gt=0)] = 3e-3
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    clips_per_video: Count = 0  # clips sampled per video per epoch (0: all)
    # "all": every clip with its video's label; "action": only clips known to show
    # the action (synthetic data; clips of real videos count as action clips, as
    # trimmed data sets such as UCF101 are mostly action from start to end).
    clips: Literal["all", "action"] = "all"
    # Learning rate of a pretrained backbone as a multiple of lr (the new layers'); 0 freezes its weights.
    # Only models built on torchvision networks have one (cdlib.models.parameter_groups); 1: one learning rate.
    backbone_lr_factor: Annotated[float, Field(ge=0)] = 1.0
    # The val split's clip accuracy goes into the history after every val_every-th epoch and after the last
    # (0: after the last only). It changes no weight: the teachers take 0, as no page plots their curve and each
    # pass runs the teacher on every val clip (full profile: 4,800 beside 9,900 trained on in an epoch); the
    # students' curves are the distillation chapter's figure.
    val_every: Count = 1


@_section("distill")
class DistillConfig:
    """The confidence-distillation loss (:class:`cdlib.method.losses.ConfidenceDistillationLoss`) of the CD student."""

    alpha: Annotated[float, Field(ge=0)] = 1.0  # weight of CE to the labels
    beta: Annotated[float, Field(ge=0)] = 1.0  # weight of tau^2 * KL to the teacher
    gamma: Annotated[float, Field(ge=0)] = 5.0  # weight of BCE between the score and the confidence target
    tau: Annotated[float, Field(gt=0)] = 2.0  # distillation temperature
    target: Annotated[str, registered("confidence target", _confidence_targets)] = "true_class_prob"
    calibrated_teacher: bool = False  # targets from the temperature-scaled teacher


@_section("bench")
class BenchConfig:
    """Operating points and measurement settings of the benchmark."""

    # cd_gate exit thresholds; a value above 1 never exits
    thetas: Annotated[
        tuple[Annotated[float, Field(ge=0)], ...], BeforeValidator(_comma_separated), Field(min_length=1)
    ] = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.01)
    # cd_gate weights lambda of the student's clips next to the teacher's (0: teacher's clips only)
    student_weights: Annotated[
        tuple[Annotated[float, Field(ge=0)], ...], BeforeValidator(_comma_separated), Field(min_length=1)
    ] = (0.0, 0.5, 1.0)
    # cd_topk and cd_gate coverages c: 0 the top-k clips by score, 1 exactly uniform_k's clips (cdlib.method.gating)
    coverages: Annotated[
        tuple[UnitInterval, ...], BeforeValidator(_comma_separated), Field(min_length=1)
    ] = (0.0, 0.25, 1.0)
    random_repeats: Positive = 5  # draws averaged for random_k
    wall_selected_videos: Positive = 100  # test videos timed for the points chosen on val (all if fewer)
    wall_videos: Count = 0  # test videos timed for the other points of each curve (0: not timed)
    wall_repeats: Positive = 4  # passes over the timed points (see cdlib.experiment.timing.measure_wall_clock)
    throughput_batch: Positive = 16  # videos per batch in the throughput timing
    # how the timed pipeline runs its models (cdlib.models.backends): auto (torchscript on the CPU, bf16 autocast on
    # CUDA) or a registered backend (python -m cdlib backends compares them)
    backend: Annotated[str, registered("inference backend", _backends)] = "auto"
    # the policies evaluated (empty: every registered policy, and every registered student): only the students
    # they use are trained and evaluated; dense_teacher and oracle, the summary's references, always are
    policies: Annotated[
        tuple[Annotated[str, registered("policy", _policies)], ...], BeforeValidator(_comma_separated)
    ] = ()
    # frame_exit exit thresholds on its gate's sigmoid (cdlib.method.frame_exit); a value above 1 never exits
    exit_thresholds: Annotated[
        tuple[Annotated[float, Field(ge=0)], ...], BeforeValidator(_comma_separated), Field(min_length=1)
    ] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.01)


def _temporal_modules() -> list[str]:
    from cdlib.method.context import TEMPORAL_MODULES

    return TEMPORAL_MODULES.names()


@_section("context")
class ContextConfig:
    """The context student ``cd_ctx`` (:mod:`cdlib.method.context`): the CD student's per-clip features of all
    clips of a video through a temporal module before its heads, trained on whole train videos with the CD student's loss."""

    module: Annotated[str, registered("temporal module", _temporal_modules)] = "gru"
    hidden: Positive = 64  # units of the temporal module
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.1  # on the features the temporal module reads, in training
    epochs: Positive = 40
    batch_videos: Positive = 32  # whole videos per training step
    lr: Annotated[float, Field(gt=0)] = 3e-3
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    # weight of the listwise ranking term (ListNet: cross-entropy between the softmax over a video's clips of the
    # score logits and of the teacher's confidence targets over rank_temperature); 0: the CD loss alone
    rank_weight: Annotated[float, Field(ge=0)] = 1.0
    rank_temperature: Annotated[float, Field(gt=0)] = 0.1


@_section("distance")
class DistanceConfig:
    """The distance-aware confidence ``s_da`` of the ``cd_da`` student (:mod:`cdlib.method.distance`).

    Every ``(method, quantile)`` pair is fitted on the train split (the distance)
    and the val split (the gate); the one whose ``s_da`` best predicts, on the val
    clips, that the teacher is right is used (:func:`cdlib.method.distance.select_confidence`).
    The quantile is the share of in-distribution clips whose score the gate leaves
    alone, a false-alarm rate one states rather than tunes: the val split has no
    shift, so on it a gate that changes fewer clips always looks at least as good,
    and a list of quantiles would be decided by that, not by protection.
    """

    methods: Annotated[
        tuple[Literal["gaussian", "knn"], ...], BeforeValidator(_comma_separated), Field(min_length=1)
    ] = ("gaussian", "knn")
    # fraction of val clips whose score the gate leaves unchanged (1 - the accepted false-alarm rate)
    quantiles: Annotated[
        tuple[Annotated[float, Field(gt=0.5, lt=1)], ...], BeforeValidator(_comma_separated), Field(min_length=1)
    ] = (0.99,)
    shrinkage: Annotated[float, Field(gt=0, le=1)] = 0.01  # gaussian: covariance shrunk towards a multiple of I
    knn_k: Positive = 10  # knn: distance to the k-th nearest training feature
    knn_bank: Positive = 4096  # knn: training features kept (a seeded random subset), bounding its cost per clip


@_section("runtime")
class RuntimeConfig:
    """Where and how a run executes: device, numerics, data loading (the README's "Running at scale").

    None of these changes which clips a model sees or in what order. Trained
    models and their outputs are keyed by the autocast dtype, and trained models
    also by how many processes' batch norms see separate slices of each batch
    (DDP on the CPU); the device and the loader settings key nothing.
    """

    # auto (cuda if available, else cpu), cpu, cuda, cuda:N, mps
    device: Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")] = "auto"
    amp: Literal["auto", "on", "off"] = "auto"  # bf16 autocast for training and inference (auto: on for cuda only)
    deterministic: Literal["auto", "on", "off"] = "auto"  # auto: on for cpu; off on cuda/mps, with cudnn.benchmark
    # DataLoader worker processes; -1: auto (0 for in-memory data, else a few per process)
    num_workers: Annotated[int, Field(ge=-1)] = -1
    prefetch_batches: Positive = 2  # batches each worker loads ahead (bounded prefetch)
    in_memory: Literal["auto", "on", "off"] = "auto"  # keep a split's decoded clips in memory (auto: if at most 2 GiB)
    sync_batchnorm: bool = True  # DDP on CUDA: SyncBatchNorm over the global batch (gloo on CPU cannot)
    # torch threads on the CPU for training, prediction and the timed benchmark, shared by the processes torchrun
    # starts on one machine (each gets num_threads // LOCAL_WORLD_SIZE); on an accelerator torch's default
    num_threads: Positive = 2
    # configs (seeds) a chapter computes at once, each in its own process (cdlib.experiment.parallel.map_configs);
    # 1: one after another in the chapter's process. The wall clock is measured one config at a time either way.
    seed_processes: Positive = 1


@_section("")
class Config:
    profile: Annotated[str, registered("profile", _profiles)] = "ci"
    seed: Count = 0
    teacher: Annotated[str, registered("teacher model", _teacher_models)] = "c3d_small"
    student: Annotated[str, registered("student model", _student_models)] = "student_fusion"
    # Pretrained weights of the teacher and the student (cdlib.models.weights): "" (random initialisation), a
    # torchvision weights name of the model's architecture (KINETICS400_V1, IMAGENET1K_V1, DEFAULT), read from
    # $TORCH_HOME/hub/checkpoints/ and never downloaded, or a path to a state-dict file of that network.
    teacher_weights: str = ""
    student_weights: str = ""
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    teacher_train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(epochs=12, clips="action", val_every=0))
    student_train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(epochs=12, clips_per_video=4))
    # Clips the CE student trains on: "teacher" (those of teacher_train.clips), "all" or "action".
    # The KD and CD students always take student_train.clips.
    ce_student_clips: Literal["teacher", "all", "action"] = "teacher"
    distill: DistillConfig = dataclasses.field(default_factory=DistillConfig)
    bench: BenchConfig = dataclasses.field(default_factory=BenchConfig)
    distance: DistanceConfig = dataclasses.field(default_factory=DistanceConfig)
    context: ContextConfig = dataclasses.field(default_factory=ContextConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def resolved_runtime(self):
        """The :class:`~cdlib.runtime.device.Runtime` of the ``runtime`` section for this process: the device,
        numerics, loader settings and threads every layer runs with, resolved once per process
        (:func:`cdlib.runtime.device.resolve_runtime`)."""
        from cdlib.runtime.device import resolve_runtime  # torch is imported only when a run needs it

        return resolve_runtime(self.runtime)

    def replace(self, **dotted: Any) -> "Config":
        """A copy with dotted-path overrides applied, e.g. ``replace(**{"data.height": 64})``."""
        return apply_overrides(self, dotted)


# ----------------------------------------------------------------------------- profiles


def _ci_profile(seed: int) -> Config:
    return Config(profile="ci", seed=seed)


def _full_profile(seed: int) -> Config:
    return Config(
        profile="full",
        seed=seed,
        data=DataConfig(num_train=3000, num_val=400, num_test=1000),
        teacher_train=TrainConfig(epochs=24, clips="action", val_every=0),
        student_train=TrainConfig(epochs=30, clips_per_video=6),
        # The chapters read the wall clock of the chosen points only. Timing every other point of every curve too
        # (wall_videos=24: 2389 points x 24 videos x 5 passes at about 6.8 ms a run) would take about 32 min per
        # seed here, more than training all the models (about 22 min); `--set bench.wall_videos=24` still does it.
        bench=BenchConfig(random_repeats=10, wall_repeats=5),
        # The three seeds side by side, one thread each: the students' training gets 1.8 times as much done per
        # second on this machine's 2 cores as one seed on two threads (cdlib.experiment.parallel), and every
        # seed trains on one thread whether it runs beside the others or alone (a rerun of one seed gives the
        # same weights).
        runtime=RuntimeConfig(num_threads=1, seed_processes=3),
    )


def _ucf101_profile(seed: int) -> Config:
    # The thesis's setting, sized for one GPU (README, "Running at scale"; `python -m cdlib estimate
    # --profile ucf101` counts its FLOPs and expected hours): a Kinetics-400-pretrained R(2+1)D-18 teacher on
    # 16-frame 112x112 clips, an ImageNet-pretrained MobileNetV3-Small student on 4 of their frames (under
    # 1/100 of the teacher's FLOPs), UCF101 split 1 (give its folder with --data ucf101:<root>:1). Batch sizes
    # fit a 24 GB GPU with bf16 autocast; epochs and learning rates are starting values, not tuned.
    return Config(
        profile="ucf101",
        seed=seed,
        teacher="r2plus1d_18",
        teacher_weights="KINETICS400_V1",
        student="mobilenet_v3_small_tsn",
        student_weights="IMAGENET1K_V1",
        data=DataConfig(source="ucf101:~/data/UCF101:1", height=112, width=112, clip_length=16),
        teacher_train=TrainConfig(epochs=10, batch_size=32, lr=1e-3, clips_per_video=4, backbone_lr_factor=0.1),
        student_train=TrainConfig(epochs=15, batch_size=64, lr=1e-3, clips_per_video=4, backbone_lr_factor=0.1),
        bench=BenchConfig(random_repeats=10, wall_repeats=3),
    )


#: profile name -> the profile's default config for a seed
PROFILES: dict[str, Callable[[int], Config]] = {"ci": _ci_profile, "full": _full_profile, "ucf101": _ucf101_profile}


def profile_config(profile: str = "ci", seed: int = 0) -> Config:
    """The default :class:`Config` of a profile (:data:`PROFILES`: ``ci``, ``full`` or ``ucf101``)."""
    if profile not in PROFILES:
        raise ConfigError(f"profile: unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    return PROFILES[profile](seed)


def full_profile_seeds() -> tuple[int, ...]:
    """Seeds over which the ``full`` profile reports mean ± std."""
    return (0, 1, 2)


# ----------------------------------------------------------------------------- overrides

#: keys that moved to another section, old -> new: an override of the old key is refused with the new name
MOVED_KEYS = {"bench.num_threads": "runtime.num_threads"}


def _pairs(overrides: dict[str, Any] | Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """``{"key": value}`` from a mapping or from ``"key=value"`` strings, and the malformed items."""
    if isinstance(overrides, dict):
        return dict(overrides), []
    pairs, problems = {}, []
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            problems.append(f"override {item!r} is not of the form key=value")
            continue
        key, value = item.split("=", 1)
        pairs[key.strip()] = value
    return pairs, problems


def apply_overrides(config: Config, overrides: dict[str, Any] | Sequence[str]) -> Config:
    """A validated copy of ``config`` with dotted-path overrides applied (``config`` is not changed).

    ``overrides`` is a mapping ``{"data.informative_fraction": 0.2}`` or a list of
    ``"key=value"`` strings as given to ``--set`` (strings are parsed into the
    field's type; a tuple field takes ``0.5,0.9``). Raises one
    :class:`~cdlib.runtime.errors.ConfigError` listing every unknown key, malformed item and
    value of the wrong type or out of range.
    """
    pairs, problems = _pairs(overrides)
    tree = config.to_dict()
    for key, value in pairs.items():
        if key in MOVED_KEYS:
            problems.append(f"config key {key!r} is now {MOVED_KEYS[key]!r}; set that instead")
            continue
        parts, node = key.split("."), tree
        for depth, part in enumerate(parts):
            if not isinstance(node, dict):
                problems.append(f"unknown config key {key!r}: {'.'.join(parts[:depth])} is not a section")
                break
            if part not in node:
                where = ".".join(parts[:depth]) or "the config"
                problems.append(f"unknown config key {key!r}: {where} has no field {part!r} (known: {', '.join(sorted(node))})")
                break
            if depth == len(parts) - 1:
                if isinstance(node[part], dict):
                    problems.append(f"config key {key!r} is a section; set one of its fields instead")
                else:
                    node[part] = value
            else:
                node = node[part]
    try:
        result = Config(**tree)
    except ConfigError as exc:
        problems += exc.problems
    if problems:
        raise _invalid(problems)
    return result


def make_config(profile: str = "ci", seed: int = 0, source: str | None = None,
                overrides: dict[str, Any] | Sequence[str] = ()) -> Config:
    """The config of ``profile`` and ``seed`` with ``data.source = source`` (if given), then ``overrides``.

    The one path of the command line (``--profile``, ``--seed``, ``--data``,
    ``--set``) and of the book's chapters (parameters ``profile``, ``seed``,
    ``data``, ``overrides``): both accept and refuse the same things.
    """
    base = profile_config(profile, seed)
    if source is None:
        return apply_overrides(base, overrides)
    pairs, problems = _pairs(overrides)
    if problems:
        raise _invalid(problems)
    return apply_overrides(base, {"data.source": source, **pairs})
