"""The students the benchmark evaluates (the registry :data:`STUDENTS`: the trained ladder, and the students
derived from it) and the specs that key every trained model's artifact: :func:`teacher_spec`,
:func:`student_spec` (with each student's loss arguments and training settings) and :func:`model_spec_of`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from cdlib.experiment.clips import DATA_CODE, data_spec
from cdlib.experiment.config import Config, DistillConfig, TrainConfig
from cdlib.experiment.fitting import TrainedModel
from cdlib.models import model_fingerprint, weights_key
from cdlib.runtime import distributed
from cdlib.runtime.artifacts import code_version
from cdlib.runtime.errors import ConfigError
from cdlib.runtime.registry import Registry


@dataclass(frozen=True)
class StudentVariant:
    """A student the benchmark evaluates, registered in :data:`STUDENTS` by :func:`register_student`.

    A *trained* variant has ``loss``, its loss arguments from ``cfg.distill``
    (:func:`loss_weights`), and ``label_only`` when that loss reads no teacher. A
    *derived* variant is made from a trained student without training: ``derive``
    ``(cfg, store) ->`` :class:`~cdlib.experiment.fitting.TrainedModel` builds it and ``spec`` ``cfg -> dict`` is what
    keys its artifacts.
    """

    loss: Callable[[DistillConfig], dict] | None = None
    label_only: bool = False
    derive: Callable[..., TrainedModel] | None = None
    spec: Callable[[Config], dict] | None = None


#: every student whose per-clip outputs the benchmark evaluates, by name (:class:`~cdlib.runtime.registry.Registry`)
STUDENTS: Registry[StudentVariant] = Registry("student")


def register_student(name: str, description: str, variant: StudentVariant) -> StudentVariant:
    """Add ``variant`` to :data:`STUDENTS`: the benchmark evaluates it, and policies may name it."""
    if (variant.loss is None) == (variant.derive is None) or (variant.derive is None) != (variant.spec is None):
        raise ConfigError(f"student {name!r}: give either loss (trained) or derive and spec (derived)")
    return STUDENTS.register(name, variant, description)


def trained_students() -> list[str]:
    """The registered students that are trained (the ladder), in registration order."""
    return [name for name, variant in STUDENTS.items() if variant.loss is not None]


# The ladder: labels only (ce on the teacher's clips, ce_all on every clip as the distilled students),
# + distillation (kd), + confidence head (cd); the derived cd_da and cd_ctx are registered by
# cdlib.experiment.distance_student and cdlib.experiment.context_student.
_LABELS_ONLY = StudentVariant(loss=lambda d: {"alpha": d.alpha, "beta": 0.0, "gamma": 0.0}, label_only=True)
register_student("ce", "labels only, trained on the teacher's clips", _LABELS_ONLY)
register_student("ce_all", "labels only, trained on every clip as the distilled students", _LABELS_ONLY)
register_student("kd", "labels + distillation from the teacher",
                 StudentVariant(loss=lambda d: {"alpha": d.alpha, "beta": d.beta, "gamma": 0.0, "tau": d.tau}))
register_student("cd", "labels + distillation + the confidence head (the method's student)",
                 StudentVariant(loss=lambda d: {"alpha": d.alpha, "beta": d.beta, "gamma": d.gamma, "tau": d.tau,
                                                "target": d.target, "calibrated_teacher": d.calibrated_teacher}))

#: training and prediction: the loop, how clips are read and batched, devices and processes
MODEL_CODE = ("cdlib.experiment.train", "cdlib.data.loading", "cdlib.runtime.device", "cdlib.runtime.distributed")


def training_numerics(cfg: Config) -> dict:
    """What of the runtime changes a trained model beyond rounding: bf16 autocast, and how many
    processes' batch norms each see a slice of the batch (1: the whole batch, as one process or
    SyncBatchNorm sees it). Not the device: a model trained in float32 on a GPU serves the CPU too."""
    runtime = cfg.resolved_runtime
    world = distributed.launched_world_size()
    synced = runtime.sync_batchnorm and runtime.device.type == "cuda"
    return {**runtime.numerics(), "batchnorm_processes": 1 if synced else world}


def teacher_spec(cfg: Config) -> dict:
    spec = {
        "role": "teacher",
        "model": cfg.teacher,
        "model_code": model_fingerprint(cfg.teacher),
        "train": dataclasses.asdict(cfg.teacher_train),
        **data_spec(cfg),
        "numerics": training_numerics(cfg),
        "code": code_version(*MODEL_CODE, *DATA_CODE),
    }
    if cfg.teacher_weights:  # only then, so that models trained from scratch keep their keys
        spec["weights"] = weights_key(cfg.teacher, cfg.teacher_weights)
    return spec


def loss_weights(cfg: Config, variant: str) -> dict:
    """Loss arguments of a trained student (:data:`STUDENTS`): ``ce`` and ``ce_all`` (β = γ = 0), ``kd`` (γ = 0),
    ``cd``; a ConfigError for an unknown or derived one."""
    entry = STUDENTS.get(variant)
    if entry.loss is None:
        raise ConfigError(f"student {variant!r} is derived from a trained student, not trained: it has no loss")
    return entry.loss(cfg.distill)


def student_train_config(cfg: Config, variant: str) -> TrainConfig:
    """Training settings of a student variant: ``cfg.student_train``, except which clips the ``ce`` student sees.

    Two students learn from labels alone. ``ce`` trains, like the teacher, on the
    clips the teacher trains on (``cfg.ce_student_clips = "teacher"``, the
    default): given the video's label on every clip of an untrimmed video, a
    student this small stays near chance, since most clips show no action or
    another class's motion and nothing tells it which. ``ce_all`` is that
    student: it trains on exactly the clips of the KD and CD students
    (``cfg.student_train.clips``), so it is the baseline that differs from them
    in the loss alone. The KD and CD students train on every clip, where the
    teacher's outputs say what each clip shows. The book's distillation chapter
    reports both CE students.
    """
    loss_weights(cfg, variant)  # validates the variant
    if variant != "ce":
        return cfg.student_train
    choice = cfg.ce_student_clips
    return dataclasses.replace(cfg.student_train, clips=cfg.teacher_train.clips if choice == "teacher" else choice)


def student_spec(cfg: Config, variant: str) -> dict:
    weights = loss_weights(cfg, variant)
    spec = {
        "role": "student",
        "variant": variant,
        "model": cfg.student,
        "model_code": model_fingerprint(cfg.student),
        "loss": weights,
        "train": dataclasses.asdict(student_train_config(cfg, variant)),
        **data_spec(cfg),
        "numerics": training_numerics(cfg),
        "code": code_version(*MODEL_CODE, *DATA_CODE, "cdlib.method.losses"),
    }
    if not STUDENTS.get(variant).label_only:
        spec["teacher"] = teacher_spec(cfg)
    if cfg.student_weights:
        spec["weights"] = weights_key(cfg.student, cfg.student_weights)
    return spec


def model_spec_of(cfg: Config, which: str) -> dict:
    if which == "teacher":
        return teacher_spec(cfg)
    spec = STUDENTS.get(which).spec
    return spec(cfg) if spec is not None else student_spec(cfg, which)
