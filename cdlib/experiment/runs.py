"""Trained models and their per-clip outputs, as artifacts shared by the CLI, the benchmark and the book.

Everything here is asked for by config and built on first use: the clip banks
of the data splits, the teacher, the student ladder (CE, KD and CD students, all
from the same initialisation and data), the teacher's calibration temperature,
and every model's per-clip outputs on every split (:class:`ClipOutputs`). Each
is stored in the :class:`~cdlib.runtime.artifacts.ArtifactStore` under a hash of what
made it (including the source of the modules involved), so a chapter never
retrains what the benchmark or another chapter already trained.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from cdlib.data import ClipBank, build_dataset
from cdlib.data.base import ClipIndex
from cdlib.data.loading import StreamedClips, decoded_bytes
from cdlib.experiment.config import Config, DistillConfig, TrainConfig
from cdlib.experiment.train import CLIP_CHOICES, epoch_seed, learning_rate, predict, train_model
from cdlib.method.context import context_student, listwise_loss, pad_videos
from cdlib.method.losses import ConfidenceDistillationLoss
from cdlib.models import create_model, model_fingerprint, require_weights, weights_key
from cdlib.runtime import distributed
from cdlib.runtime.artifacts import PAYLOAD, ArtifactStore, code_version, config_hash
from cdlib.runtime.device import IN_MEMORY_LIMIT_BYTES, configure_backend, resolve_runtime
from cdlib.runtime.errors import ConfigError
from cdlib.runtime.progress import log, progress_bar
from cdlib.runtime.registry import Registry

@dataclass(frozen=True)
class StudentVariant:
    """A student the benchmark evaluates, registered in :data:`STUDENTS` by :func:`register_student`.

    A *trained* variant has ``loss``, its loss arguments from ``cfg.distill``
    (:func:`loss_weights`), and ``label_only`` when that loss reads no teacher. A
    *derived* variant is made from a trained student without training: ``derive``
    ``(cfg, store) -> TrainedModel`` builds it and ``spec`` ``cfg -> dict`` is what
    keys its artifacts.
    """

    loss: Callable[[DistillConfig], dict] | None = None
    label_only: bool = False
    derive: Callable[..., "TrainedModel"] | None = None
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
# + distillation (kd), + confidence head (cd); the derived cd_da is registered with get_distance_student.
_LABELS_ONLY = StudentVariant(loss=lambda d: {"alpha": d.alpha, "beta": 0.0, "gamma": 0.0}, label_only=True)
register_student("ce", "labels only, trained on the teacher's clips", _LABELS_ONLY)
register_student("ce_all", "labels only, trained on every clip as the distilled students", _LABELS_ONLY)
register_student("kd", "labels + distillation from the teacher",
                 StudentVariant(loss=lambda d: {"alpha": d.alpha, "beta": d.beta, "gamma": 0.0, "tau": d.tau}))
register_student("cd", "labels + distillation + the confidence head (the method's student)",
                 StudentVariant(loss=lambda d: {"alpha": d.alpha, "beta": d.beta, "gamma": d.gamma, "tau": d.tau,
                                                "target": d.target, "calibrated_teacher": d.calibrated_teacher}))

# Training and prediction: the loop, how clips are read and batched, devices and processes.
_MODEL_CODE = ("cdlib.experiment.train", "cdlib.data.loading", "cdlib.runtime.device", "cdlib.runtime.distributed")
_DATA_CODE = ("cdlib.data.base", "cdlib.data.synthetic")


def resolve_store(store: ArtifactStore | None) -> ArtifactStore:
    """``store``, or the default :class:`~cdlib.runtime.artifacts.ArtifactStore` when None: what every ``store=None``
    argument of this module and of the modules built on it (:mod:`cdlib.experiment.probes`) means."""
    return store if store is not None else ArtifactStore()


#: data fields that change the test split only: models and the train/val banks do not depend on them
TEST_ONLY_FIELDS = ("test_shift", "test_informative_fraction", "num_test")


def data_spec(cfg: Config, split: str = "train") -> dict:
    """What determines the clips of ``split`` (for ``train``: everything a trained model depends on).

    A test ``rho`` (``data.test_informative_fraction``) equal to the training one is written as its default 0
    ("the same"): both give the same test videos, so a sweep over test ``rho`` reuses the outputs at that value.
    """
    data = dataclasses.asdict(cfg.data)
    if data["source"] != "synthetic":  # imported here: the layouts need PyAV, the synthetic set does not
        from cdlib.data.layouts import normalize_source

        data["source"] = normalize_source(data["source"])
    if split != "test":
        for name in TEST_ONLY_FIELDS:
            del data[name]
    elif data["test_informative_fraction"] == data["informative_fraction"]:
        data["test_informative_fraction"] = 0.0
    return {"data": data, "seed": cfg.seed}


# ----------------------------------------------------------------------------- data

@functools.lru_cache(maxsize=8)
def _dataset_cached(split: str, cfg_json: str):
    from cdlib.experiment.config import DataConfig

    spec = json.loads(cfg_json)
    # Real videos: process 0 scans first (decoding into the shared cache), the others then read the cache.
    with distributed.main_first():
        return build_dataset(DataConfig(**spec["data"]), split, seed=spec["seed"])


@functools.lru_cache(maxsize=8)
def _bank_cached(root: str, data_key: str, split: str, cfg_json: str) -> ClipBank:
    spec = json.loads(cfg_json)
    dataset = _dataset_cached(split, cfg_json)
    if spec["data"]["source"] != "synthetic":
        # Real videos have their own decode cache keyed by file, size and mtime.
        return ClipBank.from_dataset(dataset)
    bank_spec = {**spec, "split": split, "code": code_version(*_DATA_CODE)}
    payload = distributed.get_or_create(ArtifactStore(root), "bank", bank_spec,
                                        lambda _: dataclasses.asdict(ClipBank.from_dataset(dataset)), collective=False)
    return ClipBank(**payload)


@functools.lru_cache(maxsize=8)
def _clips_cached(root: str, data_key: str, split: str, cfg_json: str, in_memory: str) -> ClipIndex:
    dataset = _dataset_cached(split, cfg_json)
    if in_memory == "on" or (in_memory == "auto" and decoded_bytes(dataset) <= IN_MEMORY_LIMIT_BYTES):
        return _bank_cached(root, data_key, split, cfg_json)
    return StreamedClips.from_dataset(dataset)


def get_bank(cfg: Config, split: str, store: ArtifactStore | None = None) -> ClipBank:
    """All clips of ``split`` in memory (synthetic banks are cached on disk, real videos decoded once)."""
    spec = data_spec(cfg, split)
    return _bank_cached(str(resolve_store(store).root), config_hash(spec), split, json.dumps(spec, sort_keys=True))


def get_clips(cfg: Config, split: str, store: ArtifactStore | None = None) -> ClipIndex:
    """The clips of ``split`` that training and prediction read: in memory (:func:`get_bank`) or streamed.

    ``runtime.in_memory``: ``on`` keeps them in memory, ``off`` streams them
    (:class:`~cdlib.data.loading.StreamedClips`: each video is read when one of
    its clips is asked for), ``auto`` keeps a split in memory when its decoded
    clips take at most :data:`~cdlib.runtime.device.IN_MEMORY_LIMIT_BYTES`. Both give
    the same clips in the same order.
    """
    spec = data_spec(cfg, split)
    choice = resolve_runtime(cfg).in_memory
    return _clips_cached(str(resolve_store(store).root), config_hash(spec), split, json.dumps(spec, sort_keys=True), choice)


def get_dataset(cfg: Config, split: str):
    """The :class:`~cdlib.data.ClipDataset` of ``split`` (for metadata and single videos)."""
    return build_dataset(cfg.data, split, seed=cfg.seed)


# ----------------------------------------------------------------------------- models

@dataclass
class TrainedModel:
    """A trained model with its training history and the spec that keys its artifact."""

    name: str
    model: nn.Module
    history: list[dict]
    spec: dict

    @property
    def key(self) -> str:
        return config_hash(self.spec)


def training_numerics(cfg: Config) -> dict:
    """What of the runtime changes a trained model beyond rounding: bf16 autocast, and how many
    processes' batch norms each see a slice of the batch (1: the whole batch, as one process or
    SyncBatchNorm sees it). Not the device: a model trained in float32 on a GPU serves the CPU too."""
    runtime = resolve_runtime(cfg)
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
        "code": code_version(*_MODEL_CODE, *_DATA_CODE),
    }
    if cfg.teacher_weights:  # only then, so that models trained from scratch keep their keys
        spec["weights"] = weights_key(cfg.teacher, cfg.teacher_weights)
    return spec


def _require_pretrained(name: str, weights: str, kind: str, spec: dict, store: ArtifactStore | None) -> None:
    """Fail now, before the data set is decoded, if a model still to train lacks its pretrained weights file."""
    if weights and not (resolve_store(store).directory(kind, spec) / PAYLOAD).exists():
        require_weights(name, weights)


def _fit(name: str, spec: dict, cfg: Config, train_cfg: TrainConfig, objective_for, init_seed: int, kind: str,
         store: ArtifactStore | None, weights: str = "", unused_parameters: bool = False) -> TrainedModel:
    store = resolve_store(store)
    train_bank = get_clips(cfg, "train", store)
    num_classes = train_bank.num_classes

    def build(work_dir):
        runtime = resolve_runtime(cfg)
        configure_backend(runtime)
        torch.manual_seed(init_seed)
        model = create_model(name, num_classes=num_classes, weights=weights)
        history = train_model(
            model, train_bank, objective_for(), train_cfg, seed=cfg.seed, work_dir=work_dir,
            val_bank=get_clips(cfg, "val", store), desc=f"{kind} {name}", runtime=runtime,
            unused_parameters=unused_parameters,
        )
        state = {key: value.cpu() for key, value in model.state_dict().items()}
        return {"state_dict": state, "history": history, "num_classes": num_classes}

    payload = distributed.get_or_create(store, kind, spec, build)
    model = create_model(name, num_classes=payload["num_classes"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return TrainedModel(name=name, model=model, history=payload["history"], spec=spec)


def get_teacher(cfg: Config, store: ArtifactStore | None = None) -> TrainedModel:
    """The teacher of ``cfg``, trained with cross-entropy on every clip with its video's label."""

    def objective_for():
        def objective(logits, idx):
            loss = nn.functional.cross_entropy(logits, bank.labels[idx].to(logits.device))
            return loss, {}

        return objective

    _require_pretrained(cfg.teacher, cfg.teacher_weights, "teacher", teacher_spec(cfg), store)
    bank = get_clips(cfg, "train", store)
    return _fit(cfg.teacher, teacher_spec(cfg), cfg, cfg.teacher_train, objective_for, cfg.seed, "teacher", store,
                weights=cfg.teacher_weights)


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
    if choice not in ("teacher", *CLIP_CHOICES):
        raise ConfigError(f"ce_student_clips must be one of teacher, {', '.join(CLIP_CHOICES)}; got {choice!r}")
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
        "code": code_version(*_MODEL_CODE, *_DATA_CODE, "cdlib.method.losses"),
    }
    if not STUDENTS.get(variant).label_only:
        spec["teacher"] = teacher_spec(cfg)
    if cfg.student_weights:
        spec["weights"] = weights_key(cfg.student, cfg.student_weights)
    return spec


def get_student(cfg: Config, variant: str = "cd", store: ArtifactStore | None = None) -> TrainedModel:
    """A student of the ladder: ``ce``/``ce_all`` (labels only), ``kd`` (+ distillation) or ``cd`` (+ confidence head).

    All variants start from the same initialisation (seeded by ``cfg.seed`` and the
    student's name); the ``ce_all``, KD and CD students see the same clips in the
    same order, the ``ce`` student the teacher's clips (:func:`student_train_config`).
    """
    weights = loss_weights(cfg, variant)
    _require_pretrained(cfg.student, cfg.student_weights, f"student-{variant}", student_spec(cfg, variant), store)
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
    return _fit(cfg.student, student_spec(cfg, variant), cfg, student_train_config(cfg, variant), objective_for, init_seed,
                f"student-{variant}", store, weights=cfg.student_weights, unused_parameters=weights["gamma"] == 0)


def get_model(cfg: Config, which: str, store: ArtifactStore | None = None) -> TrainedModel:
    """``teacher`` or a registered student (:data:`STUDENTS`), trained or derived."""
    if which == "teacher":
        return get_teacher(cfg, store)
    derive = STUDENTS.get(which).derive
    return derive(cfg, store) if derive is not None else get_student(cfg, which, store)


def model_spec_of(cfg: Config, which: str) -> dict:
    if which == "teacher":
        return teacher_spec(cfg)
    spec = STUDENTS.get(which).spec
    return spec(cfg) if spec is not None else student_spec(cfg, which)


