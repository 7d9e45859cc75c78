"""CIFAR-10 for the course: from torchvision's download, or from a local folder.

Accepted local layouts (``--data PATH`` or the ``CVT_EDU_DATA`` environment variable):

- ``ImageFolder``: ``PATH/train/<class>/*.png`` and ``PATH/test/<class>/*.png``; class
  folders sorted alphabetically give the label indices (for CIFAR-10 these are the
  official ones: 0 airplane ... 9 truck);
- the official python release: ``PATH/cifar-10-batches-py/`` (or PATH itself is that folder).

Without a local folder, ``torchvision.datasets.CIFAR10(download=True)`` fetches the
data set into a cache folder (works in Colab; needs internet).

Data that would train or evaluate silently wrong is refused with one line naming the file or
folder (:class:`DataError`): train and test class folders that differ (:func:`load_data`), a test
split whose classes are not a checkpoint's (:func:`check_checkpoint_classes`), an image file that
cannot be read, a missing or corrupt official batch, a failed download. Class subsets built on
purpose in code (:meth:`ImageTensors.select_classes`) carry their own class list and are not refused.

Images are held in memory as uint8 tensors (B, 3, 32, 32); transforms from
``torchvision.transforms.v2`` run per sample when a batch is drawn.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

import numpy as np
import torch
from PIL import UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.datasets import cifar
from torchvision.transforms import v2

from .augment import image_transform

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DataError",
    "ImageTensors",
    "class_difference",
    "check_checkpoint_classes",
    "stratified_split",
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
    """A data folder is missing, in none of the accepted layouts, unreadable, or with classes that do not match."""


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

    def select_classes(self, names: Sequence[str]) -> "ImageTensors":
        """The images of the classes ``names`` only, relabelled ``0 .. len(names) - 1`` in that order.

        A deliberate subset (e.g. two classes for a quick experiment): it carries its own class
        list, ``classes == tuple(names)``, so a model trained on it has ``len(names)`` outputs.
        Select the same names from the train and the test split.

        Raises:
            ValueError: for a name that is not one of ``classes``, or a name given twice.
        """
        names = tuple(names)
        unknown = [n for n in names if n not in self.classes]
        if unknown or len(set(names)) != len(names) or not names:
            raise ValueError(f"select_classes: expected distinct names among {', '.join(self.classes)}; got {', '.join(names) or 'none'}")
        old = torch.tensor([self.classes.index(n) for n in names], device=self.labels.device)
        keep = torch.isin(self.labels, old)
        new_label = torch.full((len(self.classes),), -1, dtype=torch.long, device=self.labels.device)
        new_label[old] = torch.arange(len(names), device=self.labels.device)
        return ImageTensors(self.images[keep], new_label[self.labels[keep]], names, self.transform)

    def with_transform(self, transform: v2.Transform | None) -> "ImageTensors":
        return ImageTensors(self.images, self.labels, self.classes, transform)

    def to(self, device: torch.device | str) -> "ImageTensors":
        """The same split with its images and labels on ``device`` (the same object if already there)."""
        device = torch.device(device)
        if self.images.device == device and self.labels.device == device:
            return self
        return ImageTensors(self.images.to(device), self.labels.to(device), self.classes, self.transform)


def stratified_split(data: ImageTensors, fraction: float, *, seed: int = 0) -> tuple[ImageTensors, ImageTensors]:
    """Hold out ``fraction`` of the images of every class: the validation split of a training set.

    For each class c with n_c images, ``round(fraction * n_c)`` of them, drawn by a permutation seeded
    with ``seed`` (one generator, classes in label order), are held out; both parts keep the original
    order of the images. The same data, fraction and seed always give the same split.

    Args:
        data: the training split, uint8 images (N, 3, H, W) and labels (N,).
        fraction: in (0, 1), e.g. 0.2.
        seed: the split's own seed (a run's seed does not change it).

    Returns:
        (kept, held_out), two disjoint :class:`ImageTensors` whose union is ``data``.

    Raises:
        ValueError: for a fraction outside (0, 1), or one that would leave a class with no image on either side.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"stratified_split: expected a fraction in (0, 1), got {fraction!r}")
    generator = torch.Generator().manual_seed(seed)
    labels = data.labels.cpu()
    held = torch.zeros(len(labels), dtype=torch.bool)
    for c in range(len(data.classes)):
        idx = torch.nonzero(labels == c).flatten()
        k = round(fraction * len(idx))
        if len(idx) and not 0 < k < len(idx):
            raise ValueError(f"stratified_split: holding out {fraction:g} of the {len(idx)} images of class "
                             f"{data.classes[c]!r} leaves no image on one side; use more images or another fraction")
        held[idx[torch.randperm(len(idx), generator=generator)[:k]]] = True
    held = held.to(data.labels.device)

    def part(mask: torch.Tensor) -> ImageTensors:
        return ImageTensors(data.images[mask.to(data.images.device)], data.labels[mask], data.classes, data.transform)

    return part(~held), part(held)


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


