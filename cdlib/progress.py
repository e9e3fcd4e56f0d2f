"""Progress bars (tqdm) on stderr.

Set ``CDLIB_PROGRESS=0`` to silence them: the book's chapters do, so that an
executed notebook holds the same outputs whether its models were trained or
loaded from the artifact store (``pytest --nbval`` compares them). Under
torchrun only process 0 (``RANK=0``) shows them. Without tqdm installed (a bare
GPU machine running ``python -m cdlib selftest``) the bars are silent and the
status lines remain.
"""

from __future__ import annotations

import os
import sys

try:
    # The text bar, not tqdm.auto: in a notebook that picks the widget bar, which needs ipywidgets and
    # warns without it; these bars are plain text on stderr everywhere.
    from tqdm import tqdm
except ImportError:  # the self-check runs with torch, torchvision, numpy and pandas only
    class tqdm:  # noqa: N801 - stands in for tqdm.tqdm: iterates, shows nothing
        def __init__(self, iterable=None, *args, **kwargs):
            self.iterable = iterable

        def __iter__(self):
            return iter(self.iterable)

        def set_postfix(self, *args, **kwargs):
            pass

        def update(self, n=1):
            pass

        def close(self):
            pass


def progress_enabled() -> bool:
    if os.environ.get("RANK", "0") != "0":  # torchrun: only process 0 reports
        return False
    return os.environ.get("CDLIB_PROGRESS", "1").strip().lower() not in ("0", "false", "no", "off")


def progress_bar(iterable=None, *, desc: str = "", total: int | None = None, disable: bool = False, **kwargs):
    """A tqdm bar on stderr, off when ``disable`` or ``CDLIB_PROGRESS=0``."""
    return tqdm(
        iterable,
        desc=desc,
        total=total,
        disable=disable or not progress_enabled(),
        file=sys.stderr,
        dynamic_ncols=True,
        leave=False,
        **kwargs,
    )


def log(message: str) -> None:
    """A status line on stderr (silenced with the progress bars)."""
    if progress_enabled():
        print(message, file=sys.stderr, flush=True)