# ----------------------------------------------------------------------------- the distance-aware student

def get_features(cfg: Config, split: str, store: ArtifactStore | None = None) -> torch.Tensor:
    """The CD student's penultimate features ``φ [M, D]`` on every clip of ``split``
    (:class:`cdlib.method.distance.FeatureStudent`), cached like its outputs."""
    from cdlib.method.distance import FeatureStudent

    store = resolve_store(store)
    spec = {"model": student_spec(cfg, "cd"), "split": split, "clips": data_spec(cfg, split),
            "numerics": resolve_runtime(cfg).numerics()}

    def build(_):
        runtime = resolve_runtime(cfg)
        configure_backend(runtime)
        wrapped = FeatureStudent(get_student(cfg, "cd", store).model)
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
    from cdlib.method import distance

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
    confidence, so that ``σ(score_logit) = s_da`` (:func:`cdlib.method.distance.with_distance_head`); same class logits."""
    from cdlib.method.distance import with_distance_head

    cd = get_student(cfg, "cd", store)
    model = with_distance_head(cd.model, get_distance_fit(cfg, store).confidence)
    return TrainedModel(name=cd.name, model=model, history=cd.history, spec=distance_spec(cfg))


register_student("cd_da", "the CD student with the distance-aware score s_da (cdlib.method.distance)",
                 StudentVariant(derive=get_distance_student, spec=distance_spec))


# ----------------------------------------------------------------------------- the context student

def context_spec(cfg: Config) -> dict:
    """What determines the ``cd_ctx`` student: the CD student (its trunk and its loss), the teacher whose
    outputs it distils, the context settings and the code that trains them."""
    return {"role": "context", "student": student_spec(cfg, "cd"), "context": dataclasses.asdict(cfg.context),
            "code": code_version("cdlib.method.context", "cdlib.method.losses")}


def get_context_student(cfg: Config, store: ArtifactStore | None = None) -> TrainedModel:
    """``cd_ctx``: the CD student's trunk, a temporal module over the clips of a video and the two heads
    (:func:`cdlib.method.context.context_student`), the module and heads trained on whole train videos with the CD
    student's loss (its ``cfg.distill`` weights and target) plus ``context.rank_weight`` times the listwise
    ranking term of the confidence targets (:func:`cdlib.method.context.listwise_loss`). It reads the train split only."""
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

    payload = distributed.get_or_create(store, "context", context_spec(cfg), build)
    model = context_student(cd.model, c.module, c.hidden, c.dropout)
    model.heads.load_state_dict(payload["heads"])
    return TrainedModel(name=cd.name, model=model.eval(), history=payload["history"], spec=context_spec(cfg))


def fit_context_heads(heads, features: Tensor, video: Tensor, objective, *, epochs: int,
                      batch_videos: int, lr: float, weight_decay: float, seed: int, desc: str = "context") -> list[dict]:
    """Train the :class:`cdlib.method.context.ContextHeads` ``heads`` in place on whole videos of per-clip
    ``features [M, D]`` (clips stored video by video, ``video [M]`` their video); return the per-epoch history.

    ``objective(logits [B, L, K], score_logit [B, L], mask [B, L], clips [m]) -> (loss, components)`` is the loss
    of a padded batch of ``B`` videos, whose real clips (``mask``, in order) are the split's clips ``clips``.
    Batches of ``batch_videos`` videos in an order drawn from ``seed`` and the epoch; AdamW with the warm-up and
    cosine schedule of :func:`cdlib.experiment.train.learning_rate`.
    """
    sizes = torch.bincount(video).tolist()
    starts = torch.tensor([0, *sizes[:-1]]).cumsum(0).tolist()
    optimizer = torch.optim.AdamW(heads.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(sizes) / batch_videos)
    total = steps_per_epoch * epochs
    history = []
    for epoch in progress_bar(range(epochs), desc=desc):
        generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
        torch.manual_seed(epoch_seed(seed, epoch))  # dropout noise of this epoch
        order = torch.randperm(len(sizes), generator=generator).tolist()
        heads.train()
        totals, seen = {}, 0
        for step in range(steps_per_epoch):
            chosen = order[step * batch_videos:(step + 1) * batch_videos]
            clips = torch.cat([torch.arange(starts[v], starts[v] + sizes[v]) for v in chosen])
            padded, mask = pad_videos(features[clips], [sizes[v] for v in chosen])
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(lr, epoch * steps_per_epoch + step, total)
            loss, components = objective(*heads(padded, mask), mask, clips)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(clips)
            for name, value in {"loss": loss.item(), **components}.items():
                totals[name] = totals.get(name, 0.0) + value * len(clips)
        history.append({"epoch": epoch + 1, **{f"train_{k}": v / seen for k, v in totals.items()}})
    heads.eval()
    log(f"{desc}: " + ", ".join(f"{k}={v:.4f}" for k, v in history[-1].items() if k != "epoch"))
    return history


register_student("cd_ctx", "the CD student with video context: a temporal module over its clips' features "
                 "(cdlib.method.context)", StudentVariant(derive=get_context_student, spec=context_spec))


# ----------------------------------------------------------------------------- outputs

@dataclass(frozen=True, eq=False)  # eq: tensors have no single truth value
class ClipOutputs:
    """One model's outputs on every clip of a split, with the split's bookkeeping of its clips.

    ``M`` clips of ``K`` classes, stored video by video (as in
    :class:`~cdlib.data.base.ClipIndex`): clip ``m`` belongs to video
    ``video[m]`` at ``position[m]`` inside it and carries the video's label
    ``labels[m]``; ``informative[m]`` is 1/0 where the data say whether the clip
    shows the action, -1 where they do not. ``logits [M, K]`` are the model's
    class logits, ``score_logit [M]`` a student's confidence logit (None for the
    teacher, which has no confidence head). ``exit_score [M]``: FrameExit's exit
    score per clip (:func:`get_exit_scores`), on the teacher's outputs where a
    benchmark evaluates ``frame_exit`` (:func:`cdlib.experiment.evaluation.collect_outputs`), else None.
    """

    logits: torch.Tensor
    labels: torch.Tensor
    video: torch.Tensor
    position: torch.Tensor
    informative: torch.Tensor
    score_logit: torch.Tensor | None = None
    exit_score: torch.Tensor | None = None

    @property
    def num_videos(self) -> int:
        return int(self.video.max()) + 1

    @property
    def score(self) -> torch.Tensor | None:
        """The confidence ``s = σ(score_logit)`` per clip, ``[M]`` (None without a confidence head)."""
        return torch.sigmoid(self.score_logit) if self.score_logit is not None else None

    @property
    def correct(self) -> torch.Tensor:
        """Whether the model's top class on each clip is the video's label, bool ``[M]``."""
        return self.logits.argmax(-1) == self.labels

    def video_labels(self) -> torch.Tensor:
        """Label of each video, ``[num_videos]``."""
        labels = torch.zeros(self.num_videos, dtype=torch.long)
        labels[self.video] = self.labels
        return labels

    def split_by_video(self, values: torch.Tensor) -> list[torch.Tensor]:
        """A per-clip tensor ``[M, ...]`` cut into one tensor per video, in video order."""
        return list(torch.split(values, torch.bincount(self.video).tolist()))

    def video_probs(self) -> torch.Tensor:
        """Dense averaging: the mean clip softmax of each video, ``[num_videos, K]``."""
        probs = self.logits.softmax(-1)
        total = torch.zeros(self.num_videos, probs.shape[1]).index_add_(0, self.video, probs)
        return total / torch.bincount(self.video, minlength=self.num_videos).unsqueeze(1)

    def dense_accuracy(self) -> float:
        """Video-level accuracy of averaging the clip softmax over all clips of each video."""
        return float((self.video_probs().argmax(1) == self.video_labels()).float().mean())


def get_outputs(cfg: Config, which: str, split: str, store: ArtifactStore | None = None) -> ClipOutputs:
    """Per-clip outputs of the teacher or a student on ``split``, with the clips' labels, videos and positions
    from the split's clips, so that every consumer indexes clips the same way.

    The artifact holds the model's outputs alone (``logits`` and, for students,
    ``score_logit``); the bookkeeping comes from :func:`get_clips`.
    """
    store = resolve_store(store)
    spec = {"model": model_spec_of(cfg, which), "split": split, "clips": data_spec(cfg, split),
            "numerics": resolve_runtime(cfg).numerics()}

    def build(_):
        trained = get_model(cfg, which, store)
        runtime = resolve_runtime(cfg)
        configure_backend(runtime)
        return predict(trained.model, get_clips(cfg, split, store), desc=f"{which} on {split}", runtime=runtime)

    predicted = distributed.get_or_create(store, "outputs", spec, build)
    bank = get_clips(cfg, split, store)
    return ClipOutputs(logits=predicted["logits"], score_logit=predicted.get("score_logit"), labels=bank.labels,
                       video=bank.video, position=bank.position, informative=bank.informative)


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 of a model's weights: every state-dict entry's name, dtype, shape and bytes, in order.
    Two models have the same hash exactly when their weights are bitwise equal."""
    import hashlib

    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        value = value.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}:".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def teacher_temperature(cfg: Config, store: ArtifactStore | None = None) -> float:
    """Temperature of the teacher fitted by NLL on the validation split (Guo et al. 2017)."""
    from cdlib.method.calibration import fit_temperature

    val = get_outputs(cfg, "teacher", "val", store)
    temperature = fit_temperature(val.logits, val.labels)
    log(f"teacher temperature fitted on val: {temperature:.3f}")
    return temperature