def _read_image(loader, path: str) -> torch.Tensor:
    """One image file as uint8 (3, H, W), RGB; a file that is no readable image is a one-line DataError naming it."""
    try:
        return v2.functional.pil_to_tensor(loader(path).convert("RGB"))
    except (OSError, SyntaxError, ValueError) as e:  # what PIL raises for a truncated, broken or non-image file
        reason = "not an image file" if isinstance(e, UnidentifiedImageError) else str(e).strip().splitlines()[0]
        raise DataError(f"{path}: cannot be read as an image ({reason}); delete it or replace it with the original") from e


def _from_image_folder(folder: Path) -> ImageTensors:
    try:
        ds = datasets.ImageFolder(folder)
    except FileNotFoundError as e:  # torchvision: a class folder without images, named without the folder
        raise DataError(f"{folder}: {e}") from e
    if len(ds) == 0:
        raise _layout_error(folder, "no images found in the class folders of")
    images = [_read_image(ds.loader, p) for p, _ in ds.samples]
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) != 1:
        raise DataError(f"images in {folder} have different sizes {sorted(shapes)}; expected one size, e.g. 3x32x32")
    labels = torch.tensor([label for _, label in ds.samples], dtype=torch.long)
    return ImageTensors(torch.stack(images), labels, tuple(ds.classes))


def _download(cache: Path, train: bool) -> datasets.CIFAR10:
    """torchvision's CIFAR-10 in ``cache``, downloaded if missing; a failed download is one line saying what to do."""
    try:
        return datasets.CIFAR10(cache, train=train, download=True)
    except (OSError, HTTPException, RuntimeError) as e:  # URLError, timeouts, refused connections, a bad archive
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise DataError(
            f"could not download CIFAR-10 from {datasets.CIFAR10.url} into {cache} ({type(e).__name__}: {reason}); "
            f"without internet, use a local copy: set {DATA_ENV} to its folder (export {DATA_ENV}=/path/to/cifar10, "
            f"or os.environ['{DATA_ENV}'] = '/path/to/cifar10' in a notebook) or pass --data PATH"
        ) from e


def _official_batch_problem(folder: Path) -> str | None:
    """The first file of ``folder`` (a ``cifar-10-batches-py``) that is missing or fails its checksum, in words."""
    files = [*datasets.CIFAR10.train_list, *datasets.CIFAR10.test_list]
    files.append([datasets.CIFAR10.meta["filename"], datasets.CIFAR10.meta["md5"]])
    for name, md5 in files:
        path = folder / name
        if not path.is_file():
            return f"{path} is missing"
        if not cifar.check_integrity(str(path), md5):
            return f"{path} does not match the official checksum (truncated or changed)"
    return None


