"""Seeing the convolutional token embedding: which pixels make a token, and the stage hierarchy.

ViT (Dosovitskiy et al., ICLR 2021, Sec. 3.1) cuts the image into non-overlapping P x P
patches: kernel = stride = P, no padding. CvT (Wu et al., ICCV 2021, Sec. 3.1) embeds with an
overlapping strided convolution: kernel s, stride s - o, padding p, so neighbouring tokens share
pixels; every stage embeds the previous token map again, and a token of stage i covers a window
of pixels that grows from stage to stage. These helpers read the stages of a CvT, tabulate them,
and draw the windows (:func:`cvt_edu.patching.token_window`) on an image; the token maps of the
stages are drawn by :func:`cvt_edu.viz.pyramid.plot_token_maps`.

The windows are those of the embedding convolutions alone: attention inside each stage is
global, so once the blocks have run every token can depend on every pixel. The figure's text
comes from the string table (:mod:`cvt_edu.course.i18n`) in ``lang``; ``None``: the notebook's language.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Rectangle

from ..course.i18n import t
from ..cvt import CvT
from ..patching import compose_embeddings, conv_output_size, token_window
from .tables import markdown_table

__all__ = ["cvt_embeddings", "plot_receptive_fields", "stage_summary", "stage_table"]


def cvt_embeddings(model: CvT) -> list[tuple[int, int, int]]:
    """(kernel_size, stride, padding) of the token embedding of every stage of a CvT."""
    return [(s.kernel_size, s.stride, s.padding) for s in model.config.stages]


@torch.no_grad()
def stage_summary(model: CvT, image_size: int) -> list[dict[str, Any]]:
    """Token map size, width and windows of every stage of a CvT, measured with ``forward_features``.

    Runs one image of zeros, shape (1, C, image_size, image_size), through the model (in eval
    mode) and reads the size of each stage's token map (B, C_i, H_i, W_i); the size predicted by
    :func:`~cvt_edu.patching.conv_output_size` is returned beside it.

    Returns:
        One dict per stage: ``stage`` (1-based), ``kernel_size``, ``stride``, ``padding``, ``height``
        and ``width`` (measured H_i, W_i), ``formula`` (H_i from the formula), ``tokens`` (H_i W_i,
        plus 1 where the stage has a [CLS] token), ``embed_dim`` (C_i), ``depth``, ``num_heads``,
        ``window`` and ``step`` (the kernel and stride in input pixels, see :func:`compose_embeddings`).

    Raises:
        ValueError: if the image is smaller than a stage's kernel (from the embedding).
    """
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        maps = model.forward_features(torch.zeros(1, model.config.in_chans, image_size, image_size, device=device)).maps
    finally:
        model.train(was_training)
    rows, side, layers = [], image_size, []
    for i, (stage, fmap) in enumerate(zip(model.config.stages, maps), 1):
        side = conv_output_size(side, stage.kernel_size, stage.stride, stage.padding)
        layers.append((stage.kernel_size, stage.stride, stage.padding))
        window, step, _ = compose_embeddings(layers)
        rows.append(
            {
                "stage": i,
                "kernel_size": stage.kernel_size,
                "stride": stage.stride,
                "padding": stage.padding,
                "height": fmap.shape[2],
                "width": fmap.shape[3],
                "formula": side,
                "tokens": fmap.shape[2] * fmap.shape[3] + int(stage.cls_token),
                "embed_dim": fmap.shape[1],
                "depth": stage.depth,
                "num_heads": stage.num_heads,
                "window": window,
                "step": step,
            }
        )
    return rows


def stage_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of :func:`stage_summary` rows (column names in English, as in the code)."""
    headers = ["stage", "kernel s", "stride s-o", "padding p", "H_i x W_i (forward_features)", "H_i (formula)", "tokens",
               "width C_i", "blocks", "heads", "pixel window (stride)"]
    cells = [
        [r["stage"], r["kernel_size"], r["stride"], r["padding"], f"{r['height']} x {r['width']}", r["formula"], r["tokens"],
         r["embed_dim"], r["depth"], r["num_heads"], f"{r['window']} ({r['step']})"]
        for r in rows
    ]
    return markdown_table(cells, headers, align="r" * len(headers))


def plot_receptive_fields(
    image: torch.Tensor,
    embeddings: Mapping[str, tuple[int, int, int]],
    tokens: Sequence[tuple[int, int]] = ((1, 1), (1, 2), (2, 2)),
    *,
    title: str | None = None,
    lang: str | None = None,
) -> matplotlib.figure.Figure:
    """Draw, on an image, the pixel windows of a few tokens for several token embeddings.

    One panel per embedding. The zero padding around the image is shown in grey; each chosen
    token's window (see :func:`token_window`) is a coloured square, and a dot marks its centre.

    Args:
        image: uint8 image (3, H, W).
        embeddings: panel label -> (kernel_size, stride, padding) in pixels, e.g.
            ``{"ViT": (4, 4, 0), "CvT": (3, 2, 1)}``.
        tokens: (row, column) of the tokens to draw in every panel; tokens outside a panel's map are skipped.
        title: the chapter's own title; ``None``: ``t("rf_title")``. Each panel's title is its label
            and the size of its token map.
        lang: language of the text.

    Raises:
        ValueError: if ``image`` is not (3, H, W), or an embedding does not fit the image.
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected one image (3, H, W), got shape {tuple(image.shape)}")
    height, width = image.shape[1:]
    fig, axes = plt.subplots(1, len(embeddings), figsize=(3.6 * len(embeddings), 4.0), squeeze=False)
    for ax, (label, (k, s, p)) in zip(axes[0], embeddings.items()):
        h, w = conv_output_size(height, k, s, p), conv_output_size(width, k, s, p)
        ax.add_patch(Rectangle((-p - 0.5, -p - 0.5), width + 2 * p, height + 2 * p, color="0.85", zorder=0))
        extent = (-0.5, width - 0.5, height - 0.5, -0.5)  # pixel centres at whole numbers
        ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest", extent=extent, zorder=1)
        for n, (i, j) in enumerate(tokens):
            if i >= h or j >= w:
                continue
            (r0, r1), (c0, c1) = token_window(i, k, s, p), token_window(j, k, s, p)
            color = f"C{n % 10}"
            ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, lw=2.2, ec=color, zorder=3))
            ax.plot((c0 + c1 - 1) / 2, (r0 + r1 - 1) / 2, "o", color=color, ms=4, zorder=4)
        margin = max(p, 1) + 0.5
        ax.set(xlim=(-margin, width - 1 + margin), ylim=(height - 1 + margin, -margin),
               xlabel=t("x_pixels", lang), ylabel=t("y_pixels", lang))
        ax.set_title(f"{label}\n{t('rf_subtitle', lang, h=h, w=w)}", fontsize=10)
    fig.suptitle(title or t("rf_title", lang))
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig

