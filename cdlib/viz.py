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

from cdlib.selection import pareto_front

#: display name and colour of each policy, in legend order; a policy not listed here (a newly registered
#: one) is drawn too, after these, under its own name in the next colour of the cycle (:func:`policy_order`)
POLICY_STYLE = {
    "oracle": ("oracle (uses labels)", "#9e9e9e"),
    "cd_gate_ctx": ("cd_gate_ctx (context student)", "#8b0000"),
    "cd_gate": ("cd_gate (per-clip student)", "#d62728"),
    "cd_gate_da": ("cd_gate_da (distance-aware score)", "#e377c2"),
    "cd_topk_ctx": ("cd_topk_ctx (context student)", "#ffbb78"),
    "cd_topk": ("cd_topk", "#ff7f0e"),
    "frame_exit": ("frame_exit (FrameExit, teacher only)", "#bcbd22"),
    "sampler_maxprob": ("sampler_maxprob (CE student, action clips)", "#1f77b4"),
    "sampler_ce_all": ("sampler_ce_all (CE student, all clips)", "#aec7e8"),
    "sampler_kd": ("sampler_kd (KD student)", "#17becf"),
    "uniform_k": ("uniform_k", "#2ca02c"),
    "random_k": ("random_k", "#8c564b"),
    "dense_student": ("dense student", "#9467bd"),
    "dense_teacher": ("dense teacher", "#000000"),
}

SIGNAL_LABELS = {
    "cd": "CD score s (distilled)",
    "cd_ctx": "context student's score (whole video)",
    "cd_da": "distance-aware score s_da",
    "student_maxprob": "CE student (action clips) max-softmax",
    "ce_all_maxprob": "CE student (all clips) max-softmax",
    "kd_maxprob": "KD student max-softmax",
    "cd_maxprob": "CD student max-softmax",
    "teacher_maxprob": "teacher max-softmax",
}


def policy_order(present: Sequence[str]) -> list[str]:
    """The policies of ``present`` in legend order: those of :data:`POLICY_STYLE` first, then the others in
    the order given, so that no policy in a result is left out of a figure."""
    return [name for name in POLICY_STYLE if name in present] + [
        name for name in dict.fromkeys(present) if name not in POLICY_STYLE]


def _reference(name: str) -> bool:
    """Whether policy ``name`` reads the labels (a reference such as the oracle, drawn dashed); False for a
    name no longer registered."""
    from cdlib.gating import POLICIES

    return name in POLICIES and POLICIES[name].needs_label


def setup(dpi: int = 100) -> None:
    """Book-wide matplotlib defaults."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    plt.rcParams.update({"figure.dpi": dpi, "savefig.dpi": dpi, "axes.titlesize": "medium", "legend.fontsize": "small"})


def frontier_frame(points: Sequence[dict]) -> pd.DataFrame:
    """The Pareto front of a policy's operating points as a DataFrame sorted by cost."""
    return pd.DataFrame(pareto_front(points))


def curves_frame(results: Sequence[dict]) -> pd.DataFrame:
    """Operating points of every policy of one or more benchmark results (one row per point and seed)."""
    rows = []
    for result in results:
        for name, points in result["policies"].items():
            for point in points:
                rows.append({"seed": result["seed"], "policy": name, **point, "knob": str(point["knob"])})
    return pd.DataFrame(rows)


