"""Calibration and ranking metrics, temperature scaling, reliability-diagram data.

Pure functions: per-sample tensors (or arrays) in, numbers or tables out.
``probs`` is ``[M, K]`` (rows sum to 1), ``logits`` ``[M, K]``, ``labels``
``[M]`` integer classes. With ``conf_m = max_k probs[m, k]`` and
``correct_m = 1[argmax_k probs[m, k] = labels[m]]`` (ties: lowest class index):

- ``ece``           Σ_b (|B_b|/M)·|acc(B_b) − conf(B_b)|, equal-width bins on ``conf``
- ``adaptive_ece``  the same sum over equal-mass bins
- ``nll``           −(1/M) Σ_m log probs[m, y_m]
- ``brier``         (1/M) Σ_m Σ_k (probs[m, k] − 1[k = y_m])²

Temperature scaling (Guo et al., ICML 2017): :func:`fit_temperature`,
:func:`apply_temperature`. Ranking quality of a confidence signal for a binary
question ("is the teacher right on this clip?"): :func:`auroc`, :func:`auprc`,
:func:`roc_curve`, :func:`pr_curve`.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from cdlib.runtime.errors import ConfigError

#: temperatures searched by :func:`fit_temperature`
TEMPERATURE_BOUNDS = (1e-2, 1e2)


def _probs_labels(probs, labels) -> tuple[Tensor, Tensor]:
    """``probs`` (or logits) ``[M, K]`` as float64 and ``labels [M]`` as int64, checked."""
    probs = torch.as_tensor(probs).detach().cpu().to(torch.float64)
    labels = torch.as_tensor(labels).detach().cpu().long()
    if probs.ndim != 2 or labels.shape != (probs.shape[0],) or probs.shape[0] == 0:
        raise ValueError(
            f"expected a [M, K] matrix and labels [M] with M >= 1, got {tuple(probs.shape)} and {tuple(labels.shape)}"
        )
    return probs, labels


def _check_bins(n_bins: int) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, numbers.Integral) or n_bins < 1:
        raise ConfigError(f"n_bins: expected an integer >= 1, got {n_bins!r}")
    return int(n_bins)


def _confidence_correct(probs: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    conf, pred = probs.max(dim=1)
    return conf, (pred == labels).to(torch.float64)


def _bin_ids(conf: Tensor, n_bins: int) -> Tensor:
    """Equal-width bin of each confidence: bin ``b`` is ``(b/n, (b+1)/n]``, bin 0 also holds 0."""
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)
    return torch.bucketize(conf, edges[1:-1], right=False)


def _gap_sum(bin_ids: Tensor, conf: Tensor, correct: Tensor, n_bins: int) -> float:
    """Σ_b |Σ_{m∈B_b} (correct_m − conf_m)| / M  =  Σ_b (|B_b|/M)·|acc(B_b) − conf(B_b)|."""
    gaps = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, bin_ids, correct - conf)
    return float(gaps.abs().sum() / conf.numel())


def ece(probs, labels, n_bins: int = 15) -> float:
    """Expected calibration error with ``n_bins`` equal-width bins on the max-prob confidence.

    ``ECE = Σ_b (|B_b|/M)·|acc(B_b) − conf(B_b)|``, bin ``b`` holding the samples
    with ``conf ∈ (b/n, (b+1)/n]`` (the first bin also holds ``conf = 0``).
    """
    probs, labels = _probs_labels(probs, labels)
    n_bins = _check_bins(n_bins)
    conf, correct = _confidence_correct(probs, labels)
    return _gap_sum(_bin_ids(conf, n_bins), conf, correct, n_bins)


def adaptive_ece(probs, labels, n_bins: int = 15) -> float:
    """ECE over equal-mass bins: the same sum as :func:`ece`, bins by rank instead of value.

    Samples are sorted by confidence (stable: ties keep their input order) and
    cut into ``n_bins`` consecutive groups whose sizes differ by at most one,
    the larger ones first (``numpy.array_split``); when ``M < n_bins`` the last
    bins are empty and contribute nothing. Tied confidences may straddle a cut.
    """
    probs, labels = _probs_labels(probs, labels)
    n_bins = _check_bins(n_bins)
    conf, correct = _confidence_correct(probs, labels)
    order = torch.sort(conf, stable=True).indices
    m = conf.numel()
    sizes = [m // n_bins + (1 if b < m % n_bins else 0) for b in range(n_bins)]
    bin_of_rank = torch.repeat_interleave(torch.arange(n_bins), torch.tensor(sizes))
    return _gap_sum(bin_of_rank, conf[order], correct[order], n_bins)


def nll(probs, labels) -> float:
    """Negative log-likelihood ``−(1/M) Σ_m log probs[m, y_m]`` (``inf`` if a true-class probability is 0)."""
    probs, labels = _probs_labels(probs, labels)
    return float(-probs.gather(1, labels.unsqueeze(1)).log().mean())


def brier(probs, labels) -> float:
    """Multi-class Brier score ``(1/M) Σ_m Σ_k (probs[m, k] − 1[k = y_m])²`` (in ``[0, 2]``)."""
    probs, labels = _probs_labels(probs, labels)
    onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).to(torch.float64)
    return float(((probs - onehot) ** 2).sum(dim=1).mean())


def reliability_diagram(probs, labels, n_bins: int = 15) -> pd.DataFrame:
    """Per equal-width bin (as in :func:`ece`): ``lower, upper, count, confidence, accuracy``.

    ``confidence`` and ``accuracy`` are the bin means of ``conf`` and ``correct``
    (NaN for an empty bin). One row per bin, empty bins included.
    """
    probs, labels = _probs_labels(probs, labels)
    n_bins = _check_bins(n_bins)
    conf, correct = _confidence_correct(probs, labels)
    ids = _bin_ids(conf, n_bins)
    counts = torch.bincount(ids, minlength=n_bins).to(torch.float64)
    conf_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, ids, conf)
    correct_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, ids, correct)
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)
    return pd.DataFrame(
        {
            "lower": edges[:-1].numpy(),
            "upper": edges[1:].numpy(),
            "count": counts.long().numpy(),
            "confidence": (conf_sum / counts).numpy(),
            "accuracy": (correct_sum / counts).numpy(),
        }
    )


def apply_temperature(logits, temperature: float) -> Tensor:
    """Temperature-scaled logits ``logits / T`` (``softmax`` of them are the calibrated probabilities)."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not temperature > 0:
        raise ConfigError(f"temperature: expected a number > 0, got {temperature!r}")
    return torch.as_tensor(logits) / temperature


