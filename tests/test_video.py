"""Decoding, resizing, clip cutting and the decode cache (cdlib.data.video), and the export round trip."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
import torch

from cdlib.data import video
from cdlib.data.video import DecodeCache, cut_clips, load_clips, num_clips, read_video, resize_video
from cdlib.runtime.errors import ConfigError, DataError, VideoError

# --------------------------------------------------------------------------- read_video


def test_read_video_lossless_roundtrip(tmp_path, write_video, make_frames):
    frames = make_frames(11, 12, 20, level=90)
    path = write_video(tmp_path / "x.avi", frames, codec="ffv1")
    decoded = read_video(path)
    assert decoded.dtype == torch.uint8
    assert tuple(decoded.shape) == (11, 12, 20, 3)
    assert torch.equal(decoded, torch.from_numpy(frames))


def test_read_video_lossy_mp4_and_mkv(tmp_path, write_video, make_frames):
    frames = make_frames(10, 16, 16, level=100)
    for ext in ("mp4", "mkv"):
        decoded = read_video(write_video(tmp_path / f"x.{ext}", frames))
        assert decoded.shape == (10, 16, 16, 3)
        assert (decoded.float() - torch.from_numpy(frames).float()).abs().mean() < 12


def test_real_ucf101_sample(ucf101_sample_path):
    frames = read_video(ucf101_sample_path)
    assert tuple(frames.shape) == (164, 240, 320, 3)
    assert frames.float().std() > 20, "decoded frames look blank"
    # Frames differ over time (a real video, not one frame repeated).
    assert (frames[0].float() - frames[-1].float()).abs().mean() > 5


def test_real_ucf101_sample_clips(ucf101_sample_path, decode_cache_dir):
    clips = load_clips(ucf101_sample_path, 32, 40, 16, cache=decode_cache_dir)
    assert tuple(clips.shape) == (164 // 16, 16, 32, 40, 3)
    assert clips.float().std() > 20


# --------------------------------------------------------------------------- resize and cut


def test_resize_video_shapes_and_content():
    frames = torch.zeros(5, 40, 60, 3, dtype=torch.uint8)
    frames[:, :20] = 200  # top half bright
    small = resize_video(frames, 10, 15)
    assert small.shape == (5, 10, 15, 3) and small.dtype == torch.uint8
    assert small[:, :4].float().mean() == pytest.approx(200, abs=1)
    assert small[:, 6:].float().mean() == pytest.approx(0, abs=1)
    assert resize_video(frames, 40, 60) is frames  # same size: untouched
    big = resize_video(frames, 80, 120)
    assert big.shape == (5, 80, 120, 3)


def test_resize_video_antialias_when_shrinking():
    # A one-pixel checkerboard averages to grey when shrunk with antialiasing;
    # without it, bilinear sampling would alias to near-black or near-white.
    board = (torch.arange(64)[:, None] + torch.arange(64)[None, :]) % 2 * 255
    frames = board.to(torch.uint8)[None, :, :, None].expand(2, 64, 64, 3).contiguous()
    small = resize_video(frames, 8, 8)
    assert small.float().mean() == pytest.approx(127.5, abs=3)
    assert small.float().std() < 5


def test_cut_clips_drop_and_pad():
    frames = torch.arange(10, dtype=torch.uint8)[:, None, None, None].expand(10, 2, 2, 3)
    dropped = cut_clips(frames, 4)
    assert dropped.shape == (2, 4, 2, 2, 3)
    assert dropped[:, :, 0, 0, 0].tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    padded = cut_clips(frames, 4, tail="pad")
    assert padded.shape == (3, 4, 2, 2, 3)
    assert padded[2, :, 0, 0, 0].tolist() == [8, 9, 9, 9]  # last frame repeated
    exact = cut_clips(frames[:8], 4, tail="pad")
    assert exact.shape[0] == 2
    assert num_clips(10, 4) == 2 and num_clips(10, 4, "pad") == 3 and num_clips(10, 4, max_clips=1) == 1


def test_cut_clips_max_clips_evenly_spaced():
    frames = torch.arange(40, dtype=torch.uint8)[:, None, None, None].expand(40, 1, 1, 3)
    clips = cut_clips(frames, 4, max_clips=3)  # 10 clips -> keep 0, 3, 6
    assert clips.shape[0] == 3
    assert clips[:, 0, 0, 0, 0].tolist() == [0, 12, 24]
    assert cut_clips(frames, 4, max_clips=50).shape[0] == 10  # fewer clips than asked: all


def test_cut_clips_errors():
    frames = torch.zeros(3, 2, 2, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="no clip"):
        cut_clips(frames, 4)
    assert cut_clips(frames, 4, tail="pad").shape == (1, 4, 2, 2, 3)
    with pytest.raises(ValueError, match="tail"):
        cut_clips(frames, 2, tail="wrap")


def test_load_clips_counts_and_short_video(tmp_path, write_video, make_frames):
    path = write_video(tmp_path / "x.avi", make_frames(18))
    assert load_clips(path, 8, 8, 4, cache=False).shape == (4, 4, 8, 8, 3)  # 18 // 4
    assert load_clips(path, 8, 8, 4, tail="pad", cache=False).shape == (5, 4, 8, 8, 3)
    assert load_clips(path, 8, 8, 4, max_clips=2, cache=False).shape == (2, 4, 8, 8, 3)
    short = write_video(tmp_path / "short.avi", make_frames(5))
    with pytest.raises(VideoError, match="has 5 frames, fewer than one clip of 8"):
        load_clips(short, 8, 8, 8, tail="pad", cache=False)


# --------------------------------------------------------------------------- the decode cache


def test_cache_second_load_does_not_decode(tmp_path, write_video, make_frames, decode_cache_dir, monkeypatch):
    path = write_video(tmp_path / "x.avi", make_frames(16))
    cache = DecodeCache(decode_cache_dir)
    first = load_clips(path, 8, 8, 4, cache=cache)
    assert cache.misses == 1 and len(list(decode_cache_dir.glob("*.pt"))) == 1

    def no_decoding(_path):
        raise AssertionError("decoded again although the cache holds the clips")

    monkeypatch.setattr(video, "read_video", no_decoding)
    second = load_clips(path, 8, 8, 4, cache=cache)
    assert torch.equal(first, second) and cache.hits == 1
    # A different setting is a different entry: it must decode.
    with pytest.raises(AssertionError, match="decoded again"):
        load_clips(path, 8, 8, 2, cache=cache)
    assert not list(decode_cache_dir.glob("*.tmp")), "temporary files left behind"


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip_byte", "empty"])
def test_cache_damaged_entry_is_rebuilt(tmp_path, write_video, make_frames, decode_cache_dir, damage):
    path = write_video(tmp_path / "x.avi", make_frames(16))
    cache = DecodeCache(decode_cache_dir)
    good = load_clips(path, 8, 8, 4, cache=cache)
    (entry,) = decode_cache_dir.glob("*.pt")
    data = entry.read_bytes()
    if damage == "truncate":
        entry.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        entry.write_bytes(b"not a torch file" * 10)
    elif damage == "empty":
        entry.write_bytes(b"")
    else:  # one flipped byte inside the stored clip bytes: only the checksum sees it
        clips = good.numpy().tobytes()
        at = data.find(clips[:64])
        assert at >= 0
        at += len(clips) // 2
        entry.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :])
    again = load_clips(path, 8, 8, 4, cache=cache)
    assert torch.equal(again, good)
    assert cache.rebuilt == 1 and cache.misses == 2
    # ... and the entry was rewritten and is trusted again.
    assert torch.equal(load_clips(path, 8, 8, 4, cache=cache), good) and cache.hits == 1


def test_cache_key_follows_the_file(tmp_path, write_video, make_frames, decode_cache_dir):
    path = write_video(tmp_path / "x.avi", make_frames(16, level=50))
    cache = DecodeCache(decode_cache_dir)
    before = load_clips(path, 8, 8, 4, cache=cache)
    write_video(path, make_frames(12, level=220))  # replaced in place: new size and mtime
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    after = load_clips(path, 8, 8, 4, cache=cache)
    assert after.shape[0] == 3 and before.shape[0] == 4
    assert after.float().mean() > before.float().mean()


def test_default_cache_dir_under_artifacts(monkeypatch, tmp_path):
    monkeypatch.setenv("CDLIB_ARTIFACTS", str(tmp_path / "art"))
    assert video.default_cache_dir() == (tmp_path / "art").resolve() / "decoded"


# --------------------------------------------------------------------------- export round trip


def _tiny_synthetic_config():
    from cdlib.experiment.config import DataConfig

    return DataConfig(num_classes=3, num_train=6, num_val=3, num_test=3, video_length=24, height=16, width=16)


def test_export_synthetic_roundtrip(tmp_path, decode_cache_dir):
    from cdlib.data import build_dataset
    from cdlib.data.export import export_synthetic
    from cdlib.data.layouts import UCF101Videos

    cfg = _tiny_synthetic_config()
    out = export_synthetic(cfg, tmp_path / "export", seed=3, progress=False)
    manifest = json.loads((out / "synthetic_export.json").read_text())
    assert manifest["codec"] == "ffv1" and len(manifest["videos"]) == 12
    for split in ("train", "val", "test"):
        original = build_dataset(cfg, split, seed=3)
        loaded = UCF101Videos(out, split, height=16, width=16, clip_length=cfg.clip_length,
                              cache_dir=decode_cache_dir, progress=False)
        assert loaded.class_names == ["MoveRight", "MoveLeft", "CircleCw"]
        assert len(loaded) == len(original)
        assert loaded.labels == [original.meta(i).label for i in range(len(original))]
        for i in range(len(original)):
            clips, label = loaded[i]
            want, want_label = original[i]
            assert label == want_label
            assert clips.shape == want.shape
            assert (clips.float() - want.float()).abs().mean() < 0.5  # ffv1/bgr0 is lossless


def test_default_real_source_is_the_shipped_set_and_falls_back_only_when_it_is_missing(tmp_path, weizmann_rgb_dir,
                                                                                      monkeypatch):
    from cdlib.data import export
    from cdlib.experiment.config import profile_config

    base = profile_config("ci", seed=3).replace(**{"data.num_classes": 3, "data.video_length": 24,
                                                   "data.height": 16, "data.width": 16})
    shipped = export.default_real_source("all", base)
    assert shipped == export.DefaultSource(f"ucf101:{weizmann_rgb_dir}:all", "the Weizmann videos shipped in "
                                           "data/weizmann-rgb", False)
    # Shipped set missing: the trimmed synthetic set, exported once as videos, reused afterwards.
    monkeypatch.setattr(export, "FALLBACK_OVERRIDES", {**export.FALLBACK_OVERRIDES, "data.num_train": 4,
                                                       "data.num_val": 4, "data.num_test": 4})
    chosen = export.default_real_source(2, base, shipped_root=tmp_path / "absent", root=tmp_path / "store")
    assert chosen.fallback and str(tmp_path / "absent") in chosen.reason and "missing" in chosen.reason
    assert chosen.source.startswith(f"ucf101:{tmp_path / 'store' / 'exported'}") and chosen.source.endswith(":1")
    manifest = json.loads((Path(chosen.source.split(":")[1]) / "synthetic_export.json").read_text())
    assert manifest["seed"] == 3 and manifest["data"]["informative_fraction"] == 1.0  # trimmed: action throughout
    assert manifest["data"]["num_classes"] == 4 and chosen.description.startswith("the synthetic videos (4 classes)")
    monkeypatch.setattr(export, "export_synthetic", lambda *a, **k: pytest.fail("exported twice"))
    assert export.default_real_source(2, base, shipped_root=tmp_path / "absent", root=tmp_path / "store") == chosen


def test_export_refuses_nonempty_and_non_synthetic(tmp_path):
    from cdlib.data.export import export_synthetic

    cfg = _tiny_synthetic_config()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="not empty"):
        export_synthetic(cfg, tmp_path / "full", progress=False)
    cfg.source = "ucf101:/somewhere"
    with pytest.raises(ConfigError, match="data.source"):
        export_synthetic(cfg, tmp_path / "new", progress=False)


def test_data_cli_export_and_scan(tmp_path, capsys):
    from cdlib.cli.data import add_data_commands

    parser = argparse.ArgumentParser()
    add_data_commands(parser.add_subparsers(dest="command"))
    out = tmp_path / "exp"
    sizes = ["--set", "data.num_classes=2", "--set", "data.num_train=4", "--set", "data.num_val=2",
             "--set", "data.num_test=2", "--set", "data.video_length=16", "--set", "data.height=16",
             "--set", "data.width=16"]
    args = parser.parse_args(["data", "export-synthetic", str(out), "--codec", "mpeg4", *sizes])
    assert args.func(args) == 0
    assert f"ucf101:{out}" in capsys.readouterr().out
    args = parser.parse_args(["data", "scan", f"ucf101:{out}", "--cache-dir", str(tmp_path / "c"), *sizes])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "train split: 4 videos, 2 classes" in printed and "test split: 2 videos" in printed
