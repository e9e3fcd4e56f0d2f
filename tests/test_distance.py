"""The distance-aware confidence: distances against direct computations, the gate, what it is fitted on,
and the property it exists for: far from the training data it falls where the distilled score does not."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from cdlib.experiment import toy
from cdlib.method import distance
from cdlib.method.distance import (
    DistanceAwareHead,
    DistanceConfidence,
    DistanceGate,
    FeatureStudent,
    distance_aware_score,
    fit_distance_confidence,
    fit_gate,
    fit_gaussian_distance,
    fit_knn_distance,
)
from cdlib.models import create_model
from cdlib.runtime.errors import ConfigError


def clusters(n=300, dim=5, seed=0):
    """Three anisotropic Gaussian clusters in ``dim`` dimensions with labels."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    centres = torch.randn(3, dim, generator=g, dtype=torch.float64) * 4
    scales = torch.rand(3, dim, generator=g, dtype=torch.float64) + 0.3
    x = centres[labels] + scales[labels] * torch.randn(n, dim, generator=g, dtype=torch.float64)
    return x, labels


def test_gaussian_distance_is_minus_the_log_density_of_the_class_mixture():
    x, labels = clusters()
    fitted = fit_gaussian_distance(x, labels, shrinkage=0.05)
    query = clusters(n=40, seed=1)[0] * 1.5
    log_terms = []
    for c in range(3):
        xc = x[labels == c]
        cov = torch.cov(xc.T, correction=0)
        cov = 0.95 * cov + 0.05 * cov.diagonal().mean() * torch.eye(x.shape[1], dtype=torch.float64)
        normal = torch.distributions.MultivariateNormal(xc.mean(0), covariance_matrix=cov)
        log_terms.append(normal.log_prob(query) + math.log(len(xc) / len(x)))
    expected = -torch.logsumexp(torch.stack(log_terms), dim=0)
    assert fitted(query).shape == (40,)
    assert torch.allclose(fitted(query), expected, rtol=1e-9, atol=1e-9)


def test_shared_covariance_pools_the_within_class_covariances():
    x, labels = clusters()
    fitted = fit_gaussian_distance(x, labels, shrinkage=0.5, shared=True)
    covariances = torch.linalg.inv(fitted.whiten.transpose(1, 2) @ fitted.whiten)  # Σ = (WᵀW)⁻¹
    assert torch.allclose(covariances[0], covariances[1]) and torch.allclose(covariances[0], covariances[2])
    pooled = sum(torch.cov(x[labels == c].T, correction=0) * (labels == c).sum() for c in range(3)) / len(x)
    expected = 0.5 * pooled + 0.5 * pooled.diagonal().mean() * torch.eye(x.shape[1], dtype=torch.float64)
    assert torch.allclose(covariances[0], expected)


def test_knn_distance_is_the_kth_smallest_standardised_distance():
    x, _ = clusters(n=60)
    fitted = fit_knn_distance(x, k=4)
    query = torch.randn(7, x.shape[1], dtype=torch.float64)
    mean, std = x.mean(0), x.std(0, correction=0)
    for q, d in zip(query, fitted(query)):
        brute = sorted(float(((q - mean) / std - (p - mean) / std).norm()) for p in x)
        assert d.item() == pytest.approx(brute[3])


@pytest.mark.parametrize("fit", [lambda x, y: fit_gaussian_distance(x, y), lambda x, y: fit_knn_distance(x, k=5)])
def test_distance_grows_along_every_ray_away_from_the_data(fit):
    x, labels = clusters()
    fitted = fit(x, labels)
    directions = torch.nn.functional.normalize(torch.randn(16, x.shape[1], dtype=torch.float64), dim=1)
    centre = x.mean(0)
    along = torch.stack([fitted(centre + a * directions) for a in (40.0, 80.0, 160.0, 320.0)])  # [4, 16]
    assert (along.diff(dim=0) > 0).all()


def test_gate_is_one_up_to_the_reference_then_decays_by_e_every_scale():
    gate = DistanceGate(reference=2.0, scale=0.5)
    d = torch.linspace(-3, 10, 400, dtype=torch.float64)
    g = gate(d)
    assert (g[d <= 2.0] == 1).all()
    assert (g.diff() <= 0).all() and (g > 0).all() and (g <= 1).all()
    assert gate(torch.tensor([2.5, 3.0])).tolist() == pytest.approx([math.exp(-1), math.exp(-2)])


