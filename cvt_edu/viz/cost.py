"""Figures of what attention costs: cost curves and their parts (chapter 4), formulas against
measurement (chapters 7, 8), the resolution sweep and the memory of tiled attention (chapter 8).

The numbers come from :mod:`cvt_edu.cost.formulas` and :mod:`cvt_edu.cost.sweep`. Every function returns
the ``matplotlib`` figure; its text comes from the string table (:mod:`cvt_edu.course.i18n`) in ``lang``
("pt", "es" or "en"; ``None``: the notebook's language).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker

from ..course.i18n import t

__all__ = ["MEMORY_FLOOR_MIB", "plot_attention_cost", "plot_attention_terms", "plot_cost_curves", "plot_flash_memory",
           "plot_sweep"]

MEMORY_FLOOR_MIB = 0.1  # plot_sweep leaves out smaller peaks: page-granular RSS readings, mostly noise


def plot_cost_curves(
    sides: Sequence[int], curves: Mapping[str, Sequence[float]], *, dim: int, lang: str | None = None
) -> matplotlib.figure.Figure:
    """Cost of one attention layer against the token-map side, one line per kind of projection, log-scaled y axis.

    Args:
        sides: the map sides h = w, in tokens.
        curves: label -> multiply-adds for each side (e.g. from :func:`cvt_edu.cost.formulas.attention_macs`).
        dim: C, the width the curves were computed for (for the title).
        lang: language of the text.
    """
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (label, values) in enumerate(curves.items()):
        ax.plot(list(sides), [v / 1e6 for v in values], marker="o", ms=4, color=f"C{i}", label=label)
    ax.set_yscale("log")
    ax.set(title=t("cost_title", lang, dim=dim), xlabel=t("map_side", lang), ylabel=t("macs_m", lang))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_attention_terms(
    terms: Mapping[str, Mapping[str, int]], *, title: str | None = None, lang: str | None = None
) -> matplotlib.figure.Figure:
    """Stacked bars of the parts of :func:`cvt_edu.cost.formulas.attention_terms` (depthwise convolutions,
    linear maps, Q K^T and A V), one bar per kind of projection, each bar's total written on top.

    Args:
        terms: bar label -> the output of :func:`cvt_edu.cost.formulas.attention_terms` (multiply-adds).
        title: the chapter's own title (which map, width and stride); ``None``: none.
        lang: language of the text.
    """
    names = list(terms)
    parts = {"conv": t("term_conv", lang), "linear": t("term_linear", lang), "attention": t("term_attention", lang)}
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    bottom = [0.0] * len(names)
    for i, (part, label) in enumerate(parts.items()):
        values = [terms[n][part] / 1e6 for n in names]
        ax.bar(names, values, bottom=bottom, color=f"C{i}", label=label)
        bottom = [b + v for b, v in zip(bottom, values)]
    for x, total in enumerate(bottom):
        ax.annotate(f"{total:.1f}", (x, total), ha="center", va="bottom", fontsize=8)
    ax.set(ylabel=t("macs_m", lang))
    if title:
        ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_attention_cost(
    checks: Sequence[Mapping[str, Any]], *, lang: str | None = None
) -> matplotlib.figure.Figure:
    """Multiply-adds of one attention layer against the number of tokens N: formula as lines, measured as dots.

    Args:
        checks: :func:`cvt_edu.cost.sweep.check_attention_formula` results; one line per ``label``, points in order of N.
        lang: language of the text.

    Raises:
        ValueError: if ``checks`` is empty.
    """
    if not checks:
        raise ValueError("no formula checks to plot")
    fig, ax = plt.subplots(figsize=(7.5, 4.6), layout="constrained")
    for i, label in enumerate(dict.fromkeys(c["label"] for c in checks)):
        mine = sorted((c for c in checks if c["label"] == label), key=lambda c: c["tokens"])
        n = [c["tokens"] for c in mine]
        ax.plot(n, [c["formula"] for c in mine], "-", color=f"C{i}", label=f"{label}")
        ax.plot(n, [c["measured"] for c in mine], "o", color=f"C{i}", mfc="none", ms=8)
    ax.plot([], [], "k-", label=t("attn_formula", lang))
    ax.plot([], [], "ko", mfc="none", label=t("attn_measured", lang))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set(xlabel=t("attn_tokens", lang), ylabel=t("attn_macs", lang), title=t("attn_cost_title", lang))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


def plot_sweep(
    rows: Sequence[Mapping[str, Any]], lang: str | None = None
) -> matplotlib.figure.Figure:
    """FLOPs, time and peak memory of a forward pass against the image side, log-log, one line per model.

    FLOPs are drawn for every point (they are counted, not measured, so also where the run
    failed; those points are hollow). In the time and memory panels a point that ran out of
    memory or time is an x near the top, labelled ``OOM`` or ``timeout``; memory values below
    :data:`MEMORY_FLOOR_MIB` (0.1 MiB, where the CPU's resident-set measurement is mostly noise)
    are left out of the log axis (they stay in the table). A panel with nothing to draw keeps a linear axis.

    Args:
        rows: what :func:`cvt_edu.cost.sweep.resolution_sweep` returned.
        lang: "pt", "es" or "en"; ``None``: the notebook's language.

    Raises:
        ValueError: if ``rows`` is empty.
    """
    if not rows:
        raise ValueError("no sweep rows to plot")
    panels = [
        ("flops", 1e-9, t("sweep_gflops", lang), t("sweep_gflops_title", lang)),
        ("ms", 1.0, t("sweep_time", lang), t("sweep_time_title", lang)),
        ("peak_mib", 1.0, t("sweep_memory", lang), t("sweep_memory_title", lang)),
    ]
    names = list(dict.fromkeys(r["model"] for r in rows))
    resolutions = sorted({r["resolution"] for r in rows})
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4))
    for ax, (key, scale, ylabel, panel_title) in zip(axes, panels):
        for i, name in enumerate(names):
            mine = [r for r in rows if r["model"] == name]
            shown = [r for r in mine if r.get(key) and (r["status"] == "ok" or key == "flops")
                     and (key != "peak_mib" or r[key] >= MEMORY_FLOOR_MIB)]
            ax.plot([r["resolution"] for r in shown], [r[key] * scale for r in shown], "-", color=f"C{i}", label=name)
            for r in shown:
                ax.plot(r["resolution"], r[key] * scale, "o", color=f"C{i}", mfc=f"C{i}" if r["status"] == "ok" else "white")
            for r in mine:
                if r["status"] != "ok" and key != "flops":
                    ax.plot(r["resolution"], 0.93, "x", ms=9, mew=2, color=f"C{i}", transform=ax.get_xaxis_transform())
                    ax.annotate(r["status"], (r["resolution"], 0.93), xycoords=("data", "axes fraction"), xytext=(0, -16),
                                textcoords="offset points", ha="center", fontsize=8, color=f"C{i}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(resolutions, [str(r) for r in resolutions])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        if any(len(line.get_ydata()) for line in ax.get_lines() if line.get_marker() == "o"):  # else nothing to log-scale
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.margins(y=0.15)
        ax.set(xlabel=t("sweep_resolution", lang), ylabel=ylabel, title=panel_title)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(t("sweep_title", lang))
    fig.tight_layout()
    return fig


def plot_flash_memory(rows: Sequence[Mapping[str, Any]], *, lang: str | None = None) -> matplotlib.figure.Figure:
    """Peak memory of naive and tiled attention against N, log-log, with the size of one N x N matrix for reference.

    Args:
        rows: the ``"rows"`` of :func:`cvt_edu.cost.attention_memory.load_curve` (``kind``, ``n``, ``live_mib``,
            ``nxn_mib``, ``d``, ``block_size``).
        lang: language of the text.
    """
    naive = sorted((r for r in rows if r["kind"] == "naive"), key=lambda r: r["n"])
    tiled = sorted((r for r in rows if r["kind"] == "flash"), key=lambda r: r["n"])
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot([r["n"] for r in naive], [r["live_mib"] for r in naive], marker="o", ms=4, color="C3", label=t("flash_naive", lang))
    ax.plot([r["n"] for r in tiled], [r["live_mib"] for r in tiled], marker="o", ms=4, color="C0",
            label=t("flash_tiled", lang, block=tiled[0]["block_size"]))
    ax.plot([r["n"] for r in naive], [r["nxn_mib"] for r in naive], ls="--", color="0.5", label=t("flash_nxn", lang))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:.0f}"))  # no separator: 1.024 in pt, 1,024 in en
    ax.set(title=t("flash_memory_title", lang, d=naive[0]["d"]), xlabel=t("flash_memory_tokens", lang),
           ylabel=t("flash_memory_mib", lang))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
