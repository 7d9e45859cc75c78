"""Shift an image and watch the model: translation equivariance of CvT and ViT.

CvT has no positional embedding (Wu et al., ICCV 2021, Sec. 3 and 3.1): its convolutional token
embedding and convolutional projection see a token's neighbours, so a shifted object gives
(almost) the same tokens, shifted. ViT adds a learned positional embedding to every patch
(Dosovitskiy et al., ICLR 2021, Eq. 1): the same object at another place gets other tokens.
This module shifts images, reads the token maps of both models, measures how far the maps
*follow* the shift, and how predictions change when test images are shifted. Its figures are in
:mod:`cvt_edu.viz.shift`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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

