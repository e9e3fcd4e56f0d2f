"""A 2D toy problem on which ReLU networks show their overconfidence far from the data.

Hein et al. (CVPR 2019) prove that a ReLU network ``f`` (any network whose
layers are affine maps and piecewise-affine activations) is piecewise affine:
the input space splits into finitely many polytopes on each of which
``f(x) = V_r x + c_r``. Along a ray ``αx`` (``α ≥ 0``, ``x ≠ 0``) the last
polytope reached is unbounded, so for all large ``α``

    f(αx) = α·V x + c        and        softmax(f(αx))_k → 1  for  k = argmax_k (V x)_k

as ``α → ∞``, unless the largest entries of ``V x`` tie (a set of directions
of measure zero). Temperature scaling (Guo et al., ICML 2017) divides the logits
by one number ``T > 0``: ``softmax(f(αx) / T) = softmax(α·(V x)/T + c/T)`` has
the same limit, so it cannot repair this, however well it calibrates the
network near the data.

Here: deterministic Gaussian blobs (:func:`make_blobs`), a small ReLU MLP
(:class:`ToyMLP`, :func:`train_toy`), its confidence ``max_k softmax(f(x)/T)_k``
on a grid (:func:`confidence_grid`) and along rays (:func:`ray_confidence`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import torch
from torch import nn

from cdlib.runtime.errors import ConfigError

#: the default blob centres: four classes on the corners of a square, inside [-2, 2]²
DEFAULT_CENTERS = ((1.0, 1.0), (-1.0, 1.0), (-1.0, -1.0), (1.0, -1.0))


def make_blobs(n: int = 200, seed: int = 0, centers=DEFAULT_CENTERS, std: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points of ``len(centers)`` isotropic Gaussian blobs: ``X float32 [n, 2]``, ``y int64 [n]``.

    Point ``i`` has class ``y_i = i mod K`` (balanced classes) and position
    ``x_i = centers[y_i] + std·ε_i`` with ``ε_i ~ N(0, I₂)``. The draw depends
    only on ``seed`` (a private generator), so the same arguments give the same
    points on every machine. With the defaults the blobs overlap slightly (the
    Bayes accuracy is about 0.95), so a classifier can be over- or
    under-confident in distribution.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n: expected an integer >= 1, got {n!r}")
    if not std > 0:
        raise ConfigError(f"std: expected a number > 0, got {std!r}")
    centers_t = torch.as_tensor(centers, dtype=torch.float64)
    if centers_t.ndim != 2 or centers_t.shape[1] != 2 or centers_t.shape[0] < 2:
        raise ConfigError(f"centers: expected at least two 2D points, got shape {tuple(centers_t.shape)}")
    generator = torch.Generator().manual_seed(int(seed))
    y = torch.arange(n) % centers_t.shape[0]
    noise = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    x = centers_t[y] + std * noise
    return x.float(), y


def relu_layers(in_features: int, hidden) -> tuple[list[nn.Module], int]:
    """``Linear → ReLU`` for each width in ``hidden``, and the last width (the trunk of the toy's networks)."""
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    return layers, width


class ToyMLP(nn.Module):
    """A ReLU multilayer perceptron ``R² → R^K``: ``Linear → ReLU`` per hidden width, then ``Linear``.

    Piecewise affine in its input, hence subject to Hein et al.'s result (module docstring).
    """

    def __init__(self, num_classes: int = 4, hidden=(64, 64), in_features: int = 2):
        super().__init__()
        layers, width = relu_layers(in_features, hidden)
        self.net = nn.Sequential(*layers, nn.Linear(width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train_toy(x: torch.Tensor, y: torch.Tensor, hidden=(64, 64), steps: int = 500, lr: float = 1e-2,
              weight_decay: float = 0.0, seed: int = 0) -> ToyMLP:
    """Fit a :class:`ToyMLP` by full-batch Adam on the cross-entropy ``−(1/n) Σ_i log softmax(f(x_i))[y_i]``.

    Deterministic: the initialisation is seeded by ``seed`` and every step sees
    the whole data set. Without weight decay and with many steps the network
    drives its training loss towards zero, i.e. it becomes overconfident even
    in distribution, which temperature scaling then corrects. Returns the model
    in eval mode.
    """
    x = torch.as_tensor(x, dtype=torch.float32)
    y = torch.as_tensor(y, dtype=torch.long)
    num_classes = int(y.max()) + 1
    torch.manual_seed(seed)
    model = ToyMLP(num_classes=num_classes, hidden=hidden, in_features=x.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    return model


@torch.no_grad()
def toy_logits(model: nn.Module, x) -> torch.Tensor:
    """Logits ``f(x)`` in float64 for points ``x [n, 2]`` (the model is evaluated in float64,
    so that confidences near 1 far from the data are not rounded to exactly 1)."""
    model = model.eval()
    x = torch.as_tensor(x, dtype=torch.float64)
    net = model if _is_float64(model) else _double_copy(model)
    return net(x)


def _is_float64(model: nn.Module) -> bool:
    return all(p.dtype == torch.float64 for p in model.parameters())


def _double_copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).double().eval()


def max_softmax(logits: torch.Tensor, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(max_k softmax(z/T)_k, argmax_k z_k)`` per row of ``logits``."""
    if isinstance(temperature, bool) or not temperature > 0:
        raise ConfigError(f"temperature: expected a number > 0, got {temperature!r}")
    conf, pred = torch.softmax(logits / temperature, dim=-1).max(dim=-1)
    return conf, pred


@dataclass
class ConfidenceGrid:
    """A heat map of the confidence on a regular grid.

    ``confidence[i, j]`` and ``prediction[i, j]`` belong to the point
    ``(x[j], y[i])`` (row = y, as ``matplotlib.pyplot.imshow(..., origin="lower")``
    and ``pcolormesh(x, y, confidence)`` expect); ``extent`` is
    ``(xmin, xmax, ymin, ymax)``.
    """

    x: np.ndarray
    y: np.ndarray
    confidence: np.ndarray
    prediction: np.ndarray
    extent: tuple[float, float, float, float]
    temperature: float


def confidence_grid(model: nn.Module, extent=40.0, resolution: int = 201, temperature: float = 1.0) -> ConfidenceGrid:
    """``max_k softmax(f(p)/T)_k`` at every point ``p`` of a ``resolution × resolution`` grid.

    ``extent`` is a half-width ``a`` (the square ``[-a, a]²``) or
    ``(xmin, xmax, ymin, ymax)``; the grid includes the edges.
    """
    extent, xs, ys, points = _grid_points(extent, resolution)
    conf, pred = max_softmax(toy_logits(model, points), temperature)
    shape = (resolution, resolution)
    return ConfidenceGrid(xs, ys, conf.numpy().reshape(shape), pred.numpy().reshape(shape), extent, float(temperature))


def _grid_points(extent, resolution: int) -> tuple[tuple, np.ndarray, np.ndarray, torch.Tensor]:
    """``extent`` (a half-width or ``(xmin, xmax, ymin, ymax)``), checked -> ``(xmin, xmax, ymin, ymax)``,
    ``xs``, ``ys`` and the grid's points ``[resolution², 2]`` in row-major order (row = y)."""
    if isinstance(extent, (int, float)):
        if not extent > 0:
            raise ConfigError(f"extent: expected a half-width > 0, got {extent!r}")
        extent = (-float(extent), float(extent), -float(extent), float(extent))
    extent = tuple(float(e) for e in extent)
    if len(extent) != 4 or not (extent[0] < extent[1] and extent[2] < extent[3]):
        raise ConfigError(f"extent: expected a half-width or (xmin, xmax, ymin, ymax), got {extent!r}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise ConfigError(f"resolution: expected an integer >= 2, got {resolution!r}")
    xs = np.linspace(extent[0], extent[1], resolution)
    ys = np.linspace(extent[2], extent[3], resolution)
    gx, gy = np.meshgrid(xs, ys)  # gx[i, j] = xs[j], gy[i, j] = ys[i]
    return extent, xs, ys, torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], axis=1))


def random_directions(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` unit vectors in R², uniform in angle, float64 ``[n, 2]`` (deterministic in ``seed``)."""
    generator = torch.Generator().manual_seed(int(seed))
    angles = torch.rand(n, generator=generator, dtype=torch.float64) * 2 * math.pi
    return torch.stack([angles.cos(), angles.sin()], dim=1)


def log_alphas(low: float = 1.0, high: float = 1e4, num: int = 41) -> np.ndarray:
    """``num`` scales from ``low`` to ``high`` evenly spaced in ``log α``."""
    return np.logspace(math.log10(low), math.log10(high), num)


def ray_confidence(model: nn.Module, directions, alphas, temperature: float = 1.0) -> pd.DataFrame:
    """Confidence along rays: ``max_k softmax(f(α·d)/T)_k`` for every direction ``d`` and scale ``α``.

    A tidy table with one row per ``(direction, alpha)``: ``direction`` (index),
    ``angle`` (degrees), ``alpha``, ``norm`` (``α·‖d‖``), ``confidence``,
    ``prediction``, ``temperature``. Hein et al.: for ReLU networks
    ``confidence → 1`` as ``α → ∞`` for almost every ``d``, whatever ``T``.
    """
    points, table = _ray_points(directions, alphas)
    conf, pred = max_softmax(toy_logits(model, points), temperature)
    return pd.DataFrame({**table, "confidence": conf.numpy(), "prediction": pred.numpy(),
                         "temperature": float(temperature)})


def _ray_points(directions, alphas) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """The points ``α·d`` ``[n_dir · n_alpha, 2]`` (direction-major) and their ``direction``, ``angle``
    (degrees), ``alpha`` and ``norm`` columns; ``directions [n, 2]`` and ``alphas`` are checked."""
    directions = torch.as_tensor(directions, dtype=torch.float64)
    if directions.ndim != 2 or directions.shape[1] != 2:
        raise ConfigError(f"directions: expected [n, 2], got shape {tuple(directions.shape)}")
    alphas_t = torch.as_tensor(np.asarray(alphas, dtype=np.float64))
    if alphas_t.ndim != 1 or len(alphas_t) == 0:
        raise ConfigError("alphas: expected a non-empty 1D sequence of scales")
    points = (alphas_t[None, :, None] * directions[:, None, :]).reshape(-1, 2)
    n_dir, n_alpha = directions.shape[0], alphas_t.shape[0]
    return points, {
        "direction": np.repeat(np.arange(n_dir), n_alpha),
        "angle": np.repeat(np.degrees(np.arctan2(directions[:, 1].numpy(), directions[:, 0].numpy())), n_alpha),
        "alpha": np.tile(alphas_t.numpy(), n_dir),
        "norm": (alphas_t[None, :] * directions.norm(dim=1)[:, None]).reshape(-1).numpy(),
    }


def toy_calibration(model: nn.Module, x, y, temperature: float = 1.0, n_bins: int = 10) -> dict[str, float]:
    """``accuracy, ece, adaptive_ece, nll, brier`` of the toy model on ``(x, y)`` at temperature ``T``
    (:func:`cdlib.method.calibration.calibration_report`)."""
    from cdlib.method.calibration import calibration_report

    return calibration_report(toy_logits(model, x), y, temperature=temperature, n_bins=n_bins)


@dataclass
class ToyRun:
    """One run of the toy study: data splits, the trained MLP and its fitted temperature."""

    seed: int
    model: ToyMLP
    temperature: float
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]

    def calibration(self, n_bins: int = 10) -> pd.DataFrame:
        """In-distribution calibration on the test split, raw (``T = 1``) and temperature-scaled:
        one row per ``scaling`` with ``temperature, accuracy, ece, adaptive_ece, nll, brier``."""
        rows = []
        for scaling, t in (("raw", 1.0), ("temperature", self.temperature)):
            rows.append({"scaling": scaling, "temperature": t, **toy_calibration(self.model, *self.test, t, n_bins)})
        return pd.DataFrame(rows)


def run_toy(seed: int = 0, n_train: int = 200, n_val: int = 400, n_test: int = 2000, **train_kwargs) -> ToyRun:
    """Draw train/val/test blobs (seeds ``seed``, ``seed + 1000``, ``seed + 2000``), train a
    :class:`ToyMLP` on train (:func:`train_toy`, initialisation seeded by ``seed``) and fit its
    temperature by NLL on val (:func:`cdlib.method.calibration.fit_temperature`)."""
    from cdlib.method.calibration import fit_temperature

    train = make_blobs(n_train, seed=seed)
    val = make_blobs(n_val, seed=seed + 1000)
    test = make_blobs(n_test, seed=seed + 2000)
    model = train_toy(*train, seed=seed, **train_kwargs)
    temperature = fit_temperature(toy_logits(model, val[0]), val[1])
    return ToyRun(seed, model, temperature, train, val, test)


# ----------------------------------------------------------------------------- distilled and distance-aware scores

class ToyStudent(nn.Module):
    """The toy's CD student: a ReLU trunk ``φ: R² → R^H``, a class head and a score head on ``φ``.

    The same two heads as the video students (:mod:`cdlib.models.small`): class
    logits ``[n, K]`` and a score logit ``[n]`` with ``s = σ(score_logit)``.
    """

    def __init__(self, num_classes: int = 4, hidden=(64, 64), in_features: int = 2):
        super().__init__()
        layers, width = relu_layers(in_features, hidden)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)
        self.score_head = nn.Sequential(nn.Linear(width, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)
        return self.classifier(features), self.score_head(features).squeeze(-1)


def train_toy_student(x: torch.Tensor, y: torch.Tensor, teacher: nn.Module, teacher_temperature: float = 1.0,
                      hidden=(64, 64), steps: int = 500, lr: float = 1e-2, seed: int = 0, **loss_kwargs) -> ToyStudent:
    """Fit a :class:`ToyStudent` by full-batch Adam on the confidence-distillation loss
    (:class:`cdlib.method.losses.ConfidenceDistillationLoss`, ``loss_kwargs`` its weights) against ``teacher``.

    The score's target is the teacher's true-class probability at ``teacher_temperature``
    (by default), so ``s`` learns where the teacher is right. Deterministic in ``seed``.
    """
    from cdlib.method.losses import ConfidenceDistillationLoss

    x = torch.as_tensor(x, dtype=torch.float32)
    y = torch.as_tensor(y, dtype=torch.long)
    teacher_logits = toy_logits(teacher, x).float()
    loss_fn = ConfidenceDistillationLoss(target_temperature=teacher_temperature, **loss_kwargs)
    torch.manual_seed(seed)
    student = ToyStudent(num_classes=teacher_logits.shape[1], hidden=hidden, in_features=x.shape[1])
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    student.train()
    for _ in range(steps):
        logits, score_logit = student(x)
        loss = loss_fn(logits, score_logit, teacher_logits, y).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    student.eval()
    return student


#: the toy's confidence signals, in the order the book shows them
TOY_SIGNALS = ("teacher_maxprob", "student_maxprob", "s", "s_da")


@dataclass
class ToyDistillation:
    """A toy CD student of a :class:`ToyRun`'s teacher and its distance-aware confidence.

    ``transfer``: the student's own training points (a fresh draw of the blobs);
    ``confidence``: the :class:`cdlib.method.distance.DistanceConfidence` fitted on the
    student's features of the transfer points (one Gaussian per class) with its
    gate set on the run's validation points.
    """

    run: ToyRun
    student: ToyStudent
    transfer: tuple[torch.Tensor, torch.Tensor]
    confidence: object

    @torch.no_grad()
    def scores(self, points) -> dict[str, torch.Tensor]:
        """Every signal of :data:`TOY_SIGNALS` at ``points [n, 2]``, float64 ``[n]`` each.

        ``teacher_maxprob``: the teacher's temperature-scaled max-softmax;
        ``student_maxprob``: the student's max-softmax; ``s``: the distilled score;
        ``s_da``: ``s`` times the distance gate of the student's features.
        """
        points = torch.as_tensor(points, dtype=torch.float64)
        features = self._student64.features(points)
        s = torch.sigmoid(self._student64.score_head(features).squeeze(-1))
        return {
            "teacher_maxprob": max_softmax(toy_logits(self.run.model, points), self.run.temperature)[0],
            "student_maxprob": self._student64.classifier(features).softmax(-1).amax(-1),
            "s": s,
            "s_da": self.confidence(s, features),
        }

    @cached_property
    def _student64(self) -> ToyStudent:
        """The student in float64, as the signals are computed."""
        return self.student if _is_float64(self.student) else _double_copy(self.student)

    def grid(self, signal: str, extent=40.0, resolution: int = 201) -> ConfidenceGrid:
        """``signal`` (one of :data:`TOY_SIGNALS`) on a grid, as :func:`confidence_grid` (prediction: the student's)."""
        if signal not in TOY_SIGNALS:
            raise ConfigError(f"signal: expected one of {', '.join(TOY_SIGNALS)}, got {signal!r}")
        extent, xs, ys, points = _grid_points(extent, resolution)
        values = self.scores(points)[signal]
        with torch.no_grad():
            prediction = self._student64(points)[0].argmax(-1)
        shape = (resolution, resolution)
        return ConfidenceGrid(xs, ys, values.numpy().reshape(shape), prediction.numpy().reshape(shape), extent, 1.0)

    def rays(self, directions, alphas) -> pd.DataFrame:
        """Every signal along rays ``α·d``: one row per ``(direction, alpha)`` with ``direction``, ``angle``
        (degrees), ``alpha``, ``norm`` and one column per signal of :data:`TOY_SIGNALS`."""
        points, table = _ray_points(directions, alphas)
        return pd.DataFrame({**table, **{name: values.numpy() for name, values in self.scores(points).items()}})


def distill_toy(run: ToyRun, n_transfer: int = 1000, method: str = "gaussian", **train_kwargs) -> ToyDistillation:
    """Train a :class:`ToyStudent` of ``run``'s temperature-scaled teacher on ``n_transfer`` fresh blob points
    (seed ``run.seed + 3000``; initialisation seeded by ``run.seed``) and fit its distance-aware confidence
    (:func:`cdlib.method.distance.fit_distance_confidence`): the distance on the student's features of those points,
    the gate on its features of ``run.val``. The run's test points are never used."""
    from cdlib.method.distance import fit_distance_confidence

    transfer = make_blobs(n_transfer, seed=run.seed + 3000)
    student = train_toy_student(*transfer, run.model, run.temperature, seed=run.seed, **train_kwargs)
    with torch.no_grad():
        train_features = student.features(transfer[0])
        val_features = student.features(run.val[0])
    labels = transfer[1] if method == "gaussian" else None
    confidence = fit_distance_confidence(train_features, val_features, method, train_labels=labels)
    return ToyDistillation(run, student, transfer, confidence)
