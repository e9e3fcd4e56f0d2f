"""The confidence-distillation loss against a direct computation of its formula."""

import math

import pytest
import torch

from cdlib.method.losses import CONFIDENCE_TARGETS, ConfidenceDistillationLoss, get_target, list_targets
from cdlib.runtime.errors import ConfigError

B, K = 7, 5


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(B, K, generator=g) * 2
    score = torch.randn(B, generator=g) * 2
    teacher = torch.randn(B, K, generator=g) * 3
    labels = torch.randint(0, K, (B,), generator=g)
    return student, score, teacher, labels


def _softmax(z):
    e = [[math.exp(v) for v in row] for row in z.tolist()]
    return [[v / sum(row) for v in row] for row in e]


def _target_direct(name, q, y):
    """The four confidence targets (cdlib.method.losses.CONFIDENCE_TARGETS) on python lists."""
    if name == "true_class_prob":
        return q[y]
    if name == "max_prob":
        return max(q)
    if name == "correct":
        return float(q.index(max(q)) == y)
    assert name == "neg_entropy"
    return 1 - (-sum(v * math.log(v) for v in q if v > 0)) / math.log(len(q))


def _loss_direct(student, score, teacher, labels, alpha, beta, gamma, tau, target, target_temperature):
    """Mean over clips of α·CE + β·τ²·KL(p_T‖p_S) + γ·BCE(σ(score), t), with explicit exp/log/sum."""
    log_ps = [[math.log(v) for v in row] for row in _softmax(student)]
    pt_tau = _softmax(teacher / tau)
    ps_tau = _softmax(student / tau)
    q = _softmax(teacher / target_temperature)
    total = 0.0
    for i, y in enumerate(labels.tolist()):
        ce = -log_ps[i][y]
        kl = sum(p * (math.log(p) - math.log(r)) for p, r in zip(pt_tau[i], ps_tau[i]))
        s = 1 / (1 + math.exp(-score[i].item()))
        t = _target_direct(target, q[i], y)
        bce = -(t * math.log(s) + (1 - t) * math.log(1 - s))
        total += alpha * ce + beta * tau**2 * kl + gamma * bce
    return total / len(labels)


@pytest.mark.parametrize("target", list(CONFIDENCE_TARGETS))
@pytest.mark.parametrize(
    "alpha,beta,gamma,tau,target_temperature",
    [(1.0, 1.0, 5.0, 2.0, 1.0), (0.5, 2.0, 1.0, 1.0, 1.0), (1.0, 0.3, 2.0, 4.0, 1.7), (0.0, 1.0, 1.0, 0.5, 0.8)],
)
def test_loss_equals_direct_formula(target, alpha, beta, gamma, tau, target_temperature):
    student, score, teacher, labels = _batch(seed=int(tau * 10))
    loss = ConfidenceDistillationLoss(alpha, beta, gamma, tau, target, target_temperature)
    out = loss(student, score, teacher, labels)
    expected = _loss_direct(student, score, teacher, labels, alpha, beta, gamma, tau, target, target_temperature)
    assert out.total.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert (alpha * out.ce + beta * out.kd + gamma * out.bce).item() == pytest.approx(out.total.item(), rel=1e-6)


def test_gradients_reach_both_student_heads_and_never_the_teacher():
    student, score, teacher, labels = _batch()
    student.requires_grad_(True)
    score.requires_grad_(True)
    teacher.requires_grad_(True)
    out = ConfidenceDistillationLoss()(student, score, teacher, labels)
    out.total.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert score.grad is not None and score.grad.abs().sum() > 0
    assert teacher.grad is None
    for component in (out.ce, out.kd, out.bce):
        assert not component.requires_grad


def test_score_gradient_is_the_bce_gradient():
    """dL/d(score_i) = γ·(σ(score_i) − t_i)/B: the score head is pushed towards the target."""
    student, score, teacher, labels = _batch(seed=3)
    score.requires_grad_(True)
    ConfidenceDistillationLoss(gamma=2.0)(student, score, teacher, labels).total.backward()
    t = torch.softmax(teacher, 1).gather(1, labels[:, None]).squeeze(1)
    torch.testing.assert_close(score.grad, 2.0 * (torch.sigmoid(score.detach()) - t) / B)


