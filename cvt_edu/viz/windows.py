"""Pictures of Swin's windows (Liu et al., ICCV 2021, Sec. 3.1-3.2): partition, cyclic shift, mask, relative positions, merging.

Every picture is made by the functions of :mod:`cvt_edu.swin` themselves (``window_partition``,
``cyclic_shift``, ``shifted_window_mask``, ``relative_position_index``, ``PatchMerging``), applied
to a real image or to a map of token numbers, so what you see is what the model computes.

An image (3, H, W) is read as a token map with patches of P x P pixels: token (i, j) is the
pixel block [iP, (i+1)P) x [jP, (j+1)P). A window of M tokens is M*P pixels wide.

Every function returns the ``matplotlib`` figure (or an ``ipywidgets`` widget); the text on it
is in ``lang`` ("pt", "es" or "en"; ``None``: the notebook's language, :mod:`cvt_edu.course.i18n`).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import matplotlib.collections
import matplotlib.patches
import matplotlib.pyplot as plt
import numpy as np
import torch
from einops import rearrange
from matplotlib.colors import ListedColormap
from torch import nn

from ..course.i18n import t
from ..swin import PatchMerging
from ..windows import (
    MASK_VALUE,
    cyclic_shift,
    relative_position_index,
    shifted_window_labels,
    shifted_window_mask,
    window_partition,
)

__all__ = [
    "image_as_map",
    "merging_order",
    "plot_cyclic_shift",
    "plot_patch_merging",
    "plot_relative_position_index",
    "plot_shift_mask",
    "plot_shifts",
    "plot_window_partition",
    "shift_widget",
]


def image_as_map(image: torch.Tensor) -> torch.Tensor:
    """One image as a channels-last map of pixels, the layout Swin keeps its token maps in.

    Args:
        image: shape (3, H, W), uint8 (as in :class:`cvt_edu.train.data.ImageTensors`) or float in [0, 1].

    Returns:
        float tensor (1, H, W, 3), values in [0, 1].

    Raises:
        ValueError: if the image is not (3, H, W).
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected one image of shape (3, H, W), got shape {tuple(image.shape)}")
    image = image.float() / 255 if image.dtype == torch.uint8 else image.float().clamp(0, 1)
    return rearrange(image, "c h w -> 1 h w c")


def _check_tokens(h: int, w: int, patch_size: int, window_size: int) -> tuple[int, int]:
    if h % patch_size or w % patch_size:
        raise ValueError(f"patch size {patch_size} does not divide the {h}x{w} image")
    th, tw = h // patch_size, w // patch_size
    if th % window_size or tw % window_size:
        raise ValueError(f"window size {window_size} does not divide the {th}x{tw} token map (patches of {patch_size})")
    return th, tw


def merging_order(h: int, w: int) -> torch.Tensor:
    """Which tokens :class:`cvt_edu.swin.PatchMerging` concatenates into each merged token, in order.

    Runs the real ``PatchMerging`` (its LayerNorm and linear map replaced by the identity) on a
    map whose only channel is the token's number (row-major).

    Args:
        h, w: the token map before merging; even.

    Returns:
        int64 tensor (h/2, w/2, 4): the numbers of the 4 tokens of each merged token, in the
        order of the concatenation: (row 0, col 0), (row 1, col 0), (row 0, col 1), (row 1, col 1).

    Raises:
        ValueError: if h or w is odd.
    """
    merge = PatchMerging(dim=1)
    merge.norm, merge.reduction = nn.Identity(), nn.Identity()
    numbers = torch.arange(h * w, dtype=torch.float32).reshape(1, h, w, 1)
    return merge(numbers)[0].round().long()


def _grid(ax, size: int, step: float, offset: float = 0.0, **style) -> None:
    """Lines at offset + k * step across a size x size picture (pixel edges at -0.5)."""
    for k in np.arange(offset % step, size + 1e-9, step):
        if 0 < k < size:
            ax.axhline(k - 0.5, **style)
            ax.axvline(k - 0.5, **style)


