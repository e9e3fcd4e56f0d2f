"""Executing the book's chapters with papermill and staging them for jupyter-book.

Chapters are MyST-markdown notebooks (jupytext) under ``book/``. ``python -m cdlib
book execute`` converts each to ``.ipynb`` and executes it with papermill into
``_build/executed/book/``; ``python -m cdlib book stage`` copies the book's
configuration, table of contents and static files beside them, so that
jupyter-book builds the HTML from the executed notebooks without executing
anything again (``execute_notebooks: "off"`` in ``_config.yml``).
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import sys
import time
from pathlib import Path

from cdlib.runtime.artifacts import project_root

STATIC_SUFFIXES = (".bib", ".png", ".svg", ".css")

#: the values every chapter's ``parameters`` cell starts with (with ``data``, whose default is each chapter's
#: own); only other values are injected, so that a chapter executed with its defaults shows one parameters
#: cell, not two (see cdlib.book.chapter)
CHAPTER_DEFAULTS = {"profile": "ci", "seed": 0, "seeds": [], "overrides": []}


def _root() -> Path:
    root = project_root()
    if root is None:
        raise SystemExit("the book commands run from a source checkout of cdlib (with book/ and _toc.yml)")
    return root


def is_notebook(path: Path) -> bool:
    """True for a jupytext MyST notebook (its front matter declares a kernelspec)."""
    head = path.read_text(encoding="utf-8")[:2000]
    return head.startswith("---") and "kernelspec:" in head.split("\n---", 1)[0]


def chapter_parameters(name: str) -> dict:
    """The defaults in the ``parameters`` cell of ``book/<name>.md`` (``{}`` without a source checkout)."""
    from cdlib.runtime.artifacts import project_root

    root = project_root()
    path = root / "book" / f"{name}.md" if root is not None else None
    if path is None or not path.is_file():
        return {}
    import jupytext

    for cell in jupytext.read(path).cells:
        if "parameters" in cell.metadata.get("tags", []):
            return {node.targets[0].id: ast.literal_eval(node.value)
                    for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)}
    return {}


def partial_path(output: Path) -> Path:
    """Where a chapter executes before it replaces ``output``, and where it stays if it fails:
    ``<output's folder>/partial/<name>.ipynb`` (outside the table of contents, so the book never renders it)."""
    return output.parent / "partial" / output.name


def execute_chapter(source: Path, output: Path, parameters: dict, cwd: Path) -> float:
    """Execute one text notebook with papermill into ``output``; return the seconds it took.

    The notebook executes into :func:`partial_path` and replaces ``output`` only once every cell has
    run, so a failed rerun keeps the last executed chapter and leaves its own notebook, error shown, at
    the partial path (papermill's :class:`~papermill.exceptions.PapermillExecutionError` propagates).
    """
    import jupytext
    import papermill

    notebook = jupytext.read(source)
    partial = partial_path(output)
    partial.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            notebook,
            str(partial),
            parameters=parameters,
            kernel_name="python3",
            cwd=str(cwd),
            progress_bar=False,
        )
    except Exception:
        print(f"  failed: the executed notebook, with its error, is {partial}; {output} is unchanged",
              file=sys.stderr, flush=True)
        raise
    os.replace(partial, output)
    return time.perf_counter() - start


def stage(executed: Path) -> None:
    """Copy ``_config.yml``, ``_toc.yml`` and the static files of ``book/`` beside the executed chapters."""
    root = _root()
    (executed / "book").mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / name, executed / name)
    for path in (root / "book").iterdir():
        if path.suffix in STATIC_SUFFIXES or (path.suffix == ".md" and not is_notebook(path)):
            shutil.copy2(path, executed / "book" / path.name)


def cmd_execute(args: argparse.Namespace) -> int:
    root = _root()
    out = Path(args.out).resolve()
    # Notebooks hold the same outputs whether models were trained or loaded.
    os.environ["CDLIB_PROGRESS"] = "0"
    given = {"profile": args.profile, "seed": args.seed, "seeds": list(args.seeds), "overrides": list(args.overrides)}
    parameters = {k: v for k, v in given.items() if v != CHAPTER_DEFAULTS[k]}
    if args.data is not None:
        parameters["data"] = args.data
    for name in args.chapters:
        source = root / "book" / f"{name}.md"
        if not source.is_file():
            print(f"error: no chapter {source}", file=sys.stderr)
            return 2
        if not is_notebook(source):
            continue
        target = out / "book" / f"{name}.ipynb"
        print(f"executing {source.relative_to(root)} -> {target}", file=sys.stderr, flush=True)
        seconds = execute_chapter(source, target, parameters, cwd=root)
        print(f"  done in {seconds:.0f} s", file=sys.stderr, flush=True)
    stage(out)
    return 0


def cmd_stage(args: argparse.Namespace) -> int:
    stage(Path(args.executed).resolve())
    return 0


def add_book_commands(subparsers) -> None:
    book = subparsers.add_parser("book", help="execute the chapters with papermill and stage them for jupyter-book")
    commands = book.add_subparsers(dest="book_command", required=True, metavar="STEP")
    p = commands.add_parser("execute", help="execute chapters (book/<name>.md) into OUT/book/<name>.ipynb")
    p.add_argument("chapters", nargs="+", metavar="NAME")
    p.add_argument("--profile", default="ci", help="config profile (default: ci)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=[], metavar="SEED",
                   help="run every chapter on these seeds, mean ± std over them (default: the profile's)")
    p.add_argument("--data", default=None, metavar="SOURCE",
                   help="data source for every chapter, as --data of bench takes it (default: each chapter's own)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every chapter, as --set of bench takes it (repeatable)")
    p.add_argument("--out", default="_build/executed")
    p.set_defaults(func=cmd_execute)
    p = commands.add_parser("stage", help="copy config, toc and static files beside the executed chapters")
    p.add_argument("--executed", default="_build/executed")
    p.set_defaults(func=cmd_stage)
    from cdlib.book.browser import cmd_check_html

    p = commands.add_parser("check-html", help="open every built page in headless Chromium: rendered math, "
                                               "loaded images, no network requests (cdlib.book.browser)")
    p.add_argument("--html", default="_build/html")
    p.add_argument("--screenshots", default="_build/screenshots")
    p.add_argument("--require", action="store_true", help="fail, rather than skip, without chromium")
    p.set_defaults(func=cmd_check_html)
