"""The real data shipped in data/ (cdlib.data.shipped): present, and every file as its SHA256SUMS says."""

from __future__ import annotations

import shutil

import pytest

from cdlib.data.shipped import SHIPPED, check_shipped, shipped_path, verify_checksums
from cdlib.runtime.errors import DataError


@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_files_match_their_checksums(name):
    folder = shipped_path(name)
    assert (folder / "README.md").is_file(), f"{folder}: the provenance README is missing"
    problems = verify_checksums(folder)
    assert not problems, "\n".join(problems)


def test_the_weizmann_set_is_complete():
    counts = check_shipped()
    folder = shipped_path("weizmann-rgb")
    assert counts["weizmann-rgb"] == 72 + 7  # 72 videos, classInd.txt and three train and test lists
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == [
        "Bend", "JumpingJack", "Wave1", "Wave2", "ucfTrainTestlist"]
    assert len(list(folder.glob("*/*.avi"))) == 72


def test_a_changed_byte_a_missing_file_and_a_bad_line_are_named(tmp_path):
    copy = tmp_path / "weizmann-rgb"
    shutil.copytree(shipped_path("weizmann-rgb"), copy)
    assert verify_checksums(copy) == []
    video = copy / "Wave1" / "v_Wave1_g03_c02.avi"
    data = bytearray(video.read_bytes())
    data[len(data) // 2] ^= 0x01
    video.write_bytes(bytes(data))
    (copy / "Bend" / "v_Bend_g01_c01.avi").unlink()
    with open(copy / "SHA256SUMS", "a") as handle:
        handle.write("not a checksum line\n")
    problems = verify_checksums(copy)
    assert len(problems) == 3
    assert problems[0] == f"{copy / 'Bend' / 'v_Bend_g01_c01.avi'}: listed in SHA256SUMS but missing"
    assert f"{video}: checksum mismatch" in problems[1]
    assert "SHA256SUMS:80: expected '<sha256>  <file>'" in problems[2]
    assert verify_checksums(tmp_path) == [f"{tmp_path / 'SHA256SUMS'}: no checksum file"]


def test_check_shipped_raises_naming_every_problem(monkeypatch, tmp_path):
    from cdlib.data import shipped

    copy = tmp_path / "samples"
    shutil.copytree(shipped_path("samples"), copy)
    (copy / "ucf101_sample.avi").write_bytes(b"truncated")
    monkeypatch.setattr(shipped, "shipped_path", lambda name: copy)
    with pytest.raises(DataError, match=r"ucf101_sample\.avi: checksum mismatch"):
        shipped.check_shipped(["samples"])
    with pytest.raises(DataError, match="not a shipped data set"):
        shipped_path("kinetics")
