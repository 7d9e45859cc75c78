"""Looking at attention: matrices, [CLS] maps, attention rollout, attention distance, cost, and where a query looks.

Attention rollout follows Abnar & Zuidema (ACL 2020); mean attention distance follows ViT
(Dosovitskiy et al. 2021, Sec. 4.5, Fig. 7 right); :func:`plot_attention_time` shows the N^2 growth.

The attention weights come from :func:`cvt_edu.attention.attention_maps`: one tensor per layer,
shape (B, h, N, N), rows summing to 1, with the [CLS] token first in a ViT. Figure functions
return the ``matplotlib`` figure; their text comes from the string table (:mod:`cvt_edu.course.i18n`)
in ``lang`` ("pt", "es" or "en"; ``None``: the notebook's language).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import torch

from ..course.i18n import t

__all__ = [
    "HEAD_FUSIONS",
    "attention_rollout",
    "cls_attention_map",
    "mean_attention_distance",
    "overlay_attention",
    "plot_attention_distance",
    "plot_attention_matrix",
    "plot_attention_time",
    "plot_cls_attention",
    "plot_key_attention",
]

HEAD_FUSIONS = ("mean", "max", "min")


def _check_maps(maps: Sequence[torch.Tensor]) -> None:
    if len(maps) == 0:
        raise ValueError("expected at least one layer of attention weights, got none")
    shape = tuple(maps[0].shape)
    for i, a in enumerate(maps):
        if a.ndim != 4 or a.shape[-1] != a.shape[-2]:
            raise ValueError(f"layer {i}: expected self-attention weights (B, h, N, N), got shape {tuple(a.shape)}")
        if tuple(a.shape) != shape:
            raise ValueError(f"layer {i} has shape {tuple(a.shape)}, layer 0 has {shape}; expected the same N in every layer")


def attention_rollout(maps: Sequence[torch.Tensor], discard_ratio: float = 0.0, head_fusion: str = "mean") -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020, Sec. 3).

    How much each token of the last layer draws on each input token, following the attention
    through all layers. For every layer l:

    1. fuse the heads into A_l, (B, N, N): their mean (the paper), max or min;
    2. optionally set to zero the ``discard_ratio`` weakest weights of each row (a variant from
       J. Gildenblat's vit-explain code that removes noise);
    3. account for the residual connection: Â_l = 0.5 A_l + 0.5 I, rows renormalised to sum to 1.

    The rollout is Â_L ... Â_2 Â_1.

    Args:
        maps: the weights of each layer in forward order, shape (B, h, N, N), as returned by
            :func:`cvt_edu.attention.attention_maps` for a ViT.
        discard_ratio: fraction of each row to drop, in [0, 1).
        head_fusion: ``"mean"``, ``"max"`` or ``"min"``.

    Returns:
        Tensor (B, N, N), float32; every row sums to 1. Row 0 of a ViT is the [CLS] token's.

    Raises:
        ValueError: on no layers, weights that are not (B, h, N, N) or differ between layers,
            ``discard_ratio`` outside [0, 1) or an unknown ``head_fusion``.
    """
    _check_maps(maps)
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"unknown head_fusion {head_fusion!r}; expected one of {HEAD_FUSIONS}")
    b, _, n, _ = maps[0].shape
    eye = torch.eye(n, device=maps[0].device)
    rollout = eye.expand(b, n, n).clone()
    for a in maps:
        a = a.float()
        fused = a.mean(1) if head_fusion == "mean" else a.amax(1) if head_fusion == "max" else a.amin(1)
        k = int(n * discard_ratio)
        if k:
            weakest = fused.topk(k, dim=-1, largest=False).indices
            fused = fused.scatter(-1, weakest, 0.0)
        fused = 0.5 * fused + 0.5 * eye
        fused = fused / fused.sum(-1, keepdim=True)
        rollout = fused @ rollout
    return rollout


