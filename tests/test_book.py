"""The book's chapters as text: the table of contents, the parameters cells papermill needs, and the
question-first structure every chapter follows. (Their execution is checked by papermill and
pytest --nbval in `make test`.)"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import jupytext
import pytest

from cdlib.book.execute import CHAPTER_DEFAULTS, chapter_parameters, is_notebook, stage

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TOC = (PROJECT_ROOT / "_toc.yml").read_text()
PAGES = re.findall(r"(?:root|file):\s*book/(\S+)", TOC)
CHAPTERS = [name for name in PAGES if is_notebook(PROJECT_ROOT / "book" / f"{name}.md")]


def test_every_toc_entry_exists_and_the_chapters_are_notebooks():
    assert PAGES[0] == "index" and "references" in PAGES
    for name in PAGES:
        assert (PROJECT_ROOT / "book" / f"{name}.md").is_file(), name
    assert {"index", "calibration", "distillation", "accuracy_vs_compute", "real_videos", "conclusions"} <= set(
        CHAPTERS)


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_has_one_parameters_cell_starting_with_the_defaults(name):
    notebook = jupytext.read(PROJECT_ROOT / "book" / f"{name}.md")
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, name
    values = {}
    for node in ast.parse(tagged[0].source).body:
        assert isinstance(node, ast.Assign), f"{name}: the parameters cell holds assignments only"
        values[node.targets[0].id] = ast.literal_eval(node.value)
    assert {k: values.get(k) for k in CHAPTER_DEFAULTS} == CHAPTER_DEFAULTS, name
    assert isinstance(values.get("data"), str), f"{name}: the parameters cell names its data source"
    assert chapter_parameters(name) == values
    # papermill reads every parameter (a comment it cannot parse hides one: "Passed unknown parameter")
    from papermill.translators import PythonTranslator

    assert [p.name for p in PythonTranslator.inspect({"source": tagged[0].source})] == list(values), name
    # the parameters come before any other code
    first_code = next(c for c in notebook.cells if c.cell_type == "code")
    assert first_code is tagged[0], name


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_sets_up_through_the_shared_helper_and_shows_the_banner_first(name):
    notebook = jupytext.read(PROJECT_ROOT / "book" / f"{name}.md")
    code = [c for c in notebook.cells if c.cell_type == "code"]
    setup, banner = code[1], code[2]
    assert "remove-cell" in setup.metadata.get("tags", []), name
    assert re.search(rf'setup_chapter\("{name}", profile, seed, data, overrides, seeds=seeds\b', setup.source), name
    assert "remove-input" in banner.metadata.get("tags", []) and banner.source.strip() == "chapter.banner()", name


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_states_its_question_first(name):
    notebook = jupytext.read(PROJECT_ROOT / "book" / f"{name}.md")
    first_text = next(c.source for c in notebook.cells if c.cell_type == "markdown")
    assert "**Question.**" in first_text, name


def test_stage_copies_the_config_toc_and_static_pages(tmp_path):
    stage(tmp_path)
    assert (tmp_path / "_config.yml").is_file() and (tmp_path / "_toc.yml").is_file()
    assert (tmp_path / "book" / "references.bib").is_file() and (tmp_path / "book" / "references.md").is_file()
    assert not (tmp_path / "book" / "index.md").exists()  # chapters come executed, as .ipynb



def test_no_page_or_source_holds_control_characters():
    r"""A TeX command written in a non-raw Python string loses its backslash to an escape (``\varphi`` became a
    vertical tab and ``arphi``, ``\big`` a backspace and ``ig``): MathJax then renders the wrong formula without
    any error, so the characters themselves are what to look for."""
    control = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
    sources = [*(PROJECT_ROOT / "book").glob("*.md"), *(PROJECT_ROOT / "cdlib").rglob("*.py"), PROJECT_ROOT / "README.md"]
    bad = {str(p.relative_to(PROJECT_ROOT)): [i + 1 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines())
                                               if control.search(line)] for p in sources}
    assert not {path: lines for path, lines in bad.items() if lines}


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_makes_its_figures_through_viz(name):
    """Figures come from cdlib.book.viz (viz.figure, viz.stacked_figure, viz.accuracy_vs_compute_figure), which draws
    them at the book's column width with text as large as the caption; a chapter's own plt.subplots would not."""
    source = (PROJECT_ROOT / "book" / f"{name}.md").read_text(encoding="utf-8")
    assert not re.findall(r"plt\.(?:subplots|figure)\(", source)


#: the longest a visible code cell may be: a reader sees which cdlib call makes a figure or a table
MAX_VISIBLE_LINES = 15
HIDDEN = {"remove-cell", "remove-input"}


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_shows_most_of_its_code_in_short_cells(name):
    """Like a lecture: at least half of a chapter's code cells are visible, and each visible one is short; long
    computations belong in cdlib functions with docstrings and tests, which the chapter calls."""
    notebook = jupytext.read(PROJECT_ROOT / "book" / f"{name}.md")
    code = [c for c in notebook.cells if c.cell_type == "code"]
    visible = [c for c in code if not HIDDEN & set(c.metadata.get("tags", []))]
    assert 2 * len(visible) >= len(code), f"{name}: {len(visible)} of {len(code)} code cells visible"
    long = {c.source.splitlines()[0]: len(c.source.splitlines()) for c in visible
            if len(c.source.splitlines()) > MAX_VISIBLE_LINES}
    assert not long, f"{name}: visible cells over {MAX_VISIBLE_LINES} lines: {long}"
