"""Pictures of PVT's spatial reduction and of the token-map pyramid (Wang et al., ICCV 2021, Sec. 3.1-3.3).

- :func:`reduce_image` / :func:`plot_spatial_reduction`: what spatial-reduction attention (SRA)
  gives the keys and values, shown on a real image: the real
  :class:`cvt_edu.pvt.SpatialReductionAttention` ``reduce`` step, with an averaging convolution.
- :func:`plot_token_maps`: the token map of every stage of a pyramid model (PVT, Swin, CvT),
  its three main directions of variation shown as colours.

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

__all__ = ["reduce_image", "plot_spatial_reduction", "pca_rgb", "plot_token_maps"]


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
    image: torch.Tensor, sr_ratios: Sequence[int], *, patch_size: int = 1, lang: str | None = None, title: str | None = None
) -> matplotlib.figure.Figure:
    """The keys and values SRA attends to, for several reduction ratios R, side by side.

    With patches of P pixels, the image is an (H/P) x (W/P) map of N query tokens; each panel
    shows the (H/PR) x (W/PR) map of N/R^2 key/value tokens (:func:`reduce_image` of the
    patch-averaged image), drawn at the image's size so that one block = one key/value token.

    Args:
        image: (3, H, W), uint8 or float in [0, 1].
        sr_ratios: the values of R to draw (R = 1: no reduction).
        patch_size: P, in pixels.
        lang, title: language of the text; figure title.

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
        ax.set_title(t("sr_panel", lang).format(r=r, h=th // r, w=tw // r, n=(th // r) * (tw // r), q=th * tw), fontsize=9)
    fig.suptitle(title or t("sr_title", lang))
    return fig


def pca_rgb(token_map: torch.Tensor) -> torch.Tensor:
    """A token map as a picture: its three principal components as red, green and blue.

    Args:
        token_map: (C, H, W) or (1, C, H, W).

    Returns:
        float tensor (H, W, 3) in [0, 1]; each component scaled to [0, 1] over the map.
    """
    x = token_map[0] if token_map.ndim == 4 else token_map
    c, h, w = x.shape
    flat = rearrange(x.detach().float(), "c h w -> (h w) c")
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
    image: torch.Tensor, maps: Sequence[torch.Tensor], *, lang: str | None = None, title: str | None = None
) -> matplotlib.figure.Figure:
    """The image and the token map of every stage of a pyramid model, drawn at the same size.

    Args:
        image: (3, H, W), uint8 or float in [0, 1].
        maps: one (1, C_i, H_i, W_i) tensor per stage, e.g. ``model.forward_features(x).maps`` of Swin,
            PVT or CvT.
        lang, title: language of the text; figure title.
    """
    x = _as_float_image(image)
    _, h, w = x.shape
    fig, axes = plt.subplots(1, 1 + len(maps), figsize=(2.9 * (1 + len(maps)), 3.4), squeeze=False, layout="constrained")
    axes = axes[0]
    axes[0].imshow(x.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    axes[0].set_title(t("maps_image", lang).format(h=h, w=w), fontsize=9)
    for i, (ax, m) in enumerate(zip(axes[1:], maps), start=1):
        _, c, mh, mw = m.shape
        ax.imshow(pca_rgb(m).numpy(), interpolation="nearest", extent=(0, w, h, 0))
        ax.set_title(t("maps_stage", lang).format(i=i, h=mh, w=mw, c=c, n=mh * mw), fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or t("maps_title", lang))
    return fig
