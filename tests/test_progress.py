"""Progress on stderr: tqdm's bars on a terminal, one line per finished bar in a log file, rank 0 only."""

import sys

from cdlib.runtime import progress


def test_a_log_file_gets_one_line_per_bar_with_its_count_and_postfix(capsys, monkeypatch):
    monkeypatch.delenv("CDLIB_PROGRESS", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    for epoch in range(2):
        bar = progress.progress_bar(range(5), desc=f"train epoch {epoch + 1}/2")
        for step in bar:
            bar.set_postfix(loss=1.0 / (step + 1))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and "\r" not in "".join(lines)
    assert lines[0].startswith("train epoch 1/2: 5/5 in ") and lines[0].endswith("s, loss=0.2")


def test_a_closed_bar_reports_once_and_a_bar_left_early_reports_what_it_did(capsys, monkeypatch):
    monkeypatch.delenv("CDLIB_PROGRESS", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    manual = progress.progress_bar(total=3, desc="export")
    manual.update(2)
    manual.close()
    manual.close()
    for _ in zip(range(2), progress.progress_bar(range(10), desc="batches")):
        pass
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" in ")[0] for line in lines] == ["export: 2/3", "batches: 2/10"]


def test_no_lines_off_rank_0_or_when_silenced_and_tqdm_on_a_terminal(capsys, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    list(progress.progress_bar(range(3), desc="x"))
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("CDLIB_PROGRESS", "0")
    list(progress.progress_bar(range(3), desc="x"))
    assert capsys.readouterr().err == ""
    monkeypatch.delenv("CDLIB_PROGRESS")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert not isinstance(progress.progress_bar(range(3), desc="x"), progress.LineProgress)
