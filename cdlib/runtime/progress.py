"""Progress bars (tqdm) on stderr.

On a terminal they are tqdm's bars. Where stderr is not a terminal (a log file,
CI, ``torchrun ... > log``) each bar is one line when it finishes instead
(:class:`LineProgress`): an epoch, a phase, with its count, time and last
postfix, in place of the carriage-return updates that pile up in a file (one
CI-profile benchmark run wrote 0.6 MB of them). Set ``CDLIB_PROGRESS=0`` to silence them: the book's chapters do, so that an
executed notebook holds the same outputs whether its models were trained or
loaded from the artifact store (``pytest --nbval`` compares them). Under
torchrun only process 0 (``RANK=0``) shows them. Without tqdm installed (a bare
GPU machine running ``python -m cdlib selftest``) the bars are silent and the
status lines remain.
"""

from __future__ import annotations

import os
import sys
import time

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


class LineProgress:
    """A bar for a log file: counts like tqdm (iterating, ``update``, ``set_postfix``) and, when the iteration
    ends or the bar is closed, prints one line ``<desc>: <n>/<total> in <s> s, <postfix>`` on stderr.

    tqdm has no such mode (with ``mininterval`` it still writes carriage-return updates), hence this class.
    """

    def __init__(self, iterable=None, *, desc: str = "", total: int | None = None):
        self.iterable, self.desc, self.n, self.postfix = iterable, desc, 0, ""
        self.total = total if total is not None or not hasattr(iterable, "__len__") else len(iterable)
        self.start, self.closed = time.perf_counter(), False

    def __iter__(self):
        try:
            for item in self.iterable:
                self.n += 1  # counted when handed out: a loop that stops early still reports what it took
                yield item
        finally:
            self.close()

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in items.items())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        line = f"{self.desc}: {count} in {time.perf_counter() - self.start:.1f} s"
        print(f"{line}, {self.postfix}" if self.postfix else line, file=sys.stderr, flush=True)


def progress_enabled() -> bool:
    if os.environ.get("RANK", "0") != "0":  # torchrun: only process 0 reports
        return False
    return os.environ.get("CDLIB_PROGRESS", "1").strip().lower() not in ("0", "false", "no", "off")


def progress_bar(iterable=None, *, desc: str = "", total: int | None = None, disable: bool = False, **kwargs):
    """A tqdm bar on stderr, off when ``disable`` or ``CDLIB_PROGRESS=0``; one :class:`LineProgress` line
    when it finishes where stderr is not a terminal."""
    if not (disable or not progress_enabled() or sys.stderr.isatty()):
        return LineProgress(iterable, desc=desc, total=total)
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
