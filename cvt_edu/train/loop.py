"""Training and evaluation of the course models.

AdamW with linear warmup then cosine decay (stepped every batch), label smoothing,
augmentation (crop-flip or TrivialAugment, MixUp/CutMix; see :mod:`cvt_edu.train.augment`),
mixed precision on CUDA (bfloat16 where the GPU supports it, else float16 with a
gradient scaler), a seeded run, ``tqdm.auto`` progress bars, a per-epoch history, and
a checkpoint after every epoch from which an interrupted run resumes.

Two paths feed the model (see :mod:`cvt_edu.train.loader`). The reference path augments image by
image in a ``DataLoader``; it is the default off CUDA. The fast path, the default on CUDA,
holds the data set on the device as uint8 and augments whole batches there; on CUDA it also
puts the model in channels-last memory format, uses the fused AdamW kernel and reads no value
back to the host inside an epoch (the metrics add up on the device). ``compile=True`` runs the
model through ``torch.compile``.

Files written to ``out_dir`` (each atomically):
    ``model.safetensors``, ``config.json``  the model after the last finished epoch;
    ``trainer_state.pt``                    everything needed to resume;
    ``metrics.json``                        history and final results.
"""

from __future__ import annotations

import os
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import confusion_matrix
from torch import nn
from tqdm.auto import tqdm

from ..cost.flops import count_params
from .augment import POLICIES, batch_mix, normalize
from .checkpoint import atomic_path, migrate_state_dict, save_pretrained, write_json
from .data import CIFAR10_MEAN, CIFAR10_STD, ImageTensors
from .env import pick_device, quick_mode, seed_everything
from .loader import DeviceLoader, reference_loader

__all__ = [
    "TrainConfig",
    "make_optimizer",
    "make_scheduler",
    "evaluate",
    "PreparedRun",
    "prepare",
    "fit",
]

TRAINER_STATE = "trainer_state.pt"
METRICS = "metrics.json"


