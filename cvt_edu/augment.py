"""Training augmentation, per image (the reference path) or per batch on the training device (the fast path).

Policies (``TrainConfig.augment``):

- ``"crop-flip"``: a random HxW crop of the image reflect-padded by 4 pixels, then a
  horizontal flip with probability 1/2 (the classic CIFAR augmentation);
- ``"trivial"``: crop-flip, then TrivialAugment (Müller & Hutter, ICCV 2021): one
  operation drawn uniformly from a fixed list (rotation, shear, translation, colour,
  contrast, solarize, ...), with a magnitude drawn uniformly.

Per image, :func:`image_transform` uses ``torchvision.transforms.v2`` (``TrivialAugmentWide``)
inside a ``DataLoader``. Per batch, :class:`BatchAugment` draws the crop and the flip of every
image with ``kornia.augmentation`` (whose transforms draw their parameters image by image), then
applies the same ``TrivialAugmentWide`` as the per-image path: it draws one operation and one
magnitude per call, so the batch is cut into ``groups`` groups that each draw their own. Both paths
thus train on one augmentation (torchvision's "wide" list of 14 operations, rotation up to 135
degrees, translation up to 32 pixels, posterize down to 2 bits); they differ only in that the images
of a group share their draw.

MixUp (Zhang et al., ICLR 2018) and CutMix (Yun et al., ICCV 2019) mix whole batches:
:func:`batch_mix` returns ``torchvision.transforms.v2.MixUp`` / ``CutMix``, one of them
drawn per batch; the labels become soft, shape (B, K).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.transforms import v2

__all__ = ["POLICIES", "image_transform", "normalize", "BatchAugment", "batch_mix"]

POLICIES = ("crop-flip", "trivial")
PADDING = 4  # pixels of reflect padding before the random crop


def _check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ValueError(f"unknown augmentation policy {policy!r}; expected one of {POLICIES}")


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 images (B, C, H, W) or (C, H, W), values 0..255, to float32 normalised per channel."""
    return v2.functional.normalize(v2.functional.to_dtype(images, torch.float32, scale=True), list(mean), list(std))


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


class BatchAugment(nn.Module):
    """The batched training transform of a policy (kornia), run on whatever device holds the batch.

    Args:
        policy: ``"crop-flip"`` or ``"trivial"``.
        size: image side H = W in pixels.
        mean, std: per-channel normalisation, pixels in [0, 1].
        groups: for ``"trivial"``, how many groups of the batch draw their own operation and
            magnitude (with batch 128 and 16 groups, 8 images share a draw).

    Shapes:
        uint8 images (B, C, H, W) in, normalised float32 (B, C, H, W) out.

    Raises:
        ValueError: for an unknown policy, or images that are not uint8 (B, C, size, size).
    """

    def __init__(self, policy: str, size: int, mean: tuple[float, ...], std: tuple[float, ...], *, groups: int = 16) -> None:
        super().__init__()
        import kornia.augmentation as K  # imported here: only the fast path needs kornia

        _check_policy(policy)
        self.size, self.mean, self.std, self.groups = size, tuple(mean), tuple(std), groups
        self.crop_flip = K.AugmentationSequential(
            K.RandomCrop((size, size), padding=PADDING, padding_mode="reflect"), K.RandomHorizontalFlip()
        )
        self.trivial = v2.TrivialAugmentWide() if policy == "trivial" else None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[-2:]) != (self.size, self.size):
            raise ValueError(
                f"expected uint8 images (B, C, {self.size}, {self.size}), got {images.dtype} {tuple(images.shape)}"
            )
        x = self.crop_flip(images.float().div_(255))
        if self.trivial is not None:  # crops and flips copy pixels, so the way back to uint8 is exact
            x = x.mul_(255).round_().to(torch.uint8)
            x = torch.cat([self.trivial(part) for part in x.chunk(self.groups)])
            return normalize(x, self.mean, self.std)
        return v2.functional.normalize(x, list(self.mean), list(self.std))


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