def _show(ax, picture: torch.Tensor) -> None:
    ax.imshow(picture.numpy(), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_window_partition(
    image: torch.Tensor, patch_size: int, window_size: int, *, lang: str | None = None
) -> matplotlib.figure.Figure:
    """An image cut into non-overlapping windows of M x M tokens, and the windows ``window_partition`` returns.

    Left: the image, thin lines between patches, thick lines between windows, each window's
    number. Right: the output of :func:`cvt_edu.windows.window_partition` on the image's map,
    shape (H/(MP) * W/(MP), MP, MP, 3), one picture per window, in the order of the batch dimension.

    Args:
        image: (3, H, W), uint8 or float in [0, 1].
        patch_size: P, in pixels.
        window_size: M, in tokens.
        lang: language of the text.

    Raises:
        ValueError: if P does not divide the image or M the token map.
    """
    x = image_as_map(image)
    _, h, w, _ = x.shape
    th, tw = _check_tokens(h, w, patch_size, window_size)
    side = window_size * patch_size
    windows = window_partition(x, side)  # (nW, M*P, M*P, 3): windows of M x M tokens = M*P x M*P pixels
    nh, nw = th // window_size, tw // window_size
    fig = plt.figure(figsize=(10.5, 5.2), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[1, 1])
    ax = left.subplots()
    _show(ax, x[0])
    _grid(ax, h, patch_size, color="white", lw=0.4, alpha=0.6)
    _grid(ax, h, side, color="yellow", lw=2.5)
    for k in range(nh * nw):
        ax.text((k % nw + 0.5) * side - 0.5, (k // nw + 0.5) * side - 0.5, str(k), color="yellow", ha="center", va="center",
                fontsize=14, fontweight="bold")
    ax.set_title(t("win_image", lang, m=window_size, p=patch_size, th=th, tw=tw), fontsize=10)
    axes = right.subplots(nh, nw, squeeze=False)
    for k, a in enumerate(axes.flat):
        _show(a, windows[k])
        a.set_title(f"{k}", fontsize=9)
    right.suptitle(t("win_tiles", lang, n=len(windows), shape=tuple(windows.shape)), fontsize=10)
    fig.suptitle(t("win_title", lang))
    return fig


def _tint(labels: torch.Tensor, patch_size: int) -> np.ndarray:
    """An RGBA overlay colouring each token by its label, pixels repeated P times."""
    colours = plt.get_cmap("tab10")(labels.numpy() % 10)
    colours[..., 3] = 0.35
    return colours.repeat(patch_size, axis=0).repeat(patch_size, axis=1)


def _label_borders(ax, labels: torch.Tensor, patch_size: int, **style) -> None:
    """Segments between neighbouring tokens whose labels differ."""
    p, lab = patch_size, labels.numpy()
    segments = []
    for y, x in zip(*np.nonzero(lab[:, 1:] != lab[:, :-1])):  # between columns x and x + 1
        segments.append([((x + 1) * p - 0.5, y * p - 0.5), ((x + 1) * p - 0.5, (y + 1) * p - 0.5)])
    for y, x in zip(*np.nonzero(lab[1:, :] != lab[:-1, :])):  # between rows y and y + 1
        segments.append([(x * p - 0.5, (y + 1) * p - 0.5), ((x + 1) * p - 0.5, (y + 1) * p - 0.5)])
    ax.add_collection(matplotlib.collections.LineCollection(segments, **style))


def plot_cyclic_shift(
    image: torch.Tensor, patch_size: int, window_size: int, shift_size: int, *, axes=None, lang: str | None = None
) -> matplotlib.figure.Figure:
    """The shifted windows on the image, and how Swin computes them with a cyclic shift (Sec. 3.2, Fig. 2 and 4).

    Top: the image with the window grid moved by s tokens (yellow); the windows on the
    border are smaller, so there are more windows than before.
    Bottom: the image rolled up and left by s tokens (:func:`cvt_edu.windows.cyclic_shift`) with the
    regular M x M grid (yellow): the same number of windows as without shift. The rows and
    columns that came round from the other side are veiled, and dashed red lines separate tokens
    of one window that belong to different shifted windows (:func:`shifted_window_labels`): the
    pairs the mask of :func:`cvt_edu.windows.shifted_window_mask` blocks.

    Args:
        image: (3, H, W), uint8 or float in [0, 1].
        patch_size: P, in pixels.
        window_size: M, in tokens.
        shift_size: s, in tokens, 0 <= s < M.
        axes: two matplotlib axes to draw on (top, bottom); ``None``: a new figure.
        lang: language of the text.

    Raises:
        ValueError: if P or M do not fit, or s is not in [0, M).
    """
    x = image_as_map(image)
    _, h, w, _ = x.shape
    th, tw = _check_tokens(h, w, patch_size, window_size)
    labels = shifted_window_labels(th, tw, window_size, shift_size)
    if axes is None:
        _, axes = plt.subplots(2, 1, figsize=(3.4, 7), layout="constrained")
    top, bottom = axes
    side, s = window_size * patch_size, shift_size * patch_size
    _show(top, x[0])
    _grid(top, h, side, offset=s, color="yellow", lw=2.5)
    top.set_title(t("shift_displaced", lang, s=shift_size, n=int(labels.max()) + 1), fontsize=9)
    _show(bottom, cyclic_shift(x, s)[0])
    if s:
        veil = np.zeros((h, w, 4))
        veil[h - s :, :] = veil[:, w - s :] = (1, 1, 1, 0.45)
        bottom.imshow(veil, interpolation="nearest")
    rolled_labels = cyclic_shift(labels[None, :, :, None], shift_size)[0, :, :, 0]
    _label_borders(bottom, rolled_labels, patch_size, colors="red", linewidths=2, linestyles="--")
    _grid(bottom, h, side, color="yellow", lw=2.5)
    bottom.set_title(t("shift_rolled", lang, s=shift_size, n=(th // window_size) * (tw // window_size)), fontsize=9)
    return top.figure


def plot_shifts(
    image: torch.Tensor, patch_size: int, window_size: int, shifts: Sequence[int], *, lang: str | None = None
) -> matplotlib.figure.Figure:
    """:func:`plot_cyclic_shift` for several shifts side by side (one column per s), in ``lang``."""
    fig, axes = plt.subplots(2, len(shifts), figsize=(3.1 * len(shifts), 6.6), squeeze=False, layout="constrained")
    for column, s in zip(axes.T, shifts):
        plot_cyclic_shift(image, patch_size, window_size, s, axes=column, lang=lang)
    fig.suptitle(t("shift_title", lang))
    return fig


def shift_widget(image: torch.Tensor, patch_size: int, window_size: int, *, lang: str | None = None):
    """An ``ipywidgets`` slider over the shift s (0 to M - 1) that redraws :func:`plot_cyclic_shift`.

    Returns:
        An ``ipywidgets.interactive`` widget; display it (or leave it last in a cell).

    Raises:
        ValueError: if P does not divide the image or M the token map.
    """
    import ipywidgets as widgets
    from IPython.display import display

    _check_tokens(image.shape[-2], image.shape[-1], patch_size, window_size)

    def draw(s: int) -> None:
        fig = plot_cyclic_shift(image, patch_size, window_size, s, lang=lang)
        display(fig)
        plt.close(fig)

    slider = widgets.IntSlider(value=window_size // 2, min=0, max=window_size - 1, description="s")
    return widgets.interactive(draw, s=slider)


MASK_COLOURS = ListedColormap(["#d62728", "#f2f2f2"])  # blocked, allowed


def plot_shift_mask(
    h: int, w: int, window_size: int, shift_size: int, *, lang: str | None = None
) -> matplotlib.figure.Figure:
    """The SW-MSA attention mask of :func:`cvt_edu.windows.shifted_window_mask`, one picture per window.

    Window k's picture is its (M*M, M*M) mask: row = query token, column = key token (row-major
    inside the window), light = may attend (0), red = blocked (-100). Windows are laid out as
    on the token map.

    Args:
        h, w: the token map; multiples of M.
        window_size: M.
        shift_size: s, 0 <= s < M.
        lang: language of the text.

    Raises:
        ValueError: as :func:`cvt_edu.windows.shifted_window_mask`.
    """
    mask = shifted_window_mask(h, w, window_size, shift_size)
    nh, nw = h // window_size, w // window_size
    fig, axes = plt.subplots(nh, nw, figsize=(1.5 * nw + 1.2, 1.5 * nh + 0.8), squeeze=False, layout="constrained")
    for k, ax in enumerate(axes.flat):
        ax.imshow((mask[k] == 0).numpy(), cmap=MASK_COLOURS, vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        blocked = int((mask[k] == MASK_VALUE).sum())
        ax.set_title(t("mask_window", lang, k=k, b=blocked), fontsize=7)
    handles = [matplotlib.patches.Patch(color=MASK_COLOURS(1), label=t("mask_allowed", lang)),
               matplotlib.patches.Patch(color=MASK_COLOURS(0), label=t("mask_blocked", lang))]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8)
    fig.suptitle(t("mask_title", lang, h=h, w=w, m=window_size, s=shift_size), fontsize=10)
    return fig


def plot_relative_position_index(
    window_size: int, query: int | None = None, *, lang: str | None = None
) -> matplotlib.figure.Figure:
    """The relative position index of :func:`cvt_edu.windows.relative_position_index` (Sec. 3.2, Eq. 4).

    Left: the whole (M*M, M*M) table, the row of token pair (i, j) giving the row of B_hat
    ((2M-1)^2 rows) its bias is read from. Right: the row of one query token, put back on the
    M x M window, with the index of every key token written in: equal offsets, equal index.

    Args:
        window_size: M.
        query: the query token (row-major in the window); ``None``: the centre.
        lang: language of the text.

    Raises:
        ValueError: if ``query`` is not in [0, M*M).
    """
    m = window_size
    index = relative_position_index(m)
    query = (m * m) // 2 if query is None else query
    if not 0 <= query < m * m:
        raise ValueError(f"query must be a token of the window, in [0, {m * m}), got {query}")
    fig, (ax_table, ax_row) = plt.subplots(1, 2, figsize=(11, 4.8), layout="constrained")
    image = ax_table.imshow(index.numpy(), cmap="viridis", interpolation="nearest")
    ax_table.axhline(query, color="red", lw=1.5, alpha=0.8)
    ax_table.set(title=t("rpi_table", lang, n=m * m), xlabel=t("rpi_key", lang), ylabel=t("rpi_query", lang))
    fig.colorbar(image, ax=ax_table, label=t("rpi_index", lang, k=(2 * m - 1) ** 2 - 1))
    row = index[query].reshape(m, m)
    ax_row.imshow(row.numpy(), cmap="viridis", vmin=0, vmax=(2 * m - 1) ** 2 - 1, interpolation="nearest")
    for (y, x), value in np.ndenumerate(row.numpy()):
        ax_row.text(x, y, str(value), ha="center", va="center", color="white", fontsize=11 if m <= 7 else 7)
    qy, qx = divmod(query, m)
    ax_row.add_patch(matplotlib.patches.Rectangle((qx - 0.5, qy - 0.5), 1, 1, fill=False, ec="red", lw=2.5))
    ax_row.set_xticks(range(m))
    ax_row.set_yticks(range(m))
    ax_row.set_title(t("rpi_row", lang, i=query, y=qy, x=qx), fontsize=10)
    fig.suptitle(t("rpi_title", lang, m=m, n=(2 * m - 1) ** 2))
    return fig


def plot_patch_merging(h: int = 4, w: int = 4, *, lang: str | None = None) -> matplotlib.figure.Figure:
    """Which tokens patch merging (Sec. 3.1) puts together, from the real :class:`cvt_edu.swin.PatchMerging`.

    Left: an h x w map of numbered tokens, each 2 x 2 group in its colour. Right: the
    (h/2) x (w/2) merged map; each merged token lists the 4 tokens it concatenates, in order
    (:func:`merging_order`), before the linear map 4C -> 2C.

    Raises:
        ValueError: if h or w is odd.
    """
    order = merging_order(h, w)
    groups = (torch.arange(h)[:, None] // 2) * (w // 2) + torch.arange(w)[None, :] // 2
    fig, (ax_before, ax_after) = plt.subplots(1, 2, figsize=(9, 4.4), layout="constrained")
    ax_before.imshow(_tint(groups, 1)[..., :3] * 0.6 + 0.4, interpolation="nearest")
    for y in range(h):
        for x in range(w):
            ax_before.text(x, y, str(y * w + x), ha="center", va="center", fontsize=12)
    ax_before.set_title(t("merge_before", lang, h=h, w=w), fontsize=10)
    small = torch.arange((h // 2) * (w // 2)).reshape(h // 2, w // 2)
    ax_after.imshow(_tint(small, 1)[..., :3] * 0.6 + 0.4, interpolation="nearest")
    for y in range(h // 2):
        for x in range(w // 2):
            ax_after.text(x, y, "[" + ", ".join(str(int(v)) for v in order[y, x]) + "]", ha="center", va="center", fontsize=11)
    ax_after.set_title(t("merge_after", lang, h=h // 2, w=w // 2), fontsize=10)
    for ax in (ax_before, ax_after):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(t("merge_title", lang))
    return fig
