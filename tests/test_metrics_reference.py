"""The calibration and ranking metrics of :mod:`cdlib.method.calibration` against well-kept reference libraries.

scikit-learn gives AUROC, average precision, the ROC and precision-recall curves, the log-loss and the
Brier score; torchmetrics gives the expected calibration error. Neither implements adaptive (equal-mass)
ECE, so it is checked on data built so that its equal-mass bins are exactly torchmetrics' equal-width ones.
"""

import numpy as np
import pytest
import torch
from sklearn import metrics as skm
from torchmetrics.functional.classification import multiclass_calibration_error

from cdlib.method.calibration import adaptive_ece, auprc, auroc, brier, ece, nll, pr_curve, roc_curve


def _random_probs(m: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    probs = (torch.randn(m, k, generator=g, dtype=torch.float64) * 2).softmax(1)
    return probs, torch.randint(0, k, (m,), generator=g)


def _scores(seed: int, m: int = 300, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 8, size=m) / 7 if ties else rng.random(m)
    positives = rng.random(m) < 0.35 + 0.3 * scores  # informative but noisy
    return scores, positives


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, False), (3, True)])
def test_auroc_and_average_precision_match_scikit_learn(seed, ties):
    scores, positives = _scores(seed, ties=ties)
    assert auroc(scores, positives) == pytest.approx(skm.roc_auc_score(positives, scores), abs=1e-12)
    assert auprc(scores, positives) == pytest.approx(skm.average_precision_score(positives, scores), abs=1e-12)


@pytest.mark.parametrize("ties", [False, True])
def test_roc_and_pr_curves_match_scikit_learn(ties):
    scores, positives = _scores(4, m=60, ties=ties)
    fpr, tpr, thresholds = roc_curve(scores, positives)
    ref_fpr, ref_tpr, ref_thresholds = skm.roc_curve(positives, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr, ref_tpr, atol=1e-12)
    np.testing.assert_allclose(thresholds[1:], ref_thresholds[1:])  # the first is +inf in both, by convention
    precision, recall, pr_thresholds = pr_curve(scores, positives)
    # scikit-learn lists thresholds ascending and appends the point (precision 1, recall 0)
    ref_precision, ref_recall, ref_pr_thresholds = skm.precision_recall_curve(positives, scores)
    np.testing.assert_allclose(precision, ref_precision[:-1][::-1], atol=1e-12)
    np.testing.assert_allclose(recall, ref_recall[:-1][::-1], atol=1e-12)
    np.testing.assert_allclose(pr_thresholds, ref_pr_thresholds[::-1])


@pytest.mark.parametrize("seed,k", [(0, 2), (1, 5), (2, 10)])
def test_nll_and_brier_match_scikit_learn(seed, k):
    probs, labels = _random_probs(400, k, seed)
    assert nll(probs, labels) == pytest.approx(skm.log_loss(labels.numpy(), probs.numpy(), labels=range(k)), rel=1e-10)
    # scikit-learn halves the binary score by default; ours is the original multi-class Brier score
    reference = skm.brier_score_loss(labels.numpy(), probs.numpy(), labels=list(range(k)), scale_by_half=False)
    assert brier(probs, labels) == pytest.approx(reference, rel=1e-10)


@pytest.mark.parametrize("seed,m,k,n_bins", [(0, 500, 5, 15), (1, 997, 3, 10), (2, 200, 8, 7)])
def test_ece_matches_torchmetrics(seed, m, k, n_bins):
    probs, labels = _random_probs(m, k, seed)
    reference = multiclass_calibration_error(probs, labels, num_classes=k, n_bins=n_bins, norm="l1")
    assert ece(probs, labels, n_bins) == pytest.approx(float(reference), abs=1e-6)


def test_adaptive_ece_matches_torchmetrics_where_equal_mass_bins_are_equal_width():
    # 20 samples in each of 10 equal-width confidence bins: the equal-mass bins are the same bins
    rng = np.random.default_rng(5)
    n_bins, per_bin, k = 10, 20, 4
    conf = np.concatenate([rng.uniform(max(b / n_bins, 1 / k) + 1e-6, (b + 1) / n_bins - 1e-6, per_bin)
                           for b in range(n_bins) if (b + 1) / n_bins > 1 / k])
    labels = rng.integers(0, k, conf.size)
    predicted = rng.integers(0, k, conf.size)
    probs = np.tile(((1 - conf) / (k - 1))[:, None], (1, k))
    probs[np.arange(conf.size), predicted] = conf
    probs, labels = torch.tensor(probs), torch.tensor(labels)
    used_bins = conf.size // per_bin
    reference = multiclass_calibration_error(probs, labels, num_classes=k, n_bins=n_bins, norm="l1")
    assert adaptive_ece(probs, labels, n_bins=used_bins) == pytest.approx(float(reference), abs=1e-6)
    assert ece(probs, labels, n_bins) == pytest.approx(float(reference), abs=1e-6)
