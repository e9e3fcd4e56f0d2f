"""Probes of a clip model's confidence, on tiny random models and a tiny clip bank (no training)."""

import numpy as np
import pandas as pd
import pytest
import torch

from cdlib.data.base import CLIP_GROUPS, ClipBank, clip_groups
from cdlib.method.calibration import calibration_report
from cdlib.models import create_model, preprocess
from cdlib.runtime.errors import ConfigError
from cdlib.experiment.probes import (
    GROUPS,
    PROBE_COLUMNS,
    _from_payload,
    _to_payload,
    calibration_summary,
    class_logits,
    confidence_table,
    noise_clips,
    probe_model,
    reliability_table,
    scaled_logits,
    subset_indices,
    summarize_probe,
)

SHAPE = (8, 16, 16, 3)  # T, H, W, C: small, so that a random teacher runs in milliseconds
K = 4


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_bank(videos=5, clips_per_video=4, seed=0) -> ClipBank:
    g = torch.Generator().manual_seed(seed)
    m = videos * clips_per_video
    informative = torch.tensor([1, 1, 0, 0] * videos, dtype=torch.int8)[:m]
    informative[-1] = -1  # one clip of unknown status: in no group but "scaled"
    labels = torch.arange(videos).repeat_interleave(clips_per_video) % K
    return ClipBank(
        clips=torch.randint(0, 256, (m, *SHAPE), generator=g, dtype=torch.uint8),
        labels=labels,
        video=torch.arange(videos).repeat_interleave(clips_per_video),
        position=torch.arange(clips_per_video).repeat(videos),
        informative=informative,
        num_classes=K,
        class_names=[f"c{k}" for k in range(K)],
    )


def teacher(seed=0):
    torch.manual_seed(seed)
    return create_model("c3d_small", num_classes=K).eval()


def test_noise_clips_deterministic_uint8_of_the_right_shape():
    a = noise_clips(3, SHAPE, seed=1)
    assert a.dtype == torch.uint8 and a.shape == (3, *SHAPE)
    assert torch.equal(a, noise_clips(3, SHAPE, seed=1))
    assert not torch.equal(a, noise_clips(3, SHAPE, seed=2))
    big = noise_clips(2, (4, 16, 16, 3), seed=0).float()
    assert big.min() == 0 and big.max() == 255 and abs(big.mean().item() - 127.5) < 3
    assert noise_clips(0, SHAPE).shape == (0, *SHAPE)
    with pytest.raises(ConfigError, match="shape"):
        noise_clips(2, (8, 16, 16))


@pytest.mark.parametrize("name", ["c3d_small", "student_tiny"])
def test_scaled_logits_at_alpha_one_are_the_plain_class_logits(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=K).eval()
    x = preprocess(noise_clips(5, SHAPE, seed=0))
    scaled = scaled_logits(model, x, [1.0, 3.0], batch_size=2)
    assert scaled.shape == (2, 5, K)
    with torch.no_grad():
        out = model(x)
        logits = out[0] if isinstance(out, tuple) else out  # students: the class head
        assert torch.allclose(scaled[0], logits, atol=1e-5)
        assert torch.allclose(scaled[1], class_logits(model, 3.0 * x), atol=1e-5)
    with pytest.raises(ConfigError, match="alphas"):
        scaled_logits(model, x, [])


def test_confidence_of_a_relu_clip_model_grows_to_one_with_the_input_scale():
    model = teacher()
    x = preprocess(noise_clips(6, SHAPE, seed=0))
    conf = scaled_logits(model, x, [1.0, 1e4]).softmax(dim=-1).amax(dim=-1)
    assert conf[1].min() > 0.99 and conf[1].mean() > conf[0].mean()
    with torch.no_grad():  # piecewise affine: f(αx) is affine in α far out
        f = scaled_logits(model, x, [1e3, 2e3, 3e3])
    assert torch.allclose(f[2] - f[1], f[1] - f[0], rtol=1e-3, atol=1e-2)


def test_confidence_table_columns_and_values():
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 5.0, 0.0], [1.0, 3.0, 0.0, 0.0]])
    labels = torch.tensor([0, 1, -1])
    table = confidence_table(logits, labels, "noise", temperature=2.0, alpha=4.0)
    assert tuple(table.columns) == PROBE_COLUMNS
    assert list(table.group.cat.categories) == list(GROUPS) and (table.group == "noise").all()
    assert (table.alpha == 4.0).all() and (table["clip"] == -1).all() and (table.informative == -1).all()
    assert table.prediction.tolist() == [0, 2, 1]
    assert table.correct.tolist() == [1.0, 0.0, 0.0]  # label -1: no class is right
    assert np.allclose(table.confidence, logits.softmax(1).amax(1).numpy())
    assert np.allclose(table.confidence_ts, (logits / 2).softmax(1).amax(1).numpy())
    assert (table.confidence_ts <= table.confidence).all()  # T > 1 only lowers the max-softmax


