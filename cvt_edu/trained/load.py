"""Load a trained model shipped inside the package, offline: :func:`load_trained` gives the model and its record."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from ..train.checkpoint import CONFIG, WEIGHTS, load_checkpoint
from .record import RECORD, TrainedRecord, sha256_of, trained_root

__all__ = ["SHIPPED_FILES", "list_trained", "trained_folder", "load_trained"]

SHIPPED_FILES = (WEIGHTS, CONFIG, RECORD)  # what every shipped model's folder holds


def list_trained(folder: str | os.PathLike | None = None) -> list[str]:
    """The names of the shipped trained models, sorted.

    Args:
        folder: the folder of shipped models; ``None``: ``$CVT_EDU_TRAINED``, else the package's own
            (:func:`cvt_edu.trained.record.trained_root`).

    Returns:
        Every sub-folder holding any of :data:`SHIPPED_FILES` (hidden folders, such as a shipping step's
        temporaries, left out); empty when none is shipped.
    """
    root = trained_root(folder)
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir()
                  if d.is_dir() and not d.name.startswith((".", "_")) and any((d / f).is_file() for f in SHIPPED_FILES))


def trained_folder(name: str, folder: str | os.PathLike | None = None) -> Path:
    """The folder of the shipped model ``name``, with all of :data:`SHIPPED_FILES` there.

    Raises:
        ValueError: for a name that is not shipped, listing the shipped ones.
        FileNotFoundError: if one of its files is missing, naming it.
    """
    root = trained_root(folder)
    names = list_trained(root)
    if name not in names:
        shipped = f"available: {', '.join(names)}" if names else "none is shipped"
        raise ValueError(f"no trained model named {name!r} in {root}; {shipped}")
    path = root / name
    for f in SHIPPED_FILES:
        if not (path / f).is_file():
            raise FileNotFoundError(f"{path / f} is missing: the shipped model {name!r} is incomplete (reinstall cvt_edu)")
    return path


def load_trained(name: str, *, folder: str | os.PathLike | None = None, device: str = "cpu") -> tuple[nn.Module, TrainedRecord]:
    """A trained model of the course, read offline from the files shipped inside the package, and its record.

    The weights are stored in float16 (``model.safetensors``) and come back in a float32 model; the record says
    what it learnt from and how accurate the float32 run and the float16 copy are (:class:`TrainedRecord`).

    Args:
        name: a shipped name (:func:`list_trained`), e.g. ``"cvt-tiny"``.
        folder: the folder of shipped models; ``None``: ``$CVT_EDU_TRAINED``, else the package's own.
        device: where to put the model.

    Returns:
        The model in eval mode, float32, images (B, 3, 32, 32) normalised with
        :func:`cvt_edu.train.data.eval_transform` -> logits (B, K), ``K = len(record.labels)``; and its record.

    Raises:
        ValueError: for a name that is not shipped (listing the shipped ones); for a shipped file that is
            corrupt (a record that is not one, a file whose SHA-256 is not the recorded one, weights that do
            not fit the config), naming the file.
        FileNotFoundError: for a missing shipped file, naming it.
    """
    path = trained_folder(name, folder)
    record = TrainedRecord.read(path / RECORD)
    for f in (WEIGHTS, CONFIG):
        expected = record.sha256.get(f)
        if sha256_of(path / f) != expected:
            raise ValueError(f"{path / f}: the file is corrupt: its SHA-256 is not the one {RECORD} records (reinstall cvt_edu)")
    model, config = load_checkpoint(path)
    if config.get("classes") != list(record.labels):
        raise ValueError(f"{path / CONFIG}: its classes {config.get('classes')} are not the labels of {RECORD} {list(record.labels)}")
    return model.float().to(device).eval(), record
