"""Distance-aware confidence: the distilled score, discounted by how far a clip lies from the training clips.

The CD student's score ``s = σ(score_logit)`` learns where the teacher is right,
but only where it has seen clips. Its head is a ReLU network, so far from the
training data it extrapolates affinely and can be as sure as anywhere (Hein et
al. 2019; the calibration chapter). The distance-aware confidence keeps ``s``
where the student has seen similar clips and lowers it where it has not::

    s_da(x) = s(x) · g(d(φ(x))),        g(d) = exp(−max(0, d − d_ref) / σ)

- ``φ(x)``: the student's penultimate features (the input of its ``score_head``,
  :func:`student_features`), the representation both heads read.
- ``d``: a distance of ``φ(x)`` from the training clips' features, fitted on the
  train split only (a :class:`FeatureDistance`):

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

Nothing here is fitted or chosen on the test split: :func:`fit_distance_confidence`
takes training features and validation features and nothing else.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cdlib.errors import ConfigError

#: fraction of in-distribution (validation) clips whose score is left unchanged
DEFAULT_QUANTILE = 0.99


# ----------------------------------------------------------------------------- features

@torch.no_grad()
def student_features(model: nn.Module, clips: Tensor, batch_size: int = 256) -> dict[str, Tensor]:
    """Penultimate features ``φ [M, D]``, class ``logits [M, K]`` and ``score_logit [M]`` of a student on uint8 clips.

    ``φ`` is the input of the student's ``score_head`` module (and of its
    classifier), wherever it sits in the model, caught by a forward hook, so any
    two-headed student of :mod:`cdlib.models` works without changing its code.
    """
    from cdlib.models import preprocess

    heads = [module for name, module in model.named_modules() if name.rsplit(".", 1)[-1] == "score_head"]
    if len(heads) != 1:
        raise ConfigError(f"{type(model).__name__} has {len(heads)} modules named score_head, expected one: "
                          "distance-aware confidence needs a CD student")
    head = heads[0]
    model.eval()
    caught: list[Tensor] = []
    hook = head.register_forward_hook(lambda _module, inputs, _output: caught.append(inputs[0].detach()))
    logits, scores = [], []
    try:
        for start in range(0, len(clips), batch_size):
            out_logits, out_score = model(preprocess(clips[start : start + batch_size]))
            logits.append(out_logits)
            scores.append(out_score)
    finally:
        hook.remove()
    return {"features": torch.cat(caught).flatten(1), "logits": torch.cat(logits), "score_logit": torch.cat(scores)}


# ----------------------------------------------------------------------------- distances

def _as_features(features, name: str = "features") -> Tensor:
    x = torch.as_tensor(features)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"{name}: expected [M, D] with M >= 1, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return x.double()


class FeatureDistance:
    """A distance ``d(φ)`` of features ``[M, D]`` from the training features it was fitted on, ``[M]``:
    larger is farther. Computed in float64."""

    dim: int

    def __call__(self, features) -> Tensor:
        x = _as_features(features)
        if x.shape[1] != self.dim:
            raise ValueError(f"features: fitted on dimension {self.dim}, got {x.shape[1]}")
        return self._distance(x)

    def _distance(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class GaussianDistance(FeatureDistance):
    """``d(φ) = −log p(φ)``, ``p(φ) = Σ_c π_c N(φ; μ_c, Σ_c)``: a Gaussian per class, fitted on training features.

    ``π_c``, ``μ_c`` and ``Σ_c`` are the class frequency, mean and covariance of
    the training features of class ``c``; ``Σ_c`` is shrunk towards a multiple of
    the identity, ``(1 − λ)·Σ_c + λ·(tr Σ_c / D)·I``, so that it is invertible
    even with fewer points than dimensions and ``d`` grows without bound
    (quadratically) in every direction away from the data. With ``shared=True``
    every class uses the pooled within-class covariance (Lee et al. 2018's
    tied covariance, linear discriminant analysis). Per class,
    ``log N = −½ (φ − μ_c)ᵀ Σ_c⁻¹ (φ − μ_c) − ½ log det(2π Σ_c)``.
    """

    means: Tensor  # [C, D]
    cholesky: Tensor  # [C, D, D] lower factors of the covariances
    log_weights: Tensor  # [C]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def _distance(self, x: Tensor) -> Tensor:
        diff = x.unsqueeze(0) - self.means.unsqueeze(1)  # [C, M, D]
        white = torch.linalg.solve_triangular(self.cholesky, diff.transpose(1, 2), upper=False)  # [C, D, M]
        mahalanobis = white.pow(2).sum(1)  # [C, M]
        log_det = 2 * self.cholesky.diagonal(dim1=1, dim2=2).log().sum(1)  # [C]
        log_normal = -0.5 * (mahalanobis + log_det.unsqueeze(1) + self.dim * math.log(2 * math.pi))
        return -torch.logsumexp(log_normal + self.log_weights.unsqueeze(1), dim=0)


def fit_gaussian_distance(features, labels, shrinkage: float = 0.01, shared: bool = False) -> GaussianDistance:
    """Fit :class:`GaussianDistance` on training ``features [M, D]`` with class ``labels [M]``.

    Classes with fewer than two points are left out (no covariance); at least
    one class must have two.
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
    means, covariances, counts = [], [], []
    for c in classes:
        xc = x[labels == c]
        means.append(xc.mean(0))
        covariances.append(torch.cov(xc.T, correction=0).reshape(x.shape[1], x.shape[1]))
        counts.append(len(xc))
    counts_t = torch.tensor(counts, dtype=torch.float64)
    covariances_t = torch.stack(covariances)
    if shared:
        pooled = (covariances_t * counts_t.view(-1, 1, 1)).sum(0) / counts_t.sum()
        covariances_t = pooled.expand_as(covariances_t)
    dim = x.shape[1]
    scale = covariances_t.diagonal(dim1=1, dim2=2).mean(1).clamp_min(1e-12).view(-1, 1, 1)
    shrunk = (1 - shrinkage) * covariances_t + shrinkage * scale * torch.eye(dim, dtype=torch.float64)
    return GaussianDistance(torch.stack(means), torch.linalg.cholesky(shrunk), (counts_t / counts_t.sum()).log())


