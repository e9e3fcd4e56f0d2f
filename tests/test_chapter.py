"""The chapters' shared setup (cdlib.book.chapter): the CLI's config path, refusal of named data, the fallback, the
banner, and one chapter run through papermill with an override."""

from __future__ import annotations

import json
import shutil

import pytest

from cdlib.book.chapter import as_overrides, setup_chapter
from cdlib.experiment.config import make_config
from cdlib.runtime.errors import ConfigError, DataError


@pytest.mark.parametrize(
    "value, expected",
    [
        (["a=1", "b=2"], ["a=1", "b=2"]),  # -y 'overrides: [a=1, b=2]'
        (("a=1",), ["a=1"]),
        ('["a=1", "bench.thetas=0.5,0.9"]', ["a=1", "bench.thetas=0.5,0.9"]),  # -p overrides '["a=1", ...]'
        ("a=1 b='x y'", ["a=1", "b=x y"]),  # -p overrides "a=1 b=2", make chapter SET="a=1 b=2"
        ("", []),
        (None, []),
    ],
)
def test_overrides_in_every_form_papermill_passes(value, expected):
    assert as_overrides(value) == expected


def test_overrides_of_another_type_are_refused():
    with pytest.raises(ConfigError, match="overrides: expected a list"):
        as_overrides(3)
    with pytest.raises(ConfigError, match="overrides: expected a list"):
        as_overrides("[1, 2]")


def test_a_default_run_shows_no_banner_and_builds_the_clis_config():
    chapter = setup_chapter("accuracy_vs_compute", "ci", 0, "synthetic", [], figures=False,
                            budgets=(0.1, 0.25, 0.5), fractions=[0.1, 0.2, 0.3, 0.5, 1.0], shifts=(0.0, 0.5, 1.0))
    assert chapter.differences == [] and chapter.banner() is None
    assert chapter.configs == [make_config("ci", 0, "synthetic")] and chapter.sources == ["synthetic"]
    assert setup_chapter("index", "full", 0, figures=False).seeds == (0, 1, 2)


def test_seeds_run_the_chapter_on_several_seeds_of_any_profile_and_say_so():
    for given in ([2, 0, 1], "2 0 1", "2,0,1", (2, 0, 2, 1)):
        chapter = setup_chapter("index", "ci", 0, seeds=given, figures=False)
        assert chapter.seeds == (2, 0, 1)
        assert chapter.configs == [make_config("ci", s, "synthetic") for s in (2, 0, 1)]
        assert chapter.banner_text() == ("**Built on the `ci` profile, seeds 2, 0 and 1:** every number that depends "
                                         "on the seed is a mean ± std over them, and every curve has a ± std band.")
    assert setup_chapter("index", "full", 0, seeds=[4], figures=False).seeds == (4,)
    assert setup_chapter("index", seeds=4, figures=False).seeds == (4,)
    for bad in (["a"], [-1]):
        with pytest.raises(ConfigError, match="seeds:"):
            setup_chapter("index", seeds=bad, figures=False)


def test_the_published_scale_is_not_a_rerun_but_another_setting_is():
    """The published book is the full profile (make book PROFILE=full): its pages name the profile and seeds in one
    line. A page that also differs in anything else is a rerun, and its banner lists every difference."""
    published = setup_chapter("index", "full", 0, figures=False).banner_text()
    assert published == ("**Built on the `full` profile, seeds 0, 1 and 2:** every number that depends on the seed "
                         "is a mean ± std over them, and every curve has a ± std band.")
    assert setup_chapter("index", "full", 0, seeds=[4], figures=False).banner_text() == \
        "**Built on the `full` profile, seed 4.**"
    rerun = setup_chapter("index", "full", 0, overrides=["student=student_micro"], seeds=[4], figures=False)
    assert rerun.banner_text().startswith("**This page is a rerun, not the published chapter.**")
    assert "- profile = `full` (default `ci`)" in rerun.banner_text() and "- seeds = `[4]` (default `[]`)" in \
        rerun.banner_text()


def test_a_rerun_names_every_difference_deterministically():
    kwargs = dict(profile="ci", seed=1, data="synthetic", overrides="student=student_micro data.informative_fraction=0.2",
                  figures=False, fractions=(0.1, 0.5))
    chapter = setup_chapter("accuracy_vs_compute", **kwargs)
    assert chapter.config == make_config("ci", 1, None, ["student=student_micro", "data.informative_fraction=0.2"])
    text = chapter.banner_text()
    assert text.startswith("**This page is a rerun, not the published chapter.**")
    for line in ("- seed = `1` (default `0`)", "- override `student=student_micro`",
                 "- override `data.informative_fraction=0.2`", "- fractions = `[0.1, 0.5]` (default `[0.1, 0.2, 0.3, 0.5, 1.0]`)"):
        assert line in text
    assert setup_chapter("accuracy_vs_compute", **kwargs).banner_text() == text


def test_a_bad_override_stops_the_chapter_with_the_clis_error(monkeypatch):
    from cdlib.data import sources

    monkeypatch.setattr(sources, "check_source", lambda *a: pytest.fail("got past the config"))
    with pytest.raises(ConfigError, match=r"distill\.tau: Input should be greater than 0"):
        setup_chapter("distillation", overrides=["distill.tau=-1"], figures=False)