def plot_accuracy_vs_compute(results: Sequence[dict], ax=None, policies: Sequence[str] | None = None,
                             front_only: bool = True, relative: bool = False, legend: bool = True,
                             mark_selected: Sequence[str] = ()):
    """Video accuracy against GFLOPs per video on test, one curve per policy, the dense teacher as a marked point.

    With several results (seeds), curves are the mean over seeds of each knob's
    point and a band shows ± one standard deviation of accuracy. ``front_only``
    draws only each policy's Pareto front on test (the best accuracy reachable
    at a cost, an envelope that looks at the test labels), which matters for the
    three-knob ``cd_gate``. For each policy in ``mark_selected``, a white-filled
    marker shows, per result, the point chosen on val to match the dense
    teacher: where a user would actually operate. The legend goes outside the
    axes, on the right.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 5))
    frame = curves_frame(results)
    dense_gflops = frame.loc[frame.policy == "dense_teacher", "gflops_per_video"].mean()
    for name in policies or policy_order(list(frame.policy)):
        if name not in set(frame.policy):
            continue
        label, colour = POLICY_STYLE.get(name, (name, None))
        part = frame[frame.policy == name]
        mean = part.groupby("knob", sort=False)[["gflops_per_video", "accuracy"]].mean()
        std = part.groupby("knob", sort=False)["accuracy"].std().fillna(0.0)
        points = [{"gflops_per_video": g, "accuracy": a, "knob": k} for k, g, a in
                  zip(mean.index, mean.gflops_per_video, mean.accuracy)]
        if front_only:
            points = pareto_front(points)
        else:
            points = sorted(points, key=lambda p: p["gflops_per_video"])
        x = np.array([p["gflops_per_video"] for p in points])
        y = np.array([p["accuracy"] for p in points])
        s = np.array([std[p["knob"]] for p in points])
        if relative:
            x = x / dense_gflops
        if name in ("dense_teacher", "dense_student"):
            ax.errorbar(x, y, yerr=s if len(results) > 1 else None, fmt="*" if name == "dense_teacher" else "D",
                        ms=14 if name == "dense_teacher" else 8, color=colour, label=label, zorder=5)
            continue
        style = "--" if _reference(name) else "-"
        ax.plot(x, y, style, marker="o", ms=3, color=colour, label=label, drawstyle="default")
        if len(results) > 1:
            ax.fill_between(x, y - s, y + s, color=colour, alpha=0.15, linewidth=0)
        if name in mark_selected:
            _mark_matched(results, name, ax, colour, relative)
    ax.set_xlabel("compute per video (relative to the dense teacher)" if relative else "GFLOPs per video")
    ax.set_ylabel("video accuracy (test)")
    ax.set_ylim(0, 1.02)
    if legend:
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    return ax


def _mark_matched(results: Sequence[dict], name: str, ax, colour, relative: bool) -> None:
    """The point of policy ``name`` chosen on val to match the dense teacher, one marker per result."""
    from cdlib.tables import selected_point

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
        _, ax = plt.subplots(figsize=(5, 5))
    for name, (fpr, tpr) in curves.items():
        ax.plot(fpr, tpr, label=f"{SIGNAL_LABELS.get(name, name)} ({aurocs[name]:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance (0.500)")
    ax.set_xlabel("false-positive rate (teacher wrong, signal high)")
    ax.set_ylabel("true-positive rate (teacher right, signal high)")
    ax.legend(loc="lower right", title="signal (AUROC)")
    return ax


def plot_history(histories: dict[str, list[dict]], key: str, ax=None, label: str | None = None):
    """One training curve per model: ``key`` of the per-epoch history against the epoch."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for name, history in histories.items():
        frame = pd.DataFrame(history)
        if key in frame:
            ax.plot(frame["epoch"], frame[key], marker="o", ms=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(label or key)
    ax.legend()
    return ax


def plot_sweep(table: pd.DataFrame, key: str, column: str, ax=None, policies: Sequence[str] | None = None,
               xlabel: str | None = None, ylabel: str | None = None):
    """One line per policy: ``column`` of :func:`cdlib.tables.sweep_table` against the swept ``key``.

    With several seeds, lines are means and bars ± one standard deviation.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
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


#: display names of the toy's confidence signals (:data:`cdlib.toy.TOY_SIGNALS`)
TOY_SIGNAL_LABELS = {
    "teacher_maxprob": "teacher max-softmax (temperature-scaled)",
    "student_maxprob": "student max-softmax",
    "s": "distilled score s",
    "s_da": "distance-aware score s_da",
}


def plot_signal_rays(rays: pd.DataFrame, signals: Sequence[str], ax=None):
    """Mean of each signal over the rays' directions (and seeds) against the distance ``alpha``, log x.

    ``rays``: one row per ``(seed, direction, alpha)`` with a column per signal
    (:meth:`cdlib.toy.ToyDistillation.rays`). Over seeds, the band is ± one std
    of the per-seed means.
    """
    ax = ax if ax is not None else plt.subplots(figsize=(6, 3.6))[1]
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
