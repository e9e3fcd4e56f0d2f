"""Calibration and ranking metrics against brute-force references (tests/test_metrics_reference.py checks them
against scikit-learn and torchmetrics)."""

import math

import numpy as np
import pytest
import torch

from cdlib.method.calibration import (
    TEMPERATURE_BOUNDS,
    adaptive_ece,
    apply_temperature,
    auprc,
    auroc,
    brier,
    calibration_report,
    ece,
    fit_temperature,
    nll,
    pr_curve,
    reliability_diagram,
    roc_curve,
)
from cdlib.runtime.errors import ConfigError


def _random(m=200, k=5, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(m, k, generator=g, dtype=torch.float64) * scale
    labels = torch.randint(0, k, (m,), generator=g)
    return logits, logits.softmax(1), labels


def _conf_correct(probs, labels):
    conf = [max(row) for row in probs.tolist()]
    correct = [float(row.index(max(row)) == y) for row, y in zip(probs.tolist(), labels.tolist())]
    return conf, correct


def _ece_from_bins(bins, conf, correct):
    m = len(conf)
    total = 0.0
    for members in bins:
        if members:
            acc = sum(correct[i] for i in members) / len(members)
            avg = sum(conf[i] for i in members) / len(members)
            total += len(members) / m * abs(acc - avg)
    return total


def _ece_direct(probs, labels, n_bins):
    conf, correct = _conf_correct(probs, labels)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = [[i for i, c in enumerate(conf) if edges[b] < c <= edges[b + 1] or (b == 0 and c == 0)] for b in range(n_bins)]
    return _ece_from_bins(bins, conf, correct)


def _adaptive_ece_direct(probs, labels, n_bins):
    conf, correct = _conf_correct(probs, labels)
    order = sorted(range(len(conf)), key=lambda i: (conf[i], i))
    bins = [list(chunk) for chunk in np.array_split(np.array(order), n_bins)]
    return _ece_from_bins(bins, conf, correct)


@pytest.mark.parametrize("seed,m,n_bins", [(0, 200, 15), (1, 37, 10), (2, 500, 7), (3, 9, 15)])
def test_ece_and_adaptive_ece_against_loops(seed, m, n_bins):
    _, probs, labels = _random(m=m, seed=seed)
    assert ece(probs, labels, n_bins) == pytest.approx(_ece_direct(probs, labels, n_bins), abs=1e-12)
    assert adaptive_ece(probs, labels, n_bins) == pytest.approx(_adaptive_ece_direct(probs, labels, n_bins), abs=1e-12)


def test_ece_bin_edges_are_upper_inclusive():
    # confidences exactly on an edge (0.5 with 2 bins, 0.6 would be in the upper bin) go to the lower bin
    probs = torch.tensor([[0.5, 0.5], [0.6, 0.4], [1.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 0])
    table = reliability_diagram(probs, labels, n_bins=2)
    assert table["count"].tolist() == [1, 2]
    assert ece(probs, labels, 2) == pytest.approx(_ece_direct(probs, labels, 2))


def test_perfectly_calibrated_construction_has_zero_ece():
    # in every bin, the fraction of correct samples equals the (shared) confidence
    rows, labels = [], []
    for conf, n_right, n in [(0.6, 6, 10), (0.7, 7, 10), (0.9, 9, 10), (1.0, 10, 10)]:
        for j in range(n):
            rows.append([conf, 1 - conf])
            labels.append(0 if j < n_right else 1)
    probs, labels = torch.tensor(rows, dtype=torch.float64), torch.tensor(labels)
    assert ece(probs, labels) == pytest.approx(0.0, abs=1e-12)
    assert adaptive_ece(probs, labels, n_bins=4) == pytest.approx(0.0, abs=1e-12)


def test_always_confident_always_wrong_has_ece_one():
    probs = torch.tensor([[1.0, 0.0, 0.0]] * 6, dtype=torch.float64)
    labels = torch.tensor([1, 2, 1, 2, 1, 2])
    assert ece(probs, labels) == pytest.approx(1.0)
    assert adaptive_ece(probs, labels) == pytest.approx(1.0)
    assert brier(probs, labels) == pytest.approx(2.0)
    assert nll(probs, labels) == math.inf


def test_nll_and_brier_against_loops():
    _, probs, labels = _random(m=50, k=4, seed=4)
    rows, ys = probs.tolist(), labels.tolist()
    expected_nll = -sum(math.log(row[y]) for row, y in zip(rows, ys)) / len(ys)
    expected_brier = sum(sum((p - (k == y)) ** 2 for k, p in enumerate(row)) for row, y in zip(rows, ys)) / len(ys)
    assert nll(probs, labels) == pytest.approx(expected_nll, rel=1e-12)
    assert brier(probs, labels) == pytest.approx(expected_brier, rel=1e-12)


def test_reliability_diagram_against_loops():
    _, probs, labels = _random(m=120, seed=5)
    n_bins = 6
    table = reliability_diagram(probs, labels, n_bins)
    assert list(table.columns) == ["lower", "upper", "count", "confidence", "accuracy"]
    assert len(table) == n_bins and table["count"].sum() == 120
    conf, correct = _conf_correct(probs, labels)
    for b, row in table.iterrows():
        members = [i for i, c in enumerate(conf) if row.lower < c <= row.upper or (b == 0 and c == 0)]
        assert row["count"] == len(members)
        if members:
            assert row.confidence == pytest.approx(np.mean([conf[i] for i in members]))
            assert row.accuracy == pytest.approx(np.mean([correct[i] for i in members]))
        else:
            assert math.isnan(row.confidence) and math.isnan(row.accuracy)
    weighted = (table["count"] / 120 * (table["accuracy"] - table["confidence"]).abs()).sum()
    assert weighted == pytest.approx(ece(probs, labels, n_bins))


def test_fit_temperature_recovers_a_known_temperature():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(20000, 6, generator=g) * 4
    labels = torch.multinomial((logits / 2.0).softmax(1), 1, generator=g).squeeze(1)
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(2.0, rel=0.05)
    assert fit_temperature(logits, labels) == temperature  # deterministic
    # it minimises the NLL: nearby temperatures are no better
    best = nll(apply_temperature(logits, temperature).softmax(1), labels)
    for other in (temperature * 0.97, temperature * 1.03, 1.0):
        assert nll(apply_temperature(logits, other).softmax(1), labels) >= best - 1e-12


def test_fit_temperature_clips_to_bounds_when_every_sample_is_right():
    logits = torch.tensor([[3.0, 0.0], [0.0, 2.0]])
    assert fit_temperature(logits, torch.tensor([0, 1])) == pytest.approx(TEMPERATURE_BOUNDS[0], rel=1e-6)


def test_calibration_report():
    logits, probs, labels = _random(m=300, seed=6)
    report = calibration_report(logits, labels)
    assert set(report) == {"accuracy", "ece", "adaptive_ece", "nll", "brier"}
    assert report["accuracy"] == pytest.approx((probs.argmax(1) == labels).double().mean().item())
    assert report["ece"] == pytest.approx(ece(probs, labels))
    assert report["nll"] == pytest.approx(nll(probs, labels))
    scaled = calibration_report(logits, labels, temperature=2.0)
    assert scaled["accuracy"] == report["accuracy"]  # temperature never changes the argmax
    assert scaled["brier"] == pytest.approx(brier((logits / 2.0).softmax(1), labels))


def _auroc_pairs(scores, positives):
    pos = [s for s, p in zip(scores, positives) if p]
    neg = [s for s, p in zip(scores, positives) if not p]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def _auprc_direct(scores, positives):
    ap, last_recall, n_pos = 0.0, 0.0, sum(positives)
    for t in sorted(set(scores), reverse=True):
        chosen = [p for s, p in zip(scores, positives) if s >= t]
        recall = sum(chosen) / n_pos
        ap += (recall - last_recall) * sum(chosen) / len(chosen)
        last_recall = recall
    return ap


@pytest.mark.parametrize("seed", range(5))
def test_auroc_and_auprc_against_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, size=40).astype(float) / 5  # many ties
    positives = rng.random(40) < 0.4
    assert auroc(scores, positives) == pytest.approx(_auroc_pairs(scores.tolist(), positives.tolist()), abs=1e-12)
    assert auprc(scores, positives) == pytest.approx(_auprc_direct(scores.tolist(), positives.tolist()), abs=1e-12)
    continuous = torch.tensor(rng.random(40))
    assert auroc(continuous, torch.tensor(positives)) == pytest.approx(
        _auroc_pairs(continuous.tolist(), positives.tolist()), abs=1e-12
    )


def test_auroc_known_cases():
    positives = np.array([1, 1, 0, 0, 1, 0], dtype=bool)
    separating = np.where(positives, 0.9, 0.1) + np.arange(6) * 1e-3
    assert auroc(separating, positives) == 1.0
    assert auprc(separating, positives) == 1.0
    assert auroc(-separating, positives) == 0.0
    assert auroc(np.full(6, 0.3), positives) == 0.5
    assert auprc(np.full(6, 0.3), positives) == pytest.approx(0.5)  # the positive rate
    assert math.isnan(auroc(separating, np.ones(6, dtype=bool)))  # documented: NaN with one class
    assert math.isnan(auprc(separating, np.zeros(6, dtype=bool)))


def test_roc_and_pr_curves():
    scores = np.array([0.9, 0.8, 0.8, 0.3, 0.1])
    positives = np.array([1, 0, 1, 0, 1], dtype=bool)
    fpr, tpr, thresholds = roc_curve(scores, positives)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1])
    np.testing.assert_allclose(thresholds, [np.inf, 0.9, 0.8, 0.3, 0.1])
    precision, recall, pr_thresholds = pr_curve(scores, positives)
    np.testing.assert_allclose(precision, [1, 2 / 3, 2 / 4, 3 / 5])
    np.testing.assert_allclose(recall, [1 / 3, 2 / 3, 2 / 3, 1])
    np.testing.assert_allclose(pr_thresholds, [0.9, 0.8, 0.3, 0.1])


def test_bad_arguments():
    _, probs, labels = _random(m=10)
    with pytest.raises(ConfigError, match="n_bins"):
        ece(probs, labels, n_bins=0)
    with pytest.raises(ConfigError, match="temperature"):
        apply_temperature(probs, 0.0)
    with pytest.raises(ValueError, match="labels"):
        brier(probs, labels[:3])
    with pytest.raises(ValueError, match="positives"):
        auroc(np.zeros(3), np.zeros(4))
