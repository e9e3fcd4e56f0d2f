"""Several folds of a real data set: run the benchmark on each, report mean ± std over them.

UCF101 and HMDB51 come with three official train/test splits ("folds"), and
results on them are reported as the mean over the three. A data source whose fold
is ``all`` (``--data ucf101:<root>:all``) stands for one run per fold whose split
files exist (:func:`cdlib.data.sources.fold_sources`); :func:`run_folds` runs the
benchmark on each and :func:`aggregate` reduces every numeric entry of the blocks
in :data:`AGGREGATED` to

    mean = (1/n) Σ_i x_i,   std = sqrt( Σ_i (x_i − mean)² / (n − 1) )   (sample std; None for n < 2),

over the n runs where the entry has a value (an operating point that no run
reaches counts as missing, not as zero). ``n`` is reported beside each.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Sequence

import pandas as pd

from cdlib.data.sources import LAYOUTS, fold_sources, parse_source
from cdlib.experiment.config import Config
from cdlib.runtime.progress import log

#: the blocks of a benchmark result that are aggregated (those a result lacks are left out)
AGGREGATED = ("summary", "upper_bound", "confidence_auroc", "confidence_auprc")


def fold_configs(cfg: Config) -> list[Config]:
    """One config per fold that ``cfg.data.source`` stands for (just ``[cfg]`` unless its fold is ``all``)."""
    sources = fold_sources(cfg.data.source)
    return [cfg] if sources == [cfg.data.source] else [cfg.replace(**{"data.source": s}) for s in sources]


def source_fold(source: str) -> int | str | None:
    """The fold ``source`` names (1 where a folded layout names none; None for data without folds)."""
    if source == "synthetic":
        return None
    kind, kwargs = parse_source(source)
    return kwargs.get("fold", 1) if LAYOUTS[kind].folded else None


def fold_of(result: dict) -> int | None:
    """The fold a benchmark result was computed on (None for a data set without folds)."""
    return source_fold(result["config"]["data"]["source"])


def _stats(values: list) -> dict:
    present = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    n = len(present)
    mean = sum(present) / n if n else None
    std = math.sqrt(sum((v - mean) ** 2 for v in present) / (n - 1)) if n >= 2 else None
    return {"mean": mean, "std": std, "n": n}


def spread_text(values: Sequence[float], spec: str) -> str:
    """``values`` (one per run: seed or fold) as the text a chapter's prose cites, each number formatted by
    ``spec`` (a :func:`format` spec such as ``".3f"`` or ``".1%"``): the value alone for one run, else
    ``"mean ± std"`` with the sample standard deviation ``√(Σ (v − v̄)² / (n − 1))`` (the same statistics as
    :func:`aggregate`); runs without a value (None, NaN) are left out and counted, ``"(k of n runs)"``, and "n/a"
    stands for none."""
    values = list(values)
    stats = _stats(values)
    if stats["n"] == 0:
        return "n/a"
    text = format(stats["mean"], spec)
    if stats["n"] > 1:
        text += f" ± {format(stats['std'], spec.lstrip('+'))}"
    return text if stats["n"] == len(values) else f"{text} ({stats['n']} of {len(values)} runs)"


def cited_texts(numbers_of: Callable[[Sequence[dict]], dict], results: Sequence[dict], cited: dict[str, str]
                ) -> dict[str, str]:
    """The numbers a chapter's prose cites, with their spread over runs: for each ``name`` of ``cited`` (with its
    :func:`format` spec), ``<name>_text`` = :func:`spread_text` of ``numbers_of([run])[name]`` over the runs of
    ``results`` (seeds or folds), each run taken alone (its own choices: the method validation chose on it)."""
    per_run = [numbers_of([result]) for result in results]
    return spread_texts(per_run, {re.escape(name): spec for name, spec in cited.items()})


def spread_texts(per_run: Sequence[dict], specs: dict[str, str]) -> dict[str, str]:
    """``<name>_text`` (:func:`spread_text`) of every number that ``per_run`` (one dict of numbers per run, the same
    names in each) holds under a name that a pattern of ``specs`` matches (``re.fullmatch``; the first pattern that
    matches gives the :func:`format` spec). A name a run lacks, or holds as None, counts as no value on that run, and a
    name with no value on any run is "n/a"."""
    names = list(dict.fromkeys(name for numbers in per_run for name, value in numbers.items()
                               if value is None or _is_number(value)))
    out = {}
    for name in names:
        spec = next((spec for pattern, spec in specs.items() if re.fullmatch(pattern, name)), None)
        if spec is not None:
            out[f"{name}_text"] = spread_text([numbers.get(name) for numbers in per_run], spec)
    return out


def spread_table(frames: Sequence[pd.DataFrame], by: str | Sequence[str], spec: str = ".3f") -> pd.DataFrame:
    """One table of runs' tables (one DataFrame per seed or fold, the same rows and columns): grouped by ``by`` (column
    or index names) in first-seen order, each numeric cell the :func:`spread_text` of its values over the runs (the
    value alone for one run, ``"mean ± std"`` over several), formatted by ``spec``."""
    keys = [by] if isinstance(by, str) else list(by)
    stacked = pd.concat([frame.reset_index() if set(keys) & set(frame.index.names) else frame for frame in frames])
    numeric = [c for c in stacked.columns if c not in keys and pd.api.types.is_numeric_dtype(stacked[c])]
    return stacked.groupby(keys, sort=False)[numeric].agg(lambda column: spread_text(column.tolist(), spec))


def by_seed(frame: pd.DataFrame) -> list[pd.DataFrame]:
    """The rows of ``frame`` (with a ``seed`` column) cut into one frame per seed, in first-seen order: the runs that
    :func:`spread_texts` and :func:`spread_table` spread."""
    return [frame[frame.seed == seed] for seed in dict.fromkeys(frame.seed)]


def mean_table(frames: Sequence[pd.DataFrame], by: str | Sequence[str]) -> pd.DataFrame:
    """The mean over runs of runs' tables (one DataFrame per seed or fold), grouped by ``by`` (column or index
    names) in first-seen order: the numbers :func:`spread_table` shows with their spread, for verdicts and sums."""
    return pd.concat(frames).groupby(by, sort=False).mean(numeric_only=True)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _reduce(blocks: list) -> dict:
    """Mean, std and n of every numeric leaf of the dicts ``blocks`` (one per run), keeping their nesting."""
    keys = list(dict.fromkeys(k for block in blocks if isinstance(block, dict) for k in block))
    out = {}
    for key in keys:
        values = [block.get(key) if isinstance(block, dict) else None for block in blocks]
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, dict) for v in present):
            out[key] = _reduce(values)
        elif all(_is_number(v) for v in present):  # also when no run has a value
            out[key] = _stats(values)
    return out


def aggregate(results: Sequence[dict], source: str | None = None) -> dict:
    """Mean ± std over runs (folds, and seeds where there are several) of benchmark results.

    Returns ``{"source", "runs": [{"fold", "seed"}], "aggregate": {block: {key: {"mean", "std", "n"}}},
    "data": {"skipped": [...]}, "results": [...]}``; ``data.skipped`` lists every
    video any run skipped, once.
    """
    if not results:
        raise ValueError("aggregate needs at least one benchmark result")
    skipped, seen = [], set()
    for result in results:
        for item in result.get("data", {}).get("skipped", []):
            if (item["path"], item["reason"]) not in seen:
                seen.add((item["path"], item["reason"]))
                skipped.append(item)
    return {
        "source": source if source is not None else results[0]["config"]["data"]["source"],
        "runs": [{"fold": fold_of(r), "seed": r["seed"]} for r in results],
        "aggregate": {block: _reduce([r.get(block) for r in results]) for block in AGGREGATED
                      if any(block in r for r in results)},
        "data": {"skipped": skipped},
        "results": list(results),
    }


def run_folds(cfg: Config, store=None, recompute: bool = False, timing: bool = True) -> dict:
    """The benchmark on every fold ``cfg.data.source`` stands for, and their :func:`aggregate`."""
    from cdlib.experiment.bench import run_benchmark

    configs = fold_configs(cfg)
    results = []
    for i, fold_cfg in enumerate(configs, 1):
        log(f"fold run {i}/{len(configs)}: {fold_cfg.data.source}")
        results.append(run_benchmark(fold_cfg, store, recompute=recompute, timing=timing))
    return aggregate(results, source=cfg.data.source)


def _run_label(run: dict, runs: list[dict]) -> str:
    parts = []
    if run["fold"] is not None:
        parts.append(f"fold {run['fold']}")
    if len({r["seed"] for r in runs}) > 1 or not parts:
        parts.append(f"seed {run['seed']}")
    return ", ".join(parts)


def _flatten(block: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in block.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and set(value) != {"mean", "std", "n"}:
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def fold_table(aggregated: dict, block: str = "summary", keys: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per numeric entry of ``block`` (dotted for nested ones): its value in each run, then mean,
    std and n over the runs. ``keys`` keeps only those rows, in that order."""
    runs = aggregated["runs"]
    labels = [_run_label(run, runs) for run in runs]
    stats = _flatten(aggregated["aggregate"].get(block, {}))
    rows = {}
    for name, stat in stats.items():
        values = []
        for result in aggregated["results"]:
            value = result.get(block, {})
            for part in name.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            values.append(value)
        rows[name] = [*values, stat["mean"], stat["std"], stat["n"]]
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=[*labels, "mean", "std", "n"])
    if keys is not None:
        frame = frame.loc[[k for k in keys if k in frame.index]]
    return frame


def format_folds(aggregated: dict) -> str:
    """The per-run values and mean ± std of the summary, as text for the command line."""
    frame = fold_table(aggregated)
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.float_format", "{:.4f}".format):
        return f"{aggregated['source']}: {len(aggregated['runs'])} runs\n{frame.to_string()}"


def mean_std_text(stat: dict, fmt: str = "{:.3f}") -> str:
    """``"0.917 ± 0.042"`` from an entry of :func:`aggregate` (the std only where there are two runs or more;
    ``"none"`` when no run has a value)."""
    if stat["mean"] is None:
        return "none"
    text = fmt.format(stat["mean"])
    if stat["std"] is not None:
        text += " ± " + fmt.replace("+", "").format(stat["std"])  # a sign belongs to the mean only
    return text
