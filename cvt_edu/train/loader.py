"""How training batches reach the model: per image through a ``DataLoader`` (the reference
path), or from a copy of the whole data set held on the training device (the fast path).

CIFAR-10 is small (50,000 x 3 x 32 x 32 uint8 = 146 MiB), so the fast path copies it to the
GPU once and, for every batch, gathers the images by index and augments them there in one
batched call (:class:`cvt_edu.train.augment.BatchAugment`): no worker processes, no per-image
Python, no images copied from the host per step.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch.utils.data import DataLoader

from .augment import BatchAugment
from .data import CIFAR10_MEAN, CIFAR10_STD, ImageTensors, train_transform

__all__ = ["DeviceLoader", "reference_loader"]


class DeviceLoader:
    """Shuffled, augmented batches of a data set held on ``device`` as uint8.

    Args:
        data: uint8 images (N, C, H, W) and labels (N,).
        batch_size: images per batch.
        device: where the copy of the data set lives and the augmentation runs.
        policy: augmentation policy (see :mod:`cvt_edu.train.augment`).
        drop_last: drop the last, smaller batch.
        seed: seeds the order of the images (re-seed per epoch with ``generator.manual_seed``).

    Yields:
        (images (B, C, H, W) float32 normalised, labels (B,) int64), both on ``device``.
    """

    def __init__(
        self,
        data: ImageTensors,
        batch_size: int,
        *,
        device: torch.device,
        policy: str = "crop-flip",
        drop_last: bool = True,
        seed: int = 0,
    ) -> None:
        data = data.to(device)
        self.images, self.labels = data.images, data.labels
        self.batch_size, self.drop_last = batch_size, drop_last
        self.augment = BatchAugment(policy, data.images.shape[-1], CIFAR10_MEAN, CIFAR10_STD).to(device)
        self.generator = torch.Generator().manual_seed(seed)  # on the CPU: the same order on every device

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.labels), generator=self.generator).to(self.images.device, non_blocking=True)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield self.augment(self.images[idx]), self.labels[idx]


def reference_loader(
    data: ImageTensors, batch_size: int, *, policy: str, drop_last: bool, seed: int, num_workers: int = 0, pin_memory: bool = False
) -> DataLoader:
    """A ``DataLoader`` that augments image by image with ``torchvision.transforms.v2`` (the reference path).

    Yields (images (B, C, H, W) float32 normalised, labels (B,) int64) on the CPU; its
    ``generator`` seeds the order of the images.
    """
    return DataLoader(
        data.with_transform(train_transform(policy)),
        batch_size=batch_size,
        shuffle=True,
        drop_last=drop_last,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )
