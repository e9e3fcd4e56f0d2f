"""Bad input gets a clear error naming the file and the problem, and nothing is lost.

Each case: the non-strict scan skips the file (or records an issue) and lists it in
``dataset.report()``; ``strict=True`` raises a cdlib error naming it; no PyAV
exception escapes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from cdlib.data.layouts import HMDB51Videos, KineticsVideos, UCF101Videos, build_layout_dataset
from cdlib.data.video import load_clips, read_video
from cdlib.experiment.config import DataConfig
from cdlib.runtime.errors import CdlibError, ConfigError, DataError, VideoError

T = 4
TWO_CLASSES = (("Alpha", 60, 12), ("Beta", 180, 12))


@pytest.fixture
def tree(tmp_path, make_ucf101_tree):
    """Two classes, two groups, one take: fold 1 trains on g01 and tests on g02."""
    return make_ucf101_tree(tmp_path / "ucf", classes=TWO_CLASSES, groups=2, takes=1)


def ucf(root, split, tmp_path, strict=False, **kw):
    return UCF101Videos(root, split, height=8, width=8, clip_length=T, val_fraction=0.0, strict=strict,
                        cache_dir=tmp_path / "cache", progress=False, **kw)


def replace_video(root: Path, rel: str, data: bytes | None = None, source: Path | None = None) -> Path:
    path = root / rel
    if source is not None:
        shutil.copyfile(source, path)
    else:
        path.write_bytes(data)
    return path


def assert_skipped(dataset, path: Path, *words: str) -> None:
    reasons = dict(dataset.skipped)
    assert str(path) in reasons, f"{path} not in the skip list {dataset.skipped}"
    for word in words:
        assert word in reasons[str(path)]
    report = dataset.report()
    assert f"skipped {path}: " in report and "1 skipped" in report.splitlines()[0]


def check_video_case(root, tmp_path, path: Path, *words: str) -> None:
    """Skipped and reported without strict; a VideoError naming the file with strict."""
    ds = ucf(root, "train", tmp_path)
    assert len(ds) == 1  # the other class's video still loads
    assert_skipped(ds, path, *words)
    with pytest.raises(VideoError) as info:
        ucf(root, "train", tmp_path, strict=True)
    assert info.value.path == str(path) and all(w in str(info.value) for w in words)


# --------------------------------------------------------------------------- layout-level errors


def test_missing_root(tmp_path):
    missing = tmp_path / "no-such-ucf"
    with pytest.raises(DataError, match=rf"{missing}: data root does not exist; expected a UCF101 tree"):
        ucf(missing, "train", tmp_path)
    cfg = DataConfig(source=f"hmdb51:{missing}:{tmp_path}")
    with pytest.raises(DataError, match=rf"{missing}: data root does not exist; expected an HMDB51 tree"):
        build_layout_dataset(cfg, "train", cache_dir=tmp_path / "cache", progress=False)
    with pytest.raises(DataError, match="does not exist; expected a Kinetics tree"):
        KineticsVideos(missing, "train", cache_dir=tmp_path / "cache", progress=False)


def test_no_split_files(tmp_path, make_ucf101_tree):
    root = make_ucf101_tree(tmp_path / "ucf", classes=TWO_CLASSES, groups=2, takes=1, annotation=None)
    with pytest.raises(DataError) as info:
        ucf(root, "train", tmp_path)
    message = str(info.value)
    for expected in ("no UCF101 split files for fold 1", "trainlist01.txt", "testlist01.txt",
                     str(root / "ucfTrainTestlist"), str(root / "splits"), "ucf101:<root>:<annotation_dir>"):
        assert expected in message
    with pytest.raises(DataError, match="annotation folder does not exist"):
        ucf(root, "train", tmp_path, annotation_dir=tmp_path / "nowhere")


def test_no_split_files_hmdb51_and_kinetics(tmp_path, write_video, make_frames):
    root = tmp_path / "hmdb"
    write_video(root / "wave" / "a_wave_0.avi", make_frames(8))
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "wave_test_split2.txt").write_text("a_wave_0.avi 1\n")
    with pytest.raises(DataError, match=r"no HMDB51 split files for fold 1: looked for <class>_test_split1\.txt.*"
                                        r"split files exist for fold\(s\) 2"):
        HMDB51Videos(root, tmp_path / "splits", "train", cache_dir=tmp_path / "cache", progress=False)
    with pytest.raises(DataError, match=r"no Kinetics split folders: looked for .*/train"):
        KineticsVideos(root, "train", cache_dir=tmp_path / "cache", progress=False)


def test_split_line_naming_a_missing_video(tree, tmp_path):
    with open(tree / "ucfTrainTestlist" / "trainlist01.txt", "a") as f:
        f.write("Alpha/v_Alpha_g09_c01.avi 1\n")
    missing = tree / "Alpha" / "v_Alpha_g09_c01.avi"
    ds = ucf(tree, "train", tmp_path)
    assert len(ds) == 2
    assert_skipped(ds, missing, "listed in trainlist01.txt:3", "does not exist")
    with pytest.raises(VideoError, match=r"v_Alpha_g09_c01\.avi: listed in trainlist01\.txt:3 but the file does not exist"):
        ucf(tree, "train", tmp_path, strict=True)


def test_classind_naming_a_missing_folder(tree, tmp_path):
    with open(tree / "ucfTrainTestlist" / "classInd.txt", "a") as f:
        f.write("3 Gamma\n")
    with pytest.raises(DataError, match=rf"{tree / 'Gamma'}: class folder does not exist, but .*classInd.txt names class 'Gamma'"):
        ucf(tree, "train", tmp_path)


def test_malformed_classind(tree, tmp_path):
    (tree / "ucfTrainTestlist" / "classInd.txt").write_text("1 Alpha\nBeta\n")
    with pytest.raises(DataError, match=r"classInd\.txt:2: expected '<index> <ClassName>'"):
        ucf(tree, "train", tmp_path)


def test_video_in_both_train_and_test(tree, tmp_path):
    with open(tree / "ucfTrainTestlist" / "testlist01.txt", "a") as f:
        f.write("Alpha/v_Alpha_g01_c01.avi\n")
    with pytest.raises(DataError, match=r"listed in both trainlist01\.txt and testlist01\.txt \(e\.g\. Alpha/v_Alpha_g01"):
        ucf(tree, "test", tmp_path)


def test_wrong_label_in_trainlist(tree, tmp_path):
    path = tree / "ucfTrainTestlist" / "trainlist01.txt"
    path.write_text(path.read_text().replace("v_Alpha_g01_c01.avi 1", "v_Alpha_g01_c01.avi 2"))
    ds = ucf(tree, "train", tmp_path)
    assert_skipped(ds, tree / "Alpha" / "v_Alpha_g01_c01.avi", "gives label '2'", "numbers 'Alpha' 1")


# --------------------------------------------------------------------------- broken videos


REAL_SAMPLE = Path(__file__).resolve().parents[1] / "data" / "samples" / "ucf101_sample.avi"


@pytest.mark.parametrize("use_real", [True, False], ids=["real-ucf101-sample", "own-video"])
def test_truncated_video(tree, tmp_path, write_video, make_frames, use_real):
    if use_real:  # a real file cut in half
        data = REAL_SAMPLE.read_bytes()
    else:  # a longer video of our own, cut in half
        data = write_video(tmp_path / "long.avi", make_frames(200, 64, 64)).read_bytes()
    path = replace_video(tree, "Alpha/v_Alpha_g01_c01.avi", data[: len(data) // 2])
    with pytest.raises(VideoError, match=r"truncated or corrupt video stream: decoded \d+ of the \d+ frames"):
        read_video(path)
    check_video_case(tree, tmp_path, path, "truncated")


def test_truncated_header(tree, tmp_path):
    data = (tree / "Alpha" / "v_Alpha_g01_c01.avi").read_bytes()
    path = replace_video(tree, "Alpha/v_Alpha_g01_c01.avi", data[:100])
    check_video_case(tree, tmp_path, path, "not a readable video")


def test_zero_byte_file(tree, tmp_path):
    path = replace_video(tree, "Alpha/v_Alpha_g01_c01.avi", b"")
    check_video_case(tree, tmp_path, path, "zero-byte file")


def test_text_file_with_video_extension(tree, tmp_path):
    path = replace_video(tree, "Alpha/v_Alpha_g01_c01.avi", b"this is not a video\n" * 50)
    check_video_case(tree, tmp_path, path, "not a readable video", "unknown container format")


def test_file_without_video_stream(tree, tmp_path):
    path = tree / "Alpha" / "v_Alpha_g01_c01.avi"
    with av.open(str(path), mode="w", format="avi") as container:  # an audio-only AVI
        stream = container.add_stream("pcm_s16le", rate=8000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    check_video_case(tree, tmp_path, path, "no video stream", "audio")


def test_video_shorter_than_one_clip(tree, tmp_path, write_video, make_frames):
    path = write_video(tree / "Alpha" / "v_Alpha_g01_c01.avi", make_frames(3))
    check_video_case(tree, tmp_path, path, f"has 3 frames, fewer than one clip of {T}")


def test_file_removed_after_the_scan_names_the_file(tree, tmp_path):
    ds = UCF101Videos(tree, "train", height=8, width=8, clip_length=T, val_fraction=0.0, cache_dir=False, progress=False)
    ds.path(0).unlink()
    with pytest.raises(VideoError, match=rf"{ds.path(0)}: file not found"):
        ds[0]


def test_all_videos_broken_gives_an_empty_split_error(tree, tmp_path):
    for cls in ("Alpha", "Beta"):
        replace_video(tree, f"{cls}/v_{cls}_g02_c01.avi", b"")
    with pytest.raises(DataError) as info:
        ucf(tree, "test", tmp_path)
    message = str(info.value)
    assert "the test split is empty: 2 videos listed, 2 skipped" in message
    assert "v_Beta_g02_c01.avi: zero-byte file" in message


def test_val_fraction_zero_gives_an_empty_val_error(tree, tmp_path):
    with pytest.raises(DataError, match=r"val split is empty.*data\.val_fraction=0\.0"):
        ucf(tree, "val", tmp_path)


@pytest.mark.parametrize("content", [b"", b"garbage" * 100, b"RIFF\x00\x00\x00\x00AVI LIST"])
def test_no_bare_pyav_exception_escapes(tmp_path, content):
    path = tmp_path / "x.avi"
    path.write_bytes(content)
    with pytest.raises(VideoError) as info:
        load_clips(path, 8, 8, T, cache=tmp_path / "cache")
    assert not isinstance(info.value, av.error.FFmpegError)
    assert info.value.path == str(path)
    with pytest.raises(VideoError, match="file not found"):
        read_video(tmp_path / "missing.mp4")


# --------------------------------------------------------------------------- classes missing from a split


def test_class_in_train_but_not_in_test(tree, tmp_path):
    testlist = tree / "ucfTrainTestlist" / "testlist01.txt"
    testlist.write_text("".join(line + "\n" for line in testlist.read_text().split("\n") if line.startswith("Alpha")))
    test = ucf(tree, "test", tmp_path)
    assert len(test) == 1 and test.issues == [(str(tree / "Beta"), "class 'Beta' has no usable video in the test split (fold 1)")]
    assert "issue " + str(tree / "Beta") + ": class 'Beta' has no usable video in the test split" in test.report()
    assert len(ucf(tree, "train", tmp_path).issues) == 0  # train still has both classes
    with pytest.raises(DataError, match=r"Beta: class 'Beta' has no usable video in the test split") as info:
        ucf(tree, "test", tmp_path, strict=True)
    assert not isinstance(info.value, VideoError)


def test_class_in_test_but_not_in_train(tree, tmp_path):
    trainlist = tree / "ucfTrainTestlist" / "trainlist01.txt"
    trainlist.write_text("Beta/v_Beta_g01_c01.avi 2\n")
    train = ucf(tree, "train", tmp_path)
    assert [subject for subject, _ in train.issues] == [str(tree / "Alpha")]
    with pytest.raises(DataError, match="class 'Alpha' has no usable video in the train split"):
        ucf(tree, "train", tmp_path, strict=True)


def test_bad_parameters(tree, tmp_path):
    with pytest.raises(DataError, match="unknown split 'dev'"):
        ucf(tree, "dev", tmp_path)
    with pytest.raises(ConfigError, match="data.clip_length: expected a positive integer"):
        UCF101Videos(tree, "train", clip_length=0, progress=False)
    with pytest.raises(ConfigError, match="fold: expected a positive integer"):
        UCF101Videos(tree, "train", fold="1", progress=False)
    with pytest.raises(ConfigError, match=r"data.val_fraction: expected a number in \[0, 1\)"):
        UCF101Videos(tree, "train", val_fraction=1.5, progress=False)
    assert issubclass(VideoError, DataError) and issubclass(DataError, CdlibError)