@dataclass
class TrainConfig:
    """How to train.

    Attributes:
        epochs: passes over the training set.
        batch_size: images per step.
        lr: peak learning rate of AdamW, reached at the end of the warmup.
        min_lr: learning rate at the end of the cosine decay.
        weight_decay: AdamW decoupled weight decay (not applied to biases, norms, tokens, embeddings).
        warmup_epochs: length of the linear warmup, in epochs (may be fractional).
        label_smoothing: epsilon of the smoothed cross-entropy.
        seed: seeds initialisation, data order and augmentation.
        augment: ``"crop-flip"`` or ``"trivial"`` (crop-flip then TrivialAugment), see :mod:`cvt_edu.train.augment`.
        mixup_alpha, cutmix_alpha: Beta parameters of MixUp and CutMix (0 turns one off; with both on,
            each batch draws one of them).
        num_workers: DataLoader worker processes (reference path only).
        amp: mixed precision on CUDA (ignored elsewhere).
        device: ``None`` picks cuda, then mps, then cpu.
        fast_path: hold the data on the device and augment in batches there (see the module
            docstring); ``None``: on for CUDA, off elsewhere.
        compile: run the model through ``torch.compile``.
        train_subset, test_subset: use only this many images (``None``: all); quick mode sets them.
        progress: show progress bars and print one line per epoch (``TQDM_DISABLE=1`` hides the bars only).
    """

    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_epochs: float = 2.0
    label_smoothing: float = 0.1
    seed: int = 0
    augment: str = "crop-flip"
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    num_workers: int = 0
    amp: bool = True
    device: str | None = None
    fast_path: bool | None = None
    compile: bool = False
    train_subset: int | None = None
    test_subset: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.augment not in POLICIES:
            raise ValueError(f"augment must be one of {POLICIES}, got {self.augment!r}")
        if self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0, got {self.mixup_alpha} and {self.cutmix_alpha}")

    @classmethod
    def small_data(cls, **overrides: Any) -> "TrainConfig":
        """The course's recipe for small data sets such as cifar10-mini (4,068 training images).

        Chosen by the experiments written down in chapter 5: TrivialAugment on top of
        crop-flip, MixUp (alpha 0.8) or CutMix (alpha 1.0) drawn for each batch, label smoothing 0.1,
        AdamW (lr 1e-3, weight decay 0.05, batch 128), 10 warmup epochs then cosine decay, 600
        epochs; stochastic depth is each model's own (``drop_path`` in its config). With strong
        augmentation the models keep learning for long: on cifar10-mini, without mixing, 300 epochs
        gave cvt-tiny 74.7 % against 69.8 % for 150. Mixing pays only in long runs: at 150 epochs it
        moved cvt-tiny from 69.8 % to 70.8 %, less than the standard error of a 1,017-image test
        accuracy (about 1.4 points); at 300 epochs it trails until epoch 130 and ends at 77.6 %
        against 74.7 %. Twice as long again pays too: 600 epochs took cvt-tiny to 81.2 % and
        vit-tiny to 68.6 % (seed 0; 300 epochs: 77.6 % and 65.8 %); with seed 1, cvt-tiny ended
        at 79.7 % (two-seed mean 80.5 %).
        ``overrides`` replace any field, e.g. ``epochs`` or ``device``.
        """
        recipe = dict(
            epochs=600,
            batch_size=128,
            lr=1e-3,
            weight_decay=0.05,
            warmup_epochs=10.0,
            label_smoothing=0.1,
            augment="trivial",
            mixup_alpha=0.8,
            cutmix_alpha=1.0,
        )
        return cls(**{**recipe, **overrides})

    def splits(self, train_data: ImageTensors, test_data: ImageTensors) -> tuple[ImageTensors, ImageTensors]:
        """The training and test images a run of this config uses: ``train_subset`` and
        ``test_subset`` images of a seeded permutation (:meth:`ImageTensors.subset`), or all of them."""
        if self.train_subset:
            train_data = train_data.subset(self.train_subset, self.seed)
        if self.test_subset:
            test_data = test_data.subset(self.test_subset, self.seed)
        return train_data, test_data

    def for_mode(self, quick: bool | None = None) -> "TrainConfig":
        """This config as a run uses it: shrunk by :meth:`quick` in quick mode, unchanged otherwise.

        Args:
            quick: quick mode; ``None`` reads ``$CVT_EDU_QUICK`` (see :func:`quick_mode`).
        """
        return self.quick() if quick_mode(quick) else self

    def quick(self) -> "TrainConfig":
        """The same config shrunk for a smoke run: 1 epoch, 512 training and 256 test images."""
        return TrainConfig(
            **{**asdict(self), "epochs": 1, "warmup_epochs": 0.2, "train_subset": 512, "test_subset": 256}
        )


def make_optimizer(model: nn.Module, cfg: TrainConfig, fused: bool = False) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices and conv kernels only.

    Exempt, as in the reference trainings: 1-D parameters (biases, norms), the [CLS] token,
    positional embeddings and Swin's relative position bias tables.
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exempt = p.ndim <= 1 or name.endswith(("cls_token", "pos_embed", "relative_position_bias_table"))
        (no_decay if exempt else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=fused or None)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warmup from lr/100 to lr, then cosine decay to ``min_lr``; step it after every batch."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = min(total - 1, max(1, round(cfg.warmup_epochs * steps_per_epoch)))
    sched = torch.optim.lr_scheduler
    return sched.SequentialLR(
        optimizer,
        [
            sched.LinearLR(optimizer, start_factor=0.01, total_iters=warmup),
            sched.CosineAnnealingLR(optimizer, T_max=max(1, total - warmup), eta_min=cfg.min_lr),
        ],
        milestones=[warmup],
    )


def _autocast(device: torch.device, enabled: bool):
    """bfloat16 autocast on GPUs that have it natively, float16 on older ones (T4), nothing elsewhere."""
    if not enabled or device.type != "cuda":
        return nullcontext(), None
    bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    dtype = torch.bfloat16 if bf16 else torch.float16
    scaler = None if bf16 else torch.amp.GradScaler("cuda")
    return torch.autocast("cuda", dtype=dtype), scaler


