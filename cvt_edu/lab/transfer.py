"""Transfer learning with a pretrained CvT: load it, predict ImageNet classes, fine-tune it on CIFAR-10.

CvT-13 (Wu et al., ICCV 2021, Table 2) was trained on ImageNet-1k at 224x224; its weights are on
the Hugging Face Hub as ``microsoft/cvt-13`` and load into the course's own CvT through
:func:`cvt_edu.pretrained.load.load_pretrained`. Transfer (Sec. 4.3 of the paper fine-tunes on
CIFAR-10, CIFAR-100, Pets and Flowers) means: keep the body, put a new classifier on top for the
new classes, and train briefly on the new images, shown to the model the way it was trained
(ImageNet normalisation, a larger size than CIFAR's 32x32).

Without internet the weights cannot be downloaded: :func:`load_or_random` then returns a randomly
initialised model of the same shape, so that every step still runs (its outputs mean nothing).
The figures of the predictions are in :mod:`cvt_edu.viz.transfer`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models import build_model
from ..pretrained.load import load_pretrained
from ..train.config import TrainConfig
from ..train.data import ImageTensors, denormalize
from ..train.run import train_and_record

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Loaded",
    "imagenet_classes",
    "load_or_random",
    "imagenet_batch",
    "top_k",
    "ImageNetInput",
    "replace_head",
    "finetune",
]

# Per-channel statistics of ImageNet, pixels in [0, 1]: what CvT-13 saw during its training.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_classes() -> list[str]:
    """The 1,000 ImageNet-1k class names in label order (short names, from torchvision, no download)."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return list(_IMAGENET_CATEGORIES)


@dataclass
class Loaded:
    """What :func:`load_or_random` returns.

    Attributes:
        model: the model, in eval mode, on the CPU.
        labels: its class names, in label order.
        pretrained: True if the weights were loaded, False for the random stand-in.
        error: why loading failed (first line of the error), or ``None``.
    """

    model: nn.Module
    labels: list[str]
    pretrained: bool
    error: str | None = None


def load_or_random(name_or_path: str | os.PathLike, fallback: str) -> Loaded:
    """Load pretrained weights, or build a randomly initialised model of the same shape when they cannot be had.

    Args:
        name_or_path: what :func:`cvt_edu.pretrained.load.load_pretrained` accepts, e.g. ``"microsoft/cvt-13"``.
        fallback: the registry name of a model with the same architecture, e.g. ``"cvt-13"``.

    Returns:
        A :class:`Loaded`. For the fallback the labels are the ImageNet class names when it has
        1,000 classes, else ``"0"`` ... ``"K-1"``; the random initialisation is seeded (seed 0).

    Raises:
        KeyError: for an unknown ``fallback`` name. Errors other than a missing folder or a failed
            download (a malformed checkpoint, say) are raised as they are.
    """
    try:
        model, labels = load_pretrained(name_or_path)
        return Loaded(model.eval(), labels, True)
    except FileNotFoundError as e:
        error = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    torch.manual_seed(0)
    model = build_model(fallback).eval()
    n = model.config.num_classes
    labels = imagenet_classes() if n == 1000 else [str(i) for i in range(n)]
    return Loaded(model, labels, False, error)


