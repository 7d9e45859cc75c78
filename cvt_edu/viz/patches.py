"""Pictures of patches: an image cut into patches, as a sequence, and a widget that changes P.

ViT (Dosovitskiy et al. 2021, Sec. 3.1) reads an image as N = H*W / P^2 patches of P x P pixels.
Every figure function returns the ``matplotlib`` figure; its text comes from the string table
(:mod:`cvt_edu.course.i18n`) in ``lang`` ("pt", "es" or "en"; ``None``: the notebook's language).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from einops import rearrange

from ..course.i18n import t
from ..patching import num_patches, patchify

__all__ = ["patch_canvas", "patch_size_widget", "plot_num_tokens", "show_patch_grid", "show_patches", "show_side_by_side"]


def _as_uint8_image(image: torch.Tensor) -> torch.Tensor:
    """Check one image (3, H, W) and return it as uint8 (floats are read as values in [0, 1])."""
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected one image of shape (C, H, W) with C = 1 or 3, got shape {tuple(image.shape)}")
    if image.dtype != torch.uint8:
        image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    return image


def patch_canvas(image: torch.Tensor, patch_size: int, gap: int = 1) -> torch.Tensor:
    """The image with its patches pulled apart by white lines, to be drawn with ``imshow``.

    Args:
        image: shape (C, H, W), uint8 (or float in [0, 1]).
        patch_size: P, in pixels; must divide H and W.
        gap: width of the white lines between patches, in pixels.

    Returns:
        uint8 tensor (H + gap*H/P, W + gap*W/P, C): patch (i, j) of the image starts at
        pixel (i*(P + gap), j*(P + gap)), so patch number i*W/P + j of :func:`patchify` is there.

    Raises:
        ValueError: if the image is not (C, H, W) or P does not divide H or W.
    """
    image = _as_uint8_image(image)
    c, h, w = image.shape
    num_patches((h, w), patch_size)
    patches = patchify(image[None], patch_size)[0]  # (N, P*P*C), row-major order
    grid = rearrange(patches, "(h w) (p1 p2 c) -> h w c p1 p2", h=h // patch_size, p1=patch_size, p2=patch_size, c=c)
    grid = F.pad(grid, (0, gap, 0, gap), value=255)
    return rearrange(grid, "h w c p1 p2 -> (h p1) (w p2) c")


def show_patch_grid(image: torch.Tensor, patch_sizes: Sequence[int], *, lang: str | None = None) -> matplotlib.figure.Figure:
    """The same image cut into patches of several sizes, side by side.

    Args:
        image: shape (C, H, W), uint8 (or float in [0, 1]).
        patch_sizes: the values of P to draw; each must divide H and W.
        lang: language of the text.

    Raises:
        ValueError: if a patch size does not divide the image.
    """
    fig, axes = plt.subplots(1, len(patch_sizes), figsize=(3.2 * len(patch_sizes), 3.7), squeeze=False, layout="constrained")
    for ax, p in zip(axes[0], patch_sizes):
        ax.imshow(patch_canvas(image, p, gap=1 if p > 1 else 0).numpy(), interpolation="nearest")
        ax.set_title(t("patch_grid_panel", lang, p=p, n=num_patches(tuple(image.shape[-2:]), p)))
        ax.axis("off")
    fig.suptitle(t("patch_grid_title", lang))
    return fig


def show_patches(image: torch.Tensor, patch_size: int, *, lang: str | None = None) -> matplotlib.figure.Figure:
    """One image as ViT reads it: its patches numbered in row-major order, and the matrix of
    flattened patches x_p, shape (N, P^2 C), that the linear patch embedding multiplies (ViT, Eq. 1).

    Args:
        image: shape (C, H, W), uint8 (or float in [0, 1]).
        patch_size: P; must divide H and W.
        lang: language of the text.

    Raises:
        ValueError: if P does not divide the image.
    """
    image = _as_uint8_image(image)
    h, w = image.shape[-2:]
    gap = 1
    canvas = patch_canvas(image, patch_size, gap)
    fig, (ax_grid, ax_mat) = plt.subplots(1, 2, figsize=(11, 4.6), gridspec_kw={"width_ratios": [1, 1.25]})
    ax_grid.imshow(canvas.numpy(), interpolation="nearest")
    gw = w // patch_size
    n = num_patches((h, w), patch_size)
    if n <= 64:
        for k in range(n):
            i, j = divmod(k, gw)
            ax_grid.text(j * (patch_size + gap), i * (patch_size + gap) - 0.5, str(k), fontsize=7, color="white",
                         va="top", ha="left", bbox={"boxstyle": "square,pad=0.05", "fc": "black", "alpha": 0.6, "lw": 0})
    ax_grid.set_title(t("patch_numbered", lang))
    ax_grid.axis("off")
    matrix = patchify(image[None], patch_size)[0]
    shown = ax_mat.imshow(matrix.numpy(), aspect="auto", cmap="gray", interpolation="nearest")
    ax_mat.set(title=f"{t('patch_matrix', lang)}  {tuple(matrix.shape)}", xlabel=t("patch_vector_axis", lang),
               ylabel=t("token_index", lang))
    fig.colorbar(shown, ax=ax_mat, fraction=0.04)
    fig.suptitle(t("patch_sequence_title", lang, p=patch_size))
    fig.tight_layout()
    return fig


def show_side_by_side(
    images: Sequence[torch.Tensor], titles: Sequence[str], *, title: str | None = None
) -> matplotlib.figure.Figure:
    """A few images in a row, each with its title (e.g. an image and its patches shuffled).

    The figure has no text of its own: the titles are the caller's (a chapter takes them from
    :func:`cvt_edu.course.i18n.t`).

    Args:
        images: each of shape (C, H, W), uint8 (or float in [0, 1]).
        titles: one per image.
        title: figure title; ``None``: none.

    Raises:
        ValueError: if the numbers of images and titles differ, or an image is not (C, H, W).
    """
    if len(images) != len(titles):
        raise ValueError(f"{len(titles)} titles for {len(images)} images")
    fig, axes = plt.subplots(1, len(images), figsize=(3.0 * len(images), 3.3), squeeze=False)
    for ax, image, name in zip(axes[0], images, titles):
        ax.imshow(_as_uint8_image(image).permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_num_tokens(
    image_sizes: Sequence[int],
    patch_sizes: Sequence[int],
    *,
    lang: str | None = None,
) -> matplotlib.figure.Figure:
    """N against P for square images of several sides, on a log scale; P that do not divide a side are skipped.

    Args:
        image_sizes: image sides H = W, in pixels.
        patch_sizes: values of P.
        lang: language of the text.
    """
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for s in image_sizes:
        ps = [p for p in patch_sizes if s % p == 0]
        ns = [num_patches(s, p) for p in ps]
        ax.plot(ps, ns, marker="o", label=t("image_side", lang, s=s))
        for p, n in zip(ps, ns):
            ax.annotate(str(n), (p, n), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(list(patch_sizes), [str(p) for p in patch_sizes])
    ax.set(title=t("num_tokens_title", lang), xlabel=t("patch_size_px", lang), ylabel=t("num_tokens_log", lang))
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return fig


def patch_size_widget(
    image: torch.Tensor,
    patch_sizes: Sequence[int] = (1, 2, 4, 8, 16, 32),
    *,
    lang: str | None = None,
):
    """An ``ipywidgets`` slider over P that redraws the image cut into P x P patches.

    Args:
        image: shape (C, H, W), uint8 (or float in [0, 1]).
        patch_sizes: the values offered; each must divide H and W.
        lang: language of the text (the title gives P, N and P*P*C, the length of a flattened patch).

    Returns:
        An ``ipywidgets.interactive`` widget; display it (or leave it last in a cell).

    Raises:
        ValueError: if a patch size does not divide the image.
    """
    import ipywidgets as widgets
    from IPython.display import display

    image = _as_uint8_image(image)
    c, h, w = image.shape
    for p in patch_sizes:
        num_patches((h, w), p)

    def draw(p: int) -> None:
        fig, ax = plt.subplots(figsize=(4.2, 4.4))
        ax.imshow(patch_canvas(image, p, gap=1 if p > 1 else 0).numpy(), interpolation="nearest")
        ax.set_title(t("widget_title", lang, p=p, n=num_patches((h, w), p), d=p * p * c), fontsize=10)
        ax.axis("off")
        fig.tight_layout()
        display(fig)
        plt.close(fig)

    value = 4 if 4 in patch_sizes else patch_sizes[0]
    slider = widgets.SelectionSlider(options=list(patch_sizes), value=value, description="P")
    return widgets.interactive(draw, p=slider)