def fit_temperature(logits, labels) -> float:
    """Temperature scaling: ``T* = argmin_{T > 0} −(1/M) Σ_m log softmax(z_m / T)[y_m]``.

    The NLL is convex in ``1/T`` (a log-sum-exp of linear functions minus a
    linear one), hence unimodal in ``log T``; a golden-section search on
    ``log T`` over :data:`TEMPERATURE_BOUNDS` finds it deterministically to
    ~1e-9 in ``log T``. When the minimum lies outside the bounds (e.g. every
    sample already correct, where the NLL keeps falling as ``T → 0``) the
    nearest bound is returned.
    """
    logits, labels = _probs_labels(logits, labels)
    # numpy: ~50 passes over [M, K] on one thread, unaffected by torch's thread pool on a busy machine
    z = logits.numpy()
    z_true = z[np.arange(z.shape[0]), labels.numpy()]
    z_max = z.max(axis=1)

    def loss(log_t: float) -> float:
        inv_t = math.exp(-log_t)
        log_sum_exp = inv_t * z_max + np.log(np.exp(inv_t * (z - z_max[:, None])).sum(axis=1))
        return float(np.mean(log_sum_exp - inv_t * z_true))

    lo, hi = (math.log(b) for b in TEMPERATURE_BOUNDS)
    inv_phi = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - inv_phi * (hi - lo), lo + inv_phi * (hi - lo)
    fa, fb = loss(a), loss(b)
    while hi - lo > 1e-9:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - inv_phi * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + inv_phi * (hi - lo)
            fb = loss(b)
    return math.exp((lo + hi) / 2.0)