def imagenet_batch(images: torch.Tensor, size: int = 224) -> torch.Tensor:
    """uint8 images (B, 3, H, W) -> float images (B, 3, size, size), resized (bilinear, antialiased) and
    normalised with the ImageNet mean and standard deviation."""
    x = F.interpolate(images.float() / 255, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def top_k(model: nn.Module, batch: torch.Tensor, labels: Sequence[str], k: int = 3) -> list[list[tuple[str, float]]]:
    """The ``k`` most probable classes of every image.

    Args:
        model: maps the batch to logits (B, K), run in eval mode.
        batch: images already prepared for the model, (B, 3, H, W).
        labels: the K class names.
        k: how many classes per image.

    Returns:
        Per image, ``k`` pairs (class name, softmax probability), most probable first.

    Raises:
        ValueError: if the model's K is not ``len(labels)`` or k > K.
    """
    model.eval()
    device = next(model.parameters()).device
    probs = model(batch.to(device)).float().softmax(-1).cpu()
    if probs.shape[1] != len(labels) or k > len(labels):
        raise ValueError(f"the model gives {probs.shape[1]} classes, there are {len(labels)} labels, and k={k}")
    values, indices = probs.topk(k, dim=1)
    return [[(labels[i], float(p)) for p, i in zip(vs.tolist(), ix.tolist())] for vs, ix in zip(values, indices)]


class ImageNetInput(nn.Module):
    """Show CIFAR-10 batches to an ImageNet model the way it was trained.

    The course's transforms (:func:`cvt_edu.train.data.train_transform`, ``eval_transform``) give 32x32
    images normalised with CIFAR-10 statistics; this wrapper undoes that normalisation, resizes to
    ``size`` (bilinear), normalises with the ImageNet statistics, and calls the model.

    Args:
        model: the ImageNet model (its head may already be replaced).
        size: the side the model sees, in pixels.

    Shapes:
        (B, 3, H, W) CIFAR-normalised -> the model's output, e.g. logits (B, K).
    """

    def __init__(self, model: nn.Module, size: int) -> None:
        super().__init__()
        self.model = model
        self.size = size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = denormalize(x)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.model((x - self.mean) / self.std)


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Put a new, freshly initialised classifier with ``num_classes`` outputs on a CvT or ViT.

    The new head reads the same normalised [CLS] features (width C) as the old one; its weights
    are drawn from a truncated normal (std 0.02) and its bias is 0, as the models initialise
    theirs. ``model.config.num_classes`` is updated, so the model saves and loads as usual.

    Returns:
        The same model, changed in place.

    Raises:
        ValueError: for ``num_classes < 1``.
        TypeError: for a model without the ``norm``/``head``/``config`` of the course models.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    if not all(hasattr(model, a) for a in ("norm", "head", "config")):
        raise TypeError(f"{type(model).__name__} is not a cvt_edu CvT or ViT (needs norm, head and config)")
    width = model.norm.normalized_shape[0]
    device = model.norm.weight.device
    head = nn.Linear(width, num_classes, device=device)
    nn.init.trunc_normal_(head.weight, std=0.02)
    nn.init.zeros_(head.bias)
    model.head = head
    model.config = replace(model.config, num_classes=num_classes)
    return model


def finetune(
    model: nn.Module,
    data: tuple[ImageTensors, ImageTensors],
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    image_size: int,
    weights: str,
    name: str | None = None,
    quick: bool | None = None,
    overwrite: bool = False,
) -> tuple[ImageNetInput, dict[str, Any]]:
    """Fine-tune an ImageNet model on a new data set: new head, inputs resized, all weights trained.

    The head is replaced (after seeding, so it depends on ``cfg.seed`` alone) with one output per
    class of the data; the model is wrapped in :class:`ImageNetInput` and trained with
    :func:`cvt_edu.train.run.train_and_record`, which saves the fine-tuned model to ``out_dir``
    (``model.safetensors``, ``config.json``) with ``metrics.json``. A finished run there with the same
    recipe, model, image size and ``weights`` is loaded instead of training again; an interrupted one resumes;
    a run of another key there is refused unless ``overwrite``.

    Args:
        model: a course CvT or ViT with its ImageNet head (changed in place).
        data: (train, test) splits of uint8 32x32 images.
        cfg: the training config; shrunk with :meth:`TrainConfig.quick` in quick mode.
        out_dir: where to save the run.
        image_size: the side, in pixels, the model sees.
        weights: where the starting weights came from (``"pretrained"`` or ``"random"``); part of
            what makes a saved run reusable.
        name: the run's name in the metrics.
        quick: quick mode; ``None`` reads ``$CVT_EDU_QUICK``.
        overwrite: replace a run of another key in ``out_dir`` instead of refusing it.

    Returns:
        The wrapped model (CIFAR-normalised 32x32 images -> logits) and the metrics of
        :func:`~cvt_edu.train.loop.fit` with ``image_size``, ``weights``, ``flops``, ``macs`` (one image,
        at ``image_size``) and ``reused`` (True if loaded from ``out_dir``).
    """
    return train_and_record(
        lambda n: replace_head(model, n),
        data,
        cfg,
        out_dir,
        name=name,
        wrap=lambda m: ImageNetInput(m, image_size),
        extra={"image_size": image_size, "weights": weights},
        quick=quick,
        overwrite=overwrite,
    )

