"""The teacher and the students, trained on first use, and their per-clip outputs on every split, as artifacts shared by
the CLI, the benchmark and the book.

Each is stored in the :class:`~cdlib.runtime.artifacts.ArtifactStore` under a hash of what made it (its spec,
:mod:`cdlib.experiment.students`, including the source of the modules involved), so a chapter never retrains
what the benchmark or another chapter already trained. The teacher trains with cross-entropy; the ladder's
students (CE, KD and CD) from the same initialisation and data; the derived students are built by the function
they were registered with (:data:`~cdlib.experiment.students.STUDENTS`).
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from cdlib.experiment.clips import data_spec, get_clips, resolve_store
from cdlib.experiment.config import Config
from cdlib.experiment.fitting import TrainedModel, fit_model, require_pretrained
from cdlib.experiment.outputs import ClipOutputs
from cdlib.experiment.students import (
    STUDENTS,
    loss_weights,
    model_spec_of,
    student_spec,
    student_train_config,
    teacher_spec,
)
from cdlib.experiment.train import predict
from cdlib.method.calibration import fit_temperature
from cdlib.method.losses import ConfidenceDistillationLoss
from cdlib.runtime import distributed
from cdlib.runtime.artifacts import ArtifactStore
from cdlib.runtime.device import configure_backend
from cdlib.runtime.progress import log


def get_teacher(cfg: Config, store: ArtifactStore | None = None) -> TrainedModel:
    """The teacher of ``cfg``, trained with cross-entropy on every clip with its video's label."""

    def objective_for():
        def objective(logits, idx):
            loss = nn.functional.cross_entropy(logits, bank.labels[idx].to(logits.device))
            return loss, {}

        return objective

    spec = teacher_spec(cfg)
    require_pretrained(cfg.teacher, cfg.teacher_weights, "teacher", spec, store)
    bank = get_clips(cfg, "train", store)
    return fit_model(cfg.teacher, spec, cfg, cfg.teacher_train, objective_for, cfg.seed, "teacher", store,
                     weights=cfg.teacher_weights)


def get_student(cfg: Config, variant: str = "cd", store: ArtifactStore | None = None) -> TrainedModel:
    """A student of the ladder: ``ce``/``ce_all`` (labels only), ``kd`` (+ distillation) or ``cd`` (+ confidence head).

    All variants start from the same initialisation (seeded by ``cfg.seed`` and the
    student's name); the ``ce_all``, KD and CD students see the same clips in the
    same order, the ``ce`` student the teacher's clips (:func:`student_train_config`).
    """
    weights = loss_weights(cfg, variant)
    spec = student_spec(cfg, variant)
    require_pretrained(cfg.student, cfg.student_weights, f"student-{variant}", spec, store)
    bank = get_clips(cfg, "train", store)
    teacher_logits = None
    target_temperature = 1.0
    if not STUDENTS.get(variant).label_only:
        teacher_logits = get_outputs(cfg, "teacher", "train", store).logits
        if weights.get("calibrated_teacher"):
            target_temperature = teacher_temperature(cfg, store)
    loss_args = {k: v for k, v in weights.items() if k != "calibrated_teacher"}

    def objective_for():
        loss_fn = ConfidenceDistillationLoss(**loss_args, target_temperature=target_temperature)

        def objective(outputs, idx):
            logits, score_logit = outputs
            teacher = teacher_logits[idx].to(logits.device) if teacher_logits is not None else None
            out = loss_fn(logits, score_logit, teacher, bank.labels[idx].to(logits.device))
            return out.total, {"ce": float(out.ce), "kd": float(out.kd), "bce": float(out.bce)}

        return objective

    init_seed = cfg.seed * 1000 + sum(map(ord, cfg.student))
    # Without the confidence loss (gamma = 0), the confidence head gets no gradient.
    return fit_model(cfg.student, spec, cfg, student_train_config(cfg, variant), objective_for, init_seed,
                     f"student-{variant}", store, weights=cfg.student_weights, unused_parameters=weights["gamma"] == 0)


def get_model(cfg: Config, which: str, store: ArtifactStore | None = None) -> TrainedModel:
    """``teacher`` or a registered student (:data:`STUDENTS`), trained or derived."""
    if which == "teacher":
        return get_teacher(cfg, store)
    derive = STUDENTS.get(which).derive
    return derive(cfg, store) if derive is not None else get_student(cfg, which, store)


def get_outputs(cfg: Config, which: str, split: str, store: ArtifactStore | None = None) -> ClipOutputs:
    """Per-clip outputs of the teacher or a student on ``split``, with the clips' labels, videos and positions
    from the split's clips, so that every consumer indexes clips the same way.

    The artifact holds the model's outputs alone (``logits`` and, for students,
    ``score_logit``); the bookkeeping comes from :func:`get_clips`.
    """
    store = resolve_store(store)
    spec = {"model": model_spec_of(cfg, which), "split": split, "clips": data_spec(cfg, split),
            "numerics": cfg.resolved_runtime.numerics()}

    def build(_):
        trained = get_model(cfg, which, store)
        runtime = cfg.resolved_runtime
        configure_backend(runtime)
        return predict(trained.model, get_clips(cfg, split, store), desc=f"{which} on {split}", runtime=runtime)

    predicted = distributed.get_or_create(store, "outputs", spec, build)
    bank = get_clips(cfg, split, store)
    return ClipOutputs(logits=predicted["logits"], score_logit=predicted.get("score_logit"), labels=bank.labels,
                       video=bank.video, position=bank.position, informative=bank.informative)


def teacher_temperature(cfg: Config, store: ArtifactStore | None = None) -> float:
    """Temperature of the teacher fitted by NLL on the validation split (Guo et al. 2017)."""
    val = get_outputs(cfg, "teacher", "val", store)
    temperature = fit_temperature(val.logits, val.labels)
    log(f"teacher temperature fitted on val: {temperature:.3f}")
    return temperature


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 of a model's weights: every state-dict entry's name, dtype, shape and bytes, in order.
    Two models have the same hash exactly when their weights are bitwise equal."""
    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        value = value.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}:".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
