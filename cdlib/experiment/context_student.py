"""The context student ``cd_ctx``: the CD student's trunk with a temporal module over the clips of a video and two
heads (:mod:`cdlib.method.context`), trained on whole train videos; registered in
:data:`~cdlib.experiment.students.STUDENTS`.
"""

from __future__ import annotations

import dataclasses

import torch

from cdlib.experiment.clips import resolve_store
from cdlib.experiment.config import Config
from cdlib.experiment.distance_student import get_features
from cdlib.experiment.fitting import TrainedModel, fit_context_heads
from cdlib.experiment.students import StudentVariant, loss_weights, register_student, student_spec
from cdlib.experiment.trained_models import get_outputs, get_student, teacher_temperature
from cdlib.method.context import context_student, listwise_loss
from cdlib.method.losses import ConfidenceDistillationLoss
from cdlib.runtime import distributed
from cdlib.runtime.artifacts import ArtifactStore, code_version


def context_spec(cfg: Config) -> dict:
    """What determines the ``cd_ctx`` student: the CD student (its trunk and its loss), the teacher whose
    outputs it distils, the context settings and the code that trains them."""
    return {"role": "context", "student": student_spec(cfg, "cd"), "context": dataclasses.asdict(cfg.context),
            "code": code_version("cdlib.method.context", "cdlib.method.losses")}


def get_context_student(cfg: Config, store: ArtifactStore | None = None) -> TrainedModel:
    """``cd_ctx``: the CD student's trunk, a temporal module over the clips of a video and the two heads
    (:func:`cdlib.method.context.context_student`), the module and heads trained on whole train videos with the CD
    student's loss (its ``cfg.distill`` weights and target) plus ``context.rank_weight`` times the listwise
    ranking term of the confidence targets (:func:`cdlib.method.context.listwise_loss`). It reads the train split
    only."""
    store = resolve_store(store)
    cd = get_student(cfg, "cd", store)
    c = cfg.context

    def build(_):
        features = get_features(cfg, "train", store)
        teacher = get_outputs(cfg, "teacher", "train", store)
        weights = loss_weights(cfg, "cd")
        temperature = teacher_temperature(cfg, store) if weights.pop("calibrated_teacher") else 1.0
        loss_fn = ConfidenceDistillationLoss(**weights, target_temperature=temperature)
        targets = loss_fn.target_fn((teacher.logits / temperature).softmax(-1), teacher.labels)

        def objective(logits, score_logit, mask, clips):
            out = loss_fn(logits[mask], score_logit[mask], teacher.logits[clips], teacher.labels[clips])
            total, components = out.total, {"ce": float(out.ce), "kd": float(out.kd), "bce": float(out.bce)}
            if c.rank_weight > 0:
                rank_target = torch.zeros_like(score_logit).masked_scatter(mask, targets[clips])
                rank = listwise_loss(score_logit, rank_target, mask, c.rank_temperature)
                total, components["rank"] = total + c.rank_weight * rank, float(rank.detach())
            return total, components

        torch.manual_seed(cfg.seed)
        model = context_student(cd.model, c.module, c.hidden, c.dropout)
        history = fit_context_heads(model.heads, features, teacher.video, objective, epochs=c.epochs,
                                    batch_videos=c.batch_videos, lr=c.lr, weight_decay=c.weight_decay, seed=cfg.seed,
                                    desc=f"context student ({c.module})")
        return {"heads": {key: value.cpu() for key, value in model.heads.state_dict().items()}, "history": history}

    spec = context_spec(cfg)
    payload = distributed.get_or_create(store, "context", spec, build)
    model = context_student(cd.model, c.module, c.hidden, c.dropout)
    model.heads.load_state_dict(payload["heads"])
    return TrainedModel(name=cd.name, model=model.eval(), history=payload["history"], spec=spec)


register_student("cd_ctx", "the CD student with video context: a temporal module over its clips' features "
                 "(cdlib.method.context)", StudentVariant(derive=get_context_student, spec=context_spec))
