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
- :func:`ablation_table` and :func:`plot_ablation` show the results.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import torch

from ..cvt import CvTConfig
from ..models import config_to_dict, model_config, model_from_config
from ..train.config import TrainConfig
from ..train.data import ImageTensors
from ..train.run import train_and_record
from .stats import accuracy_stderr

__all__ = [
    "variant_config",
    "train_config_model",
    "ablation_table",
    "plot_ablation",
    "plot_cost_curves",
    "plot_attention_terms",
    "plot_key_attention",
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
) -> dict[str, Any]:
    """Build a model from a config that is not in the registry and train it with :func:`cvt_edu.train.run.train_and_record`.

    The model is built *after* seeding, so its initial weights depend only on ``cfg.seed`` and
    the config; the classifier gets one output per class of the data. A finished run of the
    same config and recipe in ``out_dir`` is reused, an interrupted one resumed.

    Args:
        arch: ``"cvt"`` or ``"vit"``.
        config: a config object (e.g. from :func:`variant_config`) or its dict.
        data: (train, test) splits.
        cfg: the training config; shrunk with :meth:`TrainConfig.quick` in quick mode.
        out_dir: output folder (created): checkpoint, ``metrics.json``.
        name: the run's name in the metrics.
        quick: quick mode; ``None`` reads ``$CVT_EDU_QUICK``.

    Returns:
        The metrics of :func:`~cvt_edu.train.run.train_and_record`: :func:`~cvt_edu.train.loop.fit`'s, plus
        ``flops`` and ``macs`` of one image, ``arch``, ``model_config`` (the config as a dict), ``quick`` and ``reused``.

    Raises:
        ValueError: for an unknown architecture.
    """
    settings = dict(config if isinstance(config, dict) else config_to_dict(config))

    def build(num_classes: int) -> torch.nn.Module:
        return model_from_config(arch, {**settings, "num_classes": num_classes})

    return train_and_record(build, data, cfg, out_dir, name=name, quick=quick)[1]


