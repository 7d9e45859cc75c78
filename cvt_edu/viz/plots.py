"""Figures of data and trained models: images, learning curves, comparison and ablation bars, confusion matrix.

Every function returns the ``matplotlib`` figure, so a notebook shows it and a script saves it.
Its text comes from the string table (:mod:`cvt_edu.course.i18n`) in ``lang`` ("pt", "es" or
"en"); ``None`` means the notebook's language (:func:`cvt_edu.course.i18n.notebook_language`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import torch
from sklearn.metrics import ConfusionMatrixDisplay

from ..course.i18n import t
from ..lab.stats import accuracy_stderr
from ..train.checkpoint import atomic_path

__all__ = [
    "image_grid",
    "plot_ablation",
    "plot_comparison",
    "plot_confusion",
    "plot_curves",
    "plot_data_fraction",
    "save_figure",
    "show_images",
    "show_misclassified",
]


def show_images(
    images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], n: int = 12, title: str | None = None, lang: str | None = None
) -> matplotlib.figure.Figure:
    """A grid of ``n`` images drawn at random (fixed seed) with their class names.

    Args:
        images: uint8 images (N, 3, H, W).
        labels: int tensor (N,).
        classes: class names.
        title: the chapter's own title; ``None``: ``t("cifar_images")``.
        lang: language of the text.
    """
    pick = _sample(torch.arange(len(images)), n)
    return image_grid(images[pick], [classes[int(labels[i])] for i in pick], title or t("cifar_images", lang))


def _sample(indices: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` of ``indices`` drawn at random with a fixed seed (data sets are often sorted by class)."""
    order = torch.randperm(len(indices), generator=torch.Generator().manual_seed(seed))
    return indices[order[:n]]