@torch.no_grad()
def evaluate(
    model: nn.Module, data: ImageTensors, *, batch_size: int = 256, device: torch.device | str | None = None, progress: bool = False
) -> dict[str, Any]:
    """Accuracy, mean loss and confusion matrix of ``model`` on a data set.

    Args:
        model: returns logits (B, K) for images (B, 3, H, W).
        data: uint8 images; the evaluation transform is applied here.
        batch_size: images per forward pass.
        device: ``None`` uses the model's device.
        progress: show a progress bar.

    Returns:
        ``accuracy`` (0..1), ``loss`` (mean cross-entropy, nats), ``n``, ``confusion``
        (K x K list, rows = true class), ``predictions`` and ``labels`` (int64 tensors, shape (n,)).
    """
    device = torch.device(device) if device else next(model.parameters()).device
    model.eval()
    preds, loss = [], torch.zeros((), device=device)
    for start in tqdm(range(0, len(data), batch_size), desc="eval", leave=False, disable=not progress):
        images = normalize(data.images[start : start + batch_size].to(device), CIFAR10_MEAN, CIFAR10_STD)
        labels = data.labels[start : start + batch_size].to(device)
        logits = model(images).float()
        loss += F.cross_entropy(logits, labels, reduction="sum")
        preds.append(logits.argmax(1))
    predictions = torch.cat(preds).cpu()  # the one read-back of the evaluation
    labels = data.labels.cpu()
    cm = confusion_matrix(labels.numpy(), predictions.numpy(), labels=list(range(len(data.classes))))
    return {
        "accuracy": float((predictions == labels).float().mean()),
        "loss": loss.item() / len(labels),
        "n": len(labels),
        "confusion": cm.tolist(),
        "predictions": predictions,
        "labels": labels,
    }


