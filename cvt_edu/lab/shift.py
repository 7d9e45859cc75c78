"""Shift an image and watch the model: translation equivariance of CvT and ViT.

CvT has no positional embedding (Wu et al., ICCV 2021, Sec. 3 and 3.1): its convolutional token
embedding and convolutional projection see a token's neighbours, so a shifted object gives
(almost) the same tokens, shifted. ViT adds a learned positional embedding to every patch
(Dosovitskiy et al., ICLR 2021, Eq. 1): the same object at another place gets other tokens.
This module shifts images, reads the token maps of both models, measures how far the maps
*follow* the shift, and how predictions change when test images are shifted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import torch
from einops import rearrange
from torch import nn

from ..cvt import CvT
from ..train.data import ImageTensors
from ..train.loop import evaluate
from ..vit import ViT

__all__ = [
    "SHIFT_MODES",
    "shift_images",
    "shuffle_patches",
    "token_maps",
    "equivariance_errors",
    "prediction_changes",
    "shift_sweep",
    "show_shifted",
    "plot_equivariance",
    "plot_error_maps",
    "plot_prediction_changes",
    "plot_shift_sweep",
]

SHIFT_MODES = ("circular", "zeros")


def shift_images(images: torch.Tensor, shift: int | tuple[int, int], mode: str = "circular") -> torch.Tensor:
    """Move the content of images ``dy`` pixels down and ``dx`` pixels right.

    Args:
        images: shape (B, C, H, W) (or (C, H, W)), any dtype.
        shift: (dy, dx) in pixels, or one int for both; negative values move up / left.
        mode: ``"circular"``: what leaves one side comes back on the other (``torch.roll``);
            ``"zeros"``: the uncovered border is filled with 0 (black for uint8 images).

    Returns:
        A new tensor of the same shape and dtype.

    Raises:
        ValueError: for an unknown mode, or a shift as large as the image in ``"zeros"`` mode.
    """
    dy, dx = (shift, shift) if isinstance(shift, int) else shift
    if mode == "circular":
        return torch.roll(images, shifts=(dy, dx), dims=(-2, -1))
    if mode != "zeros":
        raise ValueError(f"unknown shift mode {mode!r}; expected one of {SHIFT_MODES}")
    h, w = images.shape[-2:]
    if abs(dy) >= h or abs(dx) >= w:
        raise ValueError(f"shift ({dy}, {dx}) moves everything out of a {h}x{w} image")
    out = torch.zeros_like(images)
    target = (..., slice(max(dy, 0), h + min(dy, 0)), slice(max(dx, 0), w + min(dx, 0)))
    source = (..., slice(max(-dy, 0), h - max(dy, 0)), slice(max(-dx, 0), w - max(dx, 0)))
    out[target] = images[source]
    return out


def shuffle_patches(images: torch.Tensor, patch_size: int, seed: int = 0) -> torch.Tensor:
    """Cut images into P x P patches and put the patches back in a random order (the same for every image).

    Every patch keeps its pixels; only the arrangement of the patches changes. A model that
    ignores where a patch sits (a ViT without positional embedding) cannot tell the difference.

    Args:
        images: shape (B, C, H, W), H and W multiples of P.
        patch_size: P, in pixels.
        seed: seeds the permutation.

    Returns:
        Images of the same shape and dtype.

    Raises:
        ValueError: if P does not divide H or W.
    """
    h, w = images.shape[-2:]
    if h % patch_size or w % patch_size:
        raise ValueError(f"image size {h}x{w} is not divisible by the patch size {patch_size}")
    patches = rearrange(images, "b c (h p1) (w p2) -> b (h w) c p1 p2", p1=patch_size, p2=patch_size)
    order = torch.randperm(patches.shape[1], generator=torch.Generator().manual_seed(seed))
    return rearrange(patches[:, order], "b (h w) c p1 p2 -> b c (h p1) (w p2)", h=h // patch_size)


@torch.no_grad()
def token_maps(model: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """The token maps a model computes on its way to the classifier, each shape (B, C, h, w).

    - :class:`~cvt_edu.cvt.CvT`: the output of stage 1's convolutional token embedding, then the
      output of every stage (``forward_features``): 1 + number of stages maps.
    - :class:`~cvt_edu.vit.ViT`: the patch embedding plus positional embedding, then the output of
      every block: 1 + depth maps, all (B, D, H/P, W/P). The [CLS] token is left out.

    The model runs in eval mode (it is put back in its mode afterwards).

    Args:
        model: a course CvT or ViT.
        images: normalised images (B, 3, H, W).

    Raises:
        TypeError: for another kind of model.
    """
    was_training = model.training
    model.eval()
    outputs: list[torch.Tensor] = []
    try:
        if isinstance(model, CvT):
            hook = model.stages[0].embed.register_forward_hook(
                lambda m, i, o: outputs.append(rearrange(o[0], "b (h w) c -> b c h w", h=o[1][0], w=o[1][1]))
            )
            try:
                maps = model.forward_features(images).maps
            finally:
                hook.remove()
            return outputs + maps
        if isinstance(model, ViT):
            p = model.config.patch_size
            h, w = images.shape[-2] // p, images.shape[-1] // p
            layers = [model.pos_drop, *model.blocks]
            hooks = [layer.register_forward_hook(lambda m, i, o: outputs.append(o)) for layer in layers]
            try:
                model(images)
            finally:
                for hook in hooks:
                    hook.remove()
            return [rearrange(o[:, 1:], "b (h w) d -> b d h w", h=h, w=w) for o in outputs]
        raise TypeError(f"token_maps needs a cvt_edu CvT or ViT, got {type(model).__name__}")
    finally:
        model.train(was_training)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


@torch.no_grad()
def equivariance_errors(model: nn.Module, images: torch.Tensor, shift: int) -> list[dict[str, Any]]:
    """How far each token map of ``model`` follows a circular shift of the images.

    With F a token map of stride t pixels per token and S_s a circular shift by s pixels down
    and right (s a multiple of t), the map is *equivariant* when F(S_s x) = S_{s/t} F(x): the
    tokens move with the content. Two relative errors are measured, over the whole batch:

    - ``follow`` = ||F(S_s x) - S_{s/t} F(x)|| / ||S_{s/t} F(x)||: 0 for a perfectly equivariant map;
    - ``stay``   = ||F(S_s x) - F(x)|| / ||F(x)||: how much the map changed at fixed places.

    Border tokens make CvT's ``follow`` error non-zero (its convolutions pad with zeros, and the
    circular shift puts a seam in the image); ViT's positional embedding, added at fixed places,
    makes its error non-zero even for shifts by whole patches.

    Args:
        model: a course CvT or ViT.
        images: normalised images (B, 3, H, W).
        shift: s, in pixels, along both axes.

    Returns:
        One dict per map of :func:`token_maps`: ``stride`` (t, pixels per token), ``follow`` and
        ``stay``; both are ``nan`` when t does not divide s. ``follow_map``, shape (h, w), spreads
        ``follow`` over the map: per token of S_{s/t} F(x), the norm of the difference over the channels,
        averaged over the batch and divided by the mean token norm (``None`` when t does not divide s).
    """
    plain = token_maps(model, images)
    moved = token_maps(model, shift_images(images, shift))
    rows = []
    for a, b in zip(moved, plain):
        stride = images.shape[-1] // b.shape[-1]
        if shift % stride:
            rows.append(dict(stride=stride, follow=float("nan"), stay=float("nan"), follow_map=None))
            continue
        target = shift_images(b, shift // stride)
        per_token = (a - target).norm(dim=1).mean(0) / target.norm(dim=1).mean().clamp_min(1e-12)
        rows.append(dict(stride=stride, follow=_relative(a, target), stay=_relative(a, b), follow_map=per_token.cpu()))
    return rows


def prediction_changes(
    model: nn.Module, data: ImageTensors, changed: Mapping[str, torch.Tensor], *, batch_size: int = 256
) -> dict[str, dict[str, float]]:
    """Accuracy of ``model`` on changed copies of a test set, and how many predictions stay the same.

    Args:
        model: maps normalised images (B, 3, H, W) to logits (B, K).
        data: uint8 test images, as from :func:`cvt_edu.train.data.load_data`.
        changed: label -> uint8 images (N, 3, H, W), the test images changed in some way
            (same order and labels as ``data``).
        batch_size: images per forward pass.

    Returns:
        label -> ``accuracy`` (0..1) and ``consistency`` (0..1, the share of images whose
        predicted class is the one predicted on the unchanged images).

    Raises:
        ValueError: if a changed set does not have the shape of ``data.images``.
    """
    for label, images in changed.items():
        if images.shape != data.images.shape:
            raise ValueError(f"{label!r}: images of shape {tuple(images.shape)}, expected {tuple(data.images.shape)}")
    reference = evaluate(model, data, batch_size=batch_size)["predictions"]
    out = {}
    for label, images in changed.items():
        report = evaluate(model, ImageTensors(images, data.labels, data.classes), batch_size=batch_size)
        out[label] = dict(accuracy=report["accuracy"], consistency=float((report["predictions"] == reference).float().mean()))
    return out


def shift_sweep(
    model: nn.Module,
    data: ImageTensors,
    shifts: Sequence[int],
    mode: str = "circular",
    *,
    batch_size: int = 256,
) -> list[dict[str, float]]:
    """Accuracy of ``model`` on shifted copies of a test set, and how many predictions stay the same.

    Every image is shifted by (s, s) pixels (see :func:`shift_images`) before the evaluation
    transform; predictions are compared with those on the unshifted images.

    Args:
        model: maps normalised images (B, 3, H, W) to logits (B, K).
        data: uint8 test images, as from :func:`cvt_edu.train.data.load_data`.
        shifts: the values of s, in pixels.
        mode: ``"circular"`` or ``"zeros"``.
        batch_size: images per forward pass.

    Returns:
        One dict per shift: ``shift``, ``accuracy`` (0..1) and ``consistency`` (0..1, the share
        of images whose predicted class is the one predicted without a shift).

    Raises:
        ValueError: for an unknown mode (before any evaluation).
    """
    if mode not in SHIFT_MODES:
        raise ValueError(f"unknown shift mode {mode!r}; expected one of {SHIFT_MODES}")
    changes = prediction_changes(model, data, {str(s): shift_images(data.images, s, mode) for s in shifts}, batch_size=batch_size)
    return [dict(shift=s, **changes[str(s)]) for s in shifts]


def show_shifted(
    image: torch.Tensor,
    shifts: Sequence[int],
    modes: Mapping[str, str],
    *,
    title: str = "Shifted images",
    caption: str = "{mode}, {shift} px",
) -> matplotlib.figure.Figure:
    """One image shifted by each value in ``shifts``, one row per mode.

    Args:
        image: uint8 image (3, H, W).
        shifts: shifts s in pixels (down and right).
        modes: shift mode (``"circular"``, ``"zeros"``) -> its label in the figure.
        title: figure title; caption: panel caption, formatted with ``mode`` (the label) and ``shift``.
    """
    fig, axes = plt.subplots(len(modes), len(shifts), figsize=(1.9 * len(shifts), 2.1 * len(modes)), squeeze=False)
    for row, (mode, label) in zip(axes, modes.items()):
        for ax, s in zip(row, shifts):
            ax.imshow(shift_images(image, s, mode).permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_title(caption.format(mode=label, shift=s), fontsize=8)
            ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_equivariance(
    errors: Mapping[str, tuple[float, float]],
    *,
    legend: tuple[str, str] = ("F(shifted x) vs shifted F(x)", "F(shifted x) vs F(x)"),
    title: str = "Do the token maps follow the shift?",
    ylabel: str = "relative difference",
) -> matplotlib.figure.Figure:
    """Grouped bars of the two errors of :func:`equivariance_errors` for several token maps.

    Args:
        errors: bar-group label (e.g. "CvT stage 1") -> (follow, stay).
        legend: names of the two bars; title, ylabel: figure title and y label.
    """
    labels = list(errors)
    x = torch.arange(len(labels)).numpy()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(labels) + 2), 3.8))
    for k, (name, offset) in enumerate(zip(legend, (-0.2, 0.2))):
        bars = ax.bar(x + offset, [errors[n][k] for n in labels], width=0.4, label=name, color=f"C{k}")
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, labels, rotation=20, ha="right", fontsize=8)
    ax.set(ylabel=ylabel, title=title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_error_maps(
    maps: Mapping[str, torch.Tensor],
    *,
    title: str = "Where the token maps fail to follow the shift",
    colorbar_label: str = "relative difference",
) -> matplotlib.figure.Figure:
    """Heat maps of per-token differences (the ``follow_map`` of :func:`equivariance_errors`), one shared colour scale.

    Args:
        maps: panel label -> a map (h, w).
        title: figure title; colorbar_label: the colour bar's label.
    """
    vmax = max(float(m.max()) for m in maps.values())
    fig, axes = plt.subplots(1, len(maps), figsize=(2.6 * len(maps) + 1, 2.9), squeeze=False)
    for ax, (label, m) in zip(axes[0], maps.items()):
        image = ax.imshow(m.numpy(), cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_title(f"{label}\n{m.shape[0]}x{m.shape[1]}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=list(axes[0]), label=colorbar_label, shrink=0.85)
    fig.suptitle(title)
    return fig


def plot_prediction_changes(
    reports: Mapping[str, Mapping[str, Mapping[str, float]]],
    *,
    title: str = "Changed test images",
    ylabels: tuple[str, str] = ("test accuracy (%)", "unchanged predictions (%)"),
) -> matplotlib.figure.Figure:
    """Grouped bars: for each change (x axis), one bar per model; accuracy on the left, consistency on the right.

    Args:
        reports: model name -> the output of :func:`prediction_changes` (change label -> row).
        title, ylabels: the figure's words.
    """
    models = list(reports)
    changes = list(next(iter(reports.values())))
    x = torch.arange(len(changes)).numpy()
    width = 0.8 / len(models)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.9))
    for ax, key, ylabel in zip(axes, ("accuracy", "consistency"), ylabels):
        for i, name in enumerate(models):
            values = [100 * reports[name][c][key] for c in changes]
            bars = ax.bar(x + (i - (len(models) - 1) / 2) * width, values, width=width, color=f"C{i}", label=name)
            ax.bar_label(bars, fmt="%.0f", fontsize=7)
        ax.set_xticks(x, changes, fontsize=8)
        ax.set(ylabel=ylabel)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_shift_sweep(
    sweeps: Mapping[str, Mapping[str, Sequence[Mapping[str, float]]]],
    *,
    mode_labels: Mapping[str, str] | None = None,
    title: str = "Shifted test images",
    xlabel: str = "shift (pixels)",
    ylabels: tuple[str, str] = ("test accuracy (%)", "unchanged predictions (%)"),
) -> matplotlib.figure.Figure:
    """Accuracy and consistency against the shift, one colour per model, one line style per mode.

    Args:
        sweeps: model name -> mode -> the rows of :func:`shift_sweep`.
        mode_labels: mode -> its name in the legend (default: the mode itself).
        title, xlabel, ylabels: figure title, x label, y labels of the two panels.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.9))
    styles = ("-", "--", ":")
    for i, (name, by_mode) in enumerate(sweeps.items()):
        for j, (mode, rows) in enumerate(by_mode.items()):
            label = f"{name} ({(mode_labels or {}).get(mode, mode)})"
            xs = [r["shift"] for r in rows]
            for ax, key in zip(axes, ("accuracy", "consistency")):
                ax.plot(xs, [100 * r[key] for r in rows], styles[j % 3], marker="o", ms=4, color=f"C{i}", label=label)
    for ax, ylabel in zip(axes, ylabels):
        ax.set(xlabel=xlabel, ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
