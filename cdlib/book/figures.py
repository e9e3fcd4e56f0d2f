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


# ----------------------------------------------------------------------------- the calibration chapter

def toy_confidence_map(run, grids: dict, near: float):
    """The toy MLP's confidence over the plane (``grids``: :func:`cdlib.experiment.calibration_tables.confidence_grids`)
    with its training points: the far square on top (the near one outlined), the near one below; raw softmax
    left, temperature-scaled right."""
    from matplotlib.patches import Rectangle

    fig, axes = viz.figure(2, 2, height=7.4)
    x_train, y_train = run.train
    titles = (("raw", "raw softmax"), ("temperature", f"temperature-scaled (T = {run.temperature:.2f})"))
    for col, (scaling, title) in enumerate(titles):
        for row, view in enumerate(("far", "near")):
            ax = axes[row, col]
            grid = grids[scaling, view]
            image = ax.imshow(grid.confidence, origin="lower", extent=grid.extent, vmin=0.25, vmax=1.0,
                              cmap="viridis", interpolation="nearest")
            ax.scatter(x_train[:, 0], x_train[:, 1], c=[f"C{int(k) + 4}" for k in y_train],
                       s=6 if view == "far" else 14, edgecolors="white", linewidths=0.3)
            if view == "far":
                ax.add_patch(Rectangle((-near, -near), 2 * near, 2 * near, fill=False, edgecolor="white", lw=1))
            ax.set_title(f"{title}\n[-{grid.extent[1]:g}, {grid.extent[1]:g}]²")
            ax.set_xlabel("$x_1$ (data units)")
            ax.set_ylabel("$x_2$ (data units)")
            ax.grid(False)
    fig.colorbar(image, ax=axes, shrink=0.6, label="confidence: max softmax")
    return fig


def toy_rays_figure(rays: pd.DataFrame, seeds: Sequence[int], shown_directions: int = 16):
    """The toy MLP's confidence along rays (``rays``: :func:`cdlib.experiment.calibration_tables.toy_ray_table`),
    raw left and temperature-scaled right: ``shown_directions`` single directions of the first seed in grey,
    the mean over directions (± std over seeds where there are several) in blue."""
    n_dirs = rays.direction.nunique()
    per_seed = rays.groupby(["scaling", "seed", "alpha"]).confidence.mean().reset_index()
    curve = per_seed.groupby(["scaling", "alpha"]).confidence.agg(["mean", "std"]).reset_index()
    fig, axes = viz.figure(1, 2, height=4.4, sharey=True)
    for ax, (scaling, title) in zip(axes, (("raw", "raw softmax"), ("temperature", "temperature-scaled"))):
        mine = rays[(rays.scaling == scaling) & (rays.seed == seeds[0])]
        for d in range(shown_directions):
            one = mine[mine.direction == d]
            ax.plot(one.alpha, one.confidence, color="0.6", lw=0.7, alpha=0.8,
                    label=f"single directions ({shown_directions} of {n_dirs})" if d == 0 else None)
        mean = curve[curve.scaling == scaling]
        label = f"mean over {n_dirs} directions" + (f" (± std over {len(seeds)} seeds)" if len(seeds) > 1 else "")
        ax.plot(mean.alpha, mean["mean"], color="C0", lw=2.2, label=label)
        if len(seeds) > 1:
            ax.fill_between(mean.alpha, mean["mean"] - mean["std"], mean["mean"] + mean["std"], color="C0", alpha=0.25)
        ax.axhline(0.25, color="k", ls=":", lw=1, label="uniform over 4 classes")
        ax.axvspan(1, 2, color="C2", alpha=0.12, label="where the data lies")
        ax.set_xscale("log")
        ax.set_xlabel(r"distance from the origin $\alpha$ (data units)")
        ax.set_title(title)
    axes[0].set_ylabel("confidence: max softmax")
    axes[0].set_ylim(0.2, 1.02)
    viz.figure_legend(fig, axes[1])
    return fig


def toy_signal_rays_figure(signal_rays: pd.DataFrame, signals: Sequence[str]):
    """The toy's confidences ``signals`` along the rays (``signal_rays``:
    :func:`cdlib.experiment.calibration_tables.toy_signal_rays`), with the data's distances shaded."""
    fig, ax = viz.figure(height=4.6)
    viz.plot_signal_rays(signal_rays, signals, ax=ax)
    ax.axvspan(1, 2, color="C2", alpha=0.12, label="where the data lies")
    viz.legend_below(ax)
    return fig


