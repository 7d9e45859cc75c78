"""Train and record a run in its folder, with one rule for reusing and resuming it.

Every training of the course goes through :func:`train_and_record`: the registry models of
``cvt-edu train`` and chapters 2, 3 and 5 (:func:`cvt_edu.lab.compare.train_model`), the
variants of chapter 4 (:func:`cvt_edu.lab.ablation.train_config_model`) and the fine-tuning of
chapter 9 (:func:`cvt_edu.lab.transfer.finetune`). It seeds, builds the model (so that its
initial weights depend on the seed alone), trains it with :func:`cvt_edu.train.loop.fit`, and
writes to the run folder:

- ``model.safetensors`` and ``config.json``: the course model after the last finished epoch;
- ``trainer_state.pt``: what an interrupted run resumes from;
- ``metrics.json``: :func:`~cvt_edu.train.loop.fit`'s metrics, plus ``flops``, ``macs`` (one
  image), ``arch``, ``model_config``, ``quick`` and the run's ``key``.

The rule. A run is identified by its key (:func:`run_key`): the recipe
(:meth:`~cvt_edu.train.config.TrainConfig.recipe`, every setting but the runtime ones), the model's
architecture and config, and whatever else the caller names (fine-tuning: the image size and
where the starting weights came from). If the folder holds a run with the same key, a finished
one (all ``cfg.epochs`` done) is reused as it is, without training or evaluating again, and an
interrupted one resumes where it stopped. A run with another key is not resumed: the model is
trained from scratch and the folder overwritten.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ..cost.flops import count_flops
from ..models import arch_of, config_to_dict
from .checkpoint import WEIGHTS, load_checkpoint, write_json
from .config import TrainConfig
from .data import ImageTensors
from .env import pick_device, quick_mode, seed_everything
from .loop import METRICS, fit

__all__ = ["run_key", "finished_run", "train_and_record"]


def run_key(cfg: TrainConfig, model: nn.Module, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What identifies a run: ``{"recipe", "arch", "model_config", **extra}``, JSON-ready (tuples become lists).

    Args:
        cfg: the training config (its recipe counts, not its runtime settings).
        model: the course model as built for the run (ViT, CvT, Swin or PVT).
        extra: more JSON-ready settings that make the run what it is.
    """
    key = {"recipe": cfg.recipe(), "arch": arch_of(model), "model_config": config_to_dict(model.config), **(extra or {})}
    return json.loads(json.dumps(key))


def finished_run(folder: str | os.PathLike, key: Mapping[str, Any], epochs: int) -> dict[str, Any] | None:
    """The metrics of the finished run in ``folder`` if it has this ``key`` and ``epochs`` epochs and its model is there, else ``None``."""
    folder = Path(folder)
    if not (folder / METRICS).is_file() or not (folder / WEIGHTS).is_file():
        return None
    metrics = json.loads((folder / METRICS).read_text(encoding="utf-8"))
    return metrics if metrics.get("key") == key and metrics.get("epochs") == epochs else None


def train_and_record(
    build: Callable[[int], nn.Module],
    data: tuple[ImageTensors, ImageTensors],
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    name: str | None = None,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
    extra: Mapping[str, Any] | None = None,
    quick: bool | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Seed, build a model, train it (or reuse or resume the run in ``out_dir``), and record the run there.

    Args:
        build: ``num_classes -> model``, called right after seeding with one output per class
            of the data; returns a course model (ViT, CvT, Swin or PVT), the one that is saved.
        data: (train, test) splits of uint8 images (N, 3, H, W).
        cfg: the training config; shrunk with :meth:`~cvt_edu.train.config.TrainConfig.quick` in quick mode.
        out_dir: the run folder (created).
        name: the run's name in ``config.json``, ``metrics.json`` and messages.
        wrap: ``model -> module`` that is trained and measured instead of the model itself, e.g.
            :class:`cvt_edu.lab.transfer.ImageNetInput`; the model inside is still what is saved.
        extra: JSON-ready settings that belong to the run's key and to its metrics (e.g. ``image_size``).
        quick: quick mode; ``None`` reads ``$CVT_EDU_QUICK``.

    Returns:
        The trained module (the model, or its wrapper) on the run's device in eval mode, and the
        metrics (see the module docstring) with ``reused``: True if a finished run was loaded.

    Raises:
        CheckpointError: if a finished run's folder lost its ``config.json``.
    """
    cfg = cfg.for_mode(quick)
    train, test = data
    seed_everything(cfg.seed)  # the initial weights depend on the seed alone
    model = build(len(train.classes))
    trained = wrap(model) if wrap else model
    key = run_key(cfg, model, extra)
    out = Path(out_dir)
    saved = finished_run(out, key, cfg.epochs)
    if saved is not None:
        model.load_state_dict(load_checkpoint(out)[0].state_dict())
        trained.to(pick_device(cfg.device)).eval()
        if cfg.progress:
            print(f"{name or type(model).__name__}: reusing the finished run in {out} ({cfg.epochs} epochs)")
        return trained, {**saved, "reused": True}
    metrics = fit(trained, train, test, cfg, out_dir=out, name=name, key=key, course_model=model)
    metrics.update(count_flops(trained, (1, *train.images.shape[1:])))
    metrics.update(arch=key["arch"], model_config=key["model_config"], **(extra or {}), quick=quick_mode(quick), key=key)
    write_json(out / METRICS, metrics)
    return trained, {**metrics, "reused": False}