def cls_attention_map(attention: torch.Tensor, grid_size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """The [CLS] token's row of an attention (or rollout) matrix, as a map over the patch grid.

    Args:
        attention: (..., N, N) with N = 1 + H/P * W/P and [CLS] first; e.g. one layer's
            weights (B, h, N, N) or a rollout (B, N, N).
        grid_size: H/P, or (H/P, W/P); ``None`` means a square grid.

    Returns:
        Tensor (..., H/P, W/P): how much [CLS] attends to each patch (the weight it gives
        itself is left out, so a map need not sum to 1).

    Raises:
        ValueError: if the matrix is not square or N - 1 does not fit the grid.
    """
    if attention.ndim < 2 or attention.shape[-1] != attention.shape[-2]:
        raise ValueError(f"expected square attention matrices (..., N, N), got shape {tuple(attention.shape)}")
    n = attention.shape[-1] - 1
    if grid_size is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"{n} patch tokens do not form a square grid; pass grid_size")
        grid_size = side
    gh, gw = (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
    if gh * gw != n:
        raise ValueError(f"{n} patch tokens (N = {n + 1} with [CLS]) do not fit a {gh}x{gw} grid")
    return attention[..., 0, 1:].reshape(*attention.shape[:-2], gh, gw)


def mean_attention_distance(
    maps: Sequence[torch.Tensor], patch_size: int, grid_size: int | tuple[int, int] | None = None
) -> torch.Tensor:
    """Mean attention distance of every head of every layer (ViT, Sec. 4.5 and Fig. 7 right).

    For each query patch, the distances in pixels to all key patches are weighted by the attention
    weights; the result is averaged over queries and images. It is the transformer's analogue of a
    receptive field: small for a head that looks at its neighbourhood, large for one that looks far.
    Only patch-to-patch weights are used ([CLS] is dropped and each row renormalised).

    Args:
        maps: per-layer weights (B, h, N, N) with [CLS] first, N = 1 + H/P * W/P.
        patch_size: P, in pixels (the distance between neighbouring patch centres).
        grid_size: H/P, or (H/P, W/P); ``None`` means a square grid.

    Returns:
        Tensor (L, h) of distances in pixels.

    Raises:
        ValueError: as :func:`cls_attention_map`, or on inconsistent layers.
    """
    _check_maps(maps)
    gh, gw = cls_attention_map(maps[0][:1, :1], grid_size).shape[-2:]
    rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    centres = torch.stack([rows.flatten(), cols.flatten()], dim=1).float() * patch_size  # (n, 2)
    distance = torch.cdist(centres, centres)  # (n, n), pixels
    out = []
    for a in maps:
        w = a[..., 1:, 1:].float().cpu()
        w = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
        out.append((w * distance).sum(-1).mean(dim=(0, 2)))  # (h,)
    return torch.stack(out)


def plot_attention_matrix(
    weights: torch.Tensor,
    *,
    panel_titles: Sequence[str] | None = None,
    title: str | None = None,
    cmap: str = "viridis",
    shared_scale: bool = False,
    lang: str | None = None,
) -> matplotlib.figure.Figure:
    """One or more N_q x N_k matrices (scores or attention weights) side by side, each with its colour bar.

    Rows are query tokens i, columns key tokens j (the axis labels say so in ``lang``).

    Args:
        weights: (N_q, N_k) or (k, N_q, N_k).
        panel_titles: a title per matrix (the chapter's: what each matrix is).
        title: figure title (the chapter's); ``None``: none.
        cmap: the colour map.
        shared_scale: one colour range, the smallest to the largest entry of all panels, so that panels
            can be compared (the heads of a layer); ``False``: each panel its own range (scores beside weights).
        lang: language of the text.

    Raises:
        ValueError: if ``weights`` is not 2-D or 3-D, or the titles do not match the matrices.
    """
    if weights.ndim == 2:
        weights = weights[None]
    if weights.ndim != 3:
        raise ValueError(f"expected (N_q, N_k) or (k, N_q, N_k), got shape {tuple(weights.shape)}")
    panel_titles = list(panel_titles) if panel_titles is not None else [""] * len(weights)
    if len(panel_titles) != len(weights):
        raise ValueError(f"{len(panel_titles)} panel titles for {len(weights)} matrices")
    weights = weights.detach().float().cpu()
    scale = dict(vmin=weights.min().item(), vmax=weights.max().item()) if shared_scale else {}
    fig, axes = plt.subplots(1, len(weights), figsize=(4.4 * len(weights), 4.0), squeeze=False)
    for ax, w, name in zip(axes[0], weights, panel_titles):
        shown = ax.imshow(w.numpy(), cmap=cmap, interpolation="nearest", **scale)
        fig.colorbar(shown, ax=ax, fraction=0.046)
        ax.set(title=name, xlabel=t("key_token", lang), ylabel=t("query_token", lang))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _show_image(ax, image: torch.Tensor) -> None:
    if image.dtype != torch.uint8:
        image = (image.clamp(0, 1) * 255).to(torch.uint8)
    ax.imshow(image.permute(1, 2, 0).cpu().numpy(), interpolation="nearest")


def _overlay(ax, image: torch.Tensor, heat: torch.Tensor, alpha: float, cmap: str,
             scale: tuple[float, float] | None = None):
    """Draw ``image`` (3, H, W) and on it ``heat`` (h, w), stretched over the image: on the colour range
    ``scale`` = (vmin, vmax), or min-max scaled on its own when ``scale`` is ``None``. Returns the map's image."""
    h, w = image.shape[-2:]
    heat = heat.detach().float().cpu()
    if scale is None:
        heat = (heat - heat.min()) / (heat.max() - heat.min()).clamp_min(1e-12)
        scale = (0.0, 1.0)
    _show_image(ax, image)
    shown = ax.imshow(heat.numpy(), cmap=cmap, alpha=alpha, extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="bilinear",
                      vmin=scale[0], vmax=scale[1])
    ax.axis("off")
    return shown


def plot_cls_attention(
    maps: Sequence[torch.Tensor],
    images: torch.Tensor,
    index: int = 0,
    *,
    grid_size: int | tuple[int, int] | None = None,
    alpha: float = 0.6,
    vmax: float | None = None,
    title: str | None = None,
    lang: str | None = None,
) -> matplotlib.figure.Figure:
    """The [CLS] token's attention over the patch grid, for every layer (rows) and head (columns).

    The first column overlays the mean over heads on the image; the others show each head's map.
    Every map of the figure is drawn on one colour range, 0 to ``vmax`` (bright = more attention,
    the colour bar gives the weight), so heads and layers can be compared, and two figures with the
    same ``vmax`` (a trained model and its untrained control) too.

    Args:
        maps: per-layer weights (B, h, N, N) with [CLS] first.
        images: the images the maps come from, (B, 3, H, W), uint8 (or float in [0, 1]).
        index: which image of the batch.
        grid_size: the patch grid; ``None`` means square.
        alpha: opacity of the overlay.
        vmax: top of the colour range, an attention weight in [0, 1]; ``None``: the largest weight
            the figure shows.
        title: figure title (the chapter's); ``None``: ``t("cls_attention_title")``.
        lang: language of the text.

    Raises:
        ValueError: on weights that are not (B, h, N, N) or do not fit the grid.
    """
    _check_maps(maps)
    num_layers, num_heads = len(maps), maps[0].shape[1]
    cls_maps = [cls_attention_map(a[index], grid_size).detach().float().cpu() for a in maps]  # L x (h, gh, gw)
    if vmax is None:
        vmax = max(m.max().item() for m in cls_maps)
    fig, axes = plt.subplots(num_layers, num_heads + 1, figsize=(1.55 * (num_heads + 1) + 0.6, 1.55 * num_layers),
                             squeeze=False)
    shown = None
    for layer, heads in enumerate(cls_maps):
        _overlay(axes[layer, 0], images[index], heads.mean(0), alpha, "inferno", (0.0, vmax))
        axes[layer, 0].axis("on")
        axes[layer, 0].set_xticks([])
        axes[layer, 0].set_yticks([])
        axes[layer, 0].set_ylabel(t("layer_n", lang, l=layer + 1), fontsize=9)
        for h in range(num_heads):
            ax = axes[layer, h + 1]
            shown = ax.imshow(heads[h].numpy(), cmap="inferno", interpolation="nearest", vmin=0.0, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title(t("mean_heads", lang), fontsize=9)
    for h in range(num_heads):
        axes[0, h + 1].set_title(t("head_n", lang, h=h + 1), fontsize=9)
    fig.suptitle(title or t("cls_attention_title", lang))
    fig.tight_layout()
    fig.colorbar(shown, ax=axes, fraction=0.03, pad=0.02, label=t("ch02_attention_weight", lang))
    return fig


def overlay_attention(
    images: torch.Tensor,
    heat_maps: torch.Tensor,
    *,
    control_maps: torch.Tensor | None = None,
    row_labels: Sequence[str] | None = None,
    shared_scale: bool = False,
    captions: Sequence[str] | None = None,
    title: str | None = None,
    alpha: float = 0.6,
    cmap: str = "inferno",
    lang: str | None = None,
) -> matplotlib.figure.Figure:
    """Images (top row) and the same images with a map over them (bottom row); with ``control_maps``,
    a third row with the control's maps (the untrained model's, say) over the same images.

    By default each map is scaled to [0, 1] on its own; with ``shared_scale`` every map of the figure,
    controls included, is drawn on one colour range (the smallest to the largest value shown, with a
    colour bar), so that a flat map looks flat. Maps are stretched (bilinear) over their image.

    Args:
        images: (B, 3, H, W), uint8 (or float in [0, 1]).
        heat_maps: (B, h, w), e.g. :func:`cls_attention_map` of a rollout.
        control_maps: (B, h, w) or ``None``: the same maps from the control.
        row_labels: a label for each row of maps (one, or two with ``control_maps``); ``None``: none.
        shared_scale: one colour range for all maps instead of one per map.
        captions: a caption per image (the chapter's).
        title: the chapter's own title; ``None``: ``t("rollout_title")``.
        alpha: opacity of the map.
        cmap: the colour map.
        lang: language of the text.

    Raises:
        ValueError: if the numbers of images, maps, captions and row labels differ, or the control's maps
            have another shape than ``heat_maps``.
    """
    if heat_maps.ndim != 3 or len(images) != len(heat_maps):
        raise ValueError(f"expected one map (h, w) per image: {len(images)} images, maps of shape {tuple(heat_maps.shape)}")
    if control_maps is not None and control_maps.shape != heat_maps.shape:
        raise ValueError(f"the control's maps {tuple(control_maps.shape)} differ from the maps {tuple(heat_maps.shape)}")
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"{len(captions)} captions for {len(images)} images")
    rows = [heat_maps] if control_maps is None else [heat_maps, control_maps]
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"{len(row_labels)} row labels for {len(rows)} rows of maps")
    scale = None
    if shared_scale:
        values = torch.cat([r.detach().float().cpu().flatten() for r in rows])
        scale = (values.min().item(), values.max().item())
    b = len(images)
    fig, axes = plt.subplots(1 + len(rows), b, figsize=(1.9 * b + (0.8 if shared_scale else 0.0), 2.05 * (1 + len(rows))),
                             squeeze=False)
    for i in range(b):
        _show_image(axes[0, i], images[i])
        axes[0, i].axis("off")
        if captions is not None:
            axes[0, i].set_title(captions[i], fontsize=8)
        for r, maps in enumerate(rows):
            shown = _overlay(axes[r + 1, i], images[i], maps[i], alpha, cmap, scale)
            if row_labels is not None and i == 0:
                axes[r + 1, 0].axis("on")
                axes[r + 1, 0].set_xticks([])
                axes[r + 1, 0].set_yticks([])
                axes[r + 1, 0].set_ylabel(row_labels[r], fontsize=8)
    fig.suptitle(title or t("rollout_title", lang))
    fig.tight_layout()
    if shared_scale:
        fig.colorbar(shown, ax=axes[1:].ravel().tolist(), fraction=0.03, pad=0.02)
    return fig


