"""The course's main experiment: train models under one budget and compare them.

``train_model`` is what ``cvt-edu train`` runs and ``compare`` what ``cvt-edu compare``
runs; the chapter notebook calls the same functions.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..models import build_model
from ..train.checkpoint import atomic_path
from ..train.config import TrainConfig
from ..train.data import ImageTensors
from ..train.run import lock_run_folder, train_and_record
from ..viz.plots import plot_comparison, plot_curves, save_figure
from ..viz.tables import markdown_table

__all__ = ["train_model", "compare", "comparison_table", "data_fraction_study"]


def train_model(
    name: str,
    data: tuple[ImageTensors, ImageTensors],
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    quick: bool | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Build registry model ``name`` and train it with :func:`cvt_edu.train.run.train_and_record`, plus ``curves.png``.

    A finished run of the same model and recipe in ``out_dir`` is reused, an interrupted one resumed;
    a run of another model or recipe there is refused unless ``overwrite``. The folder stays locked
    until ``curves.png`` is written too.

    Args:
        name: a registry name such as ``"cvt-tiny"``.
        data: (train, test) splits.
        cfg: the training config; in quick mode it is shrunk with :meth:`TrainConfig.quick`.
        out_dir: output folder (created): checkpoint, ``metrics.json``, ``curves.png``.
        quick: quick mode; ``None`` reads ``$CVT_EDU_QUICK``.
        overwrite: replace a run of another model or recipe in ``out_dir`` instead of refusing it.

    Returns:
        The metrics, with ``flops`` and ``macs`` of one image and ``reused``.

    Raises:
        KeyError: for an unknown model name.
        RunFolderError: for a folder that cannot be used or holds another run (see :mod:`cvt_edu.train.run`).
    """
    with lock_run_folder(out_dir):
        _, metrics = train_and_record(lambda n: build_model(name, num_classes=n), data, cfg, out_dir, name=name, quick=quick,
                                      overwrite=overwrite)
        if not metrics["reused"] and "test_accuracy" in metrics:  # a validation run's curves are not the test curves drawn here
            save_figure(plot_curves({name: metrics["history"]}, title=f"{name}: learning curves", lang="en"),
                        Path(out_dir) / "curves.png")
    return metrics


def comparison_table(results: dict[str, dict[str, Any]]) -> str:
    """A Markdown table of params, FLOPs, test accuracy (validation accuracy for runs with a validation split),
    training time and throughput per model."""
    ev = "test" if all("test_accuracy" in m for m in results.values()) else "val"
    what = "test accuracy (%)" if ev == "test" else "validation accuracy (%)"
    headers = ["model", "params (M)", "FLOPs / image (M, 1 MAC = 2 FLOPs)", what, "training time (s)",
               "training images/s", "epochs"]
    rows = [[name, f"{m['params'] / 1e6:.2f}", f"{m['flops'] / 1e6:.1f}", f"{100 * m[f'{ev}_accuracy']:.1f}", f"{m['seconds']:.1f}",
             f"{m['images_per_second'] or 0:.0f}", m["epochs"]] for name, m in results.items()]
    return markdown_table(rows, headers, align="lrrrrrr")


def compare(
    names: list[str],
    data: tuple[ImageTensors, ImageTensors],
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    quick: bool | None = None,
    overwrite: bool = False,
) -> dict[str, dict[str, Any]]:
    """Train every model in ``names`` under the same config and write the comparison.

    Writes ``out_dir/<name>/`` for each model (see :func:`train_model`; ``overwrite`` replaces a run
    of another recipe there instead of refusing it), and ``out_dir/comparison.md`` and ``out_dir/comparison.png``.

    Returns:
        Model name -> its metrics.
    """
    out = Path(out_dir)
    with lock_run_folder(out):  # one comparison at a time writes here
        results = {name: train_model(name, data, replace(cfg), out / name, quick=quick, overwrite=overwrite) for name in names}
        any_m = next(iter(results.values()))
        header = (
            f"# Comparison on {any_m['n_train']} training and {any_m['n_test']} test images, "
            f"{any_m['epochs']} epochs, device {any_m['device']}\n\n"
        )
        with atomic_path(out / "comparison.md") as tmp:
            tmp.write_text(header + comparison_table(results) + "\n", encoding="utf-8")
        if not cfg.validation:  # the figure shows test accuracy
            save_figure(plot_comparison(results, lang="en"), out / "comparison.png")
    return results


def data_fraction_study(
    names: list[str],
    data: tuple[ImageTensors, ImageTensors],
    cfg: TrainConfig,
    fractions: list[float],
    out_dir: str | os.PathLike,
    *,
    quick: bool | None = None,
    overwrite: bool = False,
) -> dict[str, dict[float, float]]:
    """Test accuracy of each model trained on a fraction of the training images.

    Every run uses the same recipe and number of epochs, on the first ``round(f * N)``
    images of a fixed random permutation (so smaller sets are subsets of larger ones); the
    test set is the same for every run (the whole test split, or ``cfg.test_subset`` images of
    it). The run on all images (``f = 1``) is ``cfg``'s own run, written to ``out_dir/<name>``,
    the folder :func:`compare` uses, so a finished comparison under ``cfg`` is reused rather
    than trained again; the others go to ``out_dir/<name>-<percent>pct``.

    Args:
        names: registry names.
        data: (train, test) splits.
        cfg: the recipe; in quick mode shrunk with :meth:`TrainConfig.quick` (fractions then
            apply to its 512 images).
        fractions: in (0, 1].
        out_dir: output folder.
        quick: quick mode; ``None`` reads ``$CVT_EDU_QUICK``.
        overwrite: replace runs of another recipe in those folders instead of refusing them.

    Returns:
        ``{name: {fraction: test accuracy in 0..1}}``.

    Raises:
        ValueError: for a fraction outside (0, 1].
    """
    if any(not 0 < f <= 1 for f in fractions):
        raise ValueError(f"fractions must be in (0, 1], got {fractions}")
    cfg = cfg.for_mode(quick)
    base = cfg.train_subset or len(data[0])
    out = Path(out_dir)
    accuracy: dict[str, dict[float, float]] = {name: {} for name in names}
    for f in sorted(fractions):
        run = cfg if f == 1 else replace(cfg, train_subset=max(cfg.batch_size, round(f * base)))
        for name in names:
            folder = out / (name if f == 1 else f"{name}-{round(100 * f)}pct")
            accuracy[name][f] = train_model(name, data, run, folder, quick=False, overwrite=overwrite)["test_accuracy"]
    return accuracy
