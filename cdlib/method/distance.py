"""Distance-aware confidence: the distilled score, discounted by how far a clip lies from the training clips.

The CD student's score ``s = σ(score_logit)`` learns where the teacher is right,
but only where it has seen clips. Its head is a ReLU network, so far from the
training data it extrapolates affinely and can be as sure as anywhere (Hein et
al. 2019; the calibration chapter). The distance-aware confidence keeps ``s``
where the student has seen similar clips and lowers it where it has not::

    s_da(x) = s(x) · g(d(φ(x))),        g(d) = exp(−max(0, d − d_ref) / σ)

- ``φ(x)``: the student's penultimate features, the input of its ``score_head``
  (and of its classifier), the representation both heads read.
- ``d``: a distance of ``φ(x)`` from the training clips' features, fitted on the
  train split only. Two kinds, both :class:`torch.nn.Module`\\ s so that the
  distance runs inside the student (:class:`DistanceAwareHead`) and is counted
  and timed with it:

  - :class:`GaussianDistance`: ``d = −log p(φ)`` under class-conditional Gaussians,
    as in Deep Deterministic Uncertainty (Mukhoti et al. 2021) and the Mahalanobis
    score of Lee et al. (2018);
  - :class:`KNNDistance`: the Euclidean distance to the ``k``-th nearest training
    feature after standardising each feature (Sun et al. 2022 use normalised
    features; we keep the norm, which grows far from the data of a ReLU network).

- ``d_ref`` and ``σ`` (:class:`DistanceGate`): from the distances of the
  validation clips, which have no shift: ``d_ref`` is their ``q``-quantile and
  ``σ = d_ref − median``. So ``s_da = s`` on the ``q`` closest validation clips
  (``q = 0.99``: 99% of in-distribution clips keep their score exactly), and
  beyond ``d_ref`` the score falls by a factor ``e`` every ``σ``.

Which distance and which ``q`` a run uses is chosen on the validation split
(:func:`select_confidence`): the candidate whose ``s_da`` best predicts that the
teacher is right on a val clip (AUROC). Nothing here is fitted or chosen on the
test split or on any corruption: the fitting functions take training features,
validation features and validation labels, and nothing else.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cdlib.runtime.errors import ConfigError

#: fraction of in-distribution (validation) clips whose score is left unchanged, when nothing else is said
DEFAULT_QUANTILE = 0.99
#: the distance kinds, in the order candidates are listed (and ties in the val selection are broken)
METHODS = ("gaussian", "knn")


# ----------------------------------------------------------------------------- features

def score_head_name(model: nn.Module) -> str:
    """The dotted name of ``model``'s one ``score_head`` module.

    Every two-headed student of :mod:`cdlib.models` has exactly one module named
    ``score_head`` (torchvision students nest it); a model without one cannot
    carry a distance-aware confidence.
    """
    found = [name for name, _ in model.named_modules() if name.rsplit(".", 1)[-1] == "score_head"]
    if len(found) != 1:
        raise ConfigError(f"{type(model).__name__} has {len(found)} modules named score_head, expected one: "
                          "distance-aware confidence needs a CD student")
    return found[0]


class FeatureStudent(nn.Module):
    """A two-headed student that also returns its penultimate features: ``(logits, score_logit, φ)``.

    ``φ`` is the input of the student's ``score_head``, caught by a forward hook,
    so any student of :mod:`cdlib.models` works without changing its code.
    """

    def __init__(self, student: nn.Module):
        super().__init__()
        self.student = student
        self.head_name = score_head_name(student)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        caught: list[Tensor] = []
        head = self.student.get_submodule(self.head_name)
        hook = head.register_forward_hook(lambda _module, inputs, _output: caught.append(inputs[0]))
        try:
            logits, score_logit = self.student(x)
        finally:
            hook.remove()
        return logits, score_logit, caught[0].flatten(1)


# ----------------------------------------------------------------------------- distances

def _as_features(features, name: str = "features") -> Tensor:
    x = torch.as_tensor(features)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"{name}: expected [M, D] with M >= 1, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return x.double()


class GaussianDistance(nn.Module):
    """``d(φ) = −log p(φ)``, ``p(φ) = Σ_c π_c N(φ; μ_c, Σ_c)``: a Gaussian per class, fitted on training features.

    Per class, ``log N = −½ ‖W_c (φ − μ_c)‖² − ½ log det(2π Σ_c)`` with the
    whitening matrix ``W_c = L_c⁻¹`` of the Cholesky factor ``Σ_c = L_c L_cᵀ``,
    stored with ``b_c = W_c μ_c`` and ``log π_c − ½ log det(2π Σ_c)``, so the
    forward pass is one batched matrix product (which the FLOP counter sees) and
    a log-sum-exp, in float64. :func:`fit_gaussian_distance` fits it.
    """

    def __init__(self, whiten: Tensor, offsets: Tensor, log_norm: Tensor):
        super().__init__()
        self.register_buffer("whiten", whiten)  # [C, D, D]
        self.register_buffer("offsets", offsets)  # [C, D]
        self.register_buffer("log_norm", log_norm)  # [C]
        self.dim = int(whiten.shape[-1])

    def forward(self, features: Tensor) -> Tensor:
        x = features.double()
        white = torch.matmul(x.unsqueeze(0), self.whiten.transpose(1, 2)) - self.offsets.unsqueeze(1)  # [C, M, D]
        return -torch.logsumexp(self.log_norm.unsqueeze(1) - 0.5 * white.pow(2).sum(2), dim=0)


def fit_gaussian_distance(features, labels, shrinkage: float = 0.01, shared: bool = False) -> GaussianDistance:
    """Fit :class:`GaussianDistance` on training ``features [M, D]`` with class ``labels [M]``.

    ``π_c``, ``μ_c`` and ``Σ_c`` are the class frequency, mean and covariance of
    the training features of class ``c``; ``Σ_c`` is shrunk towards a multiple of
    the identity, ``(1 − λ)·Σ_c + λ·(tr Σ_c / D)·I``, so that it is invertible
    even with fewer points than dimensions and ``d`` grows without bound
    (quadratically) in every direction away from the data. With ``shared=True``
    every class uses the pooled within-class covariance (Lee et al. 2018's tied
    covariance, linear discriminant analysis). Classes with fewer than two points
    are left out (no covariance); at least one class must have two.
    """
    x = _as_features(features)
    labels = torch.as_tensor(labels).long()
    if labels.shape != (x.shape[0],):
        raise ValueError(f"labels: expected shape ({x.shape[0]},), got {tuple(labels.shape)}")
    if isinstance(shrinkage, bool) or not isinstance(shrinkage, numbers.Real) or not 0 < shrinkage <= 1:
        raise ConfigError(f"shrinkage: expected a number in (0, 1], got {shrinkage!r}")
    classes = [c for c in labels.unique().tolist() if int((labels == c).sum()) >= 2]
    if not classes:
        raise ValueError("labels: no class has the two points a covariance needs")
    dim = x.shape[1]
    means = torch.stack([x[labels == c].mean(0) for c in classes])
    covariances = torch.stack([torch.cov(x[labels == c].T, correction=0).reshape(dim, dim) for c in classes])
    counts = torch.tensor([int((labels == c).sum()) for c in classes], dtype=torch.float64)
    if shared:
        pooled = (covariances * counts.view(-1, 1, 1)).sum(0) / counts.sum()
        covariances = pooled.expand_as(covariances)
    scale = covariances.diagonal(dim1=1, dim2=2).mean(1).clamp_min(1e-12).view(-1, 1, 1)
    shrunk = (1 - shrinkage) * covariances + shrinkage * scale * torch.eye(dim, dtype=torch.float64)
    cholesky = torch.linalg.cholesky(shrunk)
    identity = torch.eye(dim, dtype=torch.float64).expand_as(cholesky)
    whiten = torch.linalg.solve_triangular(cholesky, identity, upper=False)
    log_det = 2 * cholesky.diagonal(dim1=1, dim2=2).log().sum(1)
    log_norm = (counts / counts.sum()).log() - 0.5 * (log_det + dim * math.log(2 * math.pi))
    return GaussianDistance(whiten, (whiten @ means.unsqueeze(2)).squeeze(2), log_norm)


class KNNDistance(nn.Module):
    """``d(φ)``: Euclidean distance from ``(φ − m) / v`` to its ``k``-th nearest standardised training feature.

    ``m`` and ``v`` are the per-dimension mean and standard deviation of the
    training features (so no single feature's scale dominates). Squared
    distances are computed as ``‖z‖² + ‖b‖² − 2 z·b`` (a matrix product the FLOP
    counter sees), in float64. A training point's own distance counts it as its
    own nearest neighbour. :func:`fit_knn_distance` fits it.
    """

    def __init__(self, bank: Tensor, mean: Tensor, std: Tensor, k: int):
        super().__init__()
        self.register_buffer("bank", bank)  # [B, D] standardised training features
        self.register_buffer("bank_sq", bank.pow(2).sum(1))  # [B]
        self.register_buffer("mean", mean)  # [D]
        self.register_buffer("std", std)  # [D]
        self.k = int(k)
        self.dim = int(bank.shape[1])

    def forward(self, features: Tensor) -> Tensor:
        z = (features.double() - self.mean) / self.std
        squared = z.pow(2).sum(1, keepdim=True) + self.bank_sq.unsqueeze(0) - 2 * torch.matmul(z, self.bank.T)
        return squared.clamp_min(0).kthvalue(self.k, dim=1).values.sqrt()


def fit_knn_distance(features, k: int = 10, max_bank: int | None = None, seed: int = 0) -> KNNDistance:
    """Fit :class:`KNNDistance` on training ``features [M, D]`` (needs ``M ≥ k``).

    With ``max_bank``, at most that many training features are kept (a random
    subset drawn with ``seed``), which bounds the distance's cost per clip at
    ``~3·max_bank·D`` FLOPs however large the training set. The standardisation
    uses every training feature.
    """
    x = _as_features(features)
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= len(x):
        raise ConfigError(f"k: expected an integer in [1, {len(x)}] (the number of training features), got {k!r}")
    if max_bank is not None and (isinstance(max_bank, bool) or not isinstance(max_bank, numbers.Integral)
                                 or max_bank < k):
        raise ConfigError(f"max_bank: expected an integer >= k ({k}), got {max_bank!r}")
    mean, std = x.mean(0), x.std(0, correction=0).clamp_min(1e-12)
    bank = x
    if max_bank is not None and len(x) > max_bank:
        keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:max_bank].sort().values
        bank = x[keep]
    return KNNDistance((bank - mean) / std, mean, std, int(k))


# ----------------------------------------------------------------------------- the gate and the score

@dataclass(frozen=True)
class DistanceGate:
    """``g(d) = exp(−max(0, d − reference) / scale)``: 1 up to ``reference``, then falling by ``e`` every ``scale``.

    Non-increasing in ``d``, in ``(0, 1]``.
    """

    reference: float
    scale: float

    def __post_init__(self):
        if not math.isfinite(self.reference) or not (math.isfinite(self.scale) and self.scale > 0):
            raise ConfigError(f"DistanceGate: expected a finite reference and a scale > 0, got {self}")

    def __call__(self, distance) -> Tensor:
        d = torch.as_tensor(distance, dtype=torch.float64)
        return torch.exp(-(d - self.reference).clamp_min(0) / self.scale)


def fit_gate(val_distance, quantile: float = DEFAULT_QUANTILE) -> DistanceGate:
    """The gate from in-distribution (validation) distances: ``reference = Q_q(d)``, ``scale = Q_q(d) − Q_½(d)``.

    ``Q_q`` is the ``q``-quantile (linear interpolation). So the ``q`` nearest
    validation clips keep their score, and the decay's length scale is the
    spread of the validation distances themselves.
    """
    d = torch.as_tensor(val_distance, dtype=torch.float64).flatten()
    if d.numel() < 2 or not torch.isfinite(d).all():
        raise ValueError("val_distance: expected at least two finite distances")
    if isinstance(quantile, bool) or not isinstance(quantile, numbers.Real) or not 0.5 < quantile < 1:
        raise ConfigError(f"quantile: expected a number in (0.5, 1), got {quantile!r}")
    reference = float(torch.quantile(d, quantile))
    scale = reference - float(torch.quantile(d, 0.5))
    if not scale > 0:
        raise ValueError("val_distance: the validation distances do not spread; cannot set the gate's scale")
    return DistanceGate(reference, scale)


def distance_aware_score(score, distance, gate: DistanceGate) -> Tensor:
    """``s_da = s · g(d)`` for scores ``s ∈ [0, 1]`` and distances ``d`` of the same shape."""
    s = torch.as_tensor(score)
    d = torch.as_tensor(distance)
    if s.shape != d.shape:
        raise ValueError(f"score and distance: expected the same shape, got {tuple(s.shape)} and {tuple(d.shape)}")
    return (s.double() * gate(d)).to(s.dtype if s.is_floating_point() else torch.float64)


class DistanceAwareHead(nn.Module):
    """A score head whose logit is that of ``s_da``: ``logit(σ(z)·g(d(φ)))`` for the head's own logit ``z``.

    It takes the place of a student's ``score_head`` (:func:`with_distance_head`),
    so the student's ``σ(score_logit)`` is ``s_da`` and every consumer of a
    two-headed student (prediction, policies, timing, FLOP counting) uses it
    unchanged. Computed in log space in float64: ``log s_da = log σ(z) − max(0,
    d − d_ref)/σ`` and ``logit = log s_da − log(1 − s_da)``; where ``g = 1`` it
    returns ``z`` itself.
    """

    def __init__(self, score_head: nn.Module, distance: nn.Module, reference: float, scale: float):
        super().__init__()
        self.score_head = score_head
        self.distance = distance
        self.reference = float(reference)
        self.scale = float(scale)

    def forward(self, features: Tensor) -> Tensor:
        z = self.score_head(features)  # [M, 1]
        log_gate = -(self.distance(features.flatten(1)) - self.reference).clamp_min(0) / self.scale
        log_score = nn.functional.logsigmoid(z.double()).squeeze(-1) + log_gate
        logit = log_score - torch.log(-torch.expm1(log_score))
        return logit.to(z.dtype).unsqueeze(-1)


@dataclass(frozen=True, eq=False)
class DistanceConfidence:
    """A fitted distance-aware confidence: the feature distance and its gate (:func:`fit_distance_confidence`)."""

    distance: nn.Module
    gate: DistanceGate

    def distances(self, features) -> Tensor:
        """``d(φ)`` per row of ``features [M, D]`` (float64)."""
        x = _as_features(features)
        if x.shape[1] != self.distance.dim:
            raise ValueError(f"features: fitted on dimension {self.distance.dim}, got {x.shape[1]}")
        with torch.no_grad():
            return self.distance(x)

    def factor(self, features) -> Tensor:
        """``g(d(φ))`` per row of ``features``."""
        return self.gate(self.distances(features))

    def __call__(self, score, features) -> Tensor:
        """``s_da = s · g(d(φ))`` per clip."""
        return distance_aware_score(score, self.distances(features), self.gate)

    def head(self, score_head: nn.Module) -> DistanceAwareHead:
        """``score_head`` wrapped so that its logit is that of ``s_da`` (:class:`DistanceAwareHead`)."""
        return DistanceAwareHead(score_head, self.distance, self.gate.reference, self.gate.scale)


def with_distance_head(student: nn.Module, confidence: DistanceConfidence) -> nn.Module:
    """A copy of ``student`` whose ``score_head`` is ``confidence``'s :class:`DistanceAwareHead`: the same class
    logits, and ``σ(score_logit) = s_da``. ``student`` itself is not changed."""
    copied = copy.deepcopy(student)
    parent_name, _, attribute = score_head_name(copied).rpartition(".")
    parent = copied.get_submodule(parent_name)
    setattr(parent, attribute, confidence.head(getattr(parent, attribute)))
    return copied.eval()


def fit_distance(train_features, method: str = "gaussian", train_labels=None, *, shrinkage: float = 0.01,
                 k: int = 10, max_bank: int | None = None, seed: int = 0) -> nn.Module:
    """The distance of ``method`` (:data:`METHODS`) fitted on ``train_features``: ``gaussian`` (with
    ``train_labels``, one Gaussian per class, ``shrinkage``) or ``knn`` (``k``, ``max_bank``, ``seed``)."""
    if method == "gaussian":
        if train_labels is None:
            raise ConfigError("gaussian: needs train_labels (one Gaussian per class)")
        return fit_gaussian_distance(train_features, train_labels, shrinkage=shrinkage)
    if method == "knn":
        return fit_knn_distance(train_features, k=k, max_bank=max_bank, seed=seed)
    raise ConfigError(f"method: unknown distance {method!r}; expected one of {', '.join(METHODS)}")


def fit_distance_confidence(train_features, val_features, method: str = "gaussian", train_labels=None,
                            quantile: float = DEFAULT_QUANTILE, **distance_kwargs) -> DistanceConfidence:
    """Fit the distance on ``train_features`` (:func:`fit_distance`), the gate on the distances of
    ``val_features``. These two splits are all it ever sees."""
    distance = fit_distance(train_features, method, train_labels, **distance_kwargs)
    return DistanceConfidence(distance, fit_gate(distance(_as_features(val_features, "val_features")), quantile))


# ----------------------------------------------------------------------------- candidates chosen on val

def candidate_name(method: str, quantile: float) -> str:
    """``"gaussian@0.99"``: a distance method and the gate's quantile (:func:`candidate_parts` reads it back)."""
    return f"{method}@{quantile:g}"


def candidate_parts(name: str) -> tuple[str, float]:
    """``(method, quantile)`` of a :func:`candidate_name`."""
    method, _, quantile = name.partition("@")
    return method, float(quantile)


def fit_candidates(train_features, train_labels, val_features, methods: Sequence[str] = METHODS,
                   quantiles: Sequence[float] = (DEFAULT_QUANTILE,), **distance_kwargs
                   ) -> dict[str, DistanceConfidence]:
    """Every ``(method, quantile)`` confidence, by :func:`candidate_name`, methods outermost: one distance per
    method fitted on the training features, one gate per quantile on the validation features."""
    val = _as_features(val_features, "val_features")
    candidates = {}
    for method in methods:
        distance = fit_distance(train_features, method, train_labels, **distance_kwargs)
        val_distance = distance(val)
        for quantile in quantiles:
            candidates[candidate_name(method, quantile)] = DistanceConfidence(distance, fit_gate(val_distance, quantile))
    return candidates


def select_confidence(candidates: dict[str, DistanceConfidence], val_score, val_features, val_correct
                      ) -> tuple[str, dict[str, float]]:
    """The candidate chosen on val, and every candidate's val AUROC.

    Each candidate's ``s_da`` on the validation clips is scored by its AUROC for
    ``val_correct`` (the teacher is right on the clip); the highest wins, ties go
    to the first in ``candidates``' order. The validation split has no shift, so
    this asks which distance costs the least where nothing is unusual; how far a
    candidate protects against unseen inputs is measured on test, never chosen on it.
    """
    from cdlib.method.calibration import auroc

    if not candidates:
        raise ConfigError("candidates: expected at least one distance-aware confidence to choose from")
    val_auroc = {name: auroc(confidence(val_score, val_features), val_correct) for name, confidence in candidates.items()}
    chosen = max(val_auroc, key=lambda name: (val_auroc[name] if val_auroc[name] == val_auroc[name] else -math.inf))
    return chosen, val_auroc


def candidates_state(candidates: dict[str, DistanceConfidence]) -> dict:
    """Tensors and plain values that :func:`candidates_from_state` rebuilds ``candidates`` from (an artifact's
    payload): each distinct distance once, and each candidate's distance index and gate."""
    distances: list[nn.Module] = []
    gates = {}
    for name, confidence in candidates.items():
        if not any(confidence.distance is d for d in distances):
            distances.append(confidence.distance)
        index = next(i for i, d in enumerate(distances) if d is confidence.distance)
        gates[name] = {"distance": index, "reference": confidence.gate.reference, "scale": confidence.gate.scale}
    return {
        "distances": [{"method": "knn" if isinstance(d, KNNDistance) else "gaussian",
                       "k": getattr(d, "k", 0), "buffers": dict(d.named_buffers())} for d in distances],
        "gates": gates,
    }


def candidates_from_state(state: dict) -> dict[str, DistanceConfidence]:
    """The candidates :func:`candidates_state` stored, with the same distances and gates."""
    distances = []
    for entry in state["distances"]:
        b = entry["buffers"]
        distances.append(KNNDistance(b["bank"], b["mean"], b["std"], entry["k"]) if entry["method"] == "knn"
                         else GaussianDistance(b["whiten"], b["offsets"], b["log_norm"]))
    return {name: DistanceConfidence(distances[g["distance"]], DistanceGate(g["reference"], g["scale"]))
            for name, g in state["gates"].items()}
