"""Plotting helpers shared by the book's chapters (matplotlib + seaborn).

Each function draws on a given ``ax`` (or makes a figure) and returns it, so a
chapter composes panels and glues the figure. Colours and labels of the
policies are fixed here so that every figure of the book uses the same ones.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cdlib.experiment.evaluation import SIGNAL_LABELS  # the signals' names, shared with the tables
from cdlib.method.selection import pareto_front

#: display name and colour of each policy, in legend order; a policy not listed here (a newly registered
#: one) is drawn too, after these, under its own name in the next colour of the cycle (:func:`policy_order`)
POLICY_STYLE = {
    "oracle": ("oracle (uses labels)", "#4d4d4d"),
    "cd_gate_ctx": ("cd_gate_ctx (context student)", "#8b0000"),
    "cd_gate": ("cd_gate (per-clip student)", "#d62728"),
    "cd_gate_da": ("cd_gate_da (distance-aware)", "#e377c2"),
    "cd_topk_ctx": ("cd_topk_ctx (context student)", "#ffbb78"),
    "cd_topk": ("cd_topk", "#ff7f0e"),
    "frame_exit": ("frame_exit (teacher only)", "#bcbd22"),
    "sampler_maxprob": ("sampler_maxprob (CE, action clips)", "#1f77b4"),
    "sampler_ce_all": ("sampler_ce_all (CE, all clips)", "#aec7e8"),
    "sampler_kd": ("sampler_kd (KD student)", "#17becf"),
    "uniform_k": ("uniform_k", "#2ca02c"),
    "random_k": ("random_k", "#8c564b"),
    "dense_student": ("dense student", "#9467bd"),
    "dense_teacher": ("dense teacher", "#000000"),
}



#: colour of each confidence signal, the same in every figure (seaborn's palette, in SIGNAL_LABELS' order; the
#: teacher's softmax skips the palette's grey, which is the chance line's)
SIGNAL_COLOURS = dict(zip(SIGNAL_LABELS, ("C0", "C1", "C2", "C3", "C4", "C5", "C6", "C8")))


def policy_order(present: Sequence[str]) -> list[str]:
    """The policies of ``present`` in legend order: those of :data:`POLICY_STYLE` first, then the others in
    the order given, so that no policy in a result is left out of a figure."""
    return [name for name in POLICY_STYLE if name in present] + [
        name for name in dict.fromkeys(present) if name not in POLICY_STYLE]


def _reference(name: str) -> bool:
    """Whether policy ``name`` reads the labels (a reference such as the oracle, drawn dashed); False for a
    name no longer registered."""
    from cdlib.method.gating import POLICIES

    return name in POLICIES and POLICIES[name].needs_label


#: the width of the book's text column, in CSS pixels, and the font size of its figure captions, measured in
#: headless Chromium (cdlib.book.browser) on a 1280-pixel-wide window (sphinx-book-theme 1.3; wider windows give
#: a wider column, where a figure keeps its size)
CONTENT_WIDTH_PX = 688
CAPTION_FONT_PX = 16
#: CSS pixels per inch: the chapters' figures are SVG (cdlib.book.chapter), which a browser shows at 96 px per inch
CSS_PX_PER_IN = 96
#: every figure's width in inches, the column's; only the height varies from figure to figure
FIGURE_WIDTH_IN = CONTENT_WIDTH_PX / CSS_PX_PER_IN
#: the font size, in points, of every text in a figure: the caption's, at 72 points per inch
FONT_PT = CAPTION_FONT_PX * 72 / CSS_PX_PER_IN
#: at most this many curves in one panel; more are drawn as muted context (:func:`plot_accuracy_vs_compute`)
MAX_CURVES = 6


def setup() -> None:
    """Book-wide matplotlib defaults: every text at :data:`FONT_PT`, figures :data:`FIGURE_WIDTH_IN` wide, so
    that a figure of :func:`figure`, shown at its natural size, fills the book's column with text as large as
    the caption under it (the theme shrinks a wider one to the column, ``img {max-width: 100%}``)."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    plt.rcParams.update({"figure.dpi": CSS_PX_PER_IN, "savefig.dpi": CSS_PX_PER_IN,
                         "figure.figsize": (FIGURE_WIDTH_IN, 4.0), "font.size": FONT_PT,
                         **{f"{key}size": FONT_PT for key in ("axes.title", "axes.label", "xtick.label",
                                                               "ytick.label", "legend.font", "legend.title_font",
                                                               "figure.title")}})


