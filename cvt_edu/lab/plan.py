"""The main experiment of chapter 5 as data: every run of the controlled comparison, with its folder and recipe.

Four studies, each run under the small-data recipe (:meth:`cvt_edu.train.config.TrainConfig.small_data`)
with only the settings named here changed:

- ``validation``: the choices, made on a validation split (20 % of the training images, stratified,
  split seed 0) and never on the test set: the headline recipe at 100 and 300 epochs, vit-tiny and
  cvt-tiny, seed 0;
- ``wide``: every model of the comparison at 100 epochs on all the training images, 3 seeds:
  vit-tiny, cvt-tiny, resnet-20 (the CNN baseline), swin-tiny, pvt-tiny and cvt-tiny-linear (cvt-tiny
  without its convolutions, the control);
- ``fraction``: vit-tiny and cvt-tiny on 10 % and 25 % of the training images with as many optimizer
  steps as the 100-epoch run on all of them (epochs, and the warmup, scaled by the steps per epoch:
  about 1 / fraction), 3 seeds; the 100 % point is the ``wide`` run;
- ``headline``: vit-tiny and cvt-tiny at 300 epochs, 3 seeds.

Each :class:`PlannedRun` names its folder below the runs folder (``headline/cvt-tiny/seed0``), which is
also the name of its results file (``results/main/headline/cvt-tiny/seed0.json``), and the arguments of
``cvt-edu train`` that train it (:meth:`PlannedRun.train_args`). :func:`estimate_seconds` sizes a run
from the training throughput measured on one CPU thread (:data:`IMAGES_PER_SECOND`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from ..train.config import TrainConfig

__all__ = ["IMAGES_PER_SECOND", "N_TRAIN", "PlannedRun", "main_plan", "steps_per_epoch", "equal_step_epochs",
           "trained_images", "estimate_seconds", "plan_table"]

# Training images per second on one CPU thread under the small-data recipe (cvt-edu bench --train --threads 1,
# the measurement); evaluation excluded. Models missing here have no estimate.
IMAGES_PER_SECOND = {"vit-tiny": 120.0, "cvt-tiny": 280.0}
N_TRAIN = 4068  # the training images of cifar10-mini
SEEDS = (0, 1, 2)
VALIDATION = 0.2
WIDE_MODELS = ("vit-tiny", "cvt-tiny", "resnet-20", "swin-tiny", "pvt-tiny", "cvt-tiny-linear")
PAIR = ("vit-tiny", "cvt-tiny")


@dataclass(frozen=True)
class PlannedRun:
    """One run of the plan.

    Attributes:
        name: the run's folder below the runs folder, and its results file's path without ``.json``.
        study: ``validation``, ``wide``, ``fraction`` or ``headline``.
        model: a registry name (:func:`cvt_edu.models.list_models`); it may not be there yet.
        seed: the run's seed.
        overrides: the :class:`TrainConfig` settings that differ from :meth:`TrainConfig.small_data`.
    """

    name: str
    study: str
    model: str
    seed: int
    overrides: dict[str, Any] = field(default_factory=dict)

    def config(self) -> TrainConfig:
        """The run's training config: the small-data recipe with ``seed`` and ``overrides``."""
        return TrainConfig.small_data(seed=self.seed, **self.overrides)

    def train_args(self) -> list[str]:
        """The recipe as arguments of ``cvt-edu train`` (every recipe setting the command line takes, stated)."""
        cfg = self.config()
        args = ["--model", self.model, "--epochs", str(cfg.epochs), "--batch-size", str(cfg.batch_size), "--lr", repr(cfg.lr),
                "--weight-decay", repr(cfg.weight_decay), "--warmup-epochs", repr(cfg.warmup_epochs),
                "--label-smoothing", repr(cfg.label_smoothing), "--augment", cfg.augment,
                "--mixup-alpha", repr(cfg.mixup_alpha), "--cutmix-alpha", repr(cfg.cutmix_alpha), "--seed", str(cfg.seed)]
        if cfg.validation:
            args += ["--validation", repr(cfg.validation)]
        if cfg.train_subset:
            args += ["--train-subset", str(cfg.train_subset)]
        unsupported = {f.name for f in fields(TrainConfig)} & set(self.overrides) - _CLI_SETTINGS
        if unsupported:
            raise ValueError(f"{self.name}: cvt-edu train has no option for {', '.join(sorted(unsupported))}")
        return args


