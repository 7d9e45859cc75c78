"""Figures of chapter 3's translation experiments: shifted images, equivariance errors, changed predictions.

The numbers come from :mod:`cvt_edu.lab.shift` (:func:`~cvt_edu.lab.shift.equivariance_errors`,
:func:`~cvt_edu.lab.shift.prediction_changes`, :func:`~cvt_edu.lab.shift.shift_sweep`). Every
function returns the ``matplotlib`` figure; its text comes from the string table
(:mod:`cvt_edu.course.i18n`) in ``lang`` ("pt", "es" or "en"; ``None``: the notebook's language).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import torch

from ..course.i18n import t
from ..lab.shift import SHIFT_MODES, shift_images

__all__ = ["plot_equivariance", "plot_error_maps", "plot_prediction_changes", "plot_shift_sweep", "show_shifted"]


def show_shifted(
    image: torch.Tensor, shifts: Sequence[int], modes: Sequence[str] = SHIFT_MODES, *, lang: str | None = None
) -> matplotlib.figure.Figure:
    """One image shifted by each value in ``shifts`` (:func:`cvt_edu.lab.shift.shift_images`), one row per mode.

    Args:
        image: uint8 image (3, H, W).
        shifts: shifts s in pixels (down and right).
        modes: shift modes, ``"circular"`` and/or ``"zeros"``.
        lang: language of the text.

    Raises:
        ValueError: for an unknown mode.
    """
    fig, axes = plt.subplots(len(modes), len(shifts), figsize=(1.9 * len(shifts), 2.1 * len(modes)), squeeze=False)
    for row, mode in zip(axes, modes):
        for ax, s in zip(row, shifts):
            ax.imshow(shift_images(image, s, mode).permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_title(t("shift_caption", lang, mode=t(mode, lang), shift=s), fontsize=8)
            ax.axis("off")
    fig.suptitle(t("shifted_images", lang))
    fig.tight_layout()
    return fig


def plot_equivariance(
    errors: Mapping[str, tuple[float, float]], shift: int, *, lang: str | None = None
) -> matplotlib.figure.Figure:
    """Grouped bars of the two errors of :func:`cvt_edu.lab.shift.equivariance_errors` for several token maps.

    Args:
        errors: bar-group label (e.g. "cvt-tiny: stage 1") -> (follow, stay), relative differences.
        shift: the circular shift s the errors were measured with, in pixels (for the title).
        lang: language of the text.
    """
    labels = list(errors)
    x = torch.arange(len(labels)).numpy()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(labels) + 2), 3.8))
    for k, (name, offset) in enumerate(zip((t("eq_follow", lang), t("eq_stay", lang)), (-0.2, 0.2))):
        bars = ax.bar(x + offset, [errors[n][k] for n in labels], width=0.4, label=name, color=f"C{k}")
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, labels, rotation=20, ha="right", fontsize=8)
    ax.set(ylabel=t("relative_difference", lang), title=t("eq_title", lang, shift=shift))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_error_maps(maps: Mapping[str, torch.Tensor], *, lang: str | None = None) -> matplotlib.figure.Figure:
    """Heat maps of per-token differences (the ``follow_map`` of :func:`cvt_edu.lab.shift.equivariance_errors`),
    one shared colour scale.

    Args:
        maps: panel label -> a map (h, w) of relative differences.
        lang: language of the text.
    """
    vmax = max(float(m.max()) for m in maps.values())
    fig, axes = plt.subplots(1, len(maps), figsize=(2.6 * len(maps) + 1, 2.9), squeeze=False)
    for ax, (label, m) in zip(axes[0], maps.items()):
        image = ax.imshow(m.numpy(), cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_title(f"{label}\n{m.shape[0]}x{m.shape[1]}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=list(axes[0]), label=t("relative_difference", lang), shrink=0.85)
    fig.suptitle(t("error_maps_title", lang))
    return fig


def plot_prediction_changes(
    reports: Mapping[str, Mapping[str, Mapping[str, float]]], *, title: str | None = None, lang: str | None = None
) -> matplotlib.figure.Figure:
    """Grouped bars: for each change (x axis), one bar per model; accuracy on the left, consistency on the right.

    Args:
        reports: model name -> the output of :func:`cvt_edu.lab.shift.prediction_changes` (change label -> row).
        title: the chapter's own title (what the change is); ``None``: none.
        lang: language of the text.
    """
    models = list(reports)
    changes = list(next(iter(reports.values())))
    x = torch.arange(len(changes)).numpy()
    width = 0.8 / len(models)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.9))
    for ax, key, ylabel in zip(axes, ("accuracy", "consistency"), (t("test_accuracy", lang), t("unchanged_predictions", lang))):
        for i, name in enumerate(models):
            values = [100 * reports[name][c][key] for c in changes]
            bars = ax.bar(x + (i - (len(models) - 1) / 2) * width, values, width=width, color=f"C{i}", label=name)
            ax.bar_label(bars, fmt="%.0f", fontsize=7)
        ax.set_xticks(x, changes, fontsize=8)
        ax.set(ylabel=ylabel)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_shift_sweep(
    sweeps: Mapping[str, Mapping[str, Sequence[Mapping[str, float]]]], *, lang: str | None = None
) -> matplotlib.figure.Figure:
    """Accuracy and consistency against the shift, one colour per model, one line style per mode.

    Args:
        sweeps: model name -> mode (``"circular"``, ``"zeros"``) -> the rows of :func:`cvt_edu.lab.shift.shift_sweep`.
        lang: language of the text (the modes' names included).

    Raises:
        KeyError: for a mode the string table has no name for.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.9))
    styles = ("-", "--", ":")
    for i, (name, by_mode) in enumerate(sweeps.items()):
        for j, (mode, rows) in enumerate(by_mode.items()):
            label = f"{name} ({t(mode, lang)})"
            xs = [r["shift"] for r in rows]
            for ax, key in zip(axes, ("accuracy", "consistency")):
                ax.plot(xs, [100 * r[key] for r in rows], styles[j % 3], marker="o", ms=4, color=f"C{i}", label=label)
    for ax, ylabel in zip(axes, (t("test_accuracy", lang), t("unchanged_predictions", lang))):
        ax.set(xlabel=t("shift_px", lang), ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(t("shift_sweep_title", lang))
    fig.tight_layout()
    return fig
