"""The committed results of the main experiment: one small JSON file per finished run.

:func:`export_run` turns a run folder (:mod:`cvt_edu.train.run`) into one file that the repository
keeps, and the chapters' tables and tests read back with :func:`load_results`. The run folders are
large and stay out of the repository; these files are a few tens of kilobytes each.

Schema ``cvt_edu.results/1``, one JSON object:

============================  ================================================================================
``schema``                    ``"cvt_edu.results/1"``
``run``                       the run's name, its folder below the runs folder (``headline/cvt-tiny/seed0``)
``model``                     the registry name (``cvt-tiny``); ``arch``: ``vit``, ``cvt``, ``swin``, ``pvt``
``seed``                      the run's seed (int)
``config``                    ``{"recipe": ..., "model_config": ...}``: the run's key as it was trained
``device``, ``torch``         where it trained (``cpu``, ``cuda (NVIDIA H200)``) and the PyTorch version
                              (recorded by the run; for a run that did not record it, the version at
                              export, then ``torch_at`` is ``"export"``, else ``"training"``)
``eval_split``                ``"test"``, or ``"validation"`` for a run with a validation split
``n_train``, ``n_val``,       images trained on, held out for validation (0 when off), and tested on
``n_test``                    (0 in a validation run: the test split is never touched there)
``params``, ``flops``         parameters; FLOPs of one 32x32 image (1 MAC = 2 FLOPs), or ``null``
``epochs``, ``seconds``,      epochs trained, training wall time (s, evaluation excluded), training images
``images_per_second``         per second
``history``                   one object per epoch: ``epoch``, ``train_loss``, ``train_accuracy``,
                              ``test_loss`` and ``test_accuracy`` (``val_loss``, ``val_accuracy`` in a
                              validation run), ``lr``, ``seconds``; accuracies in 0..1, losses in nats
``metrics``                   the final ``test_accuracy`` and ``test_loss`` (or ``val_accuracy``,
                              ``val_loss``)
``classes``                   class names; a label or prediction ``k`` is ``classes[k]``
``predictions``, ``labels``   the predicted and the true class of every evaluated image, in the split's
                              order (the test split as :func:`cvt_edu.train.data.load_split` reads it, or
                              the validation split of :meth:`~cvt_edu.train.config.TrainConfig.splits`),
                              for paired tests (:func:`cvt_edu.lab.stats.mcnemar`)
``predictions_source``        ``"recorded"`` (by the run) or ``"recomputed"`` (from ``model.safetensors``
                              in eval mode, for a run that did not record them)
============================  ================================================================================

:func:`load_results` checks every file against this schema, and that the recorded accuracy is the
one its predictions and labels give.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA", "ResultsError", "export_run", "load_results", "check_results", "by_model"]

SCHEMA = "cvt_edu.results/1"
_PREFIX = {"test": "test", "validation": "val"}


class ResultsError(ValueError):
    """A results file that does not follow the schema, or a run that cannot be exported."""


def _eval_accuracy(predictions: list[int], labels: list[int]) -> float:
    return sum(p == t for p, t in zip(predictions, labels)) / len(labels)


def export_run(run_dir: str | os.PathLike, out_json: str | os.PathLike, *, data: tuple[Any, Any], name: str | None = None,
               device: str = "cpu") -> dict[str, Any]:
    """Write the results file of the finished run in ``run_dir`` to ``out_json`` (atomically), and return it.

    The run's own ``metrics.json`` gives everything but, for a run trained before runs recorded them,
    the per-image predictions: those are recomputed from ``model.safetensors`` in eval mode on the
    run's evaluation split (rebuilt from ``data`` with the run's recorded config), and the accuracy they
    give must be the recorded one.

    Args:
        run_dir: a run folder with ``metrics.json`` (a finished run), ``model.safetensors`` and ``config.json``.
        out_json: the file to write (its folder is created).
        data: (train, test) :class:`~cvt_edu.train.data.ImageTensors` the run was trained on
            (:func:`cvt_edu.train.data.load_data`); the labels come from here.
        name: the run's name in the file (default: the folder's last three parts, ``headline/cvt-tiny/seed0``).
        device: where predictions are recomputed.

    Raises:
        ResultsError: one line naming the folder, for a run that is not finished, a ``metrics.json`` that
            is not a run's, data other than the run's (image counts or classes that differ), or recomputed
            predictions whose accuracy is not the recorded one. Nothing is written then.
    """
    import torch

    from ..train.checkpoint import load_checkpoint, write_json
    from ..train.config import TrainConfig
    from ..train.loop import METRICS, evaluate

    run_dir = Path(run_dir)
    path = run_dir / METRICS
    if not path.is_file():
        raise ResultsError(f"{run_dir}: expected a finished run (with {METRICS}), but there is none; train it to the end first")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultsError(f"{path}: expected a run's metrics as JSON, got a file that is not JSON ({e})") from None
    lacking = [k for k in ("key", "train_config", "history", "epochs", "params", "n_train", "device") if k not in (m if isinstance(m, dict) else {})]
    if lacking:
        raise ResultsError(f"{path}: expected the metrics of a cvt_edu run, but it lacks {', '.join(lacking)}")
    names = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in m["train_config"].items() if k in names})
    ev = _PREFIX[cfg.eval_split]
    train, evaluated = cfg.splits(data[0], data[1] if not cfg.validation else None)
    if len(train) != m["n_train"] or len(evaluated) != m.get(f"n_{ev}") or list(train.classes) != list(m.get("classes", train.classes)):
        raise ResultsError(f"{run_dir}: the data given is not the run's: {len(train)} training and {len(evaluated)} {cfg.eval_split} "
                           f"images, the run had {m['n_train']} and {m.get(f'n_{ev}')}")
    labels = [int(v) for v in evaluated.labels]
    predictions = m.get(f"{ev}_predictions")
    source = "recorded"
    if predictions is None:
        model, _ = load_checkpoint(run_dir)
        predictions = [int(v) for v in evaluate(model.to(device), evaluated, device=device)["predictions"]]
        source = "recomputed"
    accuracy = _eval_accuracy(predictions, labels)
    if len(predictions) != len(labels) or abs(accuracy - m[f"{ev}_accuracy"]) > 0.5 / len(labels):
        raise ResultsError(f"{run_dir}: the {source} predictions give {cfg.eval_split} accuracy {accuracy:.4f}, the run recorded "
                           f"{m[f'{ev}_accuracy']:.4f}; the weights or the data are not the run's")
    key = m["key"]
    record = {
        "schema": SCHEMA,
        "run": name or "/".join(run_dir.resolve().parts[-3:]),
        "model": m.get("model"),
        "arch": key.get("arch"),
        "seed": cfg.seed,
        "config": {"recipe": key.get("recipe"), "model_config": key.get("model_config")},
        "device": m["device"],
        "torch": m.get("torch", torch.__version__),
        "torch_at": "training" if "torch" in m else "export",
        "eval_split": cfg.eval_split,
        "n_train": m["n_train"],
        "n_val": len(evaluated) if cfg.validation else 0,
        "n_test": 0 if cfg.validation else len(evaluated),
        "params": m["params"],
        "flops": m.get("flops"),
        "epochs": m["epochs"],
        "seconds": m.get("seconds"),
        "images_per_second": m.get("images_per_second"),
        "history": m["history"],
        "metrics": {f"{ev}_accuracy": m[f"{ev}_accuracy"], f"{ev}_loss": m[f"{ev}_loss"]},
        "classes": list(train.classes),
        "predictions": [int(p) for p in predictions],
        "labels": labels,
        "predictions_source": source,
    }
    check_results(record, out_json)
    write_json(out_json, record)
    return record


_TYPES: dict[str, type | tuple[type, ...]] = {
    "schema": str, "run": str, "model": str, "arch": str, "seed": int, "config": dict, "device": str, "torch": str,
    "eval_split": str, "n_train": int, "n_val": int, "n_test": int, "params": int, "epochs": int, "history": list,
    "metrics": dict, "classes": list, "predictions": list, "labels": list, "predictions_source": str,
}


def check_results(record: Any, path: str | os.PathLike = "<results>") -> None:
    """Check one results record against the schema (see the module docstring).

    Raises:
        ResultsError: one line naming ``path`` and the first problem: not an object, another schema, a
            missing key or one of another type, an evaluation split other than test or validation,
            metrics or history without that split's accuracy, predictions and labels of different
            lengths or outside the classes, or an accuracy that is not the one they give.
    """
    where = str(path)
    if not isinstance(record, dict):
        raise ResultsError(f"{where}: expected a results object ({SCHEMA}), got {type(record).__name__}")
    if record.get("schema") != SCHEMA:
        raise ResultsError(f"{where}: expected schema {SCHEMA!r}, got {record.get('schema')!r}")
    for key, kind in _TYPES.items():
        if key not in record:
            raise ResultsError(f"{where}: expected the key {key!r} of {SCHEMA}, but it is missing")
        if not isinstance(record[key], kind) or (kind is int and isinstance(record[key], bool)):
            raise ResultsError(f"{where}: expected {key!r} to be {getattr(kind, '__name__', kind)}, got {type(record[key]).__name__}")
    split = record["eval_split"]
    if split not in _PREFIX:
        raise ResultsError(f"{where}: expected eval_split 'test' or 'validation', got {split!r}")
    ev = _PREFIX[split]
    accuracy = record["metrics"].get(f"{ev}_accuracy")
    if not isinstance(accuracy, (int, float)) or not 0 <= accuracy <= 1:
        raise ResultsError(f"{where}: expected metrics.{ev}_accuracy in 0..1, got {accuracy!r}")
    other = "test" if ev == "val" else "val"
    if f"{other}_accuracy" in record["metrics"] or any(f"{other}_accuracy" in h for h in record["history"]):
        raise ResultsError(f"{where}: a {split} run must not hold {other}_accuracy")
    if any(not isinstance(h, dict) or f"{ev}_accuracy" not in h for h in record["history"]) or len(record["history"]) != record["epochs"]:
        raise ResultsError(f"{where}: expected one history entry with {ev}_accuracy per epoch ({record['epochs']})")
    preds, labels, k = record["predictions"], record["labels"], len(record["classes"])
    n = record["n_val"] if ev == "val" else record["n_test"]
    if not (len(preds) == len(labels) == n) or n == 0:
        raise ResultsError(f"{where}: expected {n} predictions and labels (n_{ev}), got {len(preds)} and {len(labels)}")
    if any(type(v) is not int or not 0 <= v < k for v in (*preds, *labels)):
        raise ResultsError(f"{where}: expected predictions and labels to be class indices 0..{k - 1}")
    if abs(_eval_accuracy(preds, labels) - accuracy) > 0.5 / n:
        raise ResultsError(f"{where}: metrics.{ev}_accuracy is {accuracy:.4f}, but the predictions give "
                           f"{_eval_accuracy(preds, labels):.4f}")


def load_results(folder: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read and check every results file below ``folder`` (``**/*.json``).

    Returns:
        ``{name: record}``, names being the files' paths below ``folder`` without ``.json``
        (``headline/cvt-tiny/seed0``), sorted.

    Raises:
        ResultsError: one line naming the file, for a file that is not JSON or does not follow the
            schema (:func:`check_results`), or a folder that does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ResultsError(f"{folder}: expected a folder of results files, but there is no such folder")
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.rglob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ResultsError(f"{path}: expected a results file ({SCHEMA}), got a file that is not JSON ({e})") from None
        check_results(record, path)
        out[path.relative_to(folder).with_suffix("").as_posix()] = record
    return out


def by_model(results: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[int, Mapping[str, Any]]]:
    """``{model: {seed: record}}`` of a :func:`load_results` dict, for pairing runs seed by seed."""
    out: dict[str, dict[int, Mapping[str, Any]]] = {}
    for record in results.values():
        out.setdefault(record["model"], {})[record["seed"]] = record
    return out