_CLI_SETTINGS = {"epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "label_smoothing", "augment", "mixup_alpha",
                 "cutmix_alpha", "seed", "validation", "train_subset"}


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    """Optimizer steps in one epoch of ``n_images``: whole batches only when there is more than one (the loader's drop_last)."""
    return n_images // batch_size if n_images > batch_size else 1


def equal_step_epochs(epochs: int, n_full: int, n_part: int, batch_size: int) -> int:
    """Epochs on ``n_part`` images that take as many optimizer steps as ``epochs`` on ``n_full`` (to the nearest epoch)."""
    return max(1, round(epochs * steps_per_epoch(n_full, batch_size) / steps_per_epoch(n_part, batch_size)))


def main_plan(n_train: int = N_TRAIN) -> list[PlannedRun]:
    """Every run of the main experiment (see the module docstring), for a training split of ``n_train`` images."""
    runs = []
    for epochs in (100, 300):
        for model in PAIR:
            runs.append(PlannedRun(f"validation/e{epochs}/{model}/seed0", "validation", model, 0,
                                   {"epochs": epochs, "validation": VALIDATION}))
    for model in WIDE_MODELS:
        for seed in SEEDS:
            runs.append(PlannedRun(f"wide/{model}/seed{seed}", "wide", model, seed, {"epochs": 100}))
    base = TrainConfig.small_data(epochs=100)
    for fraction in (0.10, 0.25):
        n = round(fraction * n_train)
        epochs = equal_step_epochs(100, n_train, n, base.batch_size)
        warmup = base.warmup_epochs * epochs / 100  # the same warmup in steps
        for model in PAIR:
            for seed in SEEDS:
                runs.append(PlannedRun(f"fraction/f{round(100 * fraction)}/{model}/seed{seed}", "fraction", model, seed,
                                       {"epochs": epochs, "warmup_epochs": warmup, "train_subset": n}))
    for model in PAIR:
        for seed in SEEDS:
            runs.append(PlannedRun(f"headline/{model}/seed{seed}", "headline", model, seed, {"epochs": 300}))
    return runs


def trained_images(run: PlannedRun, n_train: int = N_TRAIN) -> int:
    """Images the run's optimizer steps see: epochs x steps per epoch x batch size."""
    cfg = run.config()
    n = round(n_train * (1 - cfg.validation))  # the held-out part is rounded class by class: within a few images
    n = min(n, cfg.train_subset or n)
    return cfg.epochs * steps_per_epoch(n, cfg.batch_size) * min(cfg.batch_size, n)


def estimate_seconds(run: PlannedRun, n_train: int = N_TRAIN) -> float | None:
    """The run's training time on one CPU thread from :data:`IMAGES_PER_SECOND` (evaluation excluded), or ``None`` if unknown."""
    ips = IMAGES_PER_SECOND.get(run.model)
    return trained_images(run, n_train) / ips if ips else None


def plan_table(runs: list[PlannedRun], status: dict[str, str] | None = None, n_train: int = N_TRAIN) -> tuple[str, float]:
    """A Markdown table of the runs (name, model, seed, epochs, images, estimated core-hours, status), and the known core-hours in all."""
    from ..viz.tables import markdown_table

    rows, total = [], 0.0
    for run in runs:
        cfg = run.config()
        seconds = estimate_seconds(run, n_train)
        total += seconds or 0.0
        rows.append([run.name, run.model, run.seed, cfg.epochs, cfg.train_subset or "all", f"{cfg.validation:g}",
                     "unknown" if seconds is None else f"{seconds / 3600:.2f}", (status or {}).get(run.name, "")])
    headers = ["run", "model", "seed", "epochs", "train images", "validation", "core-hours (est.)", "status"]
    return markdown_table(rows, headers, align="lllrrrrl"), total

