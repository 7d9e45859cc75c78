"""Ship a finished run as one of the package's trained models: float16 weights, config and record, checked first.

:func:`ship_run` reads a run folder as ``cvt-edu train`` leaves it (``model.safetensors``, ``config.json``,
``metrics.json``), stores the weights in float16, evaluates the float32 run and the float16 copy (loaded back the
way :func:`cvt_edu.load_trained` loads it) on the same test images, and writes ``<dest>/<name>/`` only if the
two accuracies differ by at most 0.1 point and the folder of shipped models stays within 25 MB. The new folder
is assembled under a hidden temporary name beside its final place and renamed into place whole, so a reader sees
the old model or the whole new one. ``tools/ship_trained.py`` is its command line.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .. import __version__
from ..train.checkpoint import CONFIG, WEIGHTS, atomic_path, load_checkpoint, read_json_object, write_json
from ..train.data import check_checkpoint_classes, load_split, resolve_data_path
from ..train.loop import METRICS, evaluate
from .load import list_trained
from .record import RECORD, TrainedRecord, sha256_of, trained_root

__all__ = ["MAX_BYTES", "MAX_DROP_POINTS", "ShipError", "float16_state", "shipped_bytes", "ship_run"]

MAX_BYTES = 25_000_000  # 25 MB (10^6 bytes each): every shipped model together, in the installed package
MAX_DROP_POINTS = 0.1  # most the float16 copy's test accuracy may differ from the float32 run's, in points (0..100)
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_METRICS_KEYS = ("model", "epochs", "n_train", "device", "params", "train_config", "key")


class ShipError(ValueError):
    """A run that is not shipped: the float16 copy loses accuracy, the package would grow too big, or the name is taken."""


def float16_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict for shipping: floating-point tensors in float16, the others (counters, indices) as they are.

    Raises:
        ShipError: if a weight is outside float16's range (larger than 65504 in magnitude), naming it and the count.
    """
    state = {}
    for name, value in model.state_dict().items():
        value = value.detach().cpu().contiguous()
        state[name] = value.to(torch.float16) if value.is_floating_point() else value
    overflow = [n for n, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if overflow:
        raise ShipError(f"{len(overflow)} weights do not fit in float16 (|value| > 65504 or not finite), for example {overflow[0]}")
    return state


def shipped_bytes(dest: str | os.PathLike, *, leave_out: str | None = None) -> int:
    """Bytes of every file under the folder of shipped models, as the package would install them.

    Hidden entries (a shipping step's temporaries) and ``__pycache__`` are not counted, nor the model
    folder ``leave_out`` (the one being replaced).
    """
    dest, total = Path(dest), 0
    if not dest.is_dir():
        return 0
    for path in dest.rglob("*"):
        parts = path.relative_to(dest).parts
        if any(p.startswith(".") or p == "__pycache__" for p in parts) or (leave_out and parts[0] == leave_out):
            continue
        if path.is_file():
            total += path.stat().st_size
    return total


def _read_run(run: Path) -> dict[str, Any]:
    missing = [f for f in (WEIGHTS, CONFIG, METRICS) if not (run / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{run} is not a finished run: missing {', '.join(missing)} "
                                f"(cvt-edu train writes metrics.json when the run ends)")
    metrics = read_json_object(run / METRICS)
    lacking = [k for k in _METRICS_KEYS if k not in metrics]
    if lacking:
        raise ValueError(f"{run / METRICS}: expected the metrics of a cvt-edu run, but it lacks {', '.join(lacking)}")
    if not isinstance(metrics["model"], str):
        raise ValueError(f"{run / METRICS}: expected 'model', the registry name of the run's model, got {metrics['model']!r}")
    return metrics


def _check_size(dest: Path, staging: Path, name: str, max_bytes: int) -> None:
    new = shipped_bytes(staging)
    total = shipped_bytes(dest, leave_out=name) + new
    if total > max_bytes:
        raise ShipError(f"shipping {name} ({new / 1e6:.2f} MB) would make {dest} {total / 1e6:.2f} MB, "
                        f"more than the {max_bytes / 1e6:g} MB the package may hold; nothing was shipped")


def _place(staging: Path, final: Path) -> None:
    """Rename the finished ``staging`` folder to ``final``, moving an old ``final`` aside first and removing it after."""
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.old.", suffix=".tmp"))
        os.replace(final, old)  # an empty folder is replaced by the old one
    os.replace(staging, final)
    if os.name == "posix":
        fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    if old is not None:
        shutil.rmtree(old)


def ship_run(
    run: str | os.PathLike,
    data: str | os.PathLike | None = None,
    *,
    name: str | None = None,
    dest: str | os.PathLike | None = None,
    overwrite: bool = False,
    device: str = "cpu",
    max_bytes: int = MAX_BYTES,
    max_drop_points: float = MAX_DROP_POINTS,
) -> TrainedRecord:
    """Ship the finished run in ``run`` as the trained model ``name``: write ``<dest>/<name>/`` and return its record.

    Args:
        run: a finished run folder (``model.safetensors``, ``config.json``, ``metrics.json``, as ``cvt-edu train`` writes).
        data: the data folder the run learnt from (its ``test/`` split is evaluated; see
            :func:`cvt_edu.train.data.load_split`); ``None`` reads ``$CVT_EDU_DATA``.
        name: the shipped name; ``None``: the run's model name (``metrics.json``'s ``model``).
        dest: the folder of shipped models; ``None``: ``$CVT_EDU_TRAINED``, else the package's own.
        overwrite: replace a model already shipped under ``name`` (default: refuse).
        device: where the two evaluations run.
        max_bytes: the most the folder of shipped models may hold afterwards, in bytes (:data:`MAX_BYTES`).
        max_drop_points: the most the two test accuracies may differ, in points (:data:`MAX_DROP_POINTS`).

    Returns:
        The record written to ``<dest>/<name>/record.json``.

    Raises:
        FileNotFoundError: if the run lacks one of its files, or the data folder is not there (naming them).
        ValueError: for a run file that is not what ``cvt-edu train`` writes, a bad name, or a test split without
            the run's classes (naming the folders).
        ShipError: if ``name`` is already shipped (without ``overwrite``), a weight does not fit in float16,
            the accuracies differ by more than ``max_drop_points``, or the total would exceed ``max_bytes``.
            Nothing in ``dest`` is changed then.
    """
    run = Path(run)
    metrics = _read_run(run)
    name = metrics["model"] if name is None else name
    if not _NAME.match(name):
        raise ValueError(f"expected a shipped name of lower-case letters, digits, '.', '_' and '-', got {name!r}")
    dest = trained_root(dest)
    if name in list_trained(dest) and not overwrite:
        raise ShipError(f"{dest / name} already ships a model named {name!r}; pass overwrite=True (--overwrite) to replace it")
    model32, config = load_checkpoint(run)
    state = float16_state(model32)
    source = resolve_data_path(data)
    where = str(source or "the downloaded CIFAR-10")
    test = load_split("test", data)
    check_checkpoint_classes(test, config.get("classes"), model32.config.num_classes, checkpoint=run, data=where)

    dest.mkdir(parents=True, exist_ok=True)
    for stale in dest.glob(f".{name}.*.tmp"):  # what a killed shipping step of this name left
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(dir=dest, prefix=f".{name}.", suffix=".tmp"))
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    os.chmod(staging, 0o777 & ~mask)  # the mode mkdir would give, not mkdtemp's 0o700
    try:
        with atomic_path(staging / WEIGHTS) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt"})
        write_json(staging / CONFIG, config)
        fields = dict(
            name=name, model=metrics["model"], arch=config["arch"], labels=tuple(test.classes),
            data=source.name if source else "cifar-10 (torchvision download)", n_train=int(metrics["n_train"]),
            n_test=len(test), recipe=metrics["key"]["recipe"], epochs=int(metrics["epochs"]),
            seed=int(metrics["train_config"]["seed"]), device=str(metrics["device"]), quick=bool(metrics.get("quick", False)),
            params=int(metrics["params"]), eval_device=str(torch.device(device)), source=str(run), dtype="float16",
            sha256={f: sha256_of(staging / f) for f in (WEIGHTS, CONFIG)}, cvt_edu_version=__version__,
        )
        provisional = TrainedRecord(**fields, test_accuracy=0.0, test_accuracy_float16=0.0, predictions_changed=0)
        write_json(staging / RECORD, provisional.to_json())
        _check_size(dest, staging, name, max_bytes)  # before the evaluations: a refusal costs nothing

        model16, _ = load_checkpoint(staging)  # the float16 copy, read back as load_trained reads it
        full = evaluate(model32.to(device), test, device=device)
        half = evaluate(model16.to(device), test, device=device)
        drop = abs(full["accuracy"] - half["accuracy"]) * 100
        if drop > max_drop_points + 1e-9:
            raise ShipError(f"the float16 copy of {run} scores {half['accuracy']:.2%} on the {len(test)} test images of "
                            f"{where}, the float32 run {full['accuracy']:.2%}: {drop:.2f} points apart, more than "
                            f"{max_drop_points:g}; nothing was shipped")
        record = TrainedRecord(**fields, test_accuracy=full["accuracy"], test_accuracy_float16=half["accuracy"],
                               predictions_changed=int((full["predictions"] != half["predictions"]).sum()))
        write_json(staging / RECORD, record.to_json())
        _check_size(dest, staging, name, max_bytes)
        _place(staging, dest / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return record