def ablation_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """A Markdown table: per variant, its projection and K/V stride ("-" for ``"linear"``, which has
    no stride), parameters, multiply-adds, test accuracy with its standard error, training time and throughput."""
    lines = [
        "| variant | projection | stride_kv | params (M) | multiply-adds / image (M) | test accuracy (%) | ± 1 s.e. "
        "| training time (s) | images/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in results.items():
        stage = m["model_config"]["stages"][0] if "model_config" in m else {}
        se = accuracy_stderr(m["test_accuracy"], m["n_test"])
        stride = "-" if stage.get("projection") == "linear" else stage.get("stride_kv", "?")  # linear does not squeeze
        lines.append(
            f"| {name} | {stage.get('projection', '?')} | {stride} | {m['params'] / 1e6:.3f} "
            f"| {m['macs'] / 1e6:.1f} | {100 * m['test_accuracy']:.1f} | {100 * se:.1f} | {m['seconds']:.0f} "
            f"| {m['images_per_second'] or 0:.0f} |"
        )
    return "\n".join(lines)


def plot_ablation(
    results: Mapping[str, Mapping[str, Any]],
    *,
    title: str = "Ablation of the projection",
    accuracy_label: str = "test accuracy (%)",
    macs_label: str = "multiply-adds per image (millions)",
    time_label: str = "training time (s)",
) -> matplotlib.figure.Figure:
    """Three bar panels per variant: test accuracy with a 2-standard-error bar, multiply-adds, training time.

    Args:
        results: variant name -> its metrics (``test_accuracy``, ``n_test``, ``macs``, ``seconds``).
        title and the three labels: the figure's words.
    """
    names = list(results)
    colors = [f"C{i}" for i in range(len(names))]
    acc = [100 * results[n]["test_accuracy"] for n in names]
    err = [200 * accuracy_stderr(results[n]["test_accuracy"], results[n]["n_test"]) for n in names]
    panels = [
        (accuracy_label, acc, err),
        (macs_label, [results[n]["macs"] / 1e6 for n in names], None),
        (time_label, [results[n]["seconds"] for n in names], None),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (label, values, yerr) in zip(axes, panels):
        bars = ax.bar(names, values, yerr=yerr, capsize=4, color=colors)
        ax.bar_label(bars, fmt="%.1f", fontsize=8, label_type="center")
        ax.set(ylabel=label)
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_cost_curves(
    sides: Sequence[int],
    curves: Mapping[str, Sequence[float]],
    *,
    title: str = "Cost of one attention layer",
    xlabel: str = "token map side (tokens)",
    ylabel: str = "multiply-adds (millions)",
) -> matplotlib.figure.Figure:
    """Cost against the token-map side, one line per kind of projection, log-scaled y axis.

    Args:
        sides: the map sides h = w.
        curves: label -> multiply-adds for each side (e.g. from :func:`cvt_edu.cost.formulas.attention_macs`).
    """
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (label, values) in enumerate(curves.items()):
        ax.plot(list(sides), [v / 1e6 for v in values], marker="o", ms=4, color=f"C{i}", label=label)
    ax.set_yscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_attention_terms(
    terms: Mapping[str, Mapping[str, int]],
    *,
    term_labels: Mapping[str, str] | None = None,
    title: str = "Where the cost of one attention layer goes",
    ylabel: str = "multiply-adds (millions)",
) -> matplotlib.figure.Figure:
    """Stacked bars of the parts of :func:`attention_terms`, one bar per kind of projection.

    Args:
        terms: bar label -> the output of :func:`attention_terms`.
        term_labels: part (``"conv"``, ``"linear"``, ``"attention"``) -> its name in the legend.
        title, ylabel: the figure's words.
    """
    names = list(terms)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    bottom = [0.0] * len(names)
    for i, part in enumerate(("conv", "linear", "attention")):
        values = [terms[n][part] / 1e6 for n in names]
        ax.bar(names, values, bottom=bottom, color=f"C{i}", label=(term_labels or {}).get(part, part))
        bottom = [b + v for b, v in zip(bottom, values)]
    for x, total in enumerate(bottom):
        ax.annotate(f"{total:.1f}", (x, total), ha="center", va="bottom", fontsize=8)
    ax.set(title=title, ylabel=ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_key_attention(
    image: torch.Tensor,
    weights: Mapping[str, torch.Tensor],
    query: tuple[int, int],
    query_map: tuple[int, int],
    *,
    title: str = "Where one query looks",
    subtitle: str = "{h}x{w} keys",
) -> matplotlib.figure.Figure:
    """The image with one query token marked, and that query's attention over the keys of each model.

    Args:
        image: uint8 image (3, H, W).
        weights: label -> attention weights of one layer and one image, shape (h, N_q, N_k) (heads
            are averaged) with N_q = H_q W_q (+1 for a [CLS] token, left out) and N_k a square
            number of keys (+1 for [CLS], left out).
        query: (row, column) of the query on the H_q x W_q query map given by ``query_map``.
        query_map: (H_q, W_q).
        title: figure title; subtitle: under each panel, formatted with the key map size ``h``, ``w``.

    Raises:
        ValueError: if the number of queries or keys does not fit a map.
    """
    hq, wq = query_map
    fig, axes = plt.subplots(1, 1 + len(weights), figsize=(2.8 * (1 + len(weights)), 3.2))
    height, width = image.shape[1:]
    axes[0].imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
    sy, sx = height / hq, width / wq
    axes[0].add_patch(plt.Rectangle((query[1] * sx - 0.5, query[0] * sy - 0.5), sx, sy, fill=False, ec="red", lw=2))
    axes[0].axis("off")
    for ax, (label, w) in zip(axes[1:], weights.items()):
        w = w.float().mean(0)
        n_cls = w.shape[0] - hq * wq
        if n_cls not in (0, 1):
            raise ValueError(f"{w.shape[0]} queries do not fit a {hq}x{wq} map")
        row = w[n_cls + query[0] * wq + query[1], n_cls:]
        side = math.isqrt(row.numel())
        if side * side != row.numel():
            raise ValueError(f"{row.numel()} keys do not form a square map")
        ax.imshow(row.reshape(side, side).cpu().numpy(), cmap="magma", interpolation="nearest")
        ax.set_title(f"{label}\n{subtitle.format(h=side, w=side)}", fontsize=9)
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    return fig