def test_subset_indices_deterministic_sorted_and_bounded():
    a = subset_indices(100, 10, seed=3)
    assert len(a) == 10 and torch.equal(a, torch.sort(a).values) and len(set(a.tolist())) == 10
    assert torch.equal(a, subset_indices(100, 10, seed=3))
    assert torch.equal(subset_indices(5, 10), torch.arange(5))


def test_probe_table_groups_columns_and_consistency():
    bank = tiny_bank()
    model = teacher()
    alphas = (1.0, 2.0, 8.0)
    table = probe_model(model, bank, temperature=1.5, alphas=alphas, max_clips=7, num_noise=6, seed=0, batch_size=4)
    assert tuple(table.columns) == PROBE_COLUMNS
    counts = table.groupby("group", observed=True).size()
    assert counts["action"] == int((bank.informative == 1).sum())
    assert counts["non-action"] == int((bank.informative == 0).sum())
    assert counts["noise"] == 6 and counts["scaled"] == 7 * len(alphas)
    assert sorted(table[table.group == "scaled"].alpha.unique()) == list(alphas)
    assert (table[table.group != "scaled"].alpha == 1.0).all()
    noise = table[table.group == "noise"]
    assert (noise.correct == 0).all() and (noise.label == -1).all()
    # the scaled rows at alpha = 1 repeat the plain rows of the same clips
    plain = table[table.group.isin(["action", "non-action"])].set_index("clip")
    at_one = table[(table.group == "scaled") & (table.alpha == 1.0)].set_index("clip")
    shared = at_one.index.intersection(plain.index)
    assert len(shared) > 0
    assert np.allclose(at_one.loc[shared, "confidence"], plain.loc[shared, "confidence"], atol=1e-6)
    assert (at_one.loc[shared, "prediction"] == plain.loc[shared, "prediction"]).all()
    # stored logits give the same table; the table is deterministic
    with torch.no_grad():
        logits = model(preprocess(bank.clips))
    again = probe_model(model, bank, 1.5, alphas, max_clips=7, num_noise=6, seed=0, logits=logits)
    pd.testing.assert_frame_equal(table, again, atol=1e-6)
    with pytest.raises(ValueError, match="one row per clip"):
        probe_model(model, bank, logits=logits[:3])


def test_probe_table_survives_the_artifact_payload_and_summarizes():
    table = probe_model(teacher(), tiny_bank(), 2.0, (1.0, 4.0), max_clips=5, num_noise=3)
    back = _from_payload(_to_payload(table))
    pd.testing.assert_frame_equal(table, back)
    summary = summarize_probe(table)
    assert set(summary.columns) >= {"group", "alpha", "clips", "confidence", "confidence_ts", "accuracy",
                                    "overconfidence", "confident_wrong"}
    assert len(summary) == 3 + 2  # action, non-action, noise at α=1; scaled at two α
    row = summary[(summary.group == "noise")].iloc[0]
    assert row.accuracy == 0 and row.overconfidence == pytest.approx(row.confidence)
    noise = table[table.group == "noise"]
    assert row.confident_wrong == pytest.approx((noise.confidence >= 0.9).mean())
    low = summarize_probe(table, threshold=0.0)
    assert np.allclose(low.confident_wrong, 1 - low.accuracy)
    pooled = summarize_probe(pd.concat([table.assign(seed=0), table.assign(seed=1)]))
    assert "seed" in pooled.columns and len(pooled) == 2 * len(summary)


def test_calibration_summary_and_reliability_rows():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(60, K, generator=g) * 3
    labels = torch.randint(0, K, (60,), generator=g)
    informative = torch.tensor([1, 0, -1] * 20)
    summary = calibration_summary(logits, labels, informative, temperature=2.5, n_bins=5)
    assert list(zip(summary.clips, summary.scaling)) == [("action", "raw"), ("action", "temperature"),
                                                         ("all", "raw"), ("all", "temperature")]
    assert summary["count"].tolist() == [20, 20, 60, 60]
    expected = calibration_report(logits[informative == 1], labels[informative == 1], temperature=2.5, n_bins=5)
    for key, value in expected.items():
        assert summary.iloc[1][key] == pytest.approx(value)
    diagram = reliability_table(logits, labels, informative, temperature=2.5, n_bins=5)
    assert len(diagram) == 4 * 5 and diagram.groupby(["clips", "scaling"])["count"].sum().tolist() == [20, 20, 60, 60]


def test_clip_groups_split_known_clips_by_their_flag_and_leave_unknown_ones_out():
    informative = torch.tensor([1, 0, -1, 1, 0, 0], dtype=torch.int8)
    groups = clip_groups(informative)
    assert list(groups) == list(CLIP_GROUPS) == ["action", "non-action"]
    assert groups["action"].tolist() == [True, False, False, True, False, False]
    assert groups["non-action"].tolist() == [False, True, False, False, True, True]
    assert GROUPS[:2] == tuple(CLIP_GROUPS)