def plot_attention_distance(
    distances: torch.Tensor,
    *,
    uniform: float | None = None,
    lang: str | None = None,
) -> matplotlib.figure.Figure:
    """Mean attention distance of each head against the layer, as in ViT's Fig. 7 (right).

    Args:
        distances: (L, h), in pixels, from :func:`mean_attention_distance`.
        uniform: the distance of uniform attention (pixels), drawn as a dashed line; ``None``: no line.
        lang: language of the text.
    """
    num_layers, num_heads = distances.shape
    layers = torch.arange(1, num_layers + 1)
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    for h in range(num_heads):
        ax.scatter(layers, distances[:, h], label=t("head_n", lang, h=h + 1), s=28)
    if uniform is not None:
        ax.axhline(uniform, color="gray", ls="--", label=t("uniform_attention", lang))
    ax.set_xticks(layers.tolist())
    ax.set(title=t("attention_distance_title", lang), xlabel=t("layer", lang), ylabel=t("attention_distance_px", lang))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig


def plot_attention_time(
    num_tokens: Sequence[int],
    milliseconds: Sequence[float],
    *,
    lang: str | None = None,
) -> matplotlib.figure.Figure:
    """Measured attention time against N on log-log axes, with the curve c N^2 through the last point.

    On log-log axes N^2 is a straight line of slope 2: a measurement that runs parallel to it
    grows quadratically. The title, ``t("time_title")``, describes chapter 2's measurement (one layer,
    4 heads, C = 128, CPU).

    Args:
        num_tokens: the values of N.
        milliseconds: one time per N, in ms.
        lang: language of the text.

    Raises:
        ValueError: if the two sequences differ in length or are empty.
    """
    if len(num_tokens) != len(milliseconds) or not num_tokens:
        raise ValueError(f"{len(num_tokens)} token counts for {len(milliseconds)} times")
    ns = torch.tensor(num_tokens, dtype=torch.float64)
    c = milliseconds[-1] / float(ns[-1]) ** 2
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.plot(ns, milliseconds, marker="o", label=t("measured", lang))
    ax.plot(ns, c * ns**2, ls="--", color="gray", label=t("n_squared", lang))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(list(num_tokens), [str(n) for n in num_tokens])
    ax.set(title=t("time_title", lang), xlabel=t("num_tokens", lang), ylabel=t("time_ms", lang))
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_key_attention(
    image: torch.Tensor,
    weights: Mapping[str, torch.Tensor],
    query: tuple[int, int],
    query_map: tuple[int, int],
    *,
    lang: str | None = None,
) -> matplotlib.figure.Figure:
    """The image with one query token marked, and that query's attention over the keys of each model (chapter 4).

    With a squeezed projection (CvT, Sec. 3.3: keys and values with stride 2) the same query
    attends to 4 times fewer keys, each covering 4 times more pixels.

    Args:
        image: uint8 image (3, H, W).
        weights: label -> attention weights of one layer and one image, shape (h, N_q, N_k) (heads
            are averaged) with N_q = H_q W_q (+1 for a [CLS] token, left out) and N_k a square
            number of keys (+1 for [CLS], left out).
        query: (row, column) of the query on the H_q x W_q query map given by ``query_map``.
        query_map: (H_q, W_q).
        lang: language of the text.

    Raises:
        ValueError: if the number of queries or keys does not fit a map.
    """
    hq, wq = query_map
    fig, axes = plt.subplots(1, 1 + len(weights), figsize=(2.8 * (1 + len(weights)), 3.2))
    height, width = image.shape[1:]
    axes[0].imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
    sy, sx = height / hq, width / wq
    axes[0].add_patch(plt.Rectangle((query[1] * sx - 0.5, query[0] * sy - 0.5), sx, sy, fill=False, ec="red", lw=2))
    axes[0].axis("off")
    for ax, (label, w) in zip(axes[1:], weights.items()):
        w = w.float().mean(0)
        n_cls = w.shape[0] - hq * wq
        if n_cls not in (0, 1):
            raise ValueError(f"{w.shape[0]} queries do not fit a {hq}x{wq} map")
        row = w[n_cls + query[0] * wq + query[1], n_cls:]
        side = math.isqrt(row.numel())
        if side * side != row.numel():
            raise ValueError(f"{row.numel()} keys do not form a square map")
        ax.imshow(row.reshape(side, side).cpu().numpy(), cmap="magma", interpolation="nearest")
        ax.set_title(f"{label}\n{t('keys_subtitle', lang, h=side, w=side)}", fontsize=9)
        ax.axis("off")
    fig.suptitle(t("query_attention_title", lang))
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    return fig
