"""The distance-aware student ``cd_da``: the CD student's penultimate features on every split, every candidate
distance-aware confidence of ``cfg.distance`` fitted on them and the one val chose (:mod:`cdlib.method.distance`),
and the student whose score head gives it; registered in :data:`~cdlib.experiment.students.STUDENTS`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from cdlib.experiment.clips import data_spec, get_clips, resolve_store
from cdlib.experiment.config import Config
from cdlib.experiment.fitting import TrainedModel
from cdlib.experiment.students import StudentVariant, register_student, student_spec
from cdlib.experiment.train import predict
from cdlib.experiment.trained_models import get_outputs, get_student
from cdlib.method import distance
from cdlib.runtime import distributed
from cdlib.runtime.artifacts import ArtifactStore, code_version
from cdlib.runtime.device import configure_backend
from cdlib.runtime.progress import log


def get_features(cfg: Config, split: str, store: ArtifactStore | None = None) -> torch.Tensor:
    """The CD student's penultimate features ``φ [M, D]`` on every clip of ``split``
    (:class:`cdlib.method.distance.FeatureStudent`), cached like its outputs."""
    store = resolve_store(store)
    spec = {"model": student_spec(cfg, "cd"), "split": split, "clips": data_spec(cfg, split),
            "numerics": cfg.resolved_runtime.numerics()}

    def build(_):
        runtime = cfg.resolved_runtime
        configure_backend(runtime)
        wrapped = distance.FeatureStudent(get_student(cfg, "cd", store).model)
        return {"features": predict(wrapped, get_clips(cfg, split, store), desc=f"features on {split}",
                                    runtime=runtime)["features"]}

    return distributed.get_or_create(store, "features", spec, build)["features"]


def distance_spec(cfg: Config) -> dict:
    """What determines the ``cd_da`` student: the CD student, the distance settings and the code that fits them."""
    return {"role": "distance", "student": student_spec(cfg, "cd"), "distance": dataclasses.asdict(cfg.distance),
            "code": code_version("cdlib.method.distance")}


@dataclass
class DistanceFit:
    """Every distance-aware confidence of ``cfg.distance`` fitted for the CD student, and the one val chose.

    ``candidates``: :class:`cdlib.method.distance.DistanceConfidence` by name
    (``"gaussian@0.99"``), ``val_auroc``: each one's AUROC on the val clips for
    "the teacher is right", ``chosen``: the name :func:`cdlib.method.distance.select_confidence` picked.
    """

    candidates: dict
    val_auroc: dict[str, float]
    chosen: str

    @property
    def confidence(self):
        return self.candidates[self.chosen]


def get_distance_fit(cfg: Config, store: ArtifactStore | None = None) -> DistanceFit:
    """Fit every candidate of ``cfg.distance`` on the CD student's train features (distance; ``gaussian``: one
    Gaussian per clip label) and val features (gate), and choose on val (:mod:`cdlib.method.distance`). It reads the
    train and val splits only, so test-only settings (``data.test_shift``, ...) cannot change it."""
    def build(_):
        d = cfg.distance
        val_features = get_features(cfg, "val", store)
        candidates = distance.fit_candidates(
            get_features(cfg, "train", store), get_clips(cfg, "train", store).labels, val_features,
            d.methods, d.quantiles, shrinkage=d.shrinkage, k=d.knn_k, max_bank=d.knn_bank, seed=cfg.seed)
        val_cd, val_teacher = get_outputs(cfg, "cd", "val", store), get_outputs(cfg, "teacher", "val", store)
        chosen, val_auroc = distance.select_confidence(candidates, val_cd.score, val_features,
                                                       val_teacher.correct)
        log(f"distance-aware confidence chosen on val: {chosen} (val AUROC {val_auroc[chosen]:.3f})")
        return {**distance.candidates_state(candidates), "val_auroc": val_auroc, "chosen": chosen}

    payload = distributed.get_or_create(resolve_store(store), "distance", distance_spec(cfg), build)
    return DistanceFit(distance.candidates_from_state(payload), dict(payload["val_auroc"]), payload["chosen"])


def get_distance_student(cfg: Config, store: ArtifactStore | None = None) -> TrainedModel:
    """``cd_da``: the CD student with the distance-aware score head of :func:`get_distance_fit`'s chosen
    confidence, so that ``σ(score_logit) = s_da`` (:func:`cdlib.method.distance.with_distance_head`); same class
    logits."""
    cd = get_student(cfg, "cd", store)
    model = distance.with_distance_head(cd.model, get_distance_fit(cfg, store).confidence)
    return TrainedModel(name=cd.name, model=model, history=cd.history, spec=distance_spec(cfg))


register_student("cd_da", "the CD student with the distance-aware score s_da (cdlib.method.distance)",
                 StudentVariant(derive=get_distance_student, spec=distance_spec))