@dataclass
class PreparedRun:
    """Everything a training step needs, set up by :func:`prepare` (shared by :func:`fit` and the benchmark).

    Attributes:
        device: where the model and the batches live.
        fast: whether the fast path is on (see the module docstring).
        forward: the model, or its ``torch.compile``-d wrapper.
        loader: yields (images (B, C, H, W) float32, labels (B,) int64) batches.
        mix: MixUp/CutMix on a batch, or ``None``.
        optimizer: AdamW (fused on CUDA).
        autocast: the mixed-precision context (a no-op off CUDA or with ``amp=False``).
        scaler: the float16 gradient scaler, or ``None``.
        label_smoothing: epsilon of the smoothed cross-entropy.
    """

    device: torch.device
    fast: bool
    forward: nn.Module
    loader: Any
    mix: Any
    optimizer: torch.optim.Optimizer
    autocast: Any
    scaler: Any
    label_smoothing: float

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step on a batch already on the device; reads nothing back to the host.

        Args:
            images: (B, C, H, W) float32, normalised.
            labels: (B,) int64; MixUp/CutMix, when on, turns them into soft targets (B, K).

        Returns:
            The batch's mean loss (a 0-d tensor, detached) and its logits (B, K).
        """
        targets = labels
        if self.mix is not None:
            images, targets = self.mix(images, labels)
        if self.fast and self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        with self.autocast:
            logits = self.forward(images)
            loss = F.cross_entropy(logits.float(), targets, label_smoothing=self.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return loss.detach(), logits.detach()


def prepare(model: nn.Module, train_data: ImageTensors, cfg: TrainConfig, device: torch.device) -> PreparedRun:
    """Move ``model`` to ``device`` and build the loader, batch mixing, optimizer and precision of ``cfg``.

    On the fast path on CUDA the model is also put in channels-last memory format, the
    layout cuDNN's convolutions run fastest in.
    """
    fast = device.type == "cuda" if cfg.fast_path is None else cfg.fast_path
    model.to(device)
    if fast and device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    drop_last = len(train_data) > cfg.batch_size
    if fast:
        loader = DeviceLoader(train_data, cfg.batch_size, device=device, policy=cfg.augment, drop_last=drop_last, seed=cfg.seed)
    else:
        loader = reference_loader(
            train_data,
            cfg.batch_size,
            policy=cfg.augment,
            drop_last=drop_last,
            seed=cfg.seed,
            num_workers=cfg.num_workers,
            pin_memory=device.type == "cuda",
        )
    autocast, scaler = _autocast(device, cfg.amp)
    return PreparedRun(
        device=device,
        fast=fast,
        forward=torch.compile(model) if cfg.compile else model,
        loader=loader,
        mix=batch_mix(len(train_data.classes), cfg.mixup_alpha, cfg.cutmix_alpha),
        optimizer=make_optimizer(model, cfg, fused=device.type == "cuda"),
        autocast=autocast,
        scaler=scaler,
        label_smoothing=cfg.label_smoothing,
    )


@dataclass
class _State:
    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0


# Settings that change how a run is computed but not what it learns: a run may resume under other values.
_RUNTIME_SETTINGS = ("progress", "num_workers", "device", "fast_path", "compile")


def _recipe(cfg: TrainConfig) -> dict[str, Any]:
    return {k: v for k, v in asdict(cfg).items() if k not in _RUNTIME_SETTINGS}


def _save_trainer_state(path: Path, model, optimizer, scheduler, scaler, state: _State, cfg: TrainConfig) -> None:
    payload = {
        "recipe": _recipe(cfg),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler else None,
        "state": asdict(state),
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "numpy": np.random.get_state(),
            "python": random.getstate(),
        },
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def fit(
    model: nn.Module,
    train_data: ImageTensors,
    test_data: ImageTensors,
    cfg: TrainConfig | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
    name: str | None = None,
    resume: bool = True,
) -> dict[str, Any]:
    """Train ``model`` and evaluate it on ``test_data`` after every epoch.

    Args:
        model: a freshly built course model (see :func:`cvt_edu.models.build_model`).
        train_data, test_data: uint8 splits from :func:`cvt_edu.train.data.load_split`; the
            training augmentation and the evaluation transform are applied here.
        cfg: a :class:`TrainConfig`; ``None`` uses the defaults.
        out_dir: where to write the checkpoint and ``metrics.json`` (nothing is written if ``None``).
        name: the model's registry name, stored in ``config.json`` and ``metrics.json``.
        resume: continue from ``out_dir/trainer_state.pt`` if it exists and was written
            under the same recipe (every setting of ``cfg`` except progress, workers, device,
            fast path and compilation); otherwise train from scratch.

    Returns:
        The metrics (also written to ``metrics.json``): ``test_accuracy`` (0..1),
        ``history`` (one dict per epoch), ``params``, ``device``, ``seconds`` (training
        wall time), ``images_per_second``, ``confusion``, and the configs.
    """
    cfg = cfg or TrainConfig()
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    train_data, test_data = cfg.splits(train_data, test_data)
    run = prepare(model, train_data, cfg, device)
    if run.fast:  # one copy of the test images on the device, read by every epoch's evaluation
        test_data = test_data.to(device)
    fast, forward, loader, optimizer, scaler = run.fast, run.forward, run.loader, run.optimizer, run.scaler
    scheduler = make_scheduler(optimizer, cfg, len(loader))
    state = _State()

    out = Path(out_dir) if out_dir else None
    if out and resume and (out / TRAINER_STATE).is_file():
        saved = torch.load(out / TRAINER_STATE, map_location=device, weights_only=False)
        same_recipe = saved.get("recipe", _recipe(cfg)) == _recipe(cfg)
        if not same_recipe and cfg.progress:
            print(f"{out / TRAINER_STATE} was written by another recipe; training from scratch (the old run is overwritten)")
        if same_recipe and saved["state"]["epoch"] <= cfg.epochs:
            model.load_state_dict(migrate_state_dict(saved["model"]))  # a run saved before the redesign too
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            if scaler and saved["scaler"]:
                scaler.load_state_dict(saved["scaler"])
            state = _State(**saved["state"])
            if cfg.progress:
                done = "finished" if state.epoch >= cfg.epochs else "interrupted"
                print(f"{name or type(model).__name__}: resuming the {done} run in {out} at epoch {state.epoch}/{cfg.epochs}")
            torch.set_rng_state(saved["rng"]["torch"])
            if saved["rng"].get("cuda") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(saved["rng"]["cuda"])
            np.random.set_state(saved["rng"]["numpy"])
            random.setstate(saved["rng"]["python"])

    label = name or type(model).__name__
    final = None
    # TQDM_DISABLE=1 hides the bars (tqdm only reads it when ``disable`` is not passed); the epoch lines stay.
    bars = cfg.progress and os.environ.get("TQDM_DISABLE", "").lower() not in ("1", "true")
    epochs = tqdm(range(state.epoch, cfg.epochs), desc=label, initial=state.epoch, total=cfg.epochs, disable=not bars)
    for epoch in epochs:
        model.train()
        loader.generator.manual_seed(cfg.seed + epoch)  # the data order depends only on the epoch, so resuming repeats it
        start = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        seen = 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}", leave=False, disable=not bars)
        for step, (images, labels) in enumerate(bar):
            labels = labels.to(device, non_blocking=True)
            loss, logits = run.step(images.to(device, non_blocking=True), labels)
            scheduler.step()
            loss_sum += loss.detach() * len(labels)
            correct += (logits.argmax(1) == labels).sum()
            seen += len(labels)
            if bars and not fast and (step % 10 == 0 or step == len(loader) - 1):  # .item() waits for the GPU
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}", acc=f"{correct.item() / seen:.3f}")
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the epoch's time includes the GPU's queued work
        seconds = time.perf_counter() - start
        state.train_seconds += seconds
        final = evaluate(forward, test_data, batch_size=max(256, cfg.batch_size), device=device)
        state.epoch = epoch + 1
        state.history.append(
            {
                "epoch": epoch + 1,
                "train_loss": loss_sum.item() / seen,
                "train_accuracy": correct.item() / seen,
                "test_loss": final["loss"],
                "test_accuracy": final["accuracy"],
                "lr": scheduler.get_last_lr()[0],
                "seconds": seconds,
            }
        )
        epochs.set_postfix(test_acc=f"{final['accuracy']:.3f}")
        if cfg.progress:
            h = state.history[-1]
            tqdm.write(
                f"{label} epoch {h['epoch']}/{cfg.epochs}: train loss {h['train_loss']:.3f}, "
                f"train acc {h['train_accuracy']:.3f} | test acc {h['test_accuracy']:.3f} | {seconds:.1f} s"
            )
        if out:
            save_pretrained(model, out, name=name, classes=list(train_data.classes))
            _save_trainer_state(out / TRAINER_STATE, model, optimizer, scheduler, scaler, state, cfg)

    if final is None:  # resumed a finished run: evaluate the saved model
        final = evaluate(model, test_data, batch_size=max(256, cfg.batch_size), device=device)
    n_train = len(train_data) * len(state.history)
    metrics = {
        "model": name,
        "test_accuracy": final["accuracy"],
        "test_loss": final["loss"],
        "n_test": final["n"],
        "n_train": len(train_data),
        "epochs": state.epoch,
        "history": state.history,
        "params": count_params(model),
        "device": str(device) if device.type != "cuda" else f"cuda ({torch.cuda.get_device_name(device)})",
        "seconds": state.train_seconds,
        "images_per_second": n_train / state.train_seconds if state.train_seconds else None,
        "confusion": final["confusion"],
        "classes": list(train_data.classes),
        "train_config": asdict(cfg),
    }
    if out:
        write_json(out / METRICS, metrics)
    return metrics