@dataclass(frozen=True, eq=False)
class KNNDistance(FeatureDistance):
    """``d(φ)``: Euclidean distance from ``(φ − m) / v`` to its ``k``-th nearest standardised training feature.

    ``m`` and ``v`` are the per-dimension mean and standard deviation of the
    training features (so no single feature's scale dominates). A training
    point's own distance counts it as its own nearest neighbour.
    """

    bank: Tensor  # [M, D] standardised training features
    mean: Tensor  # [D]
    std: Tensor  # [D]
    k: int

    @property
    def dim(self) -> int:
        return self.bank.shape[1]

    def _distance(self, x: Tensor, chunk: int = 4096) -> Tensor:
        z = (x - self.mean) / self.std
        out = []
        for start in range(0, len(z), chunk):  # [chunk, M] distance blocks keep memory bounded
            d = torch.cdist(z[start : start + chunk], self.bank)
            out.append(d.kthvalue(self.k, dim=1).values)
        return torch.cat(out)


def fit_knn_distance(features, k: int = 10) -> KNNDistance:
    """Fit :class:`KNNDistance` on training ``features [M, D]`` (needs ``M ≥ k``)."""
    x = _as_features(features)
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= len(x):
        raise ConfigError(f"k: expected an integer in [1, {len(x)}] (the number of training features), got {k!r}")
    mean, std = x.mean(0), x.std(0, correction=0).clamp_min(1e-12)
    return KNNDistance((x - mean) / std, mean, std, int(k))


DISTANCES = {"gaussian": fit_gaussian_distance, "knn": fit_knn_distance}


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


@dataclass(frozen=True, eq=False)
class DistanceConfidence:
    """A fitted distance-aware confidence: the feature distance and its gate (:func:`fit_distance_confidence`)."""

    distance: FeatureDistance
    gate: DistanceGate

    def factor(self, features) -> Tensor:
        """``g(d(φ))`` per row of ``features``."""
        return self.gate(self.distance(features))

    def __call__(self, score, features) -> Tensor:
        """``s_da = s · g(d(φ))`` per clip."""
        return distance_aware_score(score, self.distance(features), self.gate)


def fit_distance_confidence(train_features, val_features, method: str = "gaussian", train_labels=None,
                            quantile: float = DEFAULT_QUANTILE, **method_kwargs) -> DistanceConfidence:
    """Fit the distance on ``train_features`` (``gaussian`` also needs ``train_labels``), the gate on the
    distances of ``val_features``. These two splits are all it ever sees."""
    if method not in DISTANCES:
        raise ConfigError(f"method: unknown distance {method!r}; expected one of {', '.join(DISTANCES)}")
    if method == "gaussian":
        if train_labels is None:
            raise ConfigError("gaussian: needs train_labels (one Gaussian per class)")
        distance = fit_gaussian_distance(train_features, train_labels, **method_kwargs)
    else:
        distance = fit_knn_distance(train_features, **method_kwargs)
    return DistanceConfidence(distance, fit_gate(distance(val_features), quantile))


# ----------------------------------------------------------------------------- the CD student of a config

def fit_student_confidence(cfg, store=None, method: str = "gaussian", quantile: float = DEFAULT_QUANTILE,
                           **method_kwargs) -> DistanceConfidence:
    """The distance-aware confidence of ``cfg``'s CD student, fitted on the train split's clips and gated on the
    val split's (``gaussian``: one Gaussian per video label). It reads no other split, so test-only settings
    (``data.test_shift``, ...) cannot change it."""
    from cdlib import runs

    model = runs.get_model(cfg, "cd", store).model
    train = runs.get_bank(cfg, "train", store)
    val = runs.get_bank(cfg, "val", store)
    labels = train.labels if method == "gaussian" else None
    return fit_distance_confidence(student_features(model, train.clips)["features"],
                                   student_features(model, val.clips)["features"], method, train_labels=labels,
                                   quantile=quantile, **method_kwargs)


def distance_aware_outputs(cfg, confidence: DistanceConfidence, split: str = "test", store=None) -> dict[str, Tensor]:
    """Per-clip outputs of ``cfg``'s CD student on ``split`` with its distance-aware confidence:
    ``logits``, ``score_logit``, ``distance`` ``d(φ)`` and ``score`` ``s_da = σ(score_logit)·g(d)``."""
    from cdlib import runs

    model = runs.get_model(cfg, "cd", store).model
    out = student_features(model, runs.get_bank(cfg, split, store).clips)
    distance = confidence.distance(out["features"])
    score = distance_aware_score(torch.sigmoid(out["score_logit"]), distance.float(), confidence.gate)
    return {"logits": out["logits"], "score_logit": out["score_logit"], "distance": distance, "score": score}
