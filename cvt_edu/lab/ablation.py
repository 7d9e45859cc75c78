"""Ablations of CvT's convolutional projection: variants of a model, trained under one budget.

The convolutional projection (Wu et al., ICCV 2021, Sec. 3.2) makes Q, K and V from the token
map with a depthwise convolution and BatchNorm (``"dw_bn"``), average pooling (``"avg"``, an
option of the released code) or nothing (``"linear"``, as in ViT); a K/V stride of 2 (the
squeezed projection, Sec. 3.3) cuts the number of keys by 4. The paper's ablation study
(Sec. 4.4) compares these choices on ImageNet; here the same comparison is re-run on a small
model and data set:

- :func:`variant_config` changes every stage of a named config (``dataclasses.replace``);
- :func:`train_config_model` builds and trains a model from such a config;
- :func:`attention_terms` splits the cost of one attention layer into its parts;
- :func:`ablation_table` shows the results (their figure: :func:`cvt_edu.viz.plots.plot_ablation`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from torch import nn

from ..cvt import CvTConfig
from ..models import config_to_dict, model_config, model_from_config
from ..train.config import TrainConfig
from ..train.data import ImageTensors
from ..train.run import train_and_record
from ..viz.tables import markdown_table
from .stats import accuracy_stderr

__all__ = [
    "variant_config",
    "train_config_model",
    "ablation_table",
]


def variant_config(base: str | CvTConfig = "cvt-tiny", **stage_changes: Any) -> CvTConfig:
    """A CvT config whose every stage has ``stage_changes`` applied.

    For example ``variant_config("cvt-tiny", projection="avg")`` or ``variant_config("cvt-tiny", stride_kv=1)``.

    Args:
        base: a registry name of a CvT (``"cvt-tiny"``, ``"cvt-13"``...) or a :class:`CvTConfig`.
        **stage_changes: fields of :class:`~cvt_edu.cvt.CvTStageConfig` and their new values.

    Raises:
        ValueError: if ``base`` names a model that is not a CvT.
        TypeError: for a field that stages do not have (from ``dataclasses.replace``).
    """
    if isinstance(base, str):
        arch, base = model_config(base)
        if arch != "cvt":
            raise ValueError(f"variant_config needs a CvT, but this model is a {arch!r}")
    return replace(base, stages=tuple(replace(stage, **stage_changes) for stage in base.stages))


def train_config_model(
    arch: str,
    config: Any,
    data: tuple[ImageTensors, ImageTensors],
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    name: str | None = None,
    quick: bool | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Build a model from a config that is not in the registry and train it with :func:`cvt_edu.train.run.train_and_record`.

    The model is built *after* seeding, so its initial weights depend only on ``cfg.seed`` and
    the config; the classifier gets one output per class of the data. A finished run of the
    same config and recipe in ``out_dir`` is reused, an interrupted one resumed; a run of another
    config or recipe there is refused unless ``overwrite``.

    Args:
        arch: ``"cvt"`` or ``"vit"``.
        config: a config object (e.g. from :func:`variant_config`) or its dict.
        data: (train, test) splits.
        cfg: the training config; shrunk with :meth:`TrainConfig.quick` in quick mode.
        out_dir: output folder (created): checkpoint, ``metrics.json``.
        name: the run's name in the metrics.
        quick: quick mode; ``None`` reads ``$CVT_EDU_QUICK``.
        overwrite: replace a run of another config or recipe in ``out_dir`` instead of refusing it.

    Returns:
        The metrics of :func:`~cvt_edu.train.run.train_and_record`: :func:`~cvt_edu.train.loop.fit`'s, plus
        ``flops`` and ``macs`` of one image, ``arch``, ``model_config`` (the config as a dict), ``quick`` and ``reused``.

    Raises:
        ValueError: for an unknown architecture.
        RunFolderError: for a folder that cannot be used or holds another run (see :mod:`cvt_edu.train.run`).
    """
    settings = dict(config if isinstance(config, dict) else config_to_dict(config))

    def build(num_classes: int) -> nn.Module:
        return model_from_config(arch, {**settings, "num_classes": num_classes})

    return train_and_record(build, data, cfg, out_dir, name=name, quick=quick, overwrite=overwrite)[1]


def ablation_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """A Markdown table: per variant, its projection and K/V stride ("-" for ``"linear"``, which has
    no stride), parameters, multiply-adds, test accuracy with its standard error, training time and throughput."""
    headers = ["variant", "projection", "stride_kv", "params (M)", "multiply-adds / image (M)", "test accuracy (%)", "± 1 s.e.",
               "training time (s)", "images/s"]
    rows = []
    for name, m in results.items():
        stage = m["model_config"]["stages"][0] if "model_config" in m else {}
        se = accuracy_stderr(m["test_accuracy"], m["n_test"])
        stride = "-" if stage.get("projection") == "linear" else stage.get("stride_kv", "?")  # linear does not squeeze
        rows.append([name, stage.get("projection", "?"), stride, f"{m['params'] / 1e6:.3f}", f"{m['macs'] / 1e6:.1f}",
                     f"{100 * m['test_accuracy']:.1f}", f"{100 * se:.1f}", f"{m['seconds']:.0f}", f"{m['images_per_second'] or 0:.0f}"])
    return markdown_table(rows, headers, align="llrrrrrrr")

