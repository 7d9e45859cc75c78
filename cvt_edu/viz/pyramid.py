"""Pictures of PVT's spatial reduction and of the token-map pyramid (Wang et al., ICCV 2021, Sec. 3.1-3.3).

- :func:`reduce_image` / :func:`plot_spatial_reduction`: what spatial-reduction attention (SRA)
  gives the keys and values, shown on a real image: the real
  :class:`cvt_edu.pvt.SpatialReductionAttention` ``reduce`` step, with an averaging convolution.
- :func:`pca_rgb` / :func:`plot_token_maps`: the token map of every stage of a pyramid model
  (CvT, Swin, PVT), its three main directions of variation shown as colours (chapters 3, 6, 7).

Every function returns the ``matplotlib`` figure; the text is in ``lang`` ("pt", "es" or "en";
``None``: the notebook's language, :mod:`cvt_edu.course.i18n`).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import matplotlib.pyplot as plt
import torch
from einops import rearrange
from torch import nn

from ..course.i18n import t
from ..pvt import PVTStageConfig, SpatialReductionAttention

__all__ = ["pca_rgb", "plot_spatial_reduction", "plot_token_maps", "reduce_image"]


def _as_float_image(image: torch.Tensor) -> torch.Tensor:
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected one image of shape (3, H, W), got shape {tuple(image.shape)}")
    return image.float() / 255 if image.dtype == torch.uint8 else image.float()


@torch.no_grad()
def reduce_image(image: torch.Tensor, sr_ratio: int) -> torch.Tensor:
    """The keys' and values' token map SRA makes from an image whose pixels are the tokens (Sec. 3.3, Eq. 4).

    Builds a real :class:`cvt_edu.pvt.SpatialReductionAttention` with C = 3, sets its reduction
    convolution (kernel R, stride R) to the average of each R x R block, channel by channel,
    and its LayerNorm to the identity (so that the result is still a picture), then calls its
    ``reduce``. A trained PVT learns its own weights; the sizes are the same.

    Args:
        image: (3, H, W), uint8 or float in [0, 1]; H and W multiples of R.
        sr_ratio: R.

    Returns:
        float tensor (3, H/R, W/R): one pixel per key/value token.

    Raises:
        ValueError: if the image is not (3, H, W) or R does not divide H and W.
    """
    x = _as_float_image(image)
    _, h, w = x.shape
    if sr_ratio < 1 or h % sr_ratio or w % sr_ratio:
        raise ValueError(f"sr_ratio {sr_ratio} must be >= 1 and divide the {h}x{w} image")
    sra = SpatialReductionAttention(PVTStageConfig(embed_dim=3, depth=1, num_heads=1, sr_ratio=sr_ratio))
    if sr_ratio > 1:
        nn.init.zeros_(sra.sr.weight)
        nn.init.zeros_(sra.sr.bias)
        for c in range(3):
            sra.sr.weight[c, c] = 1.0 / sr_ratio**2
        sra.norm = nn.Identity()
    tokens = rearrange(x, "c h w -> 1 (h w) c")
    reduced = sra.reduce(tokens, (h, w))  # (1, H/R * W/R, 3)
    return rearrange(reduced[0], "(h w) c -> c h w", h=h // sr_ratio)


def plot_spatial_reduction(
    image: torch.Tensor, sr_ratios: Sequence[int], *, patch_size: int = 1, lang: str | None = None
) -> matplotlib.figure.Figure:
    """The keys and values SRA attends to, for several reduction ratios R, side by side.

    With patches of P pixels, the image is an (H/P) x (W/P) map of N query tokens; each panel
    shows the (H/PR) x (W/PR) map of N/R^2 key/value tokens (:func:`reduce_image` of the
    patch-averaged image), drawn at the image's size so that one block = one key/value token.

    Args:
        image: (3, H, W), uint8 or float in [0, 1].
        sr_ratios: the values of R to draw (R = 1: no reduction).
        patch_size: P, in pixels.
        lang: language of the text.

    Raises:
        ValueError: if P * R does not divide the image.
    """
    x = _as_float_image(image)
    _, h, w = x.shape
    tokens = reduce_image(x, patch_size)  # the stage's token map: one pixel per patch
    th, tw = tokens.shape[-2:]
    fig, axes = plt.subplots(1, len(sr_ratios), figsize=(3.1 * len(sr_ratios), 3.6), squeeze=False, layout="constrained")
    for ax, r in zip(axes[0], sr_ratios):
        reduced = reduce_image(tokens, r)
        ax.imshow(reduced.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest", extent=(0, w, h, 0))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(t("sr_panel", lang, r=r, h=th // r, w=tw // r, n=(th // r) * (tw // r), q=th * tw), fontsize=9)
    fig.suptitle(t("sr_title", lang))
    return fig


def pca_rgb(token_map: torch.Tensor) -> torch.Tensor:
    """A token map as a picture: its first three principal components as red, green and blue.

    The H*W tokens (vectors of C numbers) are centred and projected on the three directions along
    which they vary most (SVD); each component is scaled to [0, 1] over the map. Signs of
    components are arbitrary. With fewer than 3 components (C < 3 or H*W < 3) the missing colours are 0.

    Args:
        token_map: (C, H, W) or (1, C, H, W), any float dtype or device.

    Returns:
        float tensor (H, W, 3) in [0, 1], on the CPU.

    Raises:
        ValueError: for another shape.
    """
    if token_map.ndim == 4 and token_map.shape[0] == 1:
        token_map = token_map[0]
    if token_map.ndim != 3:
        raise ValueError(f"expected one token map (C, H, W) or (1, C, H, W), got shape {tuple(token_map.shape)}")
    c, h, w = token_map.shape
    flat = rearrange(token_map.detach().float().cpu(), "c h w -> (h w) c")
    flat = flat - flat.mean(0)
    k = min(3, c, h * w)
    _, _, vh = torch.linalg.svd(flat, full_matrices=False)  # principal directions, largest first
    rgb = flat @ vh[:k].T
    if k < 3:
        rgb = torch.cat([rgb, rgb.new_zeros(len(rgb), 3 - k)], dim=1)
    low, high = rgb.min(0).values, rgb.max(0).values
    rgb = (rgb - low) / (high - low).clamp_min(1e-8)
    return rearrange(rgb, "(h w) c -> h w c", h=h)


def plot_token_maps(
    images: torch.Tensor,
    maps: Sequence[torch.Tensor],
    *,
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
    lang: str | None = None,
) -> matplotlib.figure.Figure:
    """Images and the token map of every stage of a pyramid model (CvT, Swin, PVT), coloured with :func:`pca_rgb`.

    One row per image: the image, then its map at each stage, every map drawn at the image's
    size, so that one block is one token and the maps shrink from stage to stage.

    Args:
        images: (3, H, W) or (B, 3, H, W), uint8 or float in [0, 1].
        maps: one tensor (B, C_i, H_i, W_i) per stage, e.g. ``model.forward_features(x).maps`` of Swin,
            PVT or CvT, or :func:`cvt_edu.lab.shift.token_maps`; row b draws map b.
        row_labels: one label per image (e.g. its class), or ``None``.
        title: the chapter's own title; ``None``: ``t("maps_title")``.
        lang: language of the text.

    Raises:
        ValueError: if the images are not (B, 3, H, W), or the maps or row labels do not have one
            entry per image.
    """
    x = images[None] if images.ndim == 3 else images
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images (3, H, W) or (B, 3, H, W), got shape {tuple(images.shape)}")
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    b, _, h, w = x.shape
    for i, m in enumerate(maps, start=1):
        if m.ndim != 4 or m.shape[0] != b:
            raise ValueError(f"stage {i}: expected token maps (B, C, H, W) for {b} images, got shape {tuple(m.shape)}")
    if row_labels is not None and len(row_labels) != b:
        raise ValueError(f"{len(row_labels)} row labels for {b} images")
    cols = 1 + len(maps)
    fig, axes = plt.subplots(b, cols, figsize=(2.9 * cols, 0.3 + 3.1 * b), squeeze=False, layout="constrained")
    for r in range(b):
        axes[r, 0].imshow(x[r].permute(1, 2, 0).clamp(0, 1).cpu().numpy(), interpolation="nearest", extent=(0, w, h, 0))
        for ax, m in zip(axes[r, 1:], maps):
            ax.imshow(pca_rgb(m[r]).numpy(), interpolation="nearest", extent=(0, w, h, 0))
        if row_labels is not None:
            axes[r, 0].set_ylabel(row_labels[r], fontsize=9)
    axes[0, 0].set_title(t("maps_image", lang, h=h, w=w), fontsize=9)
    for i, (ax, m) in enumerate(zip(axes[0, 1:], maps), start=1):
        _, c, mh, mw = m.shape
        ax.set_title(t("maps_stage", lang, i=i, h=mh, w=mw, c=c, n=mh * mw), fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or t("maps_title", lang))
    return fig
