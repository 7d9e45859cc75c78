"""What attention costs as images grow: formulas checked against measurement, and a resolution sweep.

Two questions, two tools:

- *Are the cost formulas right?* :func:`check_attention_formula` builds one real attention layer
  of a course model (ViT's MSA, Swin's W-MSA, PVT's SRA, CvT's squeezed convolutional
  projection), counts its multiply-adds with :func:`cvt_edu.cost.flops.measured_macs` and compares
  them with :func:`cvt_edu.cost.formulas.attention_macs` (Swin paper, Eq. 1-2; PVT, Sec. 3.3; CvT, Sec. 3.3).
- *What does it cost on this machine?* :func:`resolution_sweep` builds ViT, CvT, Swin and PVT
  at comparable width (:data:`SWEEP_MODELS`) for each image size, and measures the time and peak
  memory of a forward pass, going up in resolution until a model runs out of memory or time.

How a point is measured (:mod:`cvt_edu.cost.measure`). Every (model, resolution) point runs in a
fresh child process (:func:`~cvt_edu.cost.measure.isolated`), so that its peak memory is its own
and a point that runs out of memory or time can be stopped without harming the caller:

- time: one untimed warm-up pass, then the mean over ``steps`` forward passes (timed with
  ``torch.utils.benchmark.Timer``, which runs two more untimed passes first) of one forward pass of
  a batch in eval mode without gradients, in milliseconds;
- memory, in MiB, of the timed passes (the warm-up pass has already paid for one-off costs), by
  :class:`~cvt_edu.cost.measure.PeakMemory`: on CUDA, ``torch.cuda.max_memory_allocated`` minus what
  was allocated before them (weights and input excluded); on the CPU, the growth of the process's
  peak resident set size over its resident size then. glibc is told to return freed blocks of
  64 KiB or more at once (:func:`~cvt_edu.cost.measure.return_freed_memory`), so the resident set
  follows the live tensors; small blocks and allocator bookkeeping still count. Where there is no
  ``/proc`` (macOS), ``ru_maxrss`` growth is used, warm-up pass included;
- FLOPs: :func:`cvt_edu.cost.flops.count_flops` on a copy of the model on the ``meta`` device (shapes
  only: no time, no memory);
- "OOM": the point needed more than ``memory_limit_mib`` (on the CPU an address-space limit,
  ``RLIMIT_AS``, makes the allocation fail; on CUDA ``set_per_process_memory_fraction``), or the
  child was killed from outside (the kernel's out-of-memory killer); "timeout": the warm-up pass
  took longer than ``time_limit_s``, or the child did not answer in time and was killed.

Attention runs on its explicit path by default, softmax(Q K^T) V with the (N_q, N_k) weights
materialised, as the formulas and the papers assume; ``fused_attention=True`` measures
``scaled_dot_product_attention`` instead, whose fused kernels may never store the weights
(memory then grows like N, time still like N^2 for global attention).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from torch import nn

from ..attention import keep_attention
from ..cvt import CvT, CvTAttention, CvTConfig, CvTStageConfig
from ..pvt import PVT, PVTConfig, PVTStageConfig, SpatialReductionAttention
from ..swin import Swin, SwinConfig, SwinStageConfig, WindowAttention
from ..vit import ViT, ViTAttention, ViTConfig
from ..viz.tables import markdown_table
from ..windows import window_and_shift
from .flops import count_flops, count_params, measured_macs
from .formulas import attention_macs
from .measure import (
    IsolationError,
    PeakMemory,
    device_name,
    isolated,
    memory_limit,
    return_freed_memory,
    seconds_once,
    seconds_per_call,
)

__all__ = [
    "ATTENTION_KINDS",
    "SWEEP_MODELS",
    "AttentionLayer",
    "check_attention_formula",
    "formula_table",
    "swin_window_size",
    "build_sweep_model",
    "sweep_tokens",
    "sweep_attention_macs",
    "measure_point",
    "resolution_sweep",
    "sweep_table",
    "growth_exponents",
    "write_sweep",
    "load_or_run_sweep",
]

ATTENTION_KINDS = ("msa", "w-msa", "sra", "cvt")

# The four models of the sweep, all with a first token map at stride 4 (one token per 4x4
# pixels) of width C = 64 and heads of width 64, so that at a given resolution every model starts from the same N = (r/4)^2
# tokens of the same width; only how they attend (and how they shrink the map) differs.
# ViT keeps N tokens in all its 6 blocks (patch 4 instead of the usual 16, so its N is the
# others' stage-1 N); CvT, Swin and PVT have three stages of 2 blocks, widths 64-128-256,
# maps at 1/4, 1/8 and 1/16 of the image.
SWEEP_MODELS: dict[str, str] = {
    "vit": "ViT, patch 4, D = 64, 6 blocks, 1 head: global MSA on all N tokens (Dosovitskiy et al. 2021)",
    "cvt": "CvT, 3 stages (64, 128, 256), 2 blocks each, squeezed K/V with stride 2 (Wu et al. 2021)",
    "swin": "Swin, patch 4, 3 stages (64, 128, 256), 2 blocks each, M x M windows (Liu et al. 2021)",
    "pvt": "PVT, patches 4-2-2, 3 stages (64, 128, 256), 2 blocks each, R = 8-4-1 (Wang et al. 2021)",
}
WIDTH = 64
RESOLUTION_MULTIPLE = 16  # the three-stage models halve a stride-4 map twice
SWIN_WINDOWS = (7, 8, 6, 5, 4, 3, 2)  # Swin-T's M = 7 first, then the nearest sizes that fit


# ----------------------------------------------------------------------------------------------
# Formulas against measurement, one attention layer at a time


class AttentionLayer(nn.Module):
    """One real attention layer of a course model, fed a token map, with its projections.

    - ``"msa"``: a ViT :class:`~cvt_edu.vit.ViTAttention` (W^Q, W^K, W^V, attention and W^O);
    - ``"w-msa"``: a Swin :class:`~cvt_edu.swin.WindowAttention` (shifted by M/2 when ``shifted``);
    - ``"sra"``: a PVT :class:`~cvt_edu.pvt.SpatialReductionAttention` with ratio R;
    - ``"cvt"``: a :class:`~cvt_edu.cvt.CvTAttention` (depthwise convs + BatchNorm, then the
      linear maps), keys and values with stride ``stride_kv``, no [CLS] token.

    Every one is called the same way, ``attn(tokens, (h, w))``.

    Norms, MLPs and residuals of the blocks are left out: this is the layer the formulas of
    :func:`cvt_edu.cost.formulas.attention_macs` describe.

    Args:
        kind: one of :data:`ATTENTION_KINDS`.
        dim: C.
        num_heads: h; the cost does not depend on it.
        window_size, shifted: M and whether the windows are shifted (``"w-msa"``).
        sr_ratio: R (``"sra"``).
        stride_kv, kernel_size: s and k of CvT's projection (``"cvt"``).

    Shapes:
        token map (B, H, W, C) -> tokens (B, H*W, C).

    Raises:
        ValueError: for an unknown kind or a missing parameter.
    """

    def __init__(
        self,
        kind: str,
        *,
        dim: int,
        num_heads: int = 1,
        window_size: int | None = None,
        shifted: bool = False,
        sr_ratio: int | None = None,
        stride_kv: int | None = None,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        if kind not in ATTENTION_KINDS:
            raise ValueError(f"unknown attention kind {kind!r}; expected one of {ATTENTION_KINDS}")
        needed = {"w-msa": ("window_size", window_size), "sra": ("sr_ratio", sr_ratio), "cvt": ("stride_kv", stride_kv)}
        if kind in needed and needed[kind][1] is None:
            raise ValueError(f"an {kind!r} layer needs {needed[kind][0]}")
        self.kind = kind
        if kind == "msa":
            self.attn = ViTAttention(ViTConfig(embed_dim=dim, num_heads=num_heads))
        elif kind == "w-msa":
            stage = SwinStageConfig(embed_dim=dim, depth=1, num_heads=num_heads, window_size=window_size)
            self.attn = WindowAttention(stage, shift_size=window_size // 2 if shifted else 0)
        elif kind == "sra":
            self.attn = SpatialReductionAttention(PVTStageConfig(embed_dim=dim, depth=1, num_heads=num_heads, sr_ratio=sr_ratio))
        else:
            stage = CvTStageConfig(embed_dim=dim, depth=1, num_heads=num_heads, kernel_qkv=kernel_size, stride_kv=stride_kv,
                                   padding_kv=kernel_size // 2, padding_q=kernel_size // 2)
            self.attn = CvTAttention(stage, scale=dim**-0.5)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w, _ = x.shape
        return self.attn(rearrange(x, "b h w c -> b (h w) c"), (h, w))


def check_attention_formula(
    kind: str,
    h: int,
    w: int,
    dim: int,
    *,
    window_size: int | None = None,
    shifted: bool = False,
    sr_ratio: int | None = None,
    stride_kv: int | None = None,
    kernel_size: int = 3,
) -> dict[str, Any]:
    """Multiply-adds of one attention layer on an h x w token map: the formula and the measurement.

    Builds the real layer (:class:`AttentionLayer`), runs it on one (1, h, w, C) map under
    ``FlopCounterMode`` (:func:`cvt_edu.cost.flops.measured_macs`) and evaluates
    :func:`cvt_edu.cost.formulas.attention_macs` with the same parameters. The layer runs on the ``meta``
    device: every operation is dispatched and counted with its real shapes, but nothing is
    computed, so large maps cost no time or memory.

    Args:
        kind: ``"msa"``, ``"w-msa"``, ``"sra"`` or ``"cvt"``.
        h, w: the token map; divisible by M, R or s for their kinds.
        dim: C.
        window_size, shifted, sr_ratio, stride_kv, kernel_size: as in :class:`AttentionLayer`.

    Returns:
        ``{"kind", "label" (e.g. ``"sra R=4"``), "h", "w", "dim", "tokens": h*w, "formula": MACs,
        "measured": MACs, "ratio": measured / formula}``.

    Raises:
        ValueError: from :func:`cvt_edu.cost.formulas.attention_macs` (unknown kind, missing parameter,
            a map size M, R or s does not divide).
    """
    formula = attention_macs(kind, h, w, dim, window_size=window_size, sr_ratio=sr_ratio, stride_kv=stride_kv,
                             kernel_size=kernel_size)
    layer = AttentionLayer(kind, dim=dim, window_size=window_size, shifted=shifted, sr_ratio=sr_ratio, stride_kv=stride_kv,
                           kernel_size=kernel_size)
    measured = measured_macs(layer.to("meta"), torch.zeros(1, h, w, dim, device="meta"))
    params = {"M": window_size, "R": sr_ratio, "s": stride_kv}
    label = kind + "".join(f" {k}={v}" for k, v in params.items() if v is not None) + (" (shifted)" if shifted else "")
    return {"kind": kind, "label": label, "h": h, "w": w, "dim": dim, "tokens": h * w, "formula": formula,
            "measured": measured, "ratio": measured / formula}


def formula_table(checks: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of :func:`check_attention_formula` results: layer, map, C, formula, measured, ratio (MACs in millions)."""
    headers = ["layer", "token map", "C", "formula (M MACs)", "measured (M MACs)", "measured / formula"]
    rows = [[c["label"], f"{c['h']}x{c['w']}", c["dim"], f"{c['formula'] / 1e6:,.2f}", f"{c['measured'] / 1e6:,.2f}", f"{c['ratio']:.4f}"]
            for c in checks]
    return markdown_table(rows, headers, align="lrrrrr")


