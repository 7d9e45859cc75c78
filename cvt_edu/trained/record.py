"""What a shipped model records about itself (``record.json``): :class:`TrainedRecord`, and where shipped models live.

The record says what the weights are (model, labels, float16 storage, file hashes), what they learnt from (data,
number of images, recipe, epochs, seed, device, the source run) and how good they are (test accuracy of the float32
run and of the float16 copy, measured on the same test images when the model was shipped).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from ..train.checkpoint import read_json_object

__all__ = ["TRAINED_ENV", "RECORD", "TrainedRecord", "trained_root", "sha256_of"]

TRAINED_ENV = "CVT_EDU_TRAINED"  # another folder of shipped models (tests, a model shipped by hand)
RECORD = "record.json"


@dataclass(frozen=True)
class TrainedRecord:
    """The record of a shipped trained model, as ``record.json`` holds it.

    Attributes:
        name: the shipped name, what :func:`cvt_edu.load_trained` takes (``"cvt-tiny"``).
        model: the registry model it is (:func:`cvt_edu.build_model`'s name).
        arch: its architecture (``"vit"``, ``"cvt"``, ``"swin"``, ``"pvt"``).
        labels: the class names in output order: logit ``k`` of (B, K) is ``labels[k]``.
        data: what it was trained and tested on, the data folder's name (``"cifar10-mini"``).
        n_train: training images the run saw per epoch.
        n_test: test images both accuracies are measured on.
        recipe: the training recipe (:meth:`cvt_edu.TrainConfig.recipe`: every setting but the runtime ones).
        epochs: epochs trained.
        seed: the run's seed.
        device: where it was trained (``"cpu"``, ``"cuda (NVIDIA H200)"``).
        quick: whether the run was a quick-mode smoke run (1 epoch, 512 images), not a real training.
        params: number of parameters.
        test_accuracy: accuracy (0..1) of the float32 run on the ``n_test`` test images.
        test_accuracy_float16: accuracy (0..1) of the shipped float16 weights (loaded back to float32) on the same images.
        predictions_changed: how many of those test predictions differ between the two.
        eval_device: where the two accuracies were measured (``"cpu"``).
        source: the run folder it was shipped from.
        dtype: storage dtype of the floating-point weights (``"float16"``).
        sha256: SHA-256 (hex) of each shipped file but the record: ``{"model.safetensors": ..., "config.json": ...}``.
        cvt_edu_version: the cvt_edu that shipped it.
    """

    name: str
    model: str
    arch: str
    labels: tuple[str, ...]
    data: str
    n_train: int
    n_test: int
    recipe: dict[str, Any]
    epochs: int
    seed: int
    device: str
    quick: bool
    params: int
    test_accuracy: float
    test_accuracy_float16: float
    predictions_changed: int
    eval_device: str
    source: str
    dtype: str
    sha256: dict[str, str]
    cvt_edu_version: str

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-ready dict (``labels`` as a list)."""
        return {**asdict(self), "labels": list(self.labels)}

    @classmethod
    def read(cls, path: str | os.PathLike) -> TrainedRecord:
        """Read and check ``record.json``.

        Raises:
            FileNotFoundError: if the file is missing, naming it.
            ValueError: if it is not a JSON object, lacks fields or has unknown ones, or a field has the wrong type
                (naming the file and the fields).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the shipped model's record is not there (reinstall cvt_edu)")
        data = read_json_object(path)
        names = [f.name for f in fields(cls)]
        missing, unknown = [n for n in names if n not in data], [n for n in data if n not in names]
        if missing or unknown:
            raise ValueError(f"{path}: expected a trained model's record with {', '.join(names)}; "
                             f"missing {', '.join(missing) or 'none'}, unknown {', '.join(unknown) or 'none'}")
        wrong = [n for n in names if not _has_type(n, data[n])]
        if wrong:
            raise ValueError(f"{path}: expected {', '.join(f'{n} to be {_TYPES[n][1]}' for n in wrong)}; "
                             f"got {', '.join(f'{data[n]!r}' for n in wrong)}")
        return cls(**{**data, "labels": tuple(data["labels"])})


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_TYPES: dict[str, tuple[Any, str]] = {
    **{n: (lambda v: isinstance(v, str), "a string") for n in ("name", "model", "arch", "data", "device", "eval_device",
                                                              "source", "dtype", "cvt_edu_version")},
    **{n: (_is_int, "a whole number") for n in ("n_train", "n_test", "epochs", "seed", "params", "predictions_changed")},
    **{n: (lambda v: _is_int(v) or isinstance(v, float), "a number") for n in ("test_accuracy", "test_accuracy_float16")},
    "labels": (lambda v: isinstance(v, list) and bool(v) and all(isinstance(c, str) for c in v), "a list of class names"),
    "recipe": (lambda v: isinstance(v, dict), "an object"),
    "quick": (lambda v: isinstance(v, bool), "true or false"),
    "sha256": (lambda v: isinstance(v, dict) and all(isinstance(h, str) for h in v.values()), "an object of hex digests"),
}


def _has_type(name: str, value: Any) -> bool:
    return _TYPES[name][0](value)


def trained_root(folder: str | os.PathLike | None = None) -> Path:
    """The folder of shipped models: ``folder``, else ``$CVT_EDU_TRAINED``, else this package's own folder."""
    if folder is None:
        folder = os.environ.get(TRAINED_ENV) or None
    return Path(folder) if folder is not None else Path(str(resources.files(__package__)))


def sha256_of(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, as 64 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
