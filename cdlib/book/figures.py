"""The book's figures of several panels, composed from :mod:`cdlib.book.viz` (which fixes their size, colours,
labels and legends), so that a chapter's figure cell is one call and its glue.

Each function returns the matplotlib figure; the chapter glues it (``glue("fig_x", fig, display=False)``) and
closes it.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from cdlib.book import viz

#: the confidence signals the corruption figure draws (six curves; the CE student on all clips is in the prose)
SHIFT_SIGNALS = ("cd", "cd_ctx", "cd_da", "kd_maxprob", "student_maxprob", "teacher_maxprob")


def rho_sweep_figure(table: pd.DataFrame, key: str, policies: Sequence[str]):
    """Two panels over the test videos' action fraction (``table``: :func:`cdlib.experiment.tables.sweep_table`
    over ``key``): the test accuracy of each of ``policies``' best point on validation (left), and the FLOPs
    ratio of its point matched on validation (right; without the first and the last of ``policies``, the
    oracle and the dense teacher)."""
    fig, axes = viz.figure(1, 2, height=4.8)
    xlabel = r"action fraction $\rho$ of the test video"
    viz.plot_sweep(table, key, "best accuracy", ax=axes[0], policies=policies,
                   xlabel=xlabel, ylabel="test accuracy (best point on val)")
    axes[0].set_ylim(0, 1.02)
    viz.figure_legend(fig, axes[0])
    viz.plot_sweep(table, key, "FLOPs ratio at dense accuracy", ax=axes[1], policies=policies[1:-1],
                   xlabel=xlabel, ylabel="FLOPs ratio (point matched on val)")
    axes[1].set_ylim(0, None)
    return fig


def shift_figure(table: pd.DataFrame, aurocs: pd.DataFrame, key: str, policies: Sequence[str],
                 signals: Sequence[str] = SHIFT_SIGNALS, error_bars: bool = False):
    """Two stacked panels over the fraction of corrupted test clips: the test accuracy of each of ``policies``'
    best point on validation (top; ``table``: :func:`cdlib.experiment.tables.sweep_table` over ``key``), and
    each of ``signals``' AUROC for "the teacher is right on a clip" (bottom; ``aurocs``:
    :func:`cdlib.experiment.tables.auroc_sweep_table`), mean over seeds, with ± one std where ``error_bars``."""
    fig, axes = viz.stacked_figure((5.2, 5.6))
    xlabel = "fraction of non-action test clips corrupted"
    viz.plot_sweep(table, key, "best accuracy", ax=axes[0], policies=policies,
                   xlabel=xlabel, ylabel="test accuracy of the best point on val")
    axes[0].set_ylim(0, 1.02)
    viz.legend_below(axes[0])
    stats = aurocs.groupby(key).agg(["mean", "std"])
    for name in signals:
        axes[1].errorbar(stats.index, stats[(name, "mean")], yerr=stats[(name, "std")] if error_bars else None,
                         marker="o", ms=4, color=viz.SIGNAL_COLOURS[name], label=viz.SIGNAL_LABELS[name], capsize=2)
    axes[1].axhline(0.5, color="grey", ls=":", lw=1)
    axes[1].set_xlabel(xlabel)
    axes[1].set_ylabel("AUROC: teacher right on a clip")
    axes[1].set_ylim(0.2, 1.0)
    viz.legend_below(axes[1], ncols=1)
    return fig
