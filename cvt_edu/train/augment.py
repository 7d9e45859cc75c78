"""Training augmentation, per image (the reference path) or per batch on the training device (the fast path).

Policies (``TrainConfig.augment``):

- ``"crop-flip"``: a random HxW crop of the image reflect-padded by 4 pixels, then a
  horizontal flip with probability 1/2 (the classic CIFAR augmentation);
- ``"trivial"``: crop-flip, then TrivialAugment (Müller & Hutter, ICCV 2021): one
  operation drawn uniformly from a fixed list (rotation, shear, translation, colour,
  contrast, solarize, ...), with a magnitude drawn uniformly.

Per image, :func:`image_transform` uses ``torchvision.transforms.v2`` (``TrivialAugmentWide``)
inside a ``DataLoader``. Per batch, :class:`BatchAugment` draws the crop and the flip of every
image at once on the images' own device (:func:`random_crop_flip`: one reflect padding and two
gathers, no loop over images and no copy from the host), then applies the same
``TrivialAugmentWide`` as the per-image path: it draws one operation and one magnitude per call,
so the batch is cut into ``groups`` groups that each draw their own. Both paths thus train on one
augmentation (torchvision's "wide" list of 14 operations, rotation up to 135 degrees, translation
up to 32 pixels, posterize down to 2 bits); they differ only in that the images of a group share
their draw. The crop and flip are the package's own because the batched library transform (kornia's)
draws its parameters on the host and copies them to the GPU, a copy that makes the host wait for the
GPU's queue; torchvision's rotate, shear, translate and sharpness still copy a small matrix each.

MixUp (Zhang et al., ICLR 2018) and CutMix (Yun et al., ICCV 2019) mix whole batches:
:func:`batch_mix` returns ``torchvision.transforms.v2.MixUp`` / ``CutMix``, one of them
drawn per batch; the labels become soft, shape (B, K).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

from .config import POLICIES

__all__ = ["POLICIES", "image_transform", "normalize", "random_crop_flip", "BatchAugment", "batch_mix"]

PADDING = 4  # pixels of reflect padding before the random crop


def _check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ValueError(f"unknown augmentation policy {policy!r}; expected one of {POLICIES}")


def normalize(
    images: torch.Tensor, mean: tuple[float, ...] | torch.Tensor, std: tuple[float, ...] | torch.Tensor
) -> torch.Tensor:
    """uint8 images (B, C, H, W) or (C, H, W), values 0..255, to float32 normalised per channel.

    ``mean`` and ``std`` are C numbers for pixels in [0, 1]; given as float32 tensors on the
    images' device, nothing is copied from the host (a tuple is copied to the device on every call).
    """
    return v2.functional.normalize(v2.functional.to_dtype(images, torch.float32, scale=True), mean, std)


def image_transform(policy: str, size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> v2.Transform:
    """The per-image training transform of ``policy`` (torchvision): uint8 (3, size, size) -> normalised float32.

    Raises:
        ValueError: for an unknown policy.
    """
    _check_policy(policy)
    steps: list[v2.Transform] = [v2.RandomCrop(size, padding=PADDING, padding_mode="reflect"), v2.RandomHorizontalFlip()]
    if policy == "trivial":
        steps.append(v2.TrivialAugmentWide())
    return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])


def random_crop_flip(images: torch.Tensor, padding: int = PADDING) -> torch.Tensor:
    """A random crop of every reflect-padded image and a horizontal flip with probability 1/2, drawn per image.

    The batched twin of ``v2.RandomCrop(H, padding, padding_mode="reflect")`` followed by
    ``v2.RandomHorizontalFlip()``: each image gets its own offset (0 to 2 x ``padding`` pixels,
    down and right) and its own flip, drawn on the images' device, so nothing is copied from
    the host and nothing is read back; crops and flips only move pixels, so any dtype works.

    Args:
        images: (B, C, H, W), any dtype (the fast path passes uint8).
        padding: pixels of reflect padding on each side; must be smaller than H and W.

    Returns:
        (B, C, H, W), the same dtype and device.

    Raises:
        ValueError: if ``images`` is not a batch (B, C, H, W) with H and W larger than ``padding``.
    """
    if images.ndim != 4 or min(images.shape[-2:]) <= padding:
        raise ValueError(f"expected images (B, C, H, W) with H and W > {padding}, got shape {tuple(images.shape)}")
    b, c, h, w = images.shape
    device = images.device
    padded = F.pad(images, [padding] * 4, mode="reflect")  # (B, C, H + 2P, W + 2P)
    top, left = torch.randint(0, 2 * padding + 1, (2, b, 1), device=device)  # (B, 1) each
    flip = torch.rand(b, 1, device=device) < 0.5
    rows = top + torch.arange(h, device=device)  # (B, H): the padded rows each image keeps
    cols = torch.arange(w, device=device)
    cols = left + torch.where(flip, cols.flip(0), cols)  # (B, W): a flipped image reads its columns right to left
    out = padded.gather(2, rows[:, None, :, None].expand(b, c, h, w + 2 * padding))
    return out.gather(3, cols[:, None, None, :].expand(b, c, h, w))


class BatchAugment(nn.Module):
    """The batched training transform of a policy, run on whatever device holds the batch.

    Crop and flip come from :func:`random_crop_flip` (per image); the ``"trivial"`` policy
    then applies torchvision's ``TrivialAugmentWide`` to ``groups`` groups of the batch.

    Args:
        policy: ``"crop-flip"`` or ``"trivial"``.
        size: image side H = W in pixels.
        mean, std: per-channel normalisation, pixels in [0, 1].
        groups: for ``"trivial"``, how many groups of the batch draw their own operation and
            magnitude (with batch 128 and 16 groups, 8 images share a draw).

    Shapes:
        uint8 images (B, C, H, W) in, normalised float32 (B, C, H, W) out, on the images' device
        (move the module there too, ``.to(device)``, so that its ``mean`` and ``std`` are there).

    Raises:
        ValueError: for an unknown policy, or images that are not uint8 (B, C, size, size).
    """

    def __init__(self, policy: str, size: int, mean: tuple[float, ...], std: tuple[float, ...], *, groups: int = 16) -> None:
        super().__init__()
        _check_policy(policy)
        self.size, self.groups = size, groups
        # buffers, so that ``.to(device)`` puts them beside the images: normalising copies nothing from the host
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)
        self.crop_flip = random_crop_flip
        self.trivial = v2.TrivialAugmentWide() if policy == "trivial" else None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[-2:]) != (self.size, self.size):
            raise ValueError(
                f"expected uint8 images (B, C, {self.size}, {self.size}), got {images.dtype} {tuple(images.shape)}"
            )
        x = self.crop_flip(images)
        if self.trivial is not None:
            x = torch.cat([self.trivial(part) for part in x.chunk(self.groups)])
        return normalize(x, self.mean, self.std)


def batch_mix(num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0) -> v2.Transform | None:
    """MixUp and/or CutMix on a batch (torchvision), one of them drawn per batch; ``None`` if both alphas are 0.

    The returned transform maps (images (B, C, H, W) float, labels (B,) int64) to
    (mixed images, soft labels (B, num_classes) float). Alpha is the Beta(alpha, alpha)
    parameter of the mixing ratio.
    """
    mixes = []
    if mixup_alpha > 0:
        mixes.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
    if cutmix_alpha > 0:
        mixes.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
    if not mixes:
        return None
    return mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)
