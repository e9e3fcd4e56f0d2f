"""The real-video layouts (cdlib.data.layouts) on tiny trees written by the tests, and on weizmann-rgb."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from cdlib.data import build_dataset
from cdlib.experiment.config import DataConfig
from cdlib.data.layouts import (
    HMDB51Videos,
    KineticsVideos,
    UCF101Videos,
    build_layout_dataset,
    hold_out_val,
    normalize_source,
    parse_source,
    video_group,
)
from cdlib.runtime.errors import ConfigError, DataError

T = 4  # clip length used on the tiny trees (16x16 videos of 13-20 frames)
LEVEL = {"Gamma": 200, "Alpha": 60, "Beta": 120}
FRAMES = {"Gamma": 20, "Alpha": 18, "Beta": 13}


@pytest.fixture(scope="module")
def ucf_tree(tmp_path_factory, make_ucf101_tree):
    return make_ucf101_tree(tmp_path_factory.mktemp("ucf") / "UCF-101")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("decode-cache")


def ucf(root, split, cache, **kw):
    kw.setdefault("val_fraction", 0.34)
    return UCF101Videos(root, split, height=8, width=8, clip_length=T, cache_dir=cache, progress=False, **kw)


def group_of(name: str) -> str:
    return video_group(name)


# --------------------------------------------------------------------------- UCF101


def test_ucf101_labels_follow_classind_and_content(ucf_tree, cache):
    ds = ucf(ucf_tree, "test", cache)
    assert ds.class_names == ["Gamma", "Alpha", "Beta"]  # classInd order, not alphabetical
    assert len(ds) == 3 * 2  # fold 1 tests group 4: 2 takes per class
    for i in range(len(ds)):
        clips, label = ds[i]
        meta = ds.meta(i)
        cls = meta.name.split("/")[0]
        assert label == meta.label == ds.class_names.index(cls)
        assert meta.name == f"{cls}/{Path(meta.name).name}" and meta.informative is None
        assert clips.dtype == torch.uint8 and clips.shape == (FRAMES[cls] // T, T, 8, 8, 3)
        assert meta.num_clips == clips.shape[0]
        # The pixels are those of the listed file: each class has its own grey level.
        assert abs(clips.float().median().item() - LEVEL[cls]) < 12


def test_ucf101_splits_and_val_holdout(ucf_tree, cache):
    train, val, test = (ucf(ucf_tree, s, cache) for s in ("train", "val", "test"))
    names = {s: {d.meta(i).name for i in range(len(d))} for s, d in (("train", train), ("val", val), ("test", test))}
    listed = {line.split()[0] for line in (ucf_tree / "ucfTrainTestlist" / "trainlist01.txt").read_text().split("\n") if line}
    assert names["train"] | names["val"] == listed
    assert not names["train"] & names["val"] and not (names["train"] | names["val"]) & names["test"]
    # Grouped: both takes of a group land on the same side.
    train_groups = {group_of(n) for n in names["train"]}
    val_groups = {group_of(n) for n in names["val"]}
    assert not train_groups & val_groups
    # Stratified: 3 train groups per class, round(0.34 * 3) = 1 of them to val, in every class.
    assert sorted(val.labels) == [0, 0, 1, 1, 2, 2]
    assert len(train) == 12 and len(test) == 6
    assert all(n.endswith("_g04_c01.avi") or n.endswith("_g04_c02.avi") for n in names["test"])


def test_val_holdout_is_deterministic_in_the_seed(ucf_tree, cache):
    def val_names(seed):
        d = ucf(ucf_tree, "val", cache, seed=seed)
        return sorted(d.meta(i).name for i in range(len(d)))

    assert val_names(0) == val_names(0)
    assert len({tuple(val_names(s)) for s in range(6)}) > 1, "the seed never changes the hold-out"


def test_hold_out_val_function():
    videos = [(f"C{k}/v_C{k}_g{g:02d}_c{c:02d}.avi", k) for k in range(2) for g in range(1, 11) for c in (1, 2)]
    train, val = hold_out_val(videos, ["C0", "C1"], 0.2, seed=5)
    assert sorted(train + val) == list(range(len(videos)))
    assert len(val) == 2 * 2 * 2  # 2 of 10 groups per class, 2 takes each
    assert not {video_group(videos[i][0]) for i in train} & {video_group(videos[i][0]) for i in val}
    assert hold_out_val(videos, ["C0", "C1"], 0.2, seed=5) == (train, val)
    assert hold_out_val(videos, ["C0", "C1"], 0.0, seed=5)[1] == []
    # Videos without a group pattern are their own group.
    loose = [(f"C0/clip{i}.avi", 0) for i in range(10)]
    assert len(hold_out_val(loose, ["C0"], 0.3, seed=1)[1]) == 3
    # A class with a single group stays in train.
    assert hold_out_val([("C0/v_C0_g01_c01.avi", 0), ("C0/v_C0_g01_c02.avi", 0)], ["C0"], 0.5, 0)[1] == []
    with pytest.raises(ConfigError, match="data.val_fraction"):
        hold_out_val(videos, ["C0", "C1"], 1.0, seed=0)


def test_video_group_patterns():
    assert video_group("Bend/v_Bend_g07_c02.avi") == "bend/g7"
    assert video_group("train/abseiling/0347ZoDXyP0_000095_000105.mp4") == "yt:0347ZoDXyP0"
    assert video_group("April_09_brush_hair_u_nm_np1_ba_goo_0.avi", "brush_hair") == "brush_hair/April_09"
    assert video_group("x/other.avi").startswith("video:")


def test_ucf101_folds(ucf_tree, cache):
    test2 = ucf(ucf_tree, "test", cache, fold=2)
    assert {video_group(test2.meta(i).name)[-3:] for i in range(len(test2))} == {"/g1"}
    with pytest.raises(DataError, match=r"trainlist04\.txt.*found only: .*trainlist01\.txt"):
        ucf(ucf_tree, "test", cache, fold=4)


def test_ucf101_annotation_folder_variants(tmp_path, ucf_tree, cache):
    root = tmp_path / "ucf"
    shutil.copytree(ucf_tree, root)
    (root / "ucfTrainTestlist").rename(root / "splits")
    assert len(ucf(root, "test", cache)) == 6
    elsewhere = tmp_path / "annotations"
    (root / "splits").rename(elsewhere)
    assert len(ucf(root, "test", cache, annotation_dir=elsewhere)) == 6
    cfg = DataConfig(source=f"ucf101:{root}:{elsewhere}:2", height=8, width=8, clip_length=T)
    test2 = build_layout_dataset(cfg, "test", cache_dir=cache, progress=False)
    assert test2.fold == 2 and test2.annotation_dir == elsewhere


def test_ucf101_without_labels_or_classind(tmp_path, cache, make_ucf101_tree):
    root = make_ucf101_tree(tmp_path / "u", groups=2, takes=1, labels_in_trainlist=False)
    ds = ucf(root, "train", cache, val_fraction=0.0)
    assert len(ds) == 3 and ds.class_names == ["Gamma", "Alpha", "Beta"]
    (root / "ucfTrainTestlist" / "classInd.txt").unlink()
    ds = ucf(root, "train", cache, val_fraction=0.0)
    assert ds.class_names == ["Alpha", "Beta", "Gamma"]  # sorted folders named in the lists
    assert [ds.class_names[label] for label in ds.labels] == [ds.meta(i).name.split("/")[0] for i in range(len(ds))]


def test_ucf101_vallist_keeps_val_exact(tmp_path, ucf_tree, cache):
    root = tmp_path / "ucf"
    shutil.copytree(ucf_tree, root)
    (root / "ucfTrainTestlist" / "vallist01.txt").write_text("Alpha/v_Alpha_g01_c01.avi 2\nBeta/v_Beta_g02_c02.avi\n")
    val = ucf(root, "val", cache)
    train = ucf(root, "train", cache)
    assert [val.meta(i).name for i in range(len(val))] == ["Alpha/v_Alpha_g01_c01.avi", "Beta/v_Beta_g02_c02.avi"]
    assert len(train) == 18 - 2 and "Alpha/v_Alpha_g01_c01.avi" not in {train.meta(i).name for i in range(len(train))}
    assert [i for i, _ in val.issues] == [str(root / "Gamma")]  # Gamma has no val video: reported


def test_max_clips_and_report(ucf_tree, cache):
    ds = ucf(ucf_tree, "test", cache, max_clips=2)
    assert all(ds[i][0].shape[0] == 2 for i in range(len(ds)))
    report = ds.report()
    assert report.splitlines()[0].startswith(f"ucf101 {ucf_tree} fold 1, test split: 6 videos, 3 classes")
    assert ds.describe()["videos"] == 6 and ds.describe()["skipped"] == 0


def test_build_dataset_with_relative_path(ucf_tree, cache, monkeypatch):
    monkeypatch.chdir(ucf_tree.parent)
    cfg = DataConfig(source=f"ucf101:{ucf_tree.name}:1", height=8, width=8, clip_length=T)
    ds = build_layout_dataset(cfg, "test", cache_dir=cache, progress=False)
    assert ds.root == ucf_tree and len(ds) == 6


# --------------------------------------------------------------------------- data.source


@pytest.mark.parametrize(
    "source, kind, kwargs",
    [
        ("ucf101:/d/ucf", "ucf101", {"root": "/d/ucf", "annotation_dir": None}),
        ("ucf101:/d/ucf:3", "ucf101", {"root": "/d/ucf", "annotation_dir": None, "fold": 3}),
        ("ucf101:/d/ucf:/d/ann", "ucf101", {"root": "/d/ucf", "annotation_dir": "/d/ann"}),
        ("ucf101:rel/ucf:rel/ann:2", "ucf101", {"root": "rel/ucf", "annotation_dir": "rel/ann", "fold": 2}),
        ("hmdb51:/d/h:/d/s", "hmdb51", {"root": "/d/h", "split_dir": "/d/s"}),
        ("hmdb51:/d/h:/d/s:2", "hmdb51", {"root": "/d/h", "split_dir": "/d/s", "fold": 2}),
        ("kinetics:/d/k", "kinetics", {"root": "/d/k"}),
    ],
)
def test_parse_source(source, kind, kwargs):
    assert parse_source(source) == (kind, kwargs)
    # made absolute, the source names the same data with the same fields
    absolute = normalize_source(source)
    assert parse_source(absolute)[0] == kind and normalize_source(absolute) == absolute
    assert {k: v for k, v in parse_source(absolute)[1].items() if k != "fold"} == {
        k: (str(Path(v).absolute()) if isinstance(v, str) else v) for k, v in kwargs.items() if k != "fold"}
    assert parse_source(absolute)[1].get("fold") == kwargs.get("fold")


def test_normalize_source_resolves_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert normalize_source("ucf101:data/ucf:1") == f"ucf101:{tmp_path}/data/ucf:1"
    assert normalize_source("synthetic") == "synthetic"


@pytest.mark.parametrize(
    "source", ["ucf101", "ucf101:", "ucf101:/a:/b:/c", "hmdb51:/a", "kinetics:/a:/b", "kinetics:/a:2", "imagenet:/x",
               "ucf101:/a:0", "ucf101:/a::1"]
)
def test_malformed_source(source):
    with pytest.raises(ConfigError, match=r"data\.source.*accepted forms: synthetic, ucf101:<root>\[:fold\]"):
        parse_source(source)
    with pytest.raises(ConfigError, match=r"data\.source"):
        build_dataset(DataConfig(source=source), "train")


# --------------------------------------------------------------------------- HMDB51


@pytest.fixture(scope="module")
def hmdb_tree(tmp_path_factory, write_video, make_frames):
    base = tmp_path_factory.mktemp("hmdb")
    root, split_dir = base / "hmdb51", base / "testTrainMulti_7030_splits"
    split_dir.mkdir()
    for level, cls in ((80, "wave"), (160, "brush_hair")):
        lines = []
        for movie in ("April_09", "Bob_Ross", "Cast_Away", "Dune"):
            for n in (0, 1):
                name = f"{movie}_{cls}_u_nm_np1_fr_goo_{n}.avi"
                write_video(root / cls / name, make_frames(12, level=level, seed=n))
                tag = {"April_09": 1, "Bob_Ross": 1, "Cast_Away": 2, "Dune": 0}[movie]
                lines.append(f"{name} {tag} ")  # HMDB51's own files end lines with a space
        (split_dir / f"{cls}_test_split1.txt").write_text("\n".join(lines) + "\n")
    return root, split_dir


def test_hmdb51(hmdb_tree, cache):
    root, split_dir = hmdb_tree

    def hmdb(split):
        return HMDB51Videos(root, split_dir, split, height=8, width=8, clip_length=T, val_fraction=0.5,
                            cache_dir=cache, progress=False)

    train, val, test = hmdb("train"), hmdb("val"), hmdb("test")
    assert train.class_names == ["brush_hair", "wave"]  # sorted
    names = lambda d: [d.meta(i).name for i in range(len(d))]  # noqa: E731
    assert all("Cast_Away" in n for n in names(test)) and len(test) == 4
    assert not any("Dune" in n for n in names(train) + names(val) + names(test))  # tag 0: unused
    # Two train movies per class: one to val, one to train, both clips of a movie together.
    assert len(train) == 4 and len(val) == 4
    for d in (train, val):
        for cls in train.class_names:
            assert len({n.split("/")[1].split(f"_{cls}_")[0] for n in names(d) if n.startswith(cls)}) == 1
    assert test[0][1] == test.meta(0).label and test[0][0].shape == (3, T, 8, 8, 3)
    cfg = DataConfig(source=f"hmdb51:{root}:{split_dir}:1", height=8, width=8, clip_length=T)
    assert len(build_layout_dataset(cfg, "test", cache_dir=cache, progress=False)) == 4


# --------------------------------------------------------------------------- Kinetics


def _kinetics_tree(root: Path, write_video, make_frames, with_test: bool) -> Path:
    folders = {"train": 4, "val": 2} | ({"test": 2} if with_test else {})
    for split, count in folders.items():
        for level, cls in ((70, "abseiling"), (190, "zumba")):
            for n in range(count):
                ext = "mkv" if n == 1 else "mp4"
                ytid = f"{cls[:3]}{split[:2]}{n:06d}"[:11].ljust(11, "x")
                write_video(root / split / cls / f"{ytid}_{n:06d}_{n + 10:06d}.{ext}", make_frames(9, level=level))
        (root / split / "abseiling" / "notes.txt").write_text("not a video, ignored")
    return root


def test_kinetics_without_test_folder(tmp_path, cache, write_video, make_frames):
    root = _kinetics_tree(tmp_path / "k400", write_video, make_frames, with_test=False)

    def kin(split):
        return KineticsVideos(root, split, height=8, width=8, clip_length=T, val_fraction=0.25,
                              cache_dir=cache, progress=False)

    train, val, test = kin("train"), kin("val"), kin("test")
    assert train.class_names == ["abseiling", "zumba"]
    # test is the val folder; val is held out of train (one of four videos per class).
    assert {test.meta(i).name.split("/")[0] for i in range(len(test))} == {"val"} and len(test) == 4
    assert len(train) == 6 and len(val) == 2 and val.val_held_out
    assert not {train.meta(i).name for i in range(len(train))} & {val.meta(i).name for i in range(len(val))}
    assert any(train.meta(i).name.endswith(".mkv") for i in range(len(train)))
    assert train[0][0].shape == (2, T, 8, 8, 3)


def test_kinetics_with_test_folder(tmp_path, cache, write_video, make_frames):
    root = _kinetics_tree(tmp_path / "k400", write_video, make_frames, with_test=True)
    cfg = DataConfig(source=f"kinetics:{root}", height=8, width=8, clip_length=T)
    split_folder = {}
    for split in ("train", "val", "test"):
        ds = build_layout_dataset(cfg, split, cache_dir=cache, progress=False)
        split_folder[split] = {ds.meta(i).name.split("/")[0] for i in range(len(ds))}
    assert split_folder == {"train": {"train"}, "val": {"val"}, "test": {"test"}}


# --------------------------------------------------------------------------- real data


def test_weizmann_rgb_loads(weizmann_rgb_dir, tmp_path_factory):
    cache = tmp_path_factory.mktemp("weizmann-cache")
    cfg = DataConfig(source=f"ucf101:{weizmann_rgb_dir}:1", height=32, width=32, clip_length=8)
    sets = {s: build_layout_dataset(cfg, s, seed=0, cache_dir=cache, progress=False) for s in ("train", "val", "test")}
    assert sets["train"].class_names == ["Bend", "JumpingJack", "Wave1", "Wave2"]
    assert len(sets["train"]) + len(sets["val"]) == 48 and len(sets["test"]) == 24
    assert all(not d.skipped and not d.issues for d in sets.values())
    # val holds whole recordings (both takes of a group), one group per class here.
    val_groups = {video_group(sets["val"].meta(i).name) for i in range(len(sets["val"]))}
    train_groups = {video_group(sets["train"].meta(i).name) for i in range(len(sets["train"]))}
    assert len(val_groups) == 4 and not val_groups & train_groups
    clips, label = sets["test"][0]
    assert clips.shape[1:] == (8, 32, 32, 3) and clips.float().std() > 10
    assert sorted(set(sets["test"].labels)) == [0, 1, 2, 3]
