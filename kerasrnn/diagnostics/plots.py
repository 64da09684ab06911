"""PNG figures of gradient flow and training, without a display.

Every function draws on a bare ``matplotlib.figure.Figure`` (the Agg canvas:
no pyplot, no global backend change, no window), writes a PNG to ``path``
(creating its folder) and returns the path.
"""

import math
import pathlib

import numpy as np
from matplotlib.figure import Figure

from kerasrnn.diagnostics.gradient_flow import GradientFlow
from kerasrnn.diagnostics.gradient_flow import TrackFlow
from kerasrnn.diagnostics.tasks import ADDING_BASELINE_MSE

COLOURS = {"elman": "tab:red", "lstm": "tab:blue", "gru": "tab:green",
           "indrnn": "tab:purple", "peephole_lstm": "tab:cyan"}


def save(figure, path):
    path = pathlib.Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(
            f"`path` must name a .png file. Received: path={str(path)!r}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def flow_norms(flow, state="h"):
    """``(distance, mean norm)`` of a ``GradientFlow`` (first loop), a
    ``TrackFlow``, or an array of norms indexed by step k."""
    if isinstance(flow, GradientFlow):
        flow = flow.tracks[0]
    if isinstance(flow, TrackFlow):
        return flow.distance, flow.mean_norms(state)
    norms = np.asarray(flow, dtype="float64")
    if norms.ndim != 1 or norms.size == 0:
        raise ValueError(
            "Expected a GradientFlow, a TrackFlow or a 1-D array of norms "
            f"per step. Received an array of shape {norms.shape}"
        )
    return np.arange(norms.size)[::-1], norms


def colour(label):
    """The lab's colour of a cell named first in ``label``, else None."""
    words = str(label).lower().split()
    return COLOURS.get(words[0]) if words else None


def plot_gradient_flow(panels, path, state="h", title=None):
    """Gradient norm vs distance, log scale: one line per model.

    Plots ``mean_b ‖∂ℓ_b/∂h_k‖`` against the distance ``T-1-k`` from the
    step where the loss is read. An Elman network's curve falls about
    linearly on this log scale (exponential decay); gated cells can keep it
    flat. Non-finite norms, and norms that underflowed to exactly 0 (below
    float32's ~1e-45), are left out of the line and counted in its legend
    entry.

    Args:
        panels: ``{label: flow}`` for one panel, or ``{panel title: {label:
            flow}}`` for panels side by side; a flow is a ``GradientFlow``
            (its first loop), a ``TrackFlow`` or norms per step k.
        path: the ``.png`` file to write.
        state: ``"h"`` (default) or ``"c"`` (LSTM cell state).
        title: the figure's title.
    """
    if not panels:
        raise ValueError("`panels` is empty: nothing to plot.")
    if not all(isinstance(value, dict) for value in panels.values()):
        panels = {"": panels}
    figure = Figure(figsize=(5.5 * len(panels), 4.2), layout="constrained")
    axes = figure.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (panel_title, flows) in zip(axes, panels.items()):
        for label, flow in flows.items():
            distance, norms = flow_norms(flow, state)
            nonfinite = ~np.isfinite(norms)
            underflow = norms == 0
            shown = np.where(nonfinite | underflow, np.nan, norms)
            notes = [
                f"{count} {what}"
                for count, what in ((nonfinite.sum(), "non-finite"),
                                    (underflow.sum(), "underflowed to 0"))
                if count
            ]
            suffix = f" ({'; '.join(notes)})" if notes else ""
            ax.plot(distance, shown, label=f"{label}{suffix}",
                    color=colour(label))
        ax.set_yscale("log")
        ax.set_xlabel("distance T-1-k (steps back from the loss)")
        ax.set_title(panel_title)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend()
    axes[0].set_ylabel(f"‖∂L/∂{state}_k‖ (batch mean)")
    if title:
        figure.suptitle(title)
    return save(figure, path)


def plot_mse_vs_length(grid, path, baseline=ADDING_BASELINE_MSE,
                       threshold=0.01, title=None):
    """Final MSE vs sequence length T, one line per cell, log scale.

    Args:
        grid: ``{cell: (lengths, mses)}`` (``lab.mse_grid(runs)``).
        path: the ``.png`` file to write.
        baseline: the trivial answer's MSE (dashed line).
        threshold: the "solved" bar (dotted line).
        title: the figure's title.
    """
    if not grid:
        raise ValueError("`grid` is empty: nothing to plot.")
    figure = Figure(figsize=(5.5, 4.2), layout="constrained")
    ax = figure.subplots()
    for cell, (lengths, mses) in grid.items():
        ax.plot(lengths, mses, marker="o", label=cell, color=colour(cell))
    ax.axhline(baseline, color="grey", linestyle="--",
               label=f"baseline {baseline:.3f}")
    ax.axhline(threshold, color="black", linestyle=":",
               label=f"solved < {threshold:g}")
    ax.set_yscale("log")
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("final MSE (held-out)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(title or "Adding problem: final MSE vs T")
    return save(figure, path)


def history_dict(history):
    """``History.history`` of a ``keras.callbacks.History``, or the dict."""
    values = getattr(history, "history", history)
    if not isinstance(values, dict) or not values:
        raise ValueError(
            "Expected a keras.callbacks.History or its non-empty `history` "
            f"dict. Received: {history!r}"
        )
    return values


def is_history(value):
    """A ``History`` or a ``{"loss": [...], ...}`` dict of series."""
    if hasattr(value, "history"):
        return True
    return isinstance(value, dict) and all(
        isinstance(series, (list, tuple, np.ndarray))
        for series in value.values()
    )


def history_panels(histories):
    """``{panel title: {label: history dict}}`` from any accepted form."""
    if is_history(histories):
        return {"": {"": history_dict(histories)}}
    if not isinstance(histories, dict) or not histories:
        raise ValueError(
            "Expected a keras.callbacks.History, {label: history} or "
            f"{{panel title: {{label: history}}}}. Received: {histories!r}"
        )
    if all(is_history(value) for value in histories.values()):
        histories = {"": histories}
    return {
        title: {label: history_dict(h) for label, h in curves.items()}
        for title, curves in histories.items()
    }


def plot_history(histories, path, metric="loss", steps_per_epoch=None,
                 baseline=None, threshold=None, title=None):
    """Training curves: ``metric`` (solid) and ``val_<metric>`` (dashed).

    Args:
        histories: a ``keras.callbacks.History`` (or its ``history`` dict),
            ``{label: history}`` for several curves on one panel, or
            ``{panel title: {label: history}}`` for panels side by side.
        path: the ``.png`` file to write.
        metric: the logged quantity (``"loss"`` by default).
        steps_per_epoch: if given, the x axis counts optimizer steps.
        baseline, threshold: optional horizontal reference lines.
        title: the figure's title.
    """
    panels = history_panels(histories)
    figure = Figure(figsize=(1 + 5 * len(panels), 4.2), layout="constrained")
    axes = figure.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    keys = ((metric, "-"), (f"val_{metric}", "--"))
    positive = True
    for ax, (panel_title, curves) in zip(axes, panels.items()):
        plotted = 0
        for label, values in curves.items():
            for key, style in keys:
                if key not in values:
                    continue
                series = np.asarray(values[key], dtype="float64")
                positive &= bool(np.nanmin(series) > 0)
                steps = np.arange(1, series.size + 1) * (steps_per_epoch or 1)
                ax.plot(steps, series, style, label=f"{label} {key}".strip(),
                        color=colour(label))
                plotted += 1
        if not plotted:
            raise ValueError(
                f"No '{metric}' or 'val_{metric}' in the histories. "
                "Received keys: "
                f"{sorted({k for v in curves.values() for k in v})}"
            )
        if baseline is not None:
            ax.axhline(baseline, color="grey", linestyle=":",
                       label="baseline")
        if threshold is not None:
            ax.axhline(threshold, color="black", linestyle=":",
                       label="solved")
        ax.set_xlabel("optimizer step" if steps_per_epoch else "epoch")
        ax.set_title(panel_title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", ncol=max(1, math.ceil(plotted / 8)))
    if positive:
        axes[0].set_yscale("log")
    axes[0].set_ylabel(metric)
    if title:
        figure.suptitle(title)
    return save(figure, path)