def test_fit_gate_reads_the_quantiles_of_the_validation_distances():
    d = torch.randn(1001, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    gate = fit_gate(d, quantile=0.95)
    assert gate.reference == pytest.approx(float(np.quantile(d.numpy(), 0.95)))
    assert gate.scale == pytest.approx(float(np.quantile(d.numpy(), 0.95) - np.median(d.numpy())))
    assert float((gate(d) == 1).double().mean()) == pytest.approx(0.95, abs=1e-3)
    for bad in (0.5, 1.0, True, "0.9"):
        with pytest.raises(ConfigError):
            fit_gate(d, quantile=bad)
    with pytest.raises(ValueError, match="spread"):
        fit_gate(torch.ones(10))


def test_score_is_s_times_the_gate_and_non_increasing_in_the_distance():
    gate = DistanceGate(reference=1.0, scale=2.0)
    s = torch.rand(50, generator=torch.Generator().manual_seed(1))
    d = torch.linspace(0, 20, 50)
    out = distance_aware_score(s, d, gate)
    assert out.shape == s.shape and out.dtype == s.dtype
    assert torch.allclose(out.double(), s.double() * torch.exp(-(d.double() - 1).clamp_min(0) / 2), atol=1e-7)
    fixed = distance_aware_score(torch.full((50,), 0.8), d, gate)
    assert (fixed.diff() <= 0).all() and (fixed.diff() < 0).any()
    with pytest.raises(ValueError, match="same shape"):
        distance_aware_score(s, d[:10], gate)


def test_fitted_confidence_leaves_in_distribution_scores_and_lowers_far_ones():
    x, labels = clusters(n=900)  # one draw: the first 600 points train, the other 300 validate
    train, val = x[:600], x[600:]
    confidence = fit_distance_confidence(train, val, "gaussian", train_labels=labels[:600])
    assert isinstance(confidence, DistanceConfidence)
    s = torch.full((300,), 0.9)
    assert float((confidence(s, val) == s).float().mean()) == pytest.approx(0.99, abs=0.01)
    assert (confidence(s[:10], val[:10] + 50.0) < 1e-3).all()
    with pytest.raises(ValueError, match="dimension"):
        confidence.factor(x[:, :3])


def test_fit_refuses_what_it_cannot_use():
    x, labels = clusters(n=30)
    with pytest.raises(ConfigError, match="unknown distance"):
        fit_distance_confidence(x, x, "mahalanobis_typo")
    with pytest.raises(ConfigError, match="train_labels"):
        fit_distance_confidence(x, x, "gaussian")
    with pytest.raises(ConfigError):
        fit_knn_distance(x, k=31)
    with pytest.raises(ConfigError):
        fit_gaussian_distance(x, labels, shrinkage=0)
    with pytest.raises(ValueError, match="NaN"):
        fit_knn_distance(torch.full((4, 2), float("nan")))


@torch.no_grad()
def _features(model, clips, batch_size=256):
    """FeatureStudent's ``logits``, ``score_logit`` and ``features`` on uint8 clips, in batches."""
    from cdlib.models import preprocess

    wrapped = FeatureStudent(model).eval()
    parts = [wrapped(preprocess(clips[start : start + batch_size])) for start in range(0, len(clips), batch_size)]
    return {name: torch.cat([p[i] for p in parts]) for i, name in enumerate(("logits", "score_logit", "features"))}


def test_feature_student_returns_what_both_heads_read():
    torch.manual_seed(0)
    model = create_model("student_fusion", num_classes=3).eval()
    clips = torch.randint(0, 256, (5, 8, 32, 32, 3), dtype=torch.uint8)
    out = _features(model, clips, batch_size=2)
    assert out["features"].shape == (5, model.classifier.in_features)
    assert torch.allclose(model.classifier(out["features"]), out["logits"], atol=1e-5)
    assert torch.allclose(model.score_head(out["features"]).squeeze(-1), out["score_logit"], atol=1e-5)
    with pytest.raises(ConfigError, match="score_head"):
        FeatureStudent(create_model("c3d_small", num_classes=3))


def test_feature_student_finds_the_score_head_of_a_torchvision_student():
    torch.manual_seed(0)
    model = create_model("mobilenet_v3_small_tsn", num_classes=3).eval()
    clips = torch.randint(0, 256, (2, 8, 32, 32, 3), dtype=torch.uint8)
    out = _features(model, clips)
    assert torch.allclose(model.heads.score_head(out["features"]).squeeze(-1), out["score_logit"], atol=1e-5)


def test_the_distance_head_makes_the_students_score_s_da_and_keeps_its_class_logits():
    from cdlib.models import inference_module, preprocess

    torch.manual_seed(0)
    model = create_model("student_fusion", num_classes=3).eval()
    clips = torch.randint(0, 256, (24, 8, 32, 32, 3), dtype=torch.uint8)
    out = _features(model, clips)
    # train on half the clips; the other half, pushed away, is far from them
    confidence = fit_distance_confidence(out["features"][:12], out["features"][12:], "gaussian",
                                         train_labels=torch.arange(12) % 3, quantile=0.9)
    wrapped = distance.with_distance_head(model, confidence)
    assert isinstance(model.score_head, torch.nn.Sequential)  # the original is not changed
    assert isinstance(wrapped.score_head, DistanceAwareHead)
    x = preprocess(clips)
    for student in (wrapped, inference_module(wrapped)):  # eager and frozen for timing
        logits, score_logit = student(x)
        assert torch.allclose(logits, out["logits"], atol=1e-5)
        expected = confidence(torch.sigmoid(out["score_logit"]), out["features"])
        assert torch.allclose(torch.sigmoid(score_logit), expected.float(), atol=1e-6)
    gated = confidence.factor(out["features"]) < 1
    assert gated.any() and not gated.all()
    # where the gate is 1 the logit is the student's own
    assert torch.allclose(wrapped(x)[1][~gated], out["score_logit"][~gated], atol=1e-5)


def test_the_distance_is_counted_in_the_students_flops():
    from cdlib.method.cost import flops_per_clip

    torch.manual_seed(0)
    model = create_model("student_fusion", num_classes=3).eval()
    features = torch.randn(60, model.classifier.in_features, dtype=torch.float64)
    dim = features.shape[1]
    gaussian = fit_distance_confidence(features[:40], features[40:], "gaussian", train_labels=torch.arange(40) % 3)
    knn = fit_distance_confidence(features[:40], features[40:], "knn", k=5, max_bank=25)
    base = flops_per_clip(model, (3, 8, 32, 32))
    assert flops_per_clip(distance.with_distance_head(model, gaussian), (3, 8, 32, 32)) == base + 3 * 2 * dim * dim
    assert flops_per_clip(distance.with_distance_head(model, knn), (3, 8, 32, 32)) == base + 25 * 2 * dim


def test_knn_bank_is_a_seeded_subset_with_the_statistics_of_every_feature():
    x, _ = clusters(n=200)
    small = fit_knn_distance(x, k=3, max_bank=50, seed=1)
    assert small.bank.shape == (50, x.shape[1])
    assert torch.allclose(small.mean, x.mean(0))
    assert torch.equal(fit_knn_distance(x, k=3, max_bank=50, seed=1).bank, small.bank)
    assert not torch.equal(fit_knn_distance(x, k=3, max_bank=50, seed=2).bank, small.bank)
    with pytest.raises(ConfigError, match="max_bank"):
        fit_knn_distance(x, k=3, max_bank=2)


def test_candidates_are_every_method_and_quantile_and_survive_their_stored_state():
    x, labels = clusters(n=400)
    candidates = distance.fit_candidates(x[:300], labels[:300], x[300:], ("gaussian", "knn"), (0.9, 0.99), k=5)
    assert list(candidates) == ["gaussian@0.9", "gaussian@0.99", "knn@0.9", "knn@0.99"]
    assert candidates["gaussian@0.9"].distance is candidates["gaussian@0.99"].distance  # one fit per method
    rebuilt = distance.candidates_from_state(distance.candidates_state(candidates))
    probe, s = x[:50] * 3, torch.rand(50, generator=torch.Generator().manual_seed(3))
    for name in candidates:
        assert torch.equal(rebuilt[name](s, probe), candidates[name](s, probe))


def test_selection_takes_the_best_val_auroc_and_the_first_of_a_tie():
    x, labels = clusters(n=400)
    val = x[300:]
    candidates = distance.fit_candidates(x[:300], labels[:300], val, ("gaussian",), (0.9, 0.99))
    far = candidates["gaussian@0.9"].factor(val) < 1  # the val clips only the 0.9 gate lowers
    s = torch.full((100,), 0.5)
    # the teacher is wrong exactly on the farthest val clips: the lower quantile ranks them last
    chosen, val_auroc = distance.select_confidence(candidates, s, val, ~far)
    assert chosen == "gaussian@0.9" and val_auroc["gaussian@0.9"] > val_auroc["gaussian@0.99"]
    # a constant score and a gate that lowers nothing: a tie, the first wins
    same = {"a": candidates["gaussian@0.99"], "b": candidates["gaussian@0.99"]}
    assert distance.select_confidence(same, s[:10], x[:10], torch.arange(10) % 2 == 0)[0] == "a"
    with pytest.raises(ConfigError):
        distance.select_confidence({}, s, val, ~far)


# ----------------------------------------------------------------------------- the 2D toy

@pytest.fixture(scope="module")
def toy_distillation(one_thread):
    run = toy.run_toy(seed=0, n_train=200, n_val=200, n_test=200)
    return toy.distill_toy(run, n_transfer=400, steps=300)


def test_far_from_the_data_the_distance_aware_score_falls_and_the_distilled_score_does_not(toy_distillation):
    near = toy_distillation.scores(torch.tensor(toy.DEFAULT_CENTERS, dtype=torch.float64))
    far = toy_distillation.scores(100 * toy.random_directions(64, seed=0))
    for signal in toy.TOY_SIGNALS:
        assert near[signal].shape == (4,) and far[signal].shape == (64,)
    # every far point below every blob centre: true for s_da ...
    assert far["s_da"].max() < near["s_da"].min()
    # ... and false for the distilled score alone, as for the softmax (Hein et al.)
    assert not far["s"].max() < near["s"].min()
    assert not far["student_maxprob"].max() < near["student_maxprob"].min()
    # at the data, the distance-aware score is the distilled score
    assert torch.allclose(near["s_da"], near["s"])


def test_toy_rays_and_grids_carry_every_signal(toy_distillation):
    rays = toy_distillation.rays(toy.random_directions(8, seed=1), toy.log_alphas(1, 1e3, 4))
    assert len(rays) == 32 and set(toy.TOY_SIGNALS) <= set(rays.columns)
    assert (rays["s_da"] <= rays["s"] + 1e-12).all()
    grid = toy_distillation.grid("s_da", extent=5.0, resolution=11)
    assert grid.confidence.shape == (11, 11) and grid.extent == (-5.0, 5.0, -5.0, 5.0)
    with pytest.raises(ConfigError, match="signal"):
        toy_distillation.grid("softmax")


def test_the_toy_confidence_is_fitted_without_the_test_points(toy_distillation):
    class Untouchable:
        def __getattribute__(self, name):
            raise AssertionError("the test split was read")

        def __iter__(self):
            raise AssertionError("the test split was read")

    run = dataclasses.replace(toy_distillation.run, test=Untouchable())
    again = toy.distill_toy(run, n_transfer=400, steps=300)
    probe = toy.random_directions(16, seed=2) * 3
    assert torch.equal(again.scores(probe)["s_da"], toy_distillation.scores(probe)["s_da"])


def test_the_video_confidence_reads_only_the_train_and_val_splits(monkeypatch, tmp_path):
    from cdlib.experiment import clips, distance_student, fitting, trained_models
    from cdlib.experiment.config import profile_config
    from cdlib.runtime.artifacts import ArtifactStore

    tiny = {
        "data.num_classes": 3, "data.height": 16, "data.width": 16, "data.video_length": 32,
        "data.num_train": 12, "data.num_val": 6, "data.num_test": 6,
        "teacher_train.epochs": 1, "teacher_train.batch_size": 16,
        "student_train.epochs": 1, "student_train.batch_size": 16,
    }
    cfg = profile_config("ci", 0).replace(**tiny)
    store = ArtifactStore(tmp_path)
    real_get_clips = clips.get_clips
    asked = []

    def recording_get_clips(cfg, split, store=None):
        asked.append(split)
        return real_get_clips(cfg, split, store)

    for module in (distance_student, trained_models, fitting):  # every module that reads clips for the fit
        monkeypatch.setattr(module, "get_clips", recording_get_clips)
    fitted = distance_student.get_distance_fit(cfg, store)
    assert set(asked) == {"train", "val"}
    assert list(fitted.candidates) == [distance.candidate_name(m, q) for m in cfg.distance.methods
                                       for q in cfg.distance.quantiles]
    assert fitted.chosen in fitted.candidates and set(fitted.val_auroc) == set(fitted.candidates)
    shifted = distance_student.get_distance_fit(cfg.replace(**{"data.test_shift": 1.0}), store)  # the same artifact
    assert shifted.chosen == fitted.chosen and shifted.confidence.gate == fitted.confidence.gate
    asked.clear()
    test_cfg = cfg.replace(**{"data.test_shift": 1.0})
    da = trained_models.get_outputs(test_cfg, "cd_da", "test", store)
    cd = trained_models.get_outputs(test_cfg, "cd", "test", store)
    assert "test" in asked
    features = distance_student.get_features(test_cfg, "test", store)
    assert da.score_logit.shape == cd.score_logit.shape == (len(features),)
    assert torch.equal(da.logits, cd.logits)
    expected = fitted.confidence(torch.sigmoid(cd.score_logit), features)
    assert torch.allclose(torch.sigmoid(da.score_logit), expected.float(), atol=1e-6)