def reliability_figure(rel: pd.DataFrame, error_bars: bool = False):
    """Reliability diagrams (``rel``: :func:`cdlib.experiment.calibration_tables.mean_reliability`), raw and
    temperature-scaled, for action clips (left) and all clips (right), with the clips per bin below (log
    scale); ± one std over seeds where ``error_bars``."""
    fig, axes = viz.figure(2, 2, height=6.0, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    styles = {"raw": ("C3", "o", "raw softmax"), "temperature": ("C0", "s", "temperature-scaled")}
    for col, (clips, title) in enumerate((("action", "action clips"), ("all", "all clips"))):
        top, bottom = axes[0, col], axes[1, col]
        top.plot([0, 1], [0, 1], color="k", ls=":", lw=1, label="perfect calibration")
        for scaling, (color, marker, label) in styles.items():
            d = rel[(rel.clips == clips) & (rel.scaling == scaling) & (rel["count"] > 0)]
            top.errorbar(d.confidence, d.accuracy, yerr=d.accuracy_std if error_bars else None, color=color,
                         marker=marker, ms=4, lw=1.3, label=label)
            bottom.bar((d.lower + d.upper) / 2 + (-0.012 if scaling == "raw" else 0.012), d["count"], width=0.024,
                       color=color, alpha=0.8)
        top.set_title(title)
        top.set_xlim(0, 1.02)
        top.set_ylim(0, 1.02)
        bottom.set_yscale("log")
        bottom.set_xlabel("confidence: max softmax (bin mean)")
    axes[0, 0].set_ylabel("accuracy in bin")
    axes[1, 0].set_ylabel("clips per bin")
    viz.figure_legend(fig, axes[0, 0], ncols=3)
    return fig


def probe_ecdf_figure(probe: pd.DataFrame, alpha: float):
    """The ECDF of the teacher's confidence (raw left, temperature-scaled right) on the action, non-action
    and noise clips of a probe table (one seed's) and on its clips scaled by ``alpha``."""
    import numpy as np

    parts = {f"{group} clips": probe[probe.group == group] for group in ("action", "non-action", "noise")}
    parts[f"test clips scaled by α = {alpha:g}"] = probe[(probe.group == "scaled") & (probe.alpha == alpha)]
    fig, axes = viz.figure(1, 2, height=4.2, sharey=True)
    colors = ["C0", "C1", "C3", "C2"]
    for ax, (column, title) in zip(axes, (("confidence", "raw softmax"), ("confidence_ts", "temperature-scaled"))):
        for color, (label, part) in zip(colors, parts.items()):
            values = np.sort(part[column].to_numpy())
            ax.step(values, np.arange(1, len(values) + 1) / len(values), where="post", color=color, lw=1.6,
                    label=label)
        ax.set_xlabel("confidence: max softmax")
        ax.set_title(title)
        ax.set_xlim(0, 1.01)
    axes[0].set_ylabel("fraction of clips with confidence ≤ x")
    viz.figure_legend(fig, axes[0])
    return fig


def probe_alpha_figure(by_alpha: pd.DataFrame, alphas: Sequence[float], error_bars: bool = False):
    """Mean confidence (raw and scaled) and accuracy against the input scale, per kind of scaled clip
    (``by_alpha``: :func:`cdlib.experiment.calibration_tables.scaled_by_alpha`); ± one std over seeds where
    ``error_bars``."""
    from cdlib.experiment.calibration_tables import SCALED_KINDS

    fig, axes = viz.figure(1, 2, height=4.2, sharey=True)
    lines = (("confidence", "mean confidence, raw", "C3", "o"),
             ("confidence_ts", "mean confidence, scaled by T", "C0", "s"), ("accuracy", "accuracy", "k", "^"))
    for ax, kind in zip(axes, SCALED_KINDS):
        d = by_alpha.loc[kind]
        for column, label, color, marker in lines:
            ax.errorbar(d.index, d[(column, "mean")], yerr=d[(column, "std")] if error_bars else None,
                        color=color, marker=marker, ms=4, lw=1.4, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(alphas), [f"{a:g}" for a in alphas])
        ax.set_xlabel(r"input scale $\alpha$")
        ax.set_title(kind)
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel("mean over clips")
    viz.figure_legend(fig, axes[0], ncols=3)
    return fig


# ----------------------------------------------------------------------------- the distillation chapter

#: display names of the students of the ladder
LADDER_NAMES = {"ce": "CE (action clips)", "ce_all": "CE (all clips)", "kd": "KD", "cd": "CD"}


def ladder_history_figure(histories: dict[str, list[dict]]):
    """The students' training curves (``histories``: each student's epoch history): train cross-entropy, the
    train BCE of the score (KD and CD) and the val clip accuracy."""
    fig, axes = viz.figure(1, 3, height=3.6)
    names = LADDER_NAMES
    viz.plot_history({names[v]: h for v, h in histories.items()}, "train_ce", ax=axes[0],
                     label="train cross-entropy", legend=False)
    viz.plot_history({names[v]: h for v, h in histories.items() if v in ("kd", "cd")}, "train_bce", ax=axes[1],
                     label="train BCE of the score", legend=False)
    viz.plot_history({names[v]: h for v, h in histories.items()}, "val_clip_accuracy", ax=axes[2],
                     label="val clip accuracy", legend=False)
    axes[1].set_title("KD: score head untrained")
    viz.figure_legend(fig, axes[0], ncols=4)
    return fig


#: the signals of the ROC panel (six curves) and of the violin panel
ROC_SIGNALS = ("cd", "cd_ctx", "cd_da", "student_maxprob", "kd_maxprob", "teacher_maxprob")
VIOLIN_SIGNALS = ("cd", "student_maxprob", "ce_all_maxprob", "kd_maxprob")


def signals_figure(outputs: dict, signals: pd.DataFrame):
    """For one seed's test ``outputs`` (:func:`cdlib.experiment.evaluation.collect_outputs`): the ROC curves of
    :data:`ROC_SIGNALS` for "the teacher is right on this clip" (top; AUROCs in the legend, means over the seeds
    of ``signals``, the :func:`cdlib.experiment.tables.signal_table` of every seed), and the distribution of
    :data:`VIOLIN_SIGNALS` on action and non-action clips (bottom)."""
    import numpy as np
    import seaborn as sns

    from cdlib.experiment.evaluation import confidence_signals
    from cdlib.method.calibration import roc_curve

    auroc = signals.groupby(["signal", "group"])["auroc"].mean()
    fig, axes = viz.stacked_figure((7.4, 4.6))
    correct = outputs["teacher"].correct
    curves, areas = {}, {}
    for name in ROC_SIGNALS:
        fpr, tpr, _ = roc_curve(confidence_signals(outputs)[name], correct)
        curves[name], areas[name] = (fpr, tpr), float(auroc.loc[(name, "all")])
    viz.plot_roc(curves, areas, ax=axes[0])
    axes[0].set_title("ROC: is the teacher right on this clip? (all test clips)")
    informative = outputs["teacher"].informative.numpy()
    rows = []
    for name in VIOLIN_SIGNALS:
        values = confidence_signals(outputs)[name].numpy()
        rows.append(pd.DataFrame({"signal": viz.SIGNAL_LABELS[name], "value": values,
                                  "clip": np.where(informative == 1, "action clip", "non-action clip")}))
    sns.violinplot(data=pd.concat(rows), x="value", y="signal", hue="clip", split=True, inner="quart", cut=0,
                   density_norm="width", ax=axes[1], palette={"action clip": "C0", "non-action clip": "C1"})
    axes[1].set_xlabel("signal value")
    axes[1].set_ylabel("")
    axes[1].set_xlim(0, 1)
    viz.legend_below(axes[1])
    axes[1].set_title("signal on action vs non-action test clips")
    return fig


# ----------------------------------------------------------------------------- the real-videos chapter

def frames_figure(dataset, columns: int = 6):
    """The first frame of ``columns`` evenly spaced clips of the first video of each class of ``dataset``, one
    row per class (labelled with its name), each frame titled with its clip's number."""
    import numpy as np

    shown = {}
    for i in range(len(dataset)):
        shown.setdefault(dataset.meta(i).label, i)
    fig, axes = viz.figure(len(shown), columns, height=1.25 * len(shown))
    axes = np.atleast_2d(axes)
    for row, (label, index) in enumerate(sorted(shown.items())):
        clips, _ = dataset[index]
        picks = np.linspace(0, len(clips) - 1, columns).round().astype(int)
        for col, clip in enumerate(picks):
            ax = axes[row, col]
            ax.imshow(clips[clip, 0].numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if col == 0:
                ax.set_ylabel(dataset.class_names[label])
            ax.set_title(f"clip {clip + 1}")
    return fig