def figure(nrows: int = 1, ncols: int = 1, height: float = 4.0, **kwargs):
    """``plt.subplots`` at the book's column width (:data:`FIGURE_WIDTH_IN`), ``height`` inches tall, with
    constrained layout; ``kwargs`` go to ``plt.subplots`` (``sharey``, ``gridspec_kw``, ...)."""
    return plt.subplots(nrows, ncols, figsize=(FIGURE_WIDTH_IN, height), layout="constrained", **kwargs)


def stacked_figure(heights: Sequence[float]):
    """Panels stacked at the column's width, ``heights`` inches tall, each laid out on its own (a subfigure),
    so that one panel's long tick labels or legend do not narrow the others; returns ``(fig, axes)``."""
    fig = plt.figure(figsize=(FIGURE_WIDTH_IN, sum(heights)), layout="constrained")
    panels = fig.subfigures(len(heights), 1, height_ratios=list(heights))
    return fig, [panel.subplots() for panel in np.atleast_1d(panels)]


def legend_below(ax, ncols: int = 2, **kwargs):
    """The legend of ``ax`` under the axes, in ``ncols`` columns, so that it never takes width from the plot."""
    return ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=ncols, frameon=False, **kwargs)


def figure_legend(fig, ax, ncols: int = 2, **kwargs):
    """One legend for a figure of several panels, from the entries of ``ax``, under all of them."""
    return fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=ncols, frameon=False,
                      **kwargs)


def curves_frame(results: Sequence[dict]) -> pd.DataFrame:
    """Operating points of every policy of one or more benchmark results (one row per point and seed)."""
    rows = []
    for result in results:
        for name, points in result["policies"].items():
            for point in points:
                rows.append({"seed": result["seed"], "policy": name, **point, "knob": str(point["knob"])})
    return pd.DataFrame(rows)


#: colour of the policies drawn as muted context (:func:`plot_accuracy_vs_compute`)
MUTED = "#d0d0d0"


