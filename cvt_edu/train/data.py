"""CIFAR-10 for the course: from torchvision's download, or from a local folder.

Accepted local layouts (``--data PATH`` or the ``CVT_EDU_DATA`` environment variable):

- ``ImageFolder``: ``PATH/train/<class>/*.png`` and ``PATH/test/<class>/*.png``; class
  folders sorted alphabetically give the label indices (for CIFAR-10 these are the
  official ones: 0 airplane ... 9 truck);
- the official python release: ``PATH/cifar-10-batches-py/`` (or PATH itself is that folder).

Without a local folder, ``torchvision.datasets.CIFAR10(download=True)`` fetches the
data set into a cache folder (works in Colab; needs internet).

Images are held in memory as uint8 tensors (B, 3, 32, 32); transforms from
``torchvision.transforms.v2`` run per sample when a batch is drawn.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.transforms import v2

from .augment import image_transform

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DataError",
    "ImageTensors",
    "resolve_data_path",
    "load_split",
    "load_data",
    "train_transform",
    "eval_transform",
    "denormalize",
]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Per-channel mean and standard deviation of the 50,000 CIFAR-10 training images, pixels in [0, 1].
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
DATA_ENV = "CVT_EDU_DATA"
LAYOUTS = (
    "ImageFolder: PATH/train/<class>/*.png and PATH/test/<class>/*.png",
    "official python release: PATH/cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta)",
)


class DataError(FileNotFoundError):
    """A data folder is missing or is in none of the accepted layouts."""


def _layout_error(path: Path, problem: str) -> DataError:
    accepted = "\n".join(f"  - {layout}" for layout in LAYOUTS)
    return DataError(f"{problem}: {path}\nAccepted layouts:\n{accepted}")


@dataclass
class ImageTensors(Dataset):
    """A split of an image data set held in memory.

    Attributes:
        images: uint8 tensor, shape (N, 3, H, W).
        labels: int64 tensor, shape (N,).
        classes: class names; ``classes[label]`` names a label.
        transform: applied to each uint8 image (3, H, W) when an item is read, or ``None``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    transform: v2.Transform | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = self.images[i]
        return (self.transform(image) if self.transform else image), int(self.labels[i])

    def subset(self, n: int, seed: int = 0) -> "ImageTensors":
        """The first ``n`` items of a seeded random permutation (all of them if ``n >= len``)."""
        if n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        return ImageTensors(self.images[idx], self.labels[idx], self.classes, self.transform)

    def with_transform(self, transform: v2.Transform | None) -> "ImageTensors":
        return ImageTensors(self.images, self.labels, self.classes, transform)

    def to(self, device: torch.device | str) -> "ImageTensors":
        """The same split with its images and labels on ``device`` (the same object if already there)."""
        device = torch.device(device)
        if self.images.device == device and self.labels.device == device:
            return self
        return ImageTensors(self.images.to(device), self.labels.to(device), self.classes, self.transform)


def resolve_data_path(path: str | os.PathLike | None = None) -> Path | None:
    """The local data folder: ``path`` if given, else ``$CVT_EDU_DATA``, else ``None`` (download)."""
    path = path or os.environ.get(DATA_ENV) or None
    return Path(path).expanduser() if path else None


def _official_root(path: Path) -> Path | None:
    """The folder that holds ``cifar-10-batches-py``, if ``path`` is or contains it."""
    if (path / "cifar-10-batches-py").is_dir():
        return path
    if path.name == "cifar-10-batches-py" and path.is_dir():
        return path.parent
    return None


def _from_torchvision(ds: datasets.CIFAR10) -> ImageTensors:
    images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
    return ImageTensors(images, torch.tensor(ds.targets, dtype=torch.long), tuple(ds.classes))


def _from_image_folder(folder: Path) -> ImageTensors:
    ds = datasets.ImageFolder(folder)
    if len(ds) == 0:
        raise _layout_error(folder, "no images found in the class folders of")
    images = [v2.functional.pil_to_tensor(ds.loader(p).convert("RGB")) for p, _ in ds.samples]
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) != 1:
        raise DataError(f"images in {folder} have different sizes {sorted(shapes)}; expected one size, e.g. 3x32x32")
    labels = torch.tensor([label for _, label in ds.samples], dtype=torch.long)
    return ImageTensors(torch.stack(images), labels, tuple(ds.classes))


def load_split(
    split: str, path: str | os.PathLike | None = None, *, cache_dir: str | os.PathLike = "~/.cache/cvt_edu"
) -> ImageTensors:
    """Load the ``"train"`` or ``"test"`` split of CIFAR-10 (or an ImageFolder data set).

    Args:
        split: ``"train"`` or ``"test"``.
        path: a local folder in one of the accepted layouts; ``None`` reads ``$CVT_EDU_DATA``
            and, if that is unset too, downloads CIFAR-10 into ``cache_dir``.
        cache_dir: where the download is cached.

    Returns:
        An :class:`ImageTensors` with uint8 images (N, 3, 32, 32) and no transform.

    Raises:
        ValueError: for another split name.
        DataError: if the folder is missing or in no accepted layout; the message names
            the path and the layouts.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = resolve_data_path(path)
    if root is None:
        cache = Path(cache_dir).expanduser()
        return _from_torchvision(datasets.CIFAR10(cache, train=split == "train", download=True))
    if not root.is_dir():
        raise _layout_error(root, "data folder not found")
    official = _official_root(root)
    if official is not None:
        try:
            return _from_torchvision(datasets.CIFAR10(official, train=split == "train", download=False))
        except RuntimeError as e:  # torchvision's message for missing or corrupt batch files
            raise _layout_error(root / "cifar-10-batches-py", f"incomplete or corrupt CIFAR-10 batches ({e})") from e
    folder = root / split
    if not folder.is_dir() or not any(p.is_dir() for p in folder.iterdir()):
        raise _layout_error(root, f"no '{split}/<class>/' folders in")
    return _from_image_folder(folder)


def train_transform(
    policy: str = "crop-flip", mean: tuple[float, ...] = CIFAR10_MEAN, std: tuple[float, ...] = CIFAR10_STD, size: int = 32
) -> v2.Transform:
    """Per-image training augmentation (see :mod:`cvt_edu.train.augment` for the policies), then normalisation.

    ``"crop-flip"``: random 32x32 crop of the 4-pixel reflect-padded image, horizontal flip;
    ``"trivial"`` adds TrivialAugment. Input uint8 (3, 32, 32); output float32 (3, 32, 32).

    Raises:
        ValueError: for an unknown policy.
    """
    return image_transform(policy, size, mean, std)


def eval_transform(mean: tuple[float, ...] = CIFAR10_MEAN, std: tuple[float, ...] = CIFAR10_STD) -> v2.Transform:
    """Evaluation transform: uint8 (3, H, W) to normalised float32 (3, H, W)."""
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def denormalize(images: torch.Tensor, mean: tuple[float, ...] = CIFAR10_MEAN, std: tuple[float, ...] = CIFAR10_STD) -> torch.Tensor:
    """Undo the normalisation for display: (B, 3, H, W) or (3, H, W) -> values in [0, 1]."""
    shape = (-1, 1, 1)
    out = images * torch.tensor(std, device=images.device).view(shape) + torch.tensor(mean, device=images.device).view(shape)
    return out.clamp(0, 1)


def load_data(path: str | os.PathLike | None = None) -> tuple[ImageTensors, ImageTensors]:
    """The train and test splits (see :func:`cvt_edu.train.data.load_split` for ``path``)."""
    return load_split("train", path), load_split("test", path)
