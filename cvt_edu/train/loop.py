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

:func:`fit` is a sequence of steps, each its own function: :func:`prepare` (model, loader,
optimizer, schedule, precision), :func:`resume_progress` (trainer state and random states), then per
epoch :func:`train_one_epoch`, :func:`evaluate` and :func:`record_epoch`, and :func:`save_run`;
:func:`run_metrics` sums the run up.

Files written to ``out_dir`` (each atomically):
    ``model.safetensors``, ``config.json``  the model after the last finished epoch;
    ``trainer_state.pt``                    everything needed to resume;
    ``metrics.json``                        history and final results, written when the run ends (and
                                            removed before a new epoch is saved).
"""

from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from sklearn.metrics import confusion_matrix
from torch import nn
from tqdm.auto import tqdm

from ..cost.flops import count_params
from .augment import batch_mix, normalize
from .checkpoint import TRAINER_STATE, load_trainer_state, save_pretrained, save_trainer_state, write_json
from .config import TrainConfig
from .data import CIFAR10_MEAN, CIFAR10_STD, ImageTensors
from .env import pick_device, restore_rng, seed_everything
from .loader import DeviceLoader, reference_loader

__all__ = [
    "METRICS",
    "NonFiniteLossError",
    "check_finite",
    "make_optimizer",
    "make_scheduler",
    "evaluate",
    "PreparedRun",
    "prepare",
    "Progress",
    "resume_progress",
    "train_one_epoch",
    "record_epoch",
    "save_run",
    "run_metrics",
    "fit",
]

METRICS = "metrics.json"
_PREFIX = {"test": "test", "validation": "val"}  # the metrics' names of what a run evaluates on


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
        model: the model being trained, on ``device``.
        device: where the model and the batches live.
        fast: whether the fast path is on (see the module docstring).
        forward: the model, or its ``torch.compile``-d wrapper.
        loader: yields (images (B, C, H, W) float32, labels (B,) int64) batches; its ``generator``
            seeds the order of the images.
        mix: MixUp/CutMix on a batch, or ``None``.
        optimizer: AdamW (fused on CUDA).
        scheduler: warmup then cosine decay (:func:`make_scheduler`), stepped after every batch.
        autocast: the mixed-precision context (a no-op off CUDA or with ``amp=False``).
        scaler: the float16 gradient scaler, or ``None``.
        label_smoothing: epsilon of the smoothed cross-entropy.
    """

    model: nn.Module
    device: torch.device
    fast: bool
    forward: nn.Module
    loader: Any
    mix: Any
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    autocast: Any
    scaler: Any
    label_smoothing: float

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step on a batch already on the device; reads nothing back to the host.

        The learning-rate schedule is not stepped here (:func:`train_one_epoch` does it).

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
    """Move ``model`` to ``device`` and build the loader, batch mixing, optimizer, schedule and precision of ``cfg``.

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
    optimizer = make_optimizer(model, cfg, fused=device.type == "cuda")
    return PreparedRun(
        model=model,
        device=device,
        fast=fast,
        forward=torch.compile(model) if cfg.compile else model,
        loader=loader,
        mix=batch_mix(len(train_data.classes), cfg.mixup_alpha, cfg.cutmix_alpha),
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, cfg, len(loader)),
        autocast=autocast,
        scaler=scaler,
        label_smoothing=cfg.label_smoothing,
    )


@dataclass
class Progress:
    """How far a run has come: epochs done, one history entry per epoch, training seconds (evaluation excluded)."""

    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0


def resume_progress(run: PreparedRun, folder: Path, key: dict[str, Any], *, epochs: int, label: str, verbose: bool) -> Progress:
    """Continue the run saved in ``folder/trainer_state.pt``, if it was saved under the same ``key``
    (:func:`cvt_edu.train.run.same_run_key`: a key saved before a field existed, lacking it, matches today's default).

    Restores the weights, the optimizer, the schedule, the gradient scaler and every random
    state, so that the remaining epochs are those of an uninterrupted run, bit for bit. A state
    saved under another key (another recipe or model), or beyond ``epochs``, is ignored: the run
    starts from scratch and will overwrite it.

    Args:
        run: the freshly prepared run (:func:`prepare`), changed in place.
        folder: the run folder.
        key: what identifies the run (see :func:`fit`).
        epochs: the run's length.
        label: the run's name in messages.
        verbose: print what happens.

    Returns:
        The saved progress, or a fresh one.
    """
    from .run import same_run_key  # run.py imports this module

    saved = load_trainer_state(folder)
    if saved is None:
        return Progress()
    if not same_run_key(saved.get("key"), key):
        if verbose:
            print(f"{folder / TRAINER_STATE} was written by another run (another recipe or model); "
                  "training from scratch (the old run is overwritten)")
        return Progress()
    if saved["state"]["epoch"] > epochs:
        return Progress()
    run.model.load_state_dict(saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    run.scheduler.load_state_dict(saved["scheduler"])
    if run.scaler and saved["scaler"]:
        run.scaler.load_state_dict(saved["scaler"])
    restore_rng(saved["rng"])
    progress = Progress(**saved["state"])
    if verbose:
        done = "finished" if progress.epoch >= epochs else "interrupted"
        print(f"{label}: resuming the {done} run in {folder} at epoch {progress.epoch}/{epochs}")
    return progress


class NonFiniteLossError(ValueError):
    """The training loss became NaN or infinite: the run stops, and the last good epoch's files stay as they were."""


def check_finite(train: dict[str, float], epoch: int, *, label: str, folder: Path | None) -> None:
    """Stop a run whose epoch ended with a non-finite training loss, before anything of that epoch is saved.

    Raises:
        NonFiniteLossError: naming the epoch, the loss, and the run folder whose last good checkpoint is kept.
    """
    loss = train["train_loss"]
    if math.isfinite(loss):
        return
    if folder is None:
        kept = ""
    elif (folder / TRAINER_STATE).is_file():
        kept = f"; what {folder} held before this epoch is kept as it was"
    else:
        kept = f"; nothing was written to {folder}"
    raise NonFiniteLossError(
        f"{label}: the training loss became {loss} in epoch {epoch + 1} (a learning rate too large, most likely){kept}"
    )


def train_one_epoch(run: PreparedRun, epoch: int, *, seed: int, bars: bool = False) -> dict[str, float]:
    """One pass over the training data: a step per batch, the schedule stepped after each.

    The data order is seeded with ``seed + epoch``, so it depends on the epoch alone and a
    resumed run repeats it. The loss and accuracy add up on the device; they are read back once,
    at the end (on the reference path the progress bar also reads them every 10 steps).

    Args:
        run: the prepared run.
        epoch: the epoch's index, from 0.
        seed: the run's seed.
        bars: show a progress bar.

    Returns:
        ``train_loss`` (mean smoothed cross-entropy, nats, against the mixed targets when mixing),
        ``train_accuracy`` (0..1, against the original labels) and ``seconds`` (wall time, the
        device's queued work included).
    """
    device, loader = run.device, run.loader
    run.model.train()
    loader.generator.manual_seed(seed + epoch)
    start = time.perf_counter()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    seen = 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}", leave=False, disable=not bars)
    for step, (images, labels) in enumerate(bar):
        labels = labels.to(device, non_blocking=True)
        loss, logits = run.step(images.to(device, non_blocking=True), labels)
        run.scheduler.step()
        loss_sum += loss.detach() * len(labels)
        correct += (logits.argmax(1) == labels).sum()
        seen += len(labels)
        if bars and not run.fast and (step % 10 == 0 or step == len(loader) - 1):  # .item() waits for the GPU
            bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}", acc=f"{correct.item() / seen:.3f}")
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the epoch's time includes the GPU's queued work
    return {"train_loss": loss_sum.item() / seen, "train_accuracy": correct.item() / seen, "seconds": time.perf_counter() - start}


def record_epoch(progress: Progress, train: dict[str, float], test: dict[str, Any], lr: float, *, split: str = "test") -> dict[str, float]:
    """Add one finished epoch to ``progress``: its :func:`train_one_epoch` figures, its :func:`evaluate`
    results (``test_loss``, ``test_accuracy``; ``val_loss``, ``val_accuracy`` when ``split`` is
    ``"validation"``) and the learning rate it ended at. Returns the new history entry."""
    progress.epoch += 1
    progress.train_seconds += train["seconds"]
    ev = _PREFIX[split]
    entry = {
        "epoch": progress.epoch,
        "train_loss": train["train_loss"],
        "train_accuracy": train["train_accuracy"],
        f"{ev}_loss": test["loss"],
        f"{ev}_accuracy": test["accuracy"],
        "lr": lr,
        "seconds": train["seconds"],
    }
    progress.history.append(entry)
    return entry


def save_run(
    run: PreparedRun, folder: Path, progress: Progress, key: dict[str, Any], *, course_model: nn.Module, **config: Any
) -> None:
    """Save a finished epoch: ``course_model`` as ``model.safetensors`` + ``config.json`` (with the JSON-ready
    ``config`` fields, e.g. name and classes), then the trainer state (:func:`cvt_edu.train.checkpoint.save_trainer_state`).

    A ``metrics.json`` already there is removed first: it describes a finished run, never the epoch
    being saved, so a kill after this save cannot leave an old run's metrics beside this model.
    """
    (folder / METRICS).unlink(missing_ok=True)
    save_pretrained(course_model, folder, **config)
    save_trainer_state(folder, key=key, model=run.model, optimizer=run.optimizer, scheduler=run.scheduler, scaler=run.scaler,
                       progress=asdict(progress))


def run_metrics(
    run: PreparedRun, progress: Progress, final: dict[str, Any], cfg: TrainConfig, *, name: str | None, n_train: int, classes: list[str]
) -> dict[str, Any]:
    """The metrics of a run (what :func:`fit` returns and writes to ``metrics.json``), from its progress and final evaluation.

    ``test_accuracy``, ``test_loss``, ``n_test`` and ``test_predictions`` (the predicted class of every
    test image, in the test split's order, for paired tests such as
    :func:`cvt_edu.lab.stats.mcnemar`); with a validation split (``cfg.validation``) the same as
    ``val_accuracy``, ``val_loss``, ``n_val`` and ``val_predictions``, and nothing about the test split.
    """
    device = run.device
    images_seen = n_train * len(progress.history)
    ev = _PREFIX[cfg.eval_split]
    return {
        "model": name,
        f"{ev}_accuracy": final["accuracy"],
        f"{ev}_loss": final["loss"],
        f"n_{ev}": final["n"],
        "n_train": n_train,
        "epochs": progress.epoch,
        "history": progress.history,
        "params": count_params(run.model),
        "device": str(device) if device.type != "cuda" else f"cuda ({torch.cuda.get_device_name(device)})",
        "torch": torch.__version__,
        "seconds": progress.train_seconds,
        "images_per_second": images_seen / progress.train_seconds if progress.train_seconds else None,
        "confusion": final["confusion"],
        f"{ev}_predictions": [int(p) for p in final["predictions"]],
        "classes": classes,
        "train_config": asdict(cfg),
    }


def fit(
    model: nn.Module,
    train_data: ImageTensors,
    test_data: ImageTensors | None,
    cfg: TrainConfig | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
    name: str | None = None,
    resume: bool = True,
    key: dict[str, Any] | None = None,
    course_model: nn.Module | None = None,
) -> dict[str, Any]:
    """Train ``model`` and evaluate it on ``test_data`` after every epoch (or on a validation split, which leaves the test split untouched).

    Args:
        model: a freshly built course model (see :func:`cvt_edu.models.build_model`), or a module
            wrapping one (then pass the course model as ``course_model``); images (B, 3, H, W) -> logits (B, K).
        train_data, test_data: uint8 splits from :func:`cvt_edu.train.data.load_split`; the
            training augmentation and the evaluation transform are applied here. With
            ``cfg.validation`` > 0 the run trains on the training images less a stratified
            held-out part and evaluates on that part (:meth:`TrainConfig.splits`); ``test_data`` is
            then never read (``None`` is accepted).
        cfg: a :class:`~cvt_edu.train.config.TrainConfig`; ``None`` uses the defaults.
        out_dir: where to write the checkpoint, the trainer state and ``metrics.json`` after
            every epoch (nothing is written if ``None``).
        name: the model's registry name, stored in ``config.json`` and ``metrics.json``.
        resume: continue from ``out_dir/trainer_state.pt`` if it exists and was written
            under the same ``key`` (see :func:`resume_progress`); otherwise train from scratch.
        key: what identifies the run, JSON-ready; ``None``: ``{"recipe": cfg.recipe()}`` (every
            setting of ``cfg`` but progress, workers, device, fast path and compilation).
            :func:`cvt_edu.train.run.train_and_record` adds the model's config.
        course_model: the module saved as ``model.safetensors``; ``None``: ``model``.

    Returns:
        The metrics (also written to ``metrics.json``, see :func:`run_metrics`): ``test_accuracy`` (0..1)
        and ``test_predictions`` (``val_*`` with a validation split), ``history`` (one dict per epoch),
        ``params``, ``device``, ``seconds`` (training wall time), ``images_per_second``, ``confusion``,
        and the configs.
    """
    cfg = cfg or TrainConfig()
    key = key if key is not None else {"recipe": cfg.recipe()}
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    train_data, eval_data = cfg.splits(train_data, test_data)
    run = prepare(model, train_data, cfg, device)
    if run.fast:  # one copy of the test images on the device, read by every epoch's evaluation
        eval_data = eval_data.to(device)
    out = Path(out_dir) if out_dir else None
    label = name or type(model).__name__
    progress = resume_progress(run, out, key, epochs=cfg.epochs, label=label, verbose=cfg.progress) if out and resume else Progress()

    classes = list(train_data.classes)
    eval_batch = max(256, cfg.batch_size)
    final = None
    # TQDM_DISABLE=1 hides the bars (tqdm only reads it when ``disable`` is not passed); the epoch lines stay.
    bars = cfg.progress and os.environ.get("TQDM_DISABLE", "").lower() not in ("1", "true")
    epochs = tqdm(range(progress.epoch, cfg.epochs), desc=label, initial=progress.epoch, total=cfg.epochs, disable=not bars)
    for epoch in epochs:
        train = train_one_epoch(run, epoch, seed=cfg.seed, bars=bars)
        check_finite(train, epoch, label=label, folder=out)  # once per epoch: nothing is read back inside a step
        final = evaluate(run.forward, eval_data, batch_size=eval_batch, device=device)
        h = record_epoch(progress, train, final, run.scheduler.get_last_lr()[0], split=cfg.eval_split)
        ev = _PREFIX[cfg.eval_split]
        epochs.set_postfix({f"{ev}_acc": f"{final['accuracy']:.3f}"})
        if cfg.progress:
            tqdm.write(
                f"{label} epoch {h['epoch']}/{cfg.epochs}: train loss {h['train_loss']:.3f}, "
                f"train acc {h['train_accuracy']:.3f} | {ev} acc {h[f'{ev}_accuracy']:.3f} | {h['seconds']:.1f} s"
            )
        if out:
            save_run(run, out, progress, key, course_model=model if course_model is None else course_model, name=name,
                     classes=classes)

    if final is None:  # resumed a finished run: evaluate the saved model
        final = evaluate(model, eval_data, batch_size=eval_batch, device=device)
    metrics = run_metrics(run, progress, final, cfg, name=name, n_train=len(train_data), classes=classes)
    if out:
        write_json(out / METRICS, metrics)
    return metrics
