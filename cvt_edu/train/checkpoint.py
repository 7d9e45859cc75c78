"""Saving and loading models: ``model.safetensors`` plus ``config.json``, and the trainer state
(``trainer_state.pt``) a run resumes from; always written atomically.

A file is first written to a temporary name in the same folder, then moved over the
final name with ``os.replace``, so a reader never sees half a file, even if training
is killed mid-write.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..models import arch_of, config_to_dict, model_from_config
from .env import rng_state

__all__ = [
    "atomic_path",
    "write_json",
    "save_pretrained",
    "load_checkpoint",
    "CheckpointError",
    "TRAINER_STATE",
    "save_trainer_state",
    "load_trainer_state",
]

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TRAINER_STATE = "trainer_state.pt"


class CheckpointError(FileNotFoundError):
    """A checkpoint folder lacks ``model.safetensors`` or ``config.json``."""


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it over ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def save_pretrained(model: nn.Module, folder: str | os.PathLike, **extra: Any) -> None:
    """Save a course model as ``folder/model.safetensors`` and ``folder/config.json``.

    Args:
        model: a course model, one of :data:`~cvt_edu.models.ARCHITECTURES` (ViT, CvT, Swin, PVT).
        folder: created if missing.
        **extra: more JSON-ready fields for ``config.json`` (model name, class names, ...).
    """
    folder = Path(folder)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    write_json(folder / CONFIG, {"arch": arch_of(model), "model_config": config_to_dict(model.config), **extra})


def load_checkpoint(folder: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load a model saved by :func:`save_pretrained`.

    Returns:
        The model in eval mode, and the contents of ``config.json``.

    Raises:
        CheckpointError: if either file is missing, naming the folder.
    """
    folder = Path(folder)
    missing = [name for name in (WEIGHTS, CONFIG) if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(f"{folder} is not a cvt_edu checkpoint: missing {', '.join(missing)}")
    config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    model = model_from_config(config["arch"], config["model_config"])
    model.load_state_dict(load_file(str(folder / WEIGHTS), device=str(map_location)))
    return model.eval(), config


def save_trainer_state(
    folder: str | os.PathLike,
    *,
    key: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
    progress: dict[str, Any],
) -> None:
    """Write ``folder/trainer_state.pt``: everything a run needs to continue exactly where it stopped.

    That is the weights, the optimizer's moments, the learning-rate schedule, the float16 gradient
    scaler, the run's progress, and every random state (:func:`cvt_edu.train.env.rng_state`),
    so that the resumed epochs draw the same batches and augmentations as an uninterrupted run.

    Args:
        folder: the run folder (created if missing).
        key: what identifies the run (its recipe, and whatever else the caller names); a run
            resumes only under the same key.
        model, optimizer, scheduler, scaler: the training objects (``scaler`` may be ``None``).
        progress: JSON-ready progress (epochs done, history, training seconds).
    """
    payload = {
        "key": key,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler else None,
        "state": progress,
        "rng": rng_state(),
    }
    with atomic_path(Path(folder) / TRAINER_STATE) as tmp:
        torch.save(payload, tmp)


def load_trainer_state(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The contents of ``folder/trainer_state.pt`` as :func:`save_trainer_state` wrote them (tensors on the CPU),
    or ``None`` if there is none."""
    path = Path(folder) / TRAINER_STATE
    if not path.is_file():
        return None
    # the package's own file: it holds NumPy's and Python's random states, which weights_only refuses
    return torch.load(path, map_location="cpu", weights_only=False)