# ----------------------------------------------------------------------------- the FrameExit gate

class _PointwiseHead(nn.Module):
    """A 1x1x1 ``Conv3d`` classification layer (S3D's) applied to pooled features ``[B, D]``: the same logits as
    the convolution followed by the network's mean over time and space, which commute with it."""

    def __init__(self, conv: nn.Conv3d):
        super().__init__()
        self.conv = conv

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.conv(features[:, :, None, None, None]).flatten(1)


class _VideoBody(nn.Module):
    """A :class:`~cdlib.models.pretrained.VideoClassifier` up to the input of its classification layer."""

    def __init__(self, renormalize: nn.Module, net: nn.Module):
        super().__init__()
        self.renormalize, self.net = renormalize, net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.renormalize(x))


def _without_layer(module: nn.Module, dotted: str) -> nn.Module:
    """A shallow copy of ``module`` whose submodule at ``dotted`` is ``nn.Identity``; every other submodule (and
    every weight) is shared with ``module``, which is left unchanged."""
    import copy

    first, _, rest = dotted.partition(".")
    clone = copy.copy(module)
    clone._modules = dict(module._modules)
    clone._modules[first] = nn.Identity() if not rest else _without_layer(module._modules[first], rest)
    return clone


class TeacherWithFeatures(nn.Module):
    """A teacher that also returns its penultimate features: ``x -> (logits [B, K], features [B, D])``, the features
    being the input of its classification layer (the last ``nn.Linear``; S3D's 1x1x1 convolution, on its pooled
    input). For inference (dropout before the classifier is left out, as in eval mode); TorchScript-able, so that
    :func:`cdlib.method.cost.timing_model` freezes it like the teacher.

    Knows :class:`~cdlib.models.small.C3DSmall` (``c3d_small``, ``c3d_wide``) and the torchvision
    :class:`~cdlib.models.pretrained.VideoClassifier` teachers; a :class:`ConfigError` for any other model.
    """

    def __init__(self, teacher: nn.Module):
        super().__init__()
        from cdlib.models.pretrained import VideoClassifier
        from cdlib.models.small import C3DSmall

        if isinstance(teacher, C3DSmall):
            self.body, self.head = teacher.features, teacher.classifier
        elif isinstance(teacher, VideoClassifier):
            path = teacher.new_layers[0].removeprefix("net.")
            head = teacher.net.get_submodule(path)
            if isinstance(head, nn.Conv3d) and head.kernel_size == (1, 1, 1):
                head = _PointwiseHead(head)
            elif not isinstance(head, nn.Linear):
                raise ConfigError(f"teacher features: the classification layer {path} of {type(teacher.net).__name__} "
                                  f"is a {type(head).__name__}, neither nn.Linear nor a 1x1x1 Conv3d")
            self.body, self.head = _VideoBody(teacher.renormalize, _without_layer(teacher.net, path)), head
        else:
            raise ConfigError(f"teacher features: no known split of a {type(teacher).__name__} into features and "
                              "classifier (known: C3DSmall, VideoClassifier)")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x).flatten(1)
        return self.head(features), features