def calibration_report(logits, labels, temperature: float = 1.0, n_bins: int = 15) -> dict[str, float]:
    """``accuracy, ece, adaptive_ece, nll, brier`` of ``softmax(logits / temperature)`` (float64)."""
    logits = torch.as_tensor(logits).detach().to(torch.float64)
    probs = torch.softmax(apply_temperature(logits, temperature), dim=1)
    probs, labels = _probs_labels(probs, labels)
    return {
        "accuracy": float((probs.argmax(dim=1) == labels).to(torch.float64).mean()),
        "ece": ece(probs, labels, n_bins),
        "adaptive_ece": adaptive_ece(probs, labels, n_bins),
        "nll": nll(probs, labels),
        "brier": brier(probs, labels),
    }


def _scores_positives(scores, positives) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(torch.as_tensor(scores).detach().cpu(), dtype=np.float64)
    positives = np.asarray(torch.as_tensor(positives).detach().cpu()).astype(bool)
    if scores.ndim != 1 or positives.shape != scores.shape:
        raise ValueError(f"expected scores [M] and positives [M], got {scores.shape} and {positives.shape}")
    return scores, positives


def _cumulative_counts(scores: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At each distinct score ``t`` (descending): ``#pos`` and ``#neg`` with ``score ≥ t``, and ``t``."""
    thresholds, inverse = np.unique(-scores, return_inverse=True)
    tp = np.cumsum(np.bincount(inverse, weights=positives, minlength=thresholds.size))
    fp = np.cumsum(np.bincount(inverse, weights=~positives, minlength=thresholds.size))
    return tp, fp, -thresholds


def roc_curve(scores, positives) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)``: rates when predicting positive for ``score ≥ t``.

    One point per distinct score (descending ``t``), preceded by ``(0, 0)`` at
    ``t = +inf``; tied scores move the curve diagonally. NaN rates when a class
    is absent.
    """
    scores, positives = _scores_positives(scores, positives)
    tp, fp, thresholds = _cumulative_counts(scores, positives)
    n_pos, n_neg = positives.sum(), (~positives).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        fpr = np.concatenate([[0.0], fp / n_neg])
        tpr = np.concatenate([[0.0], tp / n_pos])
    return fpr, tpr, np.concatenate([[np.inf], thresholds])


def pr_curve(scores, positives) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(precision, recall, thresholds)`` when predicting positive for ``score ≥ t``, one point per distinct score (descending ``t``)."""
    scores, positives = _scores_positives(scores, positives)
    tp, fp, thresholds = _cumulative_counts(scores, positives)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = tp / positives.sum()
    return tp / (tp + fp), recall, thresholds


def auroc(scores, positives) -> float:
    """Area under the ROC curve = P(score of a random positive > that of a random negative) + ½·P(tie).

    The trapezoid area under :func:`roc_curve`, whose diagonal steps over tied
    scores give the ½. NaN when ``positives`` holds only one class (or nothing).
    """
    scores, positives = _scores_positives(scores, positives)
    if positives.all() or not positives.any():
        return float("nan")
    fpr, tpr, _ = roc_curve(scores, positives)
    return float(np.trapezoid(tpr, fpr))


def auprc(scores, positives) -> float:
    """Average precision ``AP = Σ_n (R_n − R_{n−1})·P_n`` over the distinct thresholds of :func:`pr_curve` (``R_0 = 0``).

    Tied scores form one threshold. NaN when ``positives`` holds only one class
    (or nothing): with no negatives AP is trivially 1, with no positives undefined.
    """
    scores, positives = _scores_positives(scores, positives)
    if positives.all() or not positives.any():
        return float("nan")
    precision, recall, _ = pr_curve(scores, positives)
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))