def _from_official(root: Path, train: bool) -> ImageTensors:
    """The official python release in ``root/cifar-10-batches-py``, read by torchvision (which checks every file's MD5)."""
    folder = root / "cifar-10-batches-py"
    try:
        return _from_torchvision(datasets.CIFAR10(root, train=train, download=False))
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, pickle.UnpicklingError) as e:
        # torchvision's message for a missing or corrupt batch names no file and suggests download=True
        problem = _official_batch_problem(folder) or f"a batch could not be read ({type(e).__name__}: {e})"
        raise DataError(
            f"incomplete or corrupt CIFAR-10 batches in {folder}: {problem}; download the data set again, "
            f"or point --data (or ${DATA_ENV}) at another folder"
        ) from e


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
        DataError: if the folder is missing or in no accepted layout (the message names
            the path and the layouts); for an image file that cannot be read (naming it); for
            a missing or corrupt official batch (naming it); if the download fails (naming the
            URL, the cache folder and ``$CVT_EDU_DATA``).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = resolve_data_path(path)
    if root is None:
        return _from_torchvision(_download(Path(cache_dir).expanduser(), split == "train"))
    if not root.is_dir():
        raise _layout_error(root, "data folder not found")
    official = _official_root(root)
    if official is not None:
        return _from_official(official, split == "train")
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


def class_difference(expected: Sequence[str], found: Sequence[str], expected_name: str, found_name: str) -> str | None:
    """What differs between two class lists, in words, or ``None`` when they are equal (same names, same order).

    Example: ``class_difference(["cat", "dog"], ["cat", "dgo"], "train", "test")`` is
    ``"only in train: dog; only in test: dgo"``.
    """
    expected, found = tuple(expected), tuple(found)
    if expected == found:
        return None
    only_expected = [c for c in expected if c not in found]
    only_found = [c for c in found if c not in expected]
    parts = [f"only in {expected_name}: {', '.join(only_expected)}"] if only_expected else []
    parts += [f"only in {found_name}: {', '.join(only_found)}"] if only_found else []
    if not parts:  # the same names in another order (or repeated): the labels would mean other classes
        parts = [f"{expected_name} has {', '.join(expected)}; {found_name} has {', '.join(found)}"]
    return "; ".join(parts)


def check_checkpoint_classes(
    test: ImageTensors, saved: Sequence[str] | None, num_outputs: int, *, checkpoint: str | os.PathLike, data: str
) -> None:
    """Refuse a test split whose labels would not mean what a checkpoint's outputs mean.

    Args:
        test: the test split about to be evaluated.
        saved: the class names in the checkpoint's ``config.json`` (``classes``, written by training), or
            ``None`` for a checkpoint without them (then only the count is compared).
        num_outputs: K, the model's number of outputs (logits (B, K)).
        checkpoint: the checkpoint folder, for the message.
        data: where the test split came from, for the message.

    Raises:
        DataError: one line naming both folders and the difference (classes only in one of them, or the counts).
    """
    if saved is None:
        if len(test.classes) != num_outputs:
            raise DataError(f"the test split of {data} has {len(test.classes)} classes, but the model in {checkpoint} "
                            f"has {num_outputs} outputs; evaluate it on data with the classes it was trained on")
        return
    if len(saved) != num_outputs:
        raise DataError(f"{checkpoint}: config.json lists {len(saved)} classes but the model has {num_outputs} outputs")
    difference = class_difference(saved, test.classes, "the checkpoint", "the test split")
    if difference:
        raise DataError(f"the test split of {data} does not have the classes of the checkpoint {checkpoint} ({difference}); "
                        f"evaluate it on data with the classes it was trained on")


def load_data(path: str | os.PathLike | None = None) -> tuple[ImageTensors, ImageTensors]:
    """The train and test splits (see :func:`cvt_edu.train.data.load_split` for ``path``).

    Raises:
        DataError: as :func:`load_split`; and, before anything trains, if the train and test class
            folders differ (a missing, extra or renamed class would shift or break every label),
            listing the classes only in train and only in test, and naming the folder.
    """
    train, test = load_split("train", path), load_split("test", path)
    difference = class_difference(train.classes, test.classes, "train", "test")
    if difference:
        root = resolve_data_path(path) or Path("CIFAR-10")
        raise DataError(f"the train and test splits of {root} have different classes ({difference}); "
                        f"every class needs a folder in both {root / 'train'} and {root / 'test'}")
    return train, test