def image_grid(
    images: torch.Tensor,
    captions: Sequence[str],
    title: str,
    cols: int = 6,
    *,
    size: tuple[float, float] = (1.9, 2.4),
    fontsize: float = 8,
) -> matplotlib.figure.Figure:
    """uint8 images (N, 3, H, W) in a grid of ``cols`` columns, image i titled ``captions[i]``.

    ``size`` is the width and height of one cell in inches; only ``len(captions)`` images are drawn.
    """
    rows = max(1, -(-len(captions) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, caption) in enumerate(zip(axes.flat, captions)):
        ax.imshow(images[i].permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(caption, fontsize=fontsize)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_curves(
    histories: Mapping[str, Sequence[Mapping[str, float]]], title: str | None = None, lang: str | None = None
) -> matplotlib.figure.Figure:
    """Loss and accuracy per epoch, training and test, one colour per model.

    Args:
        histories: model name -> the ``history`` list of its ``metrics.json``.
        title: the caller's own title; ``None``: ``t("learning_curves")``.
        lang: language of the text.
    """
    tr, te = t("train", lang), t("test", lang)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (name, history) in enumerate(histories.items()):
        epochs = [h["epoch"] for h in history]
        color = f"C{i}"
        ax_loss.plot(epochs, [h["train_loss"] for h in history], color=color, ls="--", label=f"{name} {tr}")
        ax_loss.plot(epochs, [h["test_loss"] for h in history], color=color, label=f"{name} {te}")
        ax_acc.plot(epochs, [100 * h["train_accuracy"] for h in history], color=color, ls="--", label=f"{name} {tr}")
        ax_acc.plot(epochs, [100 * h["test_accuracy"] for h in history], color=color, label=f"{name} {te}")
    ax_loss.set(xlabel=t("epoch", lang), ylabel=t("loss", lang), title=t("loss_title", lang))
    ax_acc.set(xlabel=t("epoch", lang), ylabel=t("accuracy", lang), title=t("accuracy_title", lang))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or t("learning_curves", lang))
    fig.tight_layout()
    return fig


def plot_comparison(results: Mapping[str, Mapping[str, Any]], lang: str | None = None) -> matplotlib.figure.Figure:
    """Bars of test accuracy, parameters and training throughput for each model.

    Args:
        results: model name -> its metrics (``test_accuracy``, ``params``, ``images_per_second``).
        lang: language of the text.
    """
    names = list(results)
    panels = [
        (t("test_accuracy", lang), [100 * results[n]["test_accuracy"] for n in names]),
        (t("params_m", lang), [results[n]["params"] / 1e6 for n in names]),
        (t("throughput", lang), [results[n]["images_per_second"] or 0 for n in names]),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, (label, values) in zip(axes, panels):
        bars = ax.bar(names, values, color=[f"C{i}" for i in range(len(names))])
        ax.bar_label(bars, fmt="%.3g")
        ax.set(ylabel=label, title=label.split(" (")[0].capitalize())
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(t("comparison", lang))
    fig.tight_layout()
    return fig


def plot_confusion(
    confusion: Sequence[Sequence[int]], classes: Sequence[str], title: str | None = None, lang: str | None = None
) -> matplotlib.figure.Figure:
    """The confusion matrix as a picture: rows are true classes, columns predicted ones, counts of test images.

    Args:
        confusion: (K, K) counts, row = true class, column = predicted class.
        classes: the K class names.
        title: the chapter's own title; ``None``: ``t("confusion")``.
        lang: language of the text.
    """
    fig, ax = plt.subplots(figsize=(6.5, 6))
    ConfusionMatrixDisplay(torch.as_tensor(confusion).numpy(), display_labels=list(classes)).plot(
        ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45
    )
    ax.set(title=title or t("confusion", lang), xlabel=t("predicted_class", lang), ylabel=t("true_class", lang))
    fig.tight_layout()
    return fig


def show_misclassified(
    images: torch.Tensor,
    labels: torch.Tensor,
    predictions: torch.Tensor,
    classes: Sequence[str],
    n: int = 12,
    lang: str | None = None,
) -> matplotlib.figure.Figure:
    """A grid of ``n`` images, drawn at random (fixed seed), whose prediction is wrong.

    Args:
        images: uint8 images (N, 3, H, W), as in :class:`cvt_edu.train.data.ImageTensors`.
        labels, predictions: int tensors (N,).
        classes: class names.
        n: how many to show.
        lang: language of the text.
    """
    wrong = _sample((predictions != labels).nonzero().flatten(), n)
    captions = [f"{classes[labels[i]]}\n-> {classes[predictions[i]]}" for i in wrong.tolist()]
    return image_grid(images[wrong], captions, t("misclassified", lang))


def plot_data_fraction(
    accuracy: Mapping[str, Mapping[float, float]], n_train: int, lang: str | None = None
) -> matplotlib.figure.Figure:
    """Test accuracy against the share of training images used, one line per model.

    Args:
        accuracy: model name -> {fraction in (0, 1]: test accuracy in 0..1}, as returned by
            :func:`cvt_edu.lab.compare.data_fraction_study`.
        n_train: the number of training images that fraction 1 means (for the x axis label).
        lang: language of the text.
    """
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, (name, points) in enumerate(accuracy.items()):
        fractions = sorted(points)
        ax.plot([100 * f for f in fractions], [100 * points[f] for f in fractions], "o-", color=f"C{i}", label=name)
        for f in fractions:
            ax.annotate(f"{100 * points[f]:.1f}", (100 * f, 100 * points[f]), textcoords="offset points", xytext=(0, 6),
                        ha="center", fontsize=8, color=f"C{i}")
    ax.set(xlabel=t("train_fraction", lang, n=n_train), ylabel=t("test_accuracy", lang), title=t("data_fraction", lang))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_ablation(results: Mapping[str, Mapping[str, Any]], *, lang: str | None = None) -> matplotlib.figure.Figure:
    """Three bar panels per variant of CvT's projection ablation (chapter 4): test accuracy with a
    2-standard-error bar (:func:`cvt_edu.lab.stats.accuracy_stderr`), multiply-adds per image, training time.

    Args:
        results: variant name -> its metrics from :func:`cvt_edu.lab.ablation.train_config_model`
            (``test_accuracy``, ``n_test``, ``macs``, ``seconds``, ``epochs``; the title gives the
            first variant's number of epochs).
        lang: language of the text.
    """
    names = list(results)
    colors = [f"C{i}" for i in range(len(names))]
    acc = [100 * results[n]["test_accuracy"] for n in names]
    err = [200 * accuracy_stderr(results[n]["test_accuracy"], results[n]["n_test"]) for n in names]
    panels = [
        (t("accuracy_2se", lang), acc, err),
        (t("macs_per_image", lang), [results[n]["macs"] / 1e6 for n in names], None),
        (t("train_time", lang), [results[n]["seconds"] for n in names], None),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (label, values, yerr) in zip(axes, panels):
        bars = ax.bar(names, values, yerr=yerr, capsize=4, color=colors)
        ax.bar_label(bars, fmt="%.1f", fontsize=8, label_type="center")
        ax.set(ylabel=label)
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(t("ablation_title", lang, epochs=results[names[0]]["epochs"]))
    fig.tight_layout()
    return fig


def save_figure(fig: plt.Figure, path: Path) -> None:
    """Save a figure as PNG, atomically, and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
