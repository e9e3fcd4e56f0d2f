"""Data sources (cdlib.data.sources): a source a user names is used or refused, never replaced; folds."""

from __future__ import annotations

import shutil

import pytest

from cdlib.data.layouts import UCF101Videos, build_layout_dataset
from cdlib.experiment.config import DataConfig
from cdlib.data.sources import (
    LAYOUTS,
    Layout,
    check_source,
    describe_source,
    fold_sources,
    normalize_source,
    parse_source,
    register_layout,
    source_forms,
)
from cdlib.runtime.errors import ConfigError, DataError


def assert_refused(source, path, *words):
    """``check_source`` raises a DataError naming ``path``, the ``words`` and the accepted forms."""
    with pytest.raises(DataError) as info:
        check_source(source)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    for word in words:
        assert word in message, (word, message)
    assert "Accepted data sources: " + ", ".join(source_forms()) in message


def test_fold_all_is_a_form_of_its_own():
    assert parse_source("ucf101:/d:all") == ("ucf101", {"root": "/d", "annotation_dir": None, "fold": "all"})
    assert parse_source("ucf101:/d:/a:all")[1] == {"root": "/d", "annotation_dir": "/a", "fold": "all"}
    assert parse_source("hmdb51:/d:/s:all")[1]["fold"] == "all"
    assert normalize_source("ucf101:d:all").endswith("/d:all")
    with pytest.raises(ConfigError, match="wrong number of fields"):
        parse_source("kinetics:/k:all")


def test_a_missing_root_is_refused_with_the_path_and_the_expected_layout(tmp_path):
    missing = tmp_path / "UCF101"
    assert_refused(f"ucf101:{missing}", missing, "data root does not exist", "a UCF101 tree: <root>/<Class>/*.avi")
    assert_refused(f"ucf101:{missing}:all", missing, "data root does not exist")
    afile = tmp_path / "file"
    afile.write_text("x")
    assert_refused(f"kinetics:{afile}", afile, "data root is not a folder", "a Kinetics tree")
    assert_refused(f"hmdb51:{missing}:{tmp_path}", missing, "does not exist", "an HMDB51 tree")


def test_split_files_elsewhere_are_refused_until_their_folder_is_given(weizmann_rgb_dir, tmp_path):
    copy = tmp_path / "weizmann"
    shutil.copytree(weizmann_rgb_dir, copy)
    moved = tmp_path / "annotations" / "ucfTrainTestlist"
    moved.parent.mkdir()
    shutil.move(copy / "ucfTrainTestlist", moved)
    assert_refused(f"ucf101:{copy}", copy, "no UCF101 split files for fold 1", "ucf101:<root>:<annotation_dir>[:fold]",
                   str(copy / "ucfTrainTestlist"))
    assert_refused(f"ucf101:{copy}:all", copy, "no fold has split files")
    assert_refused(f"ucf101:{copy}:{tmp_path / 'nope'}", tmp_path / "nope", "annotation folder does not exist")
    # In the CLI's form with the annotation folder, the data set is used as it is.
    source = f"ucf101:{copy}:{moved}:all"
    check_source(source)
    assert fold_sources(source) == [f"ucf101:{copy}:{moved}:{fold}" for fold in (1, 2, 3)]
    train = build_layout_dataset(DataConfig(source=f"ucf101:{copy}:{moved}:2"), "train", progress=False)
    assert isinstance(train, UCF101Videos) and train.annotation_dir == moved and train.root == copy
    assert len(train) == 40 and train.class_names == ["Bend", "JumpingJack", "Wave1", "Wave2"]


def test_fold_all_stands_for_every_fold_with_split_files(weizmann_rgb_dir, tmp_path, make_ucf101_tree):
    assert fold_sources(f"ucf101:{weizmann_rgb_dir}:all") == [f"ucf101:{weizmann_rgb_dir}:{f}" for f in (1, 2, 3)]
    assert fold_sources(f"ucf101:{weizmann_rgb_dir}:2") == [f"ucf101:{weizmann_rgb_dir}:2"]
    assert fold_sources("synthetic") == ["synthetic"]
    tree = make_ucf101_tree(tmp_path / "tree", groups=3, test_groups={1: (3,), 3: (1,)})
    assert fold_sources(f"ucf101:{tree}:all") == [f"ucf101:{tree}:1", f"ucf101:{tree}:3"]
    with pytest.raises(ConfigError, match="fold 'all' .* stands for one data set per fold"):
        build_layout_dataset(DataConfig(source=f"ucf101:{tree}:all"), "train", progress=False)


def test_hmdb51_and_kinetics_are_checked_too(tmp_path):
    (tmp_path / "h" / "jump").mkdir(parents=True)
    splits = tmp_path / "splits"
    splits.mkdir()
    assert_refused(f"hmdb51:{tmp_path / 'h'}:{splits}", splits, "no HMDB51 split files for fold 1")
    (splits / "jump_test_split2.txt").write_text("a.avi 1\n")
    assert_refused(f"hmdb51:{tmp_path / 'h'}:{splits}", splits, "split files exist for fold(s) 2")
    check_source(f"hmdb51:{tmp_path / 'h'}:{splits}:2")
    assert fold_sources(f"hmdb51:{tmp_path / 'h'}:{splits}:all") == [f"hmdb51:{tmp_path / 'h'}:{splits}:2"]
    (tmp_path / "k").mkdir()
    assert_refused(f"kinetics:{tmp_path / 'k'}", tmp_path / "k", "no Kinetics split folders")


def test_describe_source_names_the_data():
    assert describe_source("synthetic") == "the embedded synthetic videos"
    assert describe_source("ucf101:/d/UCF101:all") == "the UCF101-layout videos at /d/UCF101, every fold"
    assert describe_source("ucf101:/d/UCF101") == "the UCF101-layout videos at /d/UCF101, fold 1"
    assert describe_source("kinetics:/k") == "the Kinetics-layout videos at /k"


def test_the_forms_are_those_of_the_registered_layouts():
    assert source_forms() == ["synthetic", "ucf101:<root>[:fold]", "ucf101:<root>:<annotation_dir>[:fold]",
                              "hmdb51:<root>:<split_dir>[:fold]", "kinetics:<root>"]


def test_a_registered_layout_is_accepted_wherever_a_source_is(request):
    """A layout registered once is parsed, described, checked and opened, with no other list to edit."""
    checked = []

    class FlatVideos:
        def __init__(self, **kwargs):
            self.kwargs, self.skipped = kwargs, []

    register_layout(Layout("flat", paths=("root",), required=1, title="Flat", description="a flat folder of videos",
                           check=checked.append, dataset=FlatVideos))
    request.addfinalizer(lambda: LAYOUTS.unregister("flat"))
    assert source_forms()[-1] == "flat:<root>"
    assert parse_source("flat:/v") == ("flat", {"root": "/v"})
    assert describe_source("flat:/v") == "the Flat-layout videos at /v"
    check_source("flat:/v")
    assert checked == [{"root": "/v"}]
    with pytest.raises(ConfigError, match="wrong number of fields for flat"):
        parse_source("flat:/v:all")  # no folds: 'all' is a second path
    dataset = build_layout_dataset(DataConfig(source="flat:/v"), "test")
    assert isinstance(dataset, FlatVideos) and dataset.kwargs["root"] == "/v" and dataset.kwargs["split"] == "test"
