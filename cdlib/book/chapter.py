"""The shared setup of the book's chapters: parameters → configs, threads, figures, and the rerun banner.

Every chapter's ``parameters`` cell starts with the same general parameters, then
its own knobs::

    profile = "ci"       # a profile of cdlib.experiment.config.PROFILES ("full" runs its three seeds)
    seed = 0
    seeds = []           # several seeds, e.g. [0, 1, 2], instead of the profile's (``seed``, or full's three)
    data = "synthetic"   # a data source exactly as --data takes it (cdlib.data.sources)
    overrides = []       # "key=value" strings exactly as --set takes them

(the chapters' own comments avoid brackets, quotes and ``=``, which papermill's parser of the cell cannot
read: it would not see the parameter), and its setup cell calls :func:`setup_chapter`, which

- builds the config(s) with :func:`cdlib.experiment.config.make_config`, the command line's
  path, so a bad key or value stops the chapter with the CLI's error before any
  work;
- refuses a data source the user named whose folders or split files are missing
  (:func:`cdlib.data.sources.check_source`), and expands a fold ``all`` into one
  config per fold;
- resolves the runtime and sets torch's threads and determinism from it
  (:func:`cdlib.runtime.device.configure_backend`), the figure style (:func:`cdlib.book.viz.setup`)
  and deterministic SVG figures;
- returns a :class:`Chapter` whose :meth:`Chapter.banner` says what differs from the
  chapter's defaults (read from its own parameters cell), or nothing for a default run. A run
  that differs only in :data:`SCALE_PARAMETERS` (``make book PROFILE=full``, the published
  book, or ``SEEDS="0 1 2"``) is the chapter itself at another scale: its banner names the
  profile and seeds in one line instead of calling the page a rerun.

papermill passes ``overrides`` as a YAML list (``-y 'overrides: [student=student_micro]'``)
or as one string (``-p overrides "student=student_micro data.informative_fraction=0.2"``,
split like a shell line); :func:`as_overrides` takes both.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from typing import Any

from cdlib.experiment.config import Config, full_profile_seeds, make_config
from cdlib.runtime.errors import ConfigError

__all__ = ["Chapter", "as_overrides", "setup_chapter"]


def as_overrides(value: Any) -> list[str]:
    """``overrides`` as papermill may pass it → a list of ``"key=value"`` strings.

    A list or tuple is taken as is; a string is a YAML/JSON list when it starts with
    ``[`` (``'["a=1", "b=2"]'``), else split like a shell command line
    (``"a=1 b='x y'"``); ``None`` and ``""`` are no overrides.
    """
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import yaml

            value = yaml.safe_load(text)
        else:
            return shlex.split(text)
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"overrides: expected a list of 'key=value' strings, got {value!r}")
    return list(value)


def _seeds(value: Any) -> tuple[int, ...]:
    """``seeds`` as papermill may pass it (a list, one integer, or one string of seeds split by spaces or commas)
    → a tuple of distinct integers in the order given."""
    if isinstance(value, int):  # papermill's -p seeds 1
        value = [value]
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    try:
        seeds = tuple(dict.fromkeys(int(s) for s in value or ()))
    except (TypeError, ValueError):
        raise ConfigError(f"seeds: expected a list of integers, got {value!r}") from None
    if any(s < 0 for s in seeds):
        raise ConfigError(f"seeds: seeds are non-negative integers, got {list(seeds)}")
    return seeds


#: The parameters that set a run's scale (how much data and training, how many seeds), which the book's own builds
#: choose: a page that differs from the defaults only in them is the published chapter at that scale, not a rerun.
SCALE_PARAMETERS = ("profile", "seeds")


@dataclasses.dataclass
class Chapter:
    """What a chapter's setup cell made: its configs, the data they use, and what differs from the defaults."""

    name: str
    configs: list[Config]  # one per (fold, seed), folds outer
    sources: list[str]  # the data source of each fold (one entry unless the fold is "all")
    seeds: tuple[int, ...]
    data_description: str  # the data in words, for prose and captions
    fallback: bool  # the data is the fallback for a missing shipped set
    differences: list[str]  # one Markdown line per parameter that differs from the chapter's default
    scale_only: bool = False  # every difference is one of SCALE_PARAMETERS

    @property
    def config(self) -> Config:
        """The first config (first fold, first seed)."""
        return self.configs[0]

    def banner_text(self) -> str | None:
        """Markdown naming every setting that differs from the chapter's defaults; None when none does. With
        only :data:`SCALE_PARAMETERS` different, one line naming the profile and the seeds."""
        if not self.differences:
            return None
        if self.scale_only:
            if len(self.seeds) == 1:
                return f"**Built on the `{self.config.profile}` profile, seed {self.seeds[0]}.**"
            seeds = ", ".join(map(str, self.seeds[:-1])) + f" and {self.seeds[-1]}"
            return (f"**Built on the `{self.config.profile}` profile, seeds {seeds}:** every number that depends "
                    "on the seed is a mean ± std over them, and every curve has a ± std band.")
        return ("**This page is a rerun, not the published chapter.** It was executed with settings that "
                "differ from the chapter's defaults, and every number and figure below comes from them:\n\n"
                + "\n".join(f"- {line}" for line in self.differences))

    def banner(self):
        """The banner as IPython Markdown (shown by a chapter's first visible cell), or None."""
        text = self.banner_text()
        if text is None:
            return None
        from IPython.display import Markdown

        return Markdown(text)


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively, so that papermill's YAML lists compare equal to tuple defaults."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _code(value: Any) -> str:
    return f"`{json.dumps(_plain(value))}`" if not isinstance(value, str) else f"`{value}`"


def _differences(defaults: dict, given: dict, data_line: str | None) -> list[tuple[str, str]]:
    """(parameter, Markdown line) of every parameter in ``given`` that differs from ``defaults``; ``data_line``
    under the key ``data``."""
    lines = []
    for key, value in given.items():
        default = defaults.get(key, dataclasses.MISSING)
        if key == "overrides":
            if as_overrides(value) != as_overrides(default if default is not dataclasses.MISSING else []):
                lines += [(key, f"override `{item}`") for item in as_overrides(value)]
        elif key == "data":
            continue
        elif default is dataclasses.MISSING:
            lines.append((key, f"{key} = {_code(value)}"))
        elif _plain(value) != _plain(default):
            lines.append((key, f"{key} = {_code(value)} (default {_code(default)})"))
    if data_line:
        lines.append(("data", data_line))
    return lines


def _resolve_data(data: str, data_root: str | None, fold, base: Config):
    """The :class:`~cdlib.data.sources.DefaultSource` of the chapter's data parameters, and whether the user
    named it (a named source is checked and refused if unusable; an unnamed one may fall back)."""
    from cdlib.data.sources import DefaultSource, describe_source

    if data_root and data:
        raise ConfigError(f"data and data_root: give one, not both (data={data!r}, data_root={data_root!r})")
    if data_root:
        source = f"ucf101:{data_root}:{fold if fold is not None else 1}"
        return DefaultSource(source, describe_source(source), False), True
    if data == "":
        from cdlib.data.export import default_real_source  # decodes videos: imported only where needed

        return default_real_source(fold if fold is not None else 1, base), False
    return DefaultSource(data, describe_source(data), False), True


def setup_chapter(name: str, profile: str = "ci", seed: int = 0, data: str = "synthetic", overrides: Any = (),
                  *, seeds: Any = (), data_root: str | None = None, fold: Any = None, figures: bool = True,
                  **knobs) -> Chapter:
    """Configs, threads and figures of chapter ``name`` (``book/<name>.md``) from its parameters.

    ``data`` is a source as ``--data`` takes it; ``""`` means the shipped real set
    (or, only if it is missing, the fallback of :func:`cdlib.data.export.default_real_source`).
    ``data_root`` (a folder in the UCF101 layout) and ``fold`` (a fold number or
    ``"all"``) are the real-data chapter's shorthand for ``ucf101:<data_root>:<fold>``;
    ``fold`` also picks the fold of the shipped set. ``knobs`` are the chapter's own
    parameters: they only feed the banner. ``seeds`` (a list) runs the chapter on
    those seeds; empty, on the profile's: ``seed``, or with the ``full`` profile its
    three (:func:`cdlib.experiment.config.full_profile_seeds`).
    """
    from cdlib.book.execute import chapter_parameters
    from cdlib.data.sources import check_source, fold_sources

    overrides = as_overrides(overrides)
    base = make_config(profile, seed, overrides=overrides)  # a bad profile or override stops here
    chosen, named = _resolve_data(data, data_root, fold, base)
    make_config(profile, seed, chosen.source, overrides)  # a malformed source stops here
    if named:
        check_source(chosen.source)  # a named source is used or refused, never replaced
    sources = fold_sources(chosen.source)
    given_seeds = _seeds(seeds)
    seeds = given_seeds or (full_profile_seeds() if profile == "full" else (seed,))
    configs = [make_config(profile, s, one, overrides) for one in sources for s in seeds]

    given = {"profile": profile, "seed": seed, "seeds": list(given_seeds), "data": data, "overrides": overrides,
             **knobs}
    if data_root is not None:
        given["data_root"] = data_root
    if fold is not None:
        given["fold"] = fold
    defaults = chapter_parameters(name)
    data_line = None
    if chosen.fallback:
        data_line = (f"data: {chosen.description}, because {chosen.reason} (`{chosen.source}`); what the "
                     "text says about the default data does not apply to it")
    elif data != defaults.get("data"):
        default = f"`{defaults['data']}`" if defaults.get("data") else "the shipped real set"
        data_line = f"data: {chosen.description} (`{chosen.source}`; default {default})"
    differences = _differences(defaults, given, data_line)

    from cdlib.runtime.device import configure_backend

    configure_backend(configs[0].resolved_runtime)
    if figures:
        _setup_figures(name)
    return Chapter(name=name, configs=configs, sources=sources, seeds=tuple(seeds),
                   data_description=chosen.description, fallback=chosen.fallback,
                   differences=[line for _, line in differences],
                   scale_only=all(key in SCALE_PARAMETERS for key, _ in differences))


def _setup_figures(name: str) -> None:
    """The book's figure style, and SVG figures without dates and with fixed ids (deterministic outputs)."""
    import matplotlib.pyplot as plt

    from cdlib.book import viz

    try:
        from IPython import get_ipython
    except ImportError:  # outside IPython there is no inline backend to configure
        get_ipython = lambda: None  # noqa: E731
    shell = get_ipython()
    if shell is not None:
        shell.run_line_magic("config", 'InlineBackend.figure_formats = ["svg"]')
        shell.run_line_magic("config", 'InlineBackend.print_figure_kwargs = {"bbox_inches": "tight", "metadata": {"Date": None}}')
    viz.setup()
    plt.rcParams.update({"svg.hashsalt": f"cdlib-{name.replace('_', '-')}"})
