"""How to train: :class:`TrainConfig` and the course's recipes.

This module imports no PyTorch, so that the command line can build its options from
:class:`TrainConfig` and answer ``--help`` at once.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .env import quick_mode

if TYPE_CHECKING:
    from .data import ImageTensors

__all__ = ["POLICIES", "RUNTIME_SETTINGS", "VALIDATION_SEED", "TrainConfig"]

POLICIES = ("crop-flip", "trivial")  # see cvt_edu.train.augment
# Settings that change how a run is computed but not what it learns: a run may resume under other values.
RUNTIME_SETTINGS = ("progress", "num_workers", "device", "fast_path", "compile")
# The seed of the validation split: one split for every run, whatever the run's own seed.
VALIDATION_SEED = 0


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
        fast_path: hold the data on the device and augment in batches there (see
            :mod:`cvt_edu.train.loop`); ``None``: on for CUDA, off elsewhere.
        compile: run the model through ``torch.compile``.
        train_subset, test_subset: use only this many images (``None``: all); quick mode sets them. With a
            validation split, ``train_subset`` is drawn from the images left for training and
            ``test_subset`` from the held-out ones.
        validation: the fraction of the training images held out for validation, in [0, 1); 0 (the
            default) is off. On, the split is stratified by class with the fixed seed
            :data:`VALIDATION_SEED` (:func:`cvt_edu.train.data.stratified_split`), the run trains on
            the rest and evaluates on the held-out images every epoch, and the test split is not
            touched at all (its metrics say ``val_accuracy``, never ``test_accuracy``).
        progress: show progress bars and print one line per epoch (``TQDM_DISABLE=1`` hides the bars only).

    Raises:
        ValueError: for an unknown ``augment`` policy, a negative MixUp/CutMix alpha or a
            ``validation`` fraction outside [0, 1).
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
    validation: float = 0.0

    def __post_init__(self) -> None:
        # checked before anything trains: a bad budget or step size is refused, never silently run
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if self.augment not in POLICIES:
            raise ValueError(f"augment must be one of {POLICIES}, got {self.augment!r}")
        if self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0, got {self.mixup_alpha} and {self.cutmix_alpha}")
        if not (isinstance(self.validation, (int, float)) and 0 <= self.validation < 1):
            raise ValueError(f"validation must be a fraction in [0, 1) (0 = off, 0.2 = 20 % of the training images), "
                             f"got {self.validation!r}")

    @classmethod
    def small_data(cls, **overrides: Any) -> TrainConfig:
        """The course's recipe for small data sets such as cifar10-mini (4,068 training images).

        TrivialAugment on top of crop-flip, MixUp (alpha 0.8) or CutMix (alpha 1.0) drawn for each
        batch, label smoothing 0.1, AdamW (lr 1e-3, weight decay 0.05, batch 128), 10 warmup epochs
        then cosine decay, 600 epochs; stochastic depth is each model's own (``drop_path`` in its
        config). Why: with strong augmentation and mixing the models keep learning for hundreds of
        epochs, and mixing pays only in long runs. Chapter 5 reports the experiments that chose it
        (150, 300 and 600 epochs, with and without mixing, two seeds).
        ``overrides`` replace any field, e.g. ``epochs`` or ``device``.
        """
        recipe = {
            "epochs": 600,
            "batch_size": 128,
            "lr": 1e-3,
            "weight_decay": 0.05,
            "warmup_epochs": 10.0,
            "label_smoothing": 0.1,
            "augment": "trivial",
            "mixup_alpha": 0.8,
            "cutmix_alpha": 1.0,
        }
        return cls(**{**recipe, **overrides})

    def recipe(self) -> dict[str, Any]:
        """What the run learns from: every setting but the runtime ones (:data:`RUNTIME_SETTINGS`: progress,
        workers, device, fast path, compilation). Two configs with the same recipe train the same model,
        so a run saved under one resumes, or is reused, under the other."""
        return {k: v for k, v in asdict(self).items() if k not in RUNTIME_SETTINGS}

    @property
    def eval_split(self) -> str:
        """What a run of this config evaluates on: ``"validation"`` (held-out training images) or ``"test"``."""
        return "validation" if self.validation else "test"

    def splits(self, train_data: ImageTensors, test_data: ImageTensors | None) -> tuple[ImageTensors, ImageTensors]:
        """The training images and the evaluation images a run of this config uses.

        Without validation: ``train_subset`` and ``test_subset`` images of a seeded permutation
        (:meth:`ImageTensors.subset`), or all of them, of each split. With ``validation`` > 0: the
        stratified split of ``train_data`` (:func:`cvt_edu.train.data.stratified_split`, seed
        :data:`VALIDATION_SEED`), then ``train_subset`` of the training part and ``test_subset`` of
        the held-out part; ``test_data`` is not read at all (it may be ``None``).

        Returns:
            (training images, evaluation images): the test split, or the validation split (see :attr:`eval_split`).
        """
        if self.validation:
            from .data import stratified_split

            train_data, test_data = stratified_split(train_data, self.validation, seed=VALIDATION_SEED)
        if self.train_subset:
            train_data = train_data.subset(self.train_subset, self.seed)
        if self.test_subset:
            test_data = test_data.subset(self.test_subset, self.seed)
        return train_data, test_data

    def for_mode(self, quick: bool | None = None) -> TrainConfig:
        """This config as a run uses it: shrunk by :meth:`quick` in quick mode, unchanged otherwise.

        Args:
            quick: quick mode; ``None`` reads ``$CVT_EDU_QUICK`` (see :func:`cvt_edu.train.env.quick_mode`).
        """
        return self.quick() if quick_mode(quick) else self

    def quick(self) -> TrainConfig:
        """The same config shrunk for a smoke run: 1 epoch, 512 training and 256 test (or validation) images."""
        return TrainConfig(
            **{**asdict(self), "epochs": 1, "warmup_epochs": 0.2, "train_subset": 512, "test_subset": 256}
        )
