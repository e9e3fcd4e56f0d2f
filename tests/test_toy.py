"""The 2D toy problem: deterministic data, a ReLU MLP that learns it, and Hein et al.'s property."""

import numpy as np
import pandas as pd
import pytest
import torch

from cdlib.method.calibration import fit_temperature
from cdlib.runtime.errors import ConfigError
from cdlib.experiment.toy import (
    ToyMLP,
    confidence_grid,
    log_alphas,
    make_blobs,
    max_softmax,
    random_directions,
    run_toy,
    ray_confidence,
    toy_calibration,
    toy_logits,
    train_toy,
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(one_thread):
    x, y = make_blobs(200, seed=0)
    model = train_toy(x, y, seed=0)
    xv, yv = make_blobs(400, seed=1)
    temperature = fit_temperature(toy_logits(model, xv), yv)
    return model, temperature


def test_blobs_are_deterministic_balanced_and_inside_the_box():
    x, y = make_blobs(400, seed=3)
    x2, y2 = make_blobs(400, seed=3)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.shape == (400, 2) and y.shape == (400,)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, make_blobs(400, seed=4)[0])
    assert torch.bincount(y).tolist() == [100] * 4
    assert (x.abs() < 3.5).all() and (x.abs() < 2).float().mean() > 0.9
    # each class sits around its centre
    for k, centre in enumerate([(1, 1), (-1, 1), (-1, -1), (1, -1)]):
        assert torch.allclose(x[y == k].mean(0), torch.tensor(centre, dtype=torch.float32), atol=0.15)


def test_blobs_reject_bad_arguments():
    with pytest.raises(ConfigError, match="n"):
        make_blobs(0)
    with pytest.raises(ConfigError, match="std"):
        make_blobs(10, std=0)
    with pytest.raises(ConfigError, match="centers"):
        make_blobs(10, centers=[(0.0, 0.0)])


def test_training_is_deterministic():
    x, y = make_blobs(60, seed=0)
    a = train_toy(x, y, steps=30, seed=5)
    b = train_toy(x, y, steps=30, seed=5)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_mlp_learns_the_blobs(trained):
    model, _ = trained
    xt, yt = make_blobs(1000, seed=2)
    assert toy_calibration(model, xt, yt)["accuracy"] > 0.9
    assert isinstance(model, ToyMLP) and not model.training


def test_temperature_scaling_helps_in_distribution(trained):
    model, temperature = trained
    xt, yt = make_blobs(1000, seed=2)
    raw = toy_calibration(model, xt, yt)
    scaled = toy_calibration(model, xt, yt, temperature)
    assert temperature > 1  # trained to zero loss without weight decay: overconfident
    assert scaled["nll"] < raw["nll"] and scaled["ece"] < raw["ece"]
    assert scaled["accuracy"] == raw["accuracy"]


def test_hein_confidence_tends_to_one_along_rays_even_after_temperature_scaling(trained):
    model, temperature = trained
    directions = random_directions(64, seed=0)
    for t in (1.0, temperature):
        table = ray_confidence(model, directions, [1.0, 1e4], temperature=t)
        far = table[table.alpha == 1e4].confidence
        assert (far >= 0.99).mean() >= 0.95
    # temperature lowers the confidence near the data, not far away
    near = ray_confidence(model, directions, [1.0], temperature=temperature).confidence
    assert near.mean() < ray_confidence(model, directions, [1.0]).confidence.mean()


def test_relu_network_is_affine_far_along_a_ray(trained):
    model, _ = trained
    d = random_directions(8, seed=1)
    f = [toy_logits(model, a * d) for a in (1e3, 2e3, 3e3)]
    assert torch.allclose(f[2] - f[1], f[1] - f[0], rtol=1e-6, atol=1e-6)


def test_ray_table_layout(trained):
    model, _ = trained
    directions = random_directions(3, seed=0)
    alphas = log_alphas(1, 1e4, 5)
    table = ray_confidence(model, directions, alphas, temperature=2.0)
    assert isinstance(table, pd.DataFrame) and len(table) == 15
    assert set(table.columns) >= {"direction", "angle", "alpha", "norm", "confidence", "prediction", "temperature"}
    assert np.allclose(table.norm, table.alpha)  # unit directions
    assert np.allclose(sorted(set(table.alpha)), alphas)
    assert (table.temperature == 2.0).all()
    row = table.iloc[7]
    point = torch.as_tensor(directions[int(row.direction)] * row.alpha)[None]
    conf, pred = max_softmax(toy_logits(model, point), 2.0)
    assert conf.item() == pytest.approx(row.confidence) and pred.item() == row.prediction
    assert np.allclose(directions.norm(dim=1), 1)


def test_confidence_grid_shapes_extent_and_orientation(trained):
    model, temperature = trained
    grid = confidence_grid(model, extent=40, resolution=21, temperature=temperature)
    assert grid.confidence.shape == grid.prediction.shape == (21, 21)
    assert grid.extent == (-40.0, 40.0, -40.0, 40.0)
    assert grid.x[0] == -40 and grid.x[-1] == 40 and grid.y[0] == -40 and grid.y[-1] == 40
    assert ((grid.confidence >= 0.25 - 1e-12) & (grid.confidence <= 1)).all()
    i, j = 3, 17  # row = y, column = x
    conf, pred = max_softmax(toy_logits(model, torch.tensor([[grid.x[j], grid.y[i]]])), temperature)
    assert grid.confidence[i, j] == pytest.approx(conf.item()) and grid.prediction[i, j] == pred.item()
    box = confidence_grid(model, extent=(-1, 3, 0, 2), resolution=5)
    assert box.x.tolist() == [-1, 0, 1, 2, 3] and box.y.tolist() == [0, 0.5, 1, 1.5, 2]
    with pytest.raises(ConfigError, match="extent"):
        confidence_grid(model, extent=(1, 0, 0, 1))
    with pytest.raises(ConfigError, match="resolution"):
        confidence_grid(model, resolution=1)


def test_run_toy_bundles_splits_model_temperature_and_calibration():
    run = run_toy(seed=0, n_train=80, n_val=80, n_test=200, steps=200)
    assert run.train[0].shape == (80, 2) and run.test[0].shape == (200, 2)
    assert not torch.equal(run.train[0][:80], run.val[0][:80])
    assert run.temperature == pytest.approx(fit_temperature(toy_logits(run.model, run.val[0]), run.val[1]))
    table = run.calibration()
    assert table.scaling.tolist() == ["raw", "temperature"]
    assert table.temperature.tolist() == [1.0, run.temperature]
    assert set(table.columns) >= {"accuracy", "ece", "adaptive_ece", "nll", "brier"}