def test_kd_only_and_ce_only():
    student, score, teacher, labels = _batch(seed=5)
    kd = ConfidenceDistillationLoss(alpha=0.7, beta=1.5, gamma=0.0, tau=3.0)
    out = kd(student, None, teacher, labels)
    expected = _loss_direct(student, score, teacher, labels, 0.7, 1.5, 0.0, 3.0, "true_class_prob", 1.0)
    assert out.total.item() == pytest.approx(expected, rel=1e-5)
    assert math.isnan(out.bce.item())
    assert math.isfinite(kd(student, score, teacher, labels).bce.item())  # reported when it can be computed

    ce = ConfidenceDistillationLoss(alpha=1.0, beta=0.0, gamma=0.0)
    out = ce(student, score, None, labels)
    assert out.total.item() == pytest.approx(torch.nn.functional.cross_entropy(student, labels).item(), rel=1e-6)
    assert math.isnan(out.kd.item()) and math.isnan(out.bce.item())
    assert ce(student, None, None, labels).total.item() == pytest.approx(out.total.item())


def test_targets_on_hand_made_teachers():
    big = 50.0
    onehot = torch.tensor([[big, 0.0, 0.0, 0.0], [0.0, 0.0, big, 0.0]]).softmax(1)
    uniform = torch.full((2, 4), 0.25)
    labels = torch.tensor([0, 1])
    torch.testing.assert_close(get_target("true_class_prob")(onehot, labels), torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(get_target("max_prob")(onehot, labels), torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(get_target("correct")(onehot, labels), torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(get_target("neg_entropy")(onehot, labels), torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(get_target("true_class_prob")(uniform, labels), torch.tensor([0.25, 0.25]))
    torch.testing.assert_close(get_target("max_prob")(uniform, labels), torch.tensor([0.25, 0.25]))
    torch.testing.assert_close(get_target("neg_entropy")(uniform, labels), torch.tensor([0.0, 0.0]))
    # a two-way split: entropy log 2 of log 4, so half the certainty
    half = torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    torch.testing.assert_close(get_target("neg_entropy")(half, torch.tensor([1])), torch.tensor([0.5]))
    # argmax ties go to the lowest class index
    assert get_target("correct")(half, torch.tensor([0])).item() == 1.0
    assert get_target("correct")(half, torch.tensor([1])).item() == 0.0


@pytest.mark.parametrize("target", list(CONFIDENCE_TARGETS))
def test_targets_lie_in_unit_interval(target):
    g = torch.Generator().manual_seed(1)
    probs = (torch.randn(64, 6, generator=g) * 4).softmax(1)
    labels = torch.randint(0, 6, (64,), generator=g)
    values = get_target(target)(probs, labels)
    assert values.shape == (64,)
    assert ((values >= 0) & (values <= 1)).all()


def test_registry():
    assert list_targets() == ["true_class_prob", "max_prob", "correct", "neg_entropy"]
    assert ConfidenceDistillationLoss().target == list_targets()[0]
    with pytest.raises(ConfigError, match="target.*'nope'"):
        get_target("nope")


def test_target_temperature_changes_only_the_bce_term():
    student, score, teacher, labels = _batch(seed=9)
    raw = ConfidenceDistillationLoss(target_temperature=1.0)(student, score, teacher, labels)
    hot = ConfidenceDistillationLoss(target_temperature=3.0)(student, score, teacher, labels)
    assert raw.ce == hot.ce and raw.kd == hot.kd
    assert raw.bce != hot.bce


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"alpha": -1.0}, "alpha"),
        ({"beta": -0.1}, "beta"),
        ({"gamma": float("nan")}, "gamma"),
        ({"tau": 0.0}, "tau"),
        ({"tau": -2.0}, "tau"),
        ({"target_temperature": 0.0}, "target_temperature"),
        ({"target": "entropy"}, "target"),
        ({"alpha": 0.0, "beta": 0.0, "gamma": 0.0}, "alpha, beta, gamma"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs, name):
    with pytest.raises(ConfigError, match=name):
        ConfidenceDistillationLoss(**kwargs)


def test_missing_inputs_raise():
    student, score, teacher, labels = _batch()
    with pytest.raises(ConfigError, match="teacher_logits"):
        ConfidenceDistillationLoss(gamma=0.0)(student, score, None, labels)
    with pytest.raises(ConfigError, match="score_logit"):
        ConfidenceDistillationLoss()(student, None, teacher, labels)
    with pytest.raises(ValueError, match="teacher_logits"):
        ConfidenceDistillationLoss()(student, score, teacher[:, :3], labels)
    with pytest.raises(ValueError, match="score_logit"):
        ConfidenceDistillationLoss()(student, score[:3], teacher, labels)
    with pytest.raises(ValueError, match="labels"):
        ConfidenceDistillationLoss()(student, score, teacher, labels[:3])
