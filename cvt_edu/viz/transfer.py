"""Figures of chapter 9: what a pretrained (or fine-tuned) model predicts for a few images.

The predictions come from :func:`cvt_edu.lab.transfer.top_k`: per image, (class name, probability)
pairs, most probable first. Every function returns the ``matplotlib`` figure; its own text comes
from the string table (:mod:`cvt_edu.course.i18n`) in ``lang`` (``None``: the notebook's language).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import matplotlib.pyplot as plt
import torch

from ..course.i18n import t
from .plots import image_grid

__all__ = ["plot_top_k", "show_predictions"]


def _percent(p: float) -> str:
    """A probability as a percentage, with one decimal below 10% (so that 0.1% does not read 0%)."""
    return f"{100 * p:.1f}%" if p < 0.1 else f"{100 * p:.0f}%"


def show_predictions(
    images: torch.Tensor,
    predictions: Sequence[Sequence[tuple[str, float]]],
    *,
    true_labels: Sequence[str] | None = None,
    title: str | None = None,
    cols: int = 6,
    lang: str | None = None,
) -> matplotlib.figure.Figure:
    """A grid of images, each with its top classes and their probabilities underneath.

    Args:
        images: uint8 images (N, 3, H, W).
        predictions: per image, (class name, probability) pairs as from :func:`cvt_edu.lab.transfer.top_k`.
        true_labels: the true class of each image, written first (``t("true_prefix")``); ``None``: not written.
        title: the chapter's own title (which weights); ``None``: none.
        cols: images per row.
        lang: language of the text.

    Raises:
        ValueError: if there is not one prediction list (and one true label) per image.
    """
    if len(predictions) != len(images) or (true_labels is not None and len(true_labels) != len(images)):
        raise ValueError(f"{len(images)} images, {len(predictions)} prediction lists, "
                         f"{'no' if true_labels is None else len(true_labels)} true labels; expected one per image")
    captions = None if true_labels is None else [t("true_prefix", lang, label=label) for label in true_labels]
    lines_per_image = max(len(p) for p in predictions) + (1 if captions else 0)
    texts = [
        "\n".join(([captions[i]] if captions else []) + [f"{label[:22]} {_percent(p)}" for label, p in top])
        for i, top in enumerate(predictions)
    ]
    return image_grid(images, texts, title or "", cols, size=(2.3, 2.3 + 0.32 * lines_per_image), fontsize=7.5)


def plot_top_k(
    image: torch.Tensor, top: Sequence[tuple[str, float]], *, title: str | None = None, lang: str | None = None
) -> matplotlib.figure.Figure:
    """One image beside a horizontal bar chart of its top classes (as from :func:`cvt_edu.lab.transfer.top_k`,
    most probable first), each bar labelled with its probability; the axis is scaled to the largest probability.

    Args:
        image: uint8 image (3, H, W).
        top: (class name, probability) pairs, most probable first.
        title: the chapter's own title (e.g. the true class); ``None``: none.
        lang: language of the text.
    """
    fig, (ax_img, ax_bar) = plt.subplots(1, 2, figsize=(8, 2.8), gridspec_kw={"width_ratios": [1, 2]})
    ax_img.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax_img.axis("off")
    names = [label[:30] for label, _ in top][::-1]
    bars = ax_bar.barh(names, [100 * p for _, p in top][::-1], color="C0")
    ax_bar.bar_label(bars, labels=[_percent(p) for _, p in top][::-1], fontsize=8, padding=2)
    ax_bar.set(xlabel=t("probability", lang))
    ax_bar.set_xlim(0, max(100 * top[0][1] * 1.25, 1e-3))  # room for the labels; tiny probabilities stay readable
    ax_bar.grid(axis="x", alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