def test_a_named_source_is_used_or_refused_never_replaced(tmp_path, weizmann_rgb_dir):
    with pytest.raises(DataError, match=r"/nonexistent: data root does not exist; expected a UCF101 tree"):
        setup_chapter("real_videos", data="", data_root="/nonexistent", fold="all", figures=False)
    with pytest.raises(DataError, match=f"{tmp_path / 'typo'}: data root does not exist"):
        setup_chapter("index", data=f"ucf101:{tmp_path / 'typo'}", figures=False)
    with pytest.raises(ConfigError, match="give one, not both"):
        setup_chapter("real_videos", data="synthetic", data_root=str(weizmann_rgb_dir), figures=False)
    copy = tmp_path / "weizmann"
    shutil.copytree(weizmann_rgb_dir, copy)
    shutil.move(copy / "ucfTrainTestlist", tmp_path / "lists")
    with pytest.raises(DataError, match="no UCF101 split files for fold 1"):
        setup_chapter("real_videos", data="", data_root=str(copy), fold=1, figures=False)
    chapter = setup_chapter("real_videos", data=f"ucf101:{copy}:{tmp_path / 'lists'}:all", fold="all", figures=False)
    assert chapter.sources == [f"ucf101:{copy}:{tmp_path / 'lists'}:{f}" for f in (1, 2, 3)]
    assert not chapter.fallback and chapter.differences == [
        f"data: the UCF101-layout videos at {copy}, every fold (`{chapter.sources[0][:-2]}:all`; default the shipped "
        "real set)"]


def test_no_data_named_means_the_shipped_set_or_only_when_it_is_missing_the_fallback(tmp_path, monkeypatch,
                                                                                        weizmann_rgb_dir):
    from cdlib.data import export, shipped

    chapter = setup_chapter("real_videos", data="", data_root="", fold="all", figures=False)
    assert chapter.sources == [f"ucf101:{weizmann_rgb_dir}:{f}" for f in (1, 2, 3)]
    assert not chapter.fallback and chapter.banner() is None
    assert chapter.data_description == "the Weizmann videos shipped in data/weizmann-rgb"

    monkeypatch.setattr(shipped, "shipped_path", lambda name: tmp_path / "absent")
    monkeypatch.setenv("CDLIB_ARTIFACTS", str(tmp_path / "store"))
    monkeypatch.setattr(export, "FALLBACK_OVERRIDES", {**export.FALLBACK_OVERRIDES, "data.num_train": 8,
                                                       "data.num_val": 8, "data.num_test": 8})
    chapter = setup_chapter("real_videos", data="", data_root="", fold="all", figures=False)
    assert chapter.fallback and len(chapter.sources) == 1
    assert chapter.sources[0].startswith(f"ucf101:{tmp_path / 'store' / 'exported'}")
    text = chapter.banner_text()
    assert f"the shipped Weizmann set is missing at {tmp_path / 'absent'}" in text and chapter.data_description in text


def test_a_chapter_run_through_papermill_takes_the_override(tmp_path, monkeypatch):
    """The index chapter on a tiny config: the override reaches the config the benchmark records."""
    from cdlib.book.execute import execute_chapter
    from cdlib.runtime.artifacts import project_root

    store = tmp_path / "store"
    monkeypatch.setenv("CDLIB_ARTIFACTS", str(store))
    monkeypatch.setenv("CDLIB_PROGRESS", "0")
    overrides = ["data.num_classes=3", "data.height=16", "data.width=16", "data.video_length=32", "data.num_train=12",
                 "data.num_val=6", "data.num_test=6", "teacher_train.epochs=1", "student_train.epochs=1",
                 "bench.thetas=0.5,1.01", "bench.random_repeats=2", "bench.wall_videos=2", "bench.wall_repeats=1",
                 "student=student_micro"]
    root = project_root()
    output = tmp_path / "index.ipynb"
    execute_chapter(root / "book" / "index.md", output, {"overrides": overrides}, cwd=root)
    cells = json.loads(output.read_text())["cells"]
    first_output = next(c for c in cells if c["cell_type"] == "code" and c.get("outputs"))
    shown = "".join(first_output["outputs"][0]["data"]["text/markdown"])
    assert "This page is a rerun" in shown and "override `student=student_micro`" in shown
    recorded = [json.loads(path.read_text()) for path in store.glob("bench/*/spec.json")]
    assert recorded and all(r["spec"]["config"]["student"] == "student_micro" for r in recorded)


def test_a_failing_chapter_keeps_the_last_executed_one_and_leaves_its_error_beside_it(tmp_path):
    """execute_chapter replaces its output only when every cell ran; a failure keeps the old notebook."""
    from papermill.exceptions import PapermillExecutionError

    from cdlib.book.execute import execute_chapter, partial_path

    front = ("---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\n"
             "kernelspec:\n  display_name: Python 3\n  language: python\n  name: python3\n---\n")
    source = tmp_path / "page.md"
    output = tmp_path / "out" / "page.ipynb"
    source.write_text(front + "\n```{code-cell} ipython3\nprint('first', 'run')\n```\n")
    execute_chapter(source, output, {}, cwd=tmp_path)
    executed = output.read_text()
    printed = [o for c in json.loads(executed)["cells"] for o in c.get("outputs", [])]
    assert "".join(printed[0]["text"]) == "first run\n" and not partial_path(output).exists()

    source.write_text(front + "\n```{code-cell} ipython3\nraise ValueError('broken rerun')\n```\n")
    with pytest.raises(PapermillExecutionError):
        execute_chapter(source, output, {}, cwd=tmp_path)
    assert output.read_text() == executed
    assert "broken rerun" in partial_path(output).read_text()