def _curve(part: pd.DataFrame, front_only: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cost, mean accuracy and its std over seeds of one policy's points, by cost (its Pareto front if
    ``front_only``)."""
    mean = part.groupby("knob", sort=False)[["gflops_per_video", "accuracy"]].mean()
    std = part.groupby("knob", sort=False)["accuracy"].std().fillna(0.0)
    points = [{"gflops_per_video": g, "accuracy": a, "knob": k} for k, g, a in
              zip(mean.index, mean.gflops_per_video, mean.accuracy)]
    points = pareto_front(points) if front_only else sorted(points, key=lambda p: p["gflops_per_video"])
    return (np.array([p["gflops_per_video"] for p in points]), np.array([p["accuracy"] for p in points]),
            np.array([std[p["knob"]] for p in points]))


def plot_accuracy_vs_compute(results: Sequence[dict], ax=None, policies: Sequence[str] | None = None,
                             front_only: bool = True, relative: bool = False, legend: bool = True,
                             mark_selected: Sequence[str] = (), muted: Sequence[str] = (),
                             emphasis: str | None = None):
    """Video accuracy against GFLOPs per video on test, one curve per policy, the dense teacher as a marked point.

    With several results (seeds), curves are the mean over seeds of each knob's
    point and a band shows ± one standard deviation of accuracy. ``front_only``
    draws only each policy's Pareto front on test (the best accuracy reachable
    at a cost, an envelope that looks at the test labels), which matters for the
    three-knob ``cd_gate``. For each policy in ``mark_selected``, a white-filled
    marker shows, per result, the point chosen on val to match the dense
    teacher: where a user would actually operate. ``muted`` policies are drawn
    thin and grey behind the others, as context under one legend entry;
    ``emphasis`` is drawn thicker. The legend goes under the axes
    (:func:`legend_below`).
    """
    if ax is None:
        _, ax = figure()
    frame = curves_frame(results)
    dense_gflops = frame.loc[frame.policy == "dense_teacher", "gflops_per_video"].mean()
    present = set(frame.policy)
    scale = 1 / dense_gflops if relative else 1.0
    context = [name for name in muted if name in present]
    for i, name in enumerate(context):
        x, y, _ = _curve(frame[frame.policy == name], front_only)
        ax.plot(x * scale, y, "-", lw=1, color=MUTED, zorder=1, label="other policies (grey)" if i == 0 else None)
    for name in policies or policy_order(list(frame.policy)):
        if name not in present or name in context:
            continue
        label, colour = POLICY_STYLE.get(name, (name, None))
        x, y, s = _curve(frame[frame.policy == name], front_only)
        x = x * scale
        if name in ("dense_teacher", "dense_student"):
            ax.errorbar(x, y, yerr=s if len(results) > 1 else None, fmt="*" if name == "dense_teacher" else "D",
                        ms=14 if name == "dense_teacher" else 8, color=colour, label=label, zorder=5)
            continue
        ax.plot(x, y, "--" if _reference(name) else "-", marker="o", ms=3, color=colour, label=label,
                lw=2.8 if name == emphasis else 1.6, zorder=4 if name == emphasis else 3)
        if len(results) > 1:
            # the emphasised band stands out; the others stay faint, or overlapping bands hide the lines
            ax.fill_between(x, y - s, y + s, color=colour, alpha=0.2 if name == emphasis else 0.07, linewidth=0)
        if name in mark_selected:
            _mark_matched(results, name, ax, colour, relative)
    ax.set_xlabel("compute per video (relative to the dense teacher)" if relative else "GFLOPs per video")
    ax.set_ylabel("video accuracy (test)")
    ax.set_ylim(0, 1.02)
    if legend:
        legend_below(ax)
    return ax


#: the panels of the book's accuracy-vs-compute figures (:func:`accuracy_vs_compute_figure`): title, the
#: policies drawn in colour beside the method (the dense teacher is always drawn), and whether every other
#: policy of the result is drawn as muted context
CURVE_PANELS = {
    "variants": ("the method's variants against the oracle",
                 ("oracle", "cd_gate_ctx", "cd_gate", "cd_gate_da", "cd_topk_ctx", "cd_topk"), False),
    "baselines": ("the method against the baselines",
                  ("frame_exit", "sampler_maxprob", "uniform_k", "random_k", "dense_student"), True),
    "headline": ("the method, the oracle and the strongest baselines",
                 ("oracle", "frame_exit", "sampler_maxprob", "uniform_k", "dense_student"), True),
}


def accuracy_vs_compute_figure(results: Sequence[dict], method: str, panels: Sequence[str] = ("variants", "baselines"),
                               xscale: str = "log", title: str | None = None, panel_height: float = 5.4):
    """The book's accuracy-vs-compute figure: one panel per entry of ``panels`` (keys of :data:`CURVE_PANELS`),
    stacked, each with at most :data:`MAX_CURVES` coloured curves, the ``method`` policy emphasised and its
    point matched on val marked, compute relative to the dense teacher on an ``xscale`` axis."""
    fig, axes = stacked_figure([panel_height] * len(panels))
    present = {name for result in results for name in result["policies"]}
    for ax, key in zip(axes, panels):
        panel_title, shown, with_context = CURVE_PANELS[key]
        shown = list(dict.fromkeys((method, *shown, "dense_teacher")))
        plot_accuracy_vs_compute(results, ax=ax, relative=True, policies=policy_order(shown), emphasis=method,
                                 mark_selected=(method,),
                                 muted=sorted(present - set(shown)) if with_context else ())
        ax.set_xscale(xscale)
        ax.set_title(panel_title)
    if title is not None:
        fig.suptitle(title)
    return fig


def _mark_matched(results: Sequence[dict], name: str, ax, colour, relative: bool) -> None:
    """The point of policy ``name`` chosen on val to match the dense teacher, one marker per result."""
    from cdlib.experiment.tables import selected_point

    for i, result in enumerate(results):
        chosen = selected_point(result, name, "matched")
        if chosen is None:
            continue
        dense = result["summary"]["dense_teacher_gflops_per_video"]
        x = chosen["gflops_per_video"] / dense if relative else chosen["gflops_per_video"]
        ax.plot(x, chosen["accuracy"], "o", ms=9, mfc="white", mec=colour, mew=2, zorder=6,
                label=f"{name}: point matched on val" if i == 0 else None)


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], aurocs: dict[str, float], ax=None):
    """ROC curves (false-positive rate, true-positive rate) of confidence signals, AUROC in the legend."""
    if ax is None:
        _, ax = figure(height=5)
    for name, (fpr, tpr) in curves.items():
        ax.plot(fpr, tpr, color=SIGNAL_COLOURS.get(name), label=f"{SIGNAL_LABELS.get(name, name)} ({aurocs[name]:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance (0.500)")
    ax.set_xlabel("false-positive rate (teacher wrong, signal high)")
    ax.set_ylabel("true-positive rate\n(teacher right, signal high)")
    legend_below(ax, ncols=1, title="signal (AUROC)")
    return ax


def plot_history(histories: dict[str, list[dict]], key: str, ax=None, label: str | None = None,
                 legend: bool = True):
    """One training curve per model: ``key`` of the per-epoch history against the epoch."""
    if ax is None:
        _, ax = figure()
    for name, history in histories.items():
        frame = pd.DataFrame(history)
        if key in frame:
            ax.plot(frame["epoch"], frame[key], marker="o", ms=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(label or key)
    if legend:
        ax.legend()
    return ax


def plot_sweep(table: pd.DataFrame, key: str, column: str, ax=None, policies: Sequence[str] | None = None,
               xlabel: str | None = None, ylabel: str | None = None):
    """One line per policy: ``column`` of :func:`cdlib.experiment.tables.sweep_table` against the swept ``key``.

    With several seeds, lines are means and bars ± one standard deviation.
    """
    if ax is None:
        _, ax = figure()
    for name in policies or policy_order(list(table.policy)):
        part = table[table.policy == name]
        if part.empty:
            continue
        label, colour = POLICY_STYLE.get(name, (name, None))
        stats = part.groupby(key)[column].agg(["mean", "std"]).reset_index()
        has_std = stats["std"].notna().any()
        ax.errorbar(stats[key], stats["mean"], yerr=stats["std"] if has_std else None, marker="o", ms=4,
                    color=colour, label=label, ls="--" if _reference(name) else "-", capsize=2)
    ax.set_xlabel(xlabel or key)
    ax.set_ylabel(ylabel or column)
    return ax


#: display names of the toy's confidence signals (:data:`cdlib.experiment.toy.TOY_SIGNALS`)
TOY_SIGNAL_LABELS = {
    "teacher_maxprob": "teacher max-softmax (temperature-scaled)",
    "student_maxprob": "student max-softmax",
    "s": "distilled score s",
    "s_da": "distance-aware score s_da",
}


def plot_signal_rays(rays: pd.DataFrame, signals: Sequence[str], ax=None):
    """Mean of each signal over the rays' directions (and seeds) against the distance ``alpha``, log x.

    ``rays``: one row per ``(seed, direction, alpha)`` with a column per signal
    (:meth:`cdlib.experiment.toy.ToyDistillation.rays`). Over seeds, the band is ± one std
    of the per-seed means.
    """
    ax = ax if ax is not None else figure(height=3.6)[1]
    rays = rays if "seed" in rays else rays.assign(seed=0)
    per_seed = rays.groupby(["seed", "alpha"])[list(signals)].mean()
    for i, signal in enumerate(signals):
        stats = per_seed[signal].groupby("alpha").agg(["mean", "std"])
        colour = f"C{i}"
        ax.plot(stats.index, stats["mean"], color=colour, lw=2, label=TOY_SIGNAL_LABELS.get(signal, signal))
        if rays.seed.nunique() > 1:
            ax.fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"], color=colour,
                            alpha=0.2)
    ax.set_xscale("log")
    ax.set_xlabel(r"distance from the origin $\alpha$ (data units)")
    ax.set_ylabel("mean over directions")
    ax.set_ylim(-0.02, 1.02)
    return ax
