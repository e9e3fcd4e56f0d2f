"""The procedural action videos (cdlib.data.synthetic): determinism, split hygiene,
where the action is, distractors, knob validation, the clip contract and the test shift."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import torch

from cdlib.data import build_dataset
from cdlib.data.synthetic import PATTERNS, SyntheticActionVideos
from cdlib.experiment.config import DataConfig
from cdlib.runtime.errors import ConfigError

SMALL = dict(height=16, width=16, video_length=40, clip_length=8, num_classes=6, num_train=12, num_val=8, num_test=8)


def small(**kw) -> DataConfig:
    return dataclasses.replace(DataConfig(), **{**SMALL, **kw})


def digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.numpy().tobytes()).hexdigest()


def clean(**kw) -> DataConfig:
    """No noise and no distractors (with ``_nuisance=False``: no texture, flicker or shake)."""
    return small(**{"noise_level": 0.0, "distractor_rate": 0.0, **kw})


def motion_energy(video: torch.Tensor) -> np.ndarray:
    """Sum of absolute differences between consecutive frames, ``[L - 1]``."""
    v = video.numpy().astype(np.int32)
    return np.abs(np.diff(v, axis=0)).sum(axis=(1, 2, 3))


def test_same_seed_same_videos_in_any_order_and_other_seed_differs():
    cfg = small()
    a = SyntheticActionVideos(cfg, "train", seed=3)
    b = SyntheticActionVideos(cfg, "train", seed=3)
    forward = [digest(a.video(i)) for i in range(len(a))]
    backward = [digest(b.video(i)) for i in reversed(range(len(b)))][::-1]
    assert forward == backward
    assert [a[i][1] for i in range(len(a))] == [b[i][1] for i in range(len(b))]
    # Repeated access to the same item is bit-identical too (no hidden state).
    assert torch.equal(a[5][0], a[5][0])
    other = SyntheticActionVideos(cfg, "train", seed=4)
    assert all(digest(other.video(i)) != h for i, h in enumerate(forward))


def test_splits_share_no_video():
    cfg = small(num_train=16, num_val=16, num_test=16)
    hashes = {s: {digest(SyntheticActionVideos(cfg, s, 0).video(i)) for i in range(16)} for s in ("train", "val", "test")}
    assert all(len(h) == 16 for h in hashes.values())  # no duplicates within a split either
    assert not hashes["train"] & hashes["val"]
    assert not hashes["train"] & hashes["test"]
    assert not hashes["val"] & hashes["test"]


@pytest.mark.parametrize("num_classes,n", [(6, 6), (8, 11), (len(PATTERNS), 20)])
def test_every_class_in_every_split(num_classes, n):
    cfg = small(num_classes=num_classes, num_train=n, num_val=n, num_test=n)
    for split in ("train", "val", "test"):
        ds = SyntheticActionVideos(cfg, split, 0)
        labels = [ds.label(i) for i in range(len(ds))]
        assert [ds[i][1] for i in range(3)] == labels[:3]
        assert set(labels) == set(range(num_classes))
        assert [ds.meta(i).label for i in range(len(ds))] == labels
        assert np.bincount(labels).max() - np.bincount(labels).min() <= 1  # balanced
        assert ds.class_names == list(PATTERNS[:num_classes])


@pytest.mark.parametrize("rho", [0.3, 0.5, 1.0])
def test_action_lies_where_the_metadata_says(rho):
    k = len(PATTERNS)
    cfg = clean(num_classes=k, num_train=k, num_val=k, num_test=k, informative_fraction=rho)
    ds = SyntheticActionVideos(cfg, "train", 0, _nuisance=False)
    L, T = cfg.video_length, cfg.clip_length
    starts = set()
    for i in range(len(ds)):  # one video per motion pattern
        m = ds.meta(i)
        assert m.action_end - m.action_start == round(rho * L)
        assert 0 <= m.action_start and m.action_end <= L
        starts.add(m.action_start)
        e = motion_energy(ds.video(i))  # e[f]: change from frame f to f + 1
        f = np.arange(L - 1)
        touches = (f + 1 >= m.action_start) & (f < m.action_end)  # frame f or f+1 shows the sprite
        assert (e[touches] > 0).all(), (ds.class_names[m.label], e)
        assert (e[~touches] == 0).all()
        # Informative clips: at least half of their frames inside the segment.
        inside = [len(set(range(j * T, (j + 1) * T)) & set(range(m.action_start, m.action_end))) for j in range(m.num_clips)]
        assert m.informative.dtype == bool and m.informative.shape == (m.num_clips,)
        assert m.informative.tolist() == [2 * k >= T for k in inside]
    if rho == 1.0:
        assert starts == {0}
    else:
        assert len(starts) > 1  # the segment's position is random


def test_distractors_move_outside_the_segment_at_lower_contrast():
    salience = 0.5
    cfg = clean(distractor_rate=1.0, distractor_salience=salience, informative_fraction=0.3, num_train=12)
    ds = SyntheticActionVideos(cfg, "train", 0, _nuisance=False)
    T = cfg.clip_length
    ratios = []
    for i in range(len(ds)):
        m = ds.meta(i)
        v = ds.video(i).numpy().astype(np.float64)
        e = motion_energy(ds.video(i))
        quiet = [j for j in range(m.num_clips) if (j + 1) * T <= m.action_start or j * T >= m.action_end]
        assert quiet
        for j in quiet:  # every clip with no action frame has a moving distractor
            assert e[j * T : (j + 1) * T - 1].sum() > 0
        # Flat background (no texture): its colour is the most common pixel value.
        pixels = v.reshape(-1, 3)
        values, counts = np.unique(pixels, axis=0, return_counts=True)
        bg = values[counts.argmax()]
        dev = np.linalg.norm(v - bg, axis=-1).max(axis=(1, 2))  # strongest sprite pixel per frame
        action = dev[m.action_start : m.action_end].max()
        distractor = max(dev[j * T : (j + 1) * T].max() for j in quiet)
        assert 0 < distractor < action
        ratios.append(distractor / action)
    assert np.median(ratios) == pytest.approx(salience, abs=0.1)


def test_distractor_rate_only_adds_distractors():
    """Changing the rate leaves the action segment untouched (independent random streams)."""
    a = SyntheticActionVideos(small(distractor_rate=0.0), "train", 0)
    b = SyntheticActionVideos(small(distractor_rate=1.0), "train", 0)
    for i in range(4):
        m, mb = a.meta(i), b.meta(i)
        assert (m.label, m.action_start, m.action_end) == (mb.label, mb.action_start, mb.action_end)
        assert torch.equal(a.video(i)[m.action_start : m.action_end], b.video(i)[m.action_start : m.action_end])


BAD_KNOBS = [
    ("num_classes", 1),
    ("num_classes", len(PATTERNS) + 1),
    ("video_length", 7),  # shorter than one clip (clip_length=8)
    ("clip_length", 0),
    ("height", 7),
    ("width", 4),
    ("informative_fraction", 0.0),
    ("informative_fraction", 1.5),
    ("informative_fraction", 0.01),  # round(0.01 * 40) = 0 frames of action
    ("distractor_rate", -0.1),
    ("distractor_rate", 1.1),
    ("distractor_salience", 1.5),
    ("distractor_salience", -1.0),
    ("test_shift", 2.0),
    ("test_shift", -0.5),
    ("test_informative_fraction", 1.5),
    ("test_informative_fraction", -0.1),
    ("noise_level", -0.01),
    ("num_train", 5),  # fewer videos than classes (6)
    ("num_val", 0),
    ("num_test", 3),
]


@pytest.mark.parametrize("knob,value", BAD_KNOBS, ids=[f"{k}={v}" for k, v in BAD_KNOBS])
def test_out_of_range_knob_raises_config_error_naming_it(knob, value):
    # the config refuses the value when it is built (cdlib.experiment.config), before any video is generated
    with pytest.raises(ConfigError, match=rf"data\.{knob}\b") as info:
        SyntheticActionVideos(small(**{knob: value}), "train", 0)
    assert isinstance(info.value, ValueError)
    assert str(value) in str(info.value)


def test_unknown_split_and_bad_seed_raise():
    with pytest.raises(ConfigError, match="split"):
        SyntheticActionVideos(small(), "validation", 0)
    with pytest.raises(ConfigError, match="seed"):
        SyntheticActionVideos(small(), "train", -1)


def test_boundary_values_are_accepted():
    for kw in (
        dict(informative_fraction=1.0, distractor_rate=0.0, distractor_salience=0.0, test_shift=1.0, noise_level=0.0),
        dict(distractor_rate=1.0, distractor_salience=1.0, num_classes=2, num_train=2, num_val=2, num_test=2, height=8, width=8),
        dict(video_length=8, clip_length=8, informative_fraction=0.125),
        dict(num_classes=len(PATTERNS), num_train=len(PATTERNS), num_val=len(PATTERNS), num_test=len(PATTERNS)),
    ):
        ds = SyntheticActionVideos(small(**kw), "test" if "test_shift" in kw else "train", 0)
        clips, label = ds[0]
        assert clips.dtype == torch.uint8


@pytest.mark.parametrize("video_length,clip_length", [(40, 8), (30, 8), (12, 3)])
def test_clip_contract(video_length, clip_length):
    cfg = small(video_length=video_length, clip_length=clip_length, height=16, width=24)
    ds = SyntheticActionVideos(cfg, "val", 1)
    n = video_length // clip_length
    assert len(ds) == cfg.num_val and ds.split == "val" and ds.clip_length == clip_length and ds.skipped == []
    for i in (0, len(ds) - 1):
        clips, label = ds[i]
        video = ds.video(i)
        assert clips.shape == (n, clip_length, 16, 24, 3) and clips.dtype == torch.uint8
        assert video.shape == (video_length, 16, 24, 3) and video.dtype == torch.uint8
        assert torch.equal(clips, video[: n * clip_length].reshape(n, clip_length, 16, 24, 3))
        assert isinstance(label, int) and 0 <= label < cfg.num_classes
        m = ds.meta(i)
        assert m.name == f"synthetic/val/{i:05d}" and m.num_clips == n and m.label == label
    assert torch.equal(ds[-1][0], ds[len(ds) - 1][0])
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_test_shift_changes_only_the_test_split():
    base, shifted = small(), small(test_shift=1.0)
    for split in ("train", "val"):
        a, b = SyntheticActionVideos(base, split, 0), SyntheticActionVideos(shifted, split, 0)
        assert all(torch.equal(a.video(i), b.video(i)) for i in range(len(a)))
    a, b = SyntheticActionVideos(base, "test", 0), SyntheticActionVideos(shifted, "test", 0)
    T = base.clip_length
    for i in range(len(a)):
        m, mb = a.meta(i), b.meta(i)
        assert (m.label, m.action_start, m.action_end) == (mb.label, mb.action_start, mb.action_end)
        va, vb = a.video(i), b.video(i)
        # The action's frames are untouched; at strength 1 every action-free clip is corrupted.
        assert torch.equal(va[m.action_start : m.action_end], vb[m.action_start : m.action_end])
        for j in range(m.num_clips):
            if (j + 1) * T <= m.action_start or j * T >= m.action_end:
                assert not torch.equal(va[j * T : (j + 1) * T], vb[j * T : (j + 1) * T])
    # A partial shift corrupts about that fraction of the action-free clips.
    half = SyntheticActionVideos(small(test_shift=0.5, num_test=40), "test", 0)
    ref = SyntheticActionVideos(small(num_test=40), "test", 0)
    changed = quiet = 0
    for i in range(len(ref)):
        m = ref.meta(i)
        va, vb = ref.video(i), half.video(i)
        for j in range(m.num_clips):
            if (j + 1) * T <= m.action_start or j * T >= m.action_end:
                quiet += 1
                changed += not torch.equal(va[j * T : (j + 1) * T], vb[j * T : (j + 1) * T])
    assert 0.35 < changed / quiet < 0.65


def test_test_informative_fraction_changes_only_the_test_split():
    base, other = small(informative_fraction=0.3), small(informative_fraction=0.3, test_informative_fraction=1.0)
    for split in ("train", "val"):
        a, b = SyntheticActionVideos(base, split, 0), SyntheticActionVideos(other, split, 0)
        assert all(torch.equal(a.video(i), b.video(i)) for i in range(len(a)))
        assert b.describe()["informative_fraction"] == 0.3
    test = SyntheticActionVideos(other, "test", 0)
    assert test.describe()["informative_fraction"] == 1.0
    for i in range(len(test)):
        m = test.meta(i)
        assert (m.action_start, m.action_end) == (0, base.video_length) and m.informative.all()
    # 0 means "the same as informative_fraction": the test videos of 0 and of the training rho are the same
    # (cdlib.experiment.clips.data_spec gives both one key)
    a, b = SyntheticActionVideos(base, "test", 0), SyntheticActionVideos(small(informative_fraction=0.3,
                                                                              test_informative_fraction=0.3), "test", 0)
    assert all(torch.equal(a.video(i), b.video(i)) for i in range(len(a)))


def test_build_dataset_returns_synthetic_videos():
    ds = build_dataset(small(), "train", seed=0)
    assert isinstance(ds, SyntheticActionVideos)
    assert ds.describe()["videos"] == SMALL["num_train"]
    assert torch.equal(ds.video(2), SyntheticActionVideos(small(), "train", 0).video(2))