def get_teacher_features(cfg: Config, split: str, store: ArtifactStore | None = None) -> torch.Tensor:
    """The teacher's penultimate features ``[M, D]`` on every clip of ``split`` (:class:`TeacherWithFeatures`),
    cached like its outputs (:func:`get_features` for the CD student's)."""
    store = resolve_store(store)
    spec = {"model": teacher_spec(cfg), "split": split, "clips": data_spec(cfg, split),
            "numerics": resolve_runtime(cfg).numerics(), "features": "input of the classification layer"}

    def build(_):
        runtime = resolve_runtime(cfg)
        configure_backend(runtime)
        wrapped = TeacherWithFeatures(get_teacher(cfg, store).model)
        # predict names its outputs by position (logits, score_logit, ...): the second is the features here
        _, features = predict(wrapped, get_clips(cfg, split, store), desc=f"teacher features on {split}",
                              runtime=runtime).values()
        return {"features": features}

    return distributed.get_or_create(store, "teacher_features", spec, build)["features"]


#: the only split the exit gate is trained on: the getters it calls are asked for this split and no other
_GATE_SPLIT = "train"


def exit_gate_spec(cfg: Config) -> dict:
    """What determines FrameExit's exit gate: the teacher, the train split's clips, the gate settings
    (:data:`cdlib.method.frame_exit.GATE_SETTINGS`), the seed and the code that fits it."""
    from cdlib.method.frame_exit import GATE_SETTINGS

    return {"role": "exit_gate", "teacher": teacher_spec(cfg), "clips": data_spec(cfg, _GATE_SPLIT),
            "numerics": resolve_runtime(cfg).numerics(), "gate": dict(GATE_SETTINGS), "seed": cfg.seed,
            "code": code_version("cdlib.method.frame_exit")}