# ----------------------------------------------------------------------------------------------
# The four comparable models


def _check_resolution(resolution: int) -> None:
    if not isinstance(resolution, int) or resolution <= 0 or resolution % RESOLUTION_MULTIPLE:
        raise ValueError(
            f"resolution {resolution!r} must be a positive multiple of {RESOLUTION_MULTIPLE} "
            "(the first token map has stride 4 and is halved twice)"
        )


def swin_window_size(resolution: int) -> int:
    """The window M the sweep's Swin uses at ``resolution``: 7 (Swin-T's) when it fits every stage, else the nearest that does.

    Our Swin does not pad, so M must divide every stage's token map (r/4, r/8, r/16), except
    where a map is not larger than M and becomes one window (:func:`cvt_edu.windows.window_and_shift`).
    The candidates are tried in the order of :data:`SWIN_WINDOWS`: 7, 8, 6, 5, 4, 3, 2; for
    example 224 -> 7 (maps 56, 28, 14) and 384 -> 8 (maps 96, 48, 24).

    Raises:
        ValueError: if the resolution is not a positive multiple of 16.
    """
    _check_resolution(resolution)
    sides = [resolution // 4 >> i for i in range(3)]
    for m in SWIN_WINDOWS:
        if all(s % window_and_shift((s, s), m, m // 2)[0] == 0 for s in sides):
            return m
    raise AssertionError("unreachable: M = 2 divides every even map")  # pragma: no cover


def _sweep_config(name: str, resolution: int, overrides: Mapping[str, Any]):
    if name == "vit":
        kw = dict(image_size=resolution, patch_size=4, num_classes=10, embed_dim=WIDTH, depth=6, num_heads=1)
        return ViT, ViTConfig(**{**kw, **overrides})
    if name == "cvt":
        stages = [
            dict(embed_dim=WIDTH, depth=2, num_heads=1, kernel_size=7, stride=4, padding=2),
            dict(embed_dim=2 * WIDTH, depth=2, num_heads=2),
            dict(embed_dim=4 * WIDTH, depth=2, num_heads=4, cls_token=True),
        ]
        kw = dict(num_classes=10, image_size=resolution, attn_scale="head_dim")
        return CvT, CvTConfig(stages=tuple(CvTStageConfig(**s) for s in stages), **{**kw, **overrides})
    if name == "swin":
        m = swin_window_size(resolution)
        stages = tuple(SwinStageConfig(embed_dim=WIDTH * 2**i, depth=2, num_heads=2**i, window_size=m) for i in range(3))
        kw = dict(stages=stages, image_size=resolution, patch_size=4, num_classes=10)
        return Swin, SwinConfig(**{**kw, **overrides})
    if name == "pvt":
        stages = tuple(PVTStageConfig(embed_dim=WIDTH * 2**i, depth=2, num_heads=2**i, mlp_ratio=4.0, sr_ratio=r, patch_size=p)
                       for i, (r, p) in enumerate([(8, 4), (4, 2), (1, 2)]))
        kw = dict(stages=stages, image_size=resolution, num_classes=10)
        return PVT, PVTConfig(**{**kw, **overrides})
    raise KeyError(f"unknown sweep model {name!r}; expected one of {list(SWEEP_MODELS)}")


def build_sweep_model(name: str, resolution: int, **overrides: Any) -> nn.Module:
    """One of the sweep's four comparable models (:data:`SWEEP_MODELS`), built for ``resolution`` x ``resolution`` images.

    ViT and PVT learn positional embeddings for one image size, and Swin's windows must fit
    its maps, so each resolution gets its own model (same widths and depths; Swin's M from
    :func:`swin_window_size`). The weights are freshly initialised: cost does not depend on them.

    Args:
        name: ``"vit"``, ``"cvt"``, ``"swin"`` or ``"pvt"``.
        resolution: the image side in pixels, a multiple of 16.
        **overrides: config fields to change, e.g. ``patch_size=16`` for the ViT, or ``stages`` (a tuple of
            :class:`~cvt_edu.pvt.PVTStageConfig` or :class:`~cvt_edu.swin.SwinStageConfig`) for the PVT or Swin.

    Returns:
        The model in eval mode; images (B, 3, r, r) -> logits (B, 10).

    Raises:
        KeyError: for an unknown name.
        ValueError: for a resolution that is not a positive multiple of 16, or overrides the config rejects.
    """
    _check_resolution(resolution)
    cls, config = _sweep_config(name, resolution, overrides)
    return cls(config).eval()


def _stage1_layer(name: str, resolution: int, overrides: Mapping[str, Any]) -> tuple[str, int, int, dict[str, int]]:
    """(kind, side of the first token map, its width C, the kind's parameters) of a sweep model's first attention layer."""
    _, c = _sweep_config(name, resolution, overrides)
    if name == "vit":
        return "msa", resolution // c.patch_size, c.embed_dim, {}
    if name == "cvt":
        s0 = c.stages[0]
        side = (resolution + 2 * s0.padding - s0.kernel_size) // s0.stride + 1
        return "cvt", side, s0.embed_dim, {"stride_kv": s0.stride_kv, "kernel_size": s0.kernel_qkv}
    s0 = c.stages[0]
    if name == "swin":
        side = resolution // c.patch_size
        return "w-msa", side, s0.embed_dim, {"window_size": window_and_shift((side, side), s0.window_size, s0.window_size // 2)[0]}
    return "sra", resolution // s0.patch_size, s0.embed_dim, {"sr_ratio": s0.sr_ratio}


def sweep_tokens(name: str, resolution: int, **overrides: Any) -> int:
    """N, the number of tokens of a sweep model's first token map (ViT: without [CLS]); (r/4)^2 unless overridden.

    Raises:
        KeyError, ValueError: as :func:`build_sweep_model`.
    """
    _check_resolution(resolution)
    return _stage1_layer(name, resolution, overrides)[1] ** 2


def sweep_attention_macs(name: str, resolution: int, **overrides: Any) -> int:
    """The formula's multiply-adds of one stage-1 attention layer of a sweep model (:func:`cvt_edu.cost.formulas.attention_macs`).

    The first token map is (r/4) x (r/4) with C = 64 for all four models (unless overridden);
    ViT's [CLS] token is not counted. Kinds: ViT ``"msa"``, CvT ``"cvt"`` (s = 2), Swin
    ``"w-msa"`` (its M, or the whole map when the map is not larger than M), PVT ``"sra"`` (R_1).

    Raises:
        KeyError, ValueError: as :func:`build_sweep_model`.
    """
    _check_resolution(resolution)
    kind, side, dim, params = _stage1_layer(name, resolution, overrides)
    return attention_macs(kind, side, side, dim, **params)


# ----------------------------------------------------------------------------------------------
# Measuring one point (in a child process)


@contextmanager
def _explicit_attention(model: nn.Module) -> Iterator[None]:
    """Attention on its explicit path (weights materialised), the weights dropped after each layer."""
    with keep_attention(model) as layers:
        hooks = [layer.register_forward_hook(lambda m, i, o: setattr(m, "last_attention", None)) for layer in layers]
        try:
            yield
        finally:
            for hook in hooks:
                hook.remove()


def measure_point(
    name: str,
    resolution: int,
    *,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    steps: int = 3,
    time_limit_s: float | None = None,
    memory_limit_mib: float | None = None,
    fused_attention: bool = False,
    num_threads: int | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Time and peak memory of a forward pass of one sweep model at one resolution, in this process.

    :func:`resolution_sweep` runs this in a fresh child process per point; call it directly
    only in a process you can spare (on CUDA a memory limit stays set).

    Args:
        name, resolution, overrides: the model, see :func:`build_sweep_model`.
        batch_size: images per forward pass.
        device: ``"cuda"`` or ``"cpu"``; ``None``: cuda when there is one.
        steps: timed passes after one untimed warm-up pass.
        time_limit_s: if the warm-up pass takes longer, stop and report ``"timeout"``.
        memory_limit_mib: the most memory the passes may add (:func:`cvt_edu.cost.measure.memory_limit`:
            address space on the CPU, the allocator's share of the GPU on CUDA). Beyond it: ``"OOM"``.
        fused_attention: measure the fused ``scaled_dot_product_attention`` path instead of the explicit one.
        num_threads: CPU threads of this process (``torch.set_num_threads``); ``None``: torch's default.

    Returns:
        ``{"status": "ok" | "OOM" | "timeout", "ms": mean ms per pass, "peak_mib": MiB, "device": ...}``
        (``ms`` of the warm-up pass for a timeout; ``None`` where not measured).
    """
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    torch.manual_seed(0)
    model = build_sweep_model(name, resolution, **dict(overrides or {})).to(dev)
    x = torch.randn(batch_size, 3, resolution, resolution, device=dev)
    result: dict[str, Any] = {"status": "ok", "ms": None, "peak_mib": None, "device": device_name(dev)}
    if dev.type == "cpu":
        return_freed_memory()
    peak = PeakMemory(dev)
    if not peak.resettable:
        peak.start()  # ru_maxrss cannot be reset: the warm-up pass counts too

    try:
        with memory_limit(dev, memory_limit_mib), torch.no_grad(), (nullcontext() if fused_attention else _explicit_attention(model)):
            first = 1000 * seconds_once(lambda: model(x))
            if time_limit_s is not None and first > 1000 * time_limit_s:
                result.update(status="timeout", ms=first)
            else:
                if peak.resettable:
                    peak.start()
                result.update(ms=1000 * seconds_per_call(lambda: model(x), steps), peak_mib=peak.mib())
    except (torch.cuda.OutOfMemoryError, MemoryError):
        result["status"] = "OOM"
    except RuntimeError as e:  # the CPU allocator raises a plain RuntimeError
        if "can't allocate memory" not in str(e) and "out of memory" not in str(e).lower():
            raise
        result["status"] = "OOM"
    return result


# ----------------------------------------------------------------------------------------------
# The sweep


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch threads (``None``: unchanged), then restore the count."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _measure_isolated(name: str, resolution: int, kwargs: dict[str, Any], timeout_s: float | None) -> dict[str, Any]:
    """:func:`measure_point` in a fresh child process; a child that timed out, died or raised becomes a status."""
    try:
        return isolated(measure_point, name, resolution, timeout_s=timeout_s, **kwargs)
    except IsolationError as e:
        status = {"timeout": "timeout", "killed": "OOM"}.get(e.reason, "error")
        return {"status": status, "ms": None, "peak_mib": None, **({} if status == "timeout" else {"error": str(e)})}


def resolution_sweep(
    models: Sequence[str] = tuple(SWEEP_MODELS),
    resolutions: Sequence[int] = (32, 64, 128, 224, 384, 512),
    *,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    steps: int = 3,
    time_limit_s: float | None = 60.0,
    memory_limit_mib: float | None = None,
    fused_attention: bool = False,
    num_threads: int | None = 1,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Time, peak memory and FLOPs of a forward pass of each model as the image grows.

    For each model, the resolutions are measured in increasing order, each in a fresh child
    process (see the module docstring for how); at the first point that runs out of memory
    or time, the model is recorded as ``"OOM"`` or ``"timeout"`` and its larger resolutions
    are skipped.

    Args:
        models: names from :data:`SWEEP_MODELS`.
        resolutions: image sides in pixels, multiples of 16 (sorted here).
        batch_size: images per forward pass.
        device: ``"cuda"`` or ``"cpu"``; ``None``: cuda when there is one.
        steps: timed passes per point (the time is their mean), after one warm-up pass.
        time_limit_s: a point whose warm-up pass takes longer is a ``"timeout"`` (a child that does
            not answer within ``(steps + 3) * time_limit_s + 120`` s is killed); ``None``: no limit.
        memory_limit_mib: the most memory a point may add (CPU: address space, CUDA: the device's
            allocator); ``None``: what the machine has.
        fused_attention: measure the fused attention kernels instead of the explicit path.
        num_threads: CPU threads per point (``torch.set_num_threads``); 1 by default, which gives much
            steadier times on a machine shared with other work; ``None``: torch's default (one per core).
        overrides: per model name, config fields to change (see :func:`build_sweep_model`),
            e.g. ``{"vit": {"patch_size": 16}}``.

    Returns:
        One dict per point measured, in order (model, resolution): ``model``, ``resolution``,
        ``tokens`` (N of the first token map, (r/4)^2 unless overridden, :func:`sweep_tokens`), ``status`` (``"ok"``, ``"OOM"``,
        ``"timeout"`` or ``"error"``), ``ms`` (mean ms per forward pass, ``None`` if not measured),
        ``peak_mib``, ``flops`` and ``macs`` (whole batch, :func:`cvt_edu.cost.flops.count_flops`),
        ``attention_macs`` (one stage-1 attention layer, by the formula, one image), ``params``,
        ``batch_size``, ``device``, ``window_size`` (Swin) and ``error`` when there was one.

    Raises:
        KeyError: for an unknown model name.
        ValueError: for a resolution that is not a positive multiple of 16, or ``steps`` < 1.
    """
    overrides = {k: dict(v) for k, v in (overrides or {}).items()}
    for name in models:
        if name not in SWEEP_MODELS:
            raise KeyError(f"unknown sweep model {name!r}; expected one of {list(SWEEP_MODELS)}")
    for r in resolutions:
        _check_resolution(r)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    kwargs = dict(batch_size=batch_size, device=str(device) if device is not None else None, steps=steps,
                  time_limit_s=time_limit_s, memory_limit_mib=memory_limit_mib, fused_attention=fused_attention,
                  num_threads=num_threads)
    wait_s = None if time_limit_s is None else (steps + 3) * time_limit_s + 120  # the warm-up, the Timer's two, the timed passes
    rows = []
    for name in models:
        over = overrides.get(name, {})
        for r in sorted(resolutions):
            row: dict[str, Any] = {"model": name, "resolution": r, "tokens": sweep_tokens(name, r, **over)}
            with _torch_threads(num_threads):  # building is cheap, but threads contend on a busy machine
                model = build_sweep_model(name, r, **over)
                if name == "swin":
                    row["window_size"] = model.config.stages[0].window_size
                row.update(count_flops(model.to("meta"), (batch_size, 3, r, r)))
                row["attention_macs"] = sweep_attention_macs(name, r, **over)
                row["params"] = count_params(model)
                del model
            row.update(_measure_isolated(name, r, {**kwargs, "overrides": over}, wait_s))
            row["batch_size"] = batch_size
            rows.append(row)
            if row["status"] != "ok":
                break
    return rows


# ----------------------------------------------------------------------------------------------
# Reporting


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def sweep_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of the sweep: one line per point, failed points showing their status.

    Columns: model, image side (pixels), stage-1 tokens N, GFLOPs of the forward pass (1 MAC =
    2 FLOPs), MMACs of one stage-1 attention layer by the formula, time (ms), peak memory (MiB), status.
    """
    headers = ["model", "resolution (px)", "tokens N (stage 1)", "GFLOPs / forward", "stage-1 attention (M MACs, formula)",
               "time (ms)", "peak memory (MiB)", "status"]
    cells = [
        [r["model"] + (f" (M={r['window_size']})" if r.get("window_size") else ""), r["resolution"], r["tokens"],
         _fmt(r.get("flops") and r["flops"] / 1e9, ".3g"), _fmt(r.get("attention_macs") and r["attention_macs"] / 1e6, ".4g"),
         _fmt(r.get("ms"), ".1f"), _fmt(r.get("peak_mib"), ".1f"), r["status"]]
        for r in rows
    ]
    return markdown_table(cells, headers, align="lrrrrrrl")


def growth_exponents(
    rows: Sequence[Mapping[str, Any]], key: str = "flops", *, between: tuple[int, int] | None = None
) -> dict[str, float]:
    """How fast ``key`` grows with the number of tokens, per model: the slope of log(value) against log(N).

    Taken between the two resolutions ``between`` (pixels), the same for every model so that the slopes
    compare; ``None``: between the two largest resolutions where each model ran, so that fixed costs
    matter least but the ranges differ. A slope of 2 is quadratic in N (global attention dominating), 1 linear.

    Args:
        rows: what :func:`resolution_sweep` returned.
        key: ``"flops"``, ``"ms"`` or ``"peak_mib"``.
        between: (smaller, larger) image side in pixels, or ``None``.

    Returns:
        ``{model: exponent}`` for the models with two such points that ran (``status == "ok"``, positive values).
    """
    out = {}
    for name in dict.fromkeys(r["model"] for r in rows):
        ok = [r for r in rows if r["model"] == name and r["status"] == "ok" and r.get(key)]
        if between is not None:
            ok = [r for r in ok if r["resolution"] in between]
        if len(ok) >= 2:
            a, b = sorted(ok, key=lambda r: r["tokens"])[-2:]
            out[name] = math.log(b[key] / a[key]) / math.log(b["tokens"] / a["tokens"])
    return out


def write_sweep(
    rows: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike, *, header: str = "", settings: Mapping[str, Any] | None = None
) -> dict[str, Path]:
    """Write ``cost.md`` (the table), ``cost.json`` (the rows) and ``cost.png`` (:func:`cvt_edu.viz.cost.plot_sweep`,
    English) atomically.

    Args:
        rows: what :func:`resolution_sweep` returned.
        out_dir: the folder (created).
        header: Markdown put above the table in ``cost.md``.
        settings: the sweep's arguments, kept in ``cost.json`` (see :func:`load_or_run_sweep`).

    Returns:
        ``{"md": path, "json": path, "png": path}``.
    """
    from ..train.checkpoint import atomic_path, write_json
    from ..viz.cost import plot_sweep
    from ..viz.plots import save_figure

    out = Path(out_dir)
    paths = {"md": out / "cost.md", "json": out / "cost.json", "png": out / "cost.png"}
    with atomic_path(paths["md"]) as tmp:
        tmp.write_text((header + "\n\n" if header else "") + sweep_table(rows) + "\n", encoding="utf-8")
    write_json(paths["json"], {"models": {k: SWEEP_MODELS[k] for k in dict.fromkeys(r["model"] for r in rows)},
                               "settings": dict(settings or {}), "rows": list(rows)})
    save_figure(plot_sweep(rows, lang="en"), paths["png"])
    return paths


def load_or_run_sweep(
    out_dir: str | os.PathLike, models: Sequence[str], resolutions: Sequence[int], **kwargs: Any
) -> list[dict[str, Any]]:
    """The rows of ``out_dir/cost.json`` if a sweep with the same arguments wrote them, else a new :func:`resolution_sweep`.

    A new sweep is written with :func:`write_sweep`. This is how a chapter run in two languages
    shows the same measurements in both: the second run reads what the first one measured.

    Args:
        out_dir: the folder of ``cost.md``, ``cost.json`` and ``cost.png``.
        models, resolutions, **kwargs: the arguments of :func:`resolution_sweep`.

    Raises:
        as :func:`resolution_sweep`.
    """
    settings = {"models": list(models), "resolutions": sorted(resolutions),
                **{k: (str(v) if k == "device" and v is not None else v) for k, v in kwargs.items()}}
    path = Path(out_dir) / "cost.json"
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("settings") == json.loads(json.dumps(settings)):
            return saved["rows"]
    rows = resolution_sweep(models, resolutions, **kwargs)
    write_sweep(rows, out_dir, settings=settings)
    return rows