def get_exit_gate(cfg: Config, store: ArtifactStore | None = None):
    """FrameExit's exit gate (:class:`cdlib.method.frame_exit.ExitGate`, eval mode), fitted on the teacher's outputs and
    features on the train split only (:func:`cdlib.method.frame_exit.fit_exit_gate`), so that neither the val split
    (which chooses operating points) nor the test split can change it."""
    from cdlib.method.frame_exit import GATE_SETTINGS, ExitGate, fit_exit_gate

    def build(_):
        outputs = get_outputs(cfg, "teacher", _GATE_SPLIT, store)
        features = get_teacher_features(cfg, _GATE_SPLIT, store)
        gate = fit_exit_gate(features, outputs.logits, outputs.labels, outputs.video, seed=cfg.seed, **GATE_SETTINGS)
        return {"state_dict": gate.state_dict(), "feature_dim": gate.feature_dim, "num_classes": gate.num_classes,
                "hidden": GATE_SETTINGS["hidden"]}

    payload = distributed.get_or_create(resolve_store(store), "exit_gate", exit_gate_spec(cfg), build)
    gate = ExitGate(payload["feature_dim"], payload["num_classes"], payload["hidden"])
    gate.load_state_dict(payload["state_dict"])
    return gate.eval()


def get_exit_scores(cfg: Config, split: str, store: ArtifactStore | None = None) -> torch.Tensor:
    """FrameExit's exit score ``[M]`` of every clip of ``split``: the gate's ``σ`` after its video's clips were
    visited up to and including it (:func:`cdlib.method.frame_exit.exit_scores`), cached."""
    from cdlib.method.frame_exit import exit_scores

    store = resolve_store(store)
    spec = {"gate": exit_gate_spec(cfg), "split": split, "clips": data_spec(cfg, split),
            "numerics": resolve_runtime(cfg).numerics()}

    def build(_):
        outputs = get_outputs(cfg, "teacher", split, store)
        features = get_teacher_features(cfg, split, store)
        return {"scores": exit_scores(get_exit_gate(cfg, store), features, outputs.logits, outputs.video)}

    return distributed.get_or_create(store, "exit_scores", spec, build)["scores"]
