"""What a model costs: parameters and FLOPs.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode``, which counts the
matrix products and convolutions (a multiply-add counts as 2 FLOPs) and ignores
element-wise work (normalisation, activations, softmax). ``macs`` is FLOPs / 2, the
unit papers usually call "FLOPs" (CvT-13: 4.5 G multiply-adds at 224x224).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .attention import keep_attention

__all__ = ["count_params", "count_flops", "attention_macs", "measured_macs"]


def count_params(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of parameters (trainable only by default)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def count_flops(model: nn.Module, input_size: tuple[int, int, int, int] = (1, 3, 32, 32)) -> dict[str, int]:
    """FLOPs of one forward pass at ``input_size`` (B, C, H, W), in eval mode.

    Attention runs through its explicit path (Q K^T and the weighted sum as matrix
    products) so that every kernel it uses is counted.

    Returns:
        ``{"flops": ..., "macs": ...}`` for the whole batch.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    counter = FlopCounterMode(display=False)
    try:
        with keep_attention(model), counter:
            model(torch.zeros(input_size, device=device))
    finally:
        model.train(was_training)
    flops = counter.get_total_flops()
    return {"flops": int(flops), "macs": int(flops // 2)}


def attention_macs(
    kind: str,
    h: int,
    w: int,
    dim: int,
    *,
    window_size: int | None = None,
    sr_ratio: int | None = None,
    stride_kv: int | None = None,
    kernel_size: int = 3,
) -> int:
    """Multiply-adds of one attention layer on an h x w token map of width C, projections included.

    The formulas (softmax, normalisation and biases are not counted):

    - ``"msa"``, global multi-head self-attention (Swin paper, Eq. 1):
      4hwC^2 + 2(hw)^2 C  (Q, K, V and output projections; Q K^T and the weighted sum of V).
    - ``"w-msa"``, window attention with M x M windows (Swin paper, Eq. 2): 4hwC^2 + 2 M^2 hw C.
    - ``"sra"``, spatial-reduction attention with ratio R (PVT, Sec. 3.3): the reduction conv
      (kernel R, stride R) costs hwC^2, K and V are made from hw/R^2 tokens:
      3hwC^2 + 2hwC^2/R^2 + 2(hw)^2 C/R^2.
    - ``"cvt"``, CvT's convolutional projection with kernel k and K/V stride s (Sec. 3.2-3.3),
      no [CLS] token: depthwise convs k^2 hw C (1 + 2/s^2), linear maps 2hwC^2 + 2hwC^2/s^2,
      attention 2(hw)^2 C/s^2. The paper's Sec. 3.3 notes the s^2 saving.

    These are exactly what :func:`measured_macs` counts on the real layers (ViT's ``qkv`` +
    ``attn``, Swin's ``WindowAttention``, PVT's ``SpatialReductionAttention``, CvT's ``qkv`` +
    ``attn``; checked in ``tests/test_scaling.py`` with :func:`cvt_edu.scaling.check_attention_formula`):
    ``FlopCounterMode`` does not count biases, BatchNorm, the relative position bias or the
    shifted-window mask either (all element-wise), so SW-MSA costs the same as W-MSA. Three
    things the formulas leave to the caller: a [CLS] token is not counted (ViT's layers see
    hw + 1 tokens); for ``"w-msa"`` pass the window the block really uses, which is the whole
    map when the map is not larger than M (:func:`cvt_edu.swin.window_and_shift`); and maps that
    M, R or s do not divide are refused rather than padded or rounded.

    Args:
        kind: ``"msa"``, ``"w-msa"``, ``"sra"`` or ``"cvt"``.
        h, w: token-map size; for ``"sra"`` and ``"cvt"`` divisible by R or s, for ``"w-msa"`` by M.
        dim: C, the token width.
        window_size, sr_ratio, stride_kv: M, R, s for their kinds.
        kernel_size: k of CvT's depthwise convolution.

    Returns:
        Multiply-adds (1 MAC = 2 FLOPs).

    Raises:
        ValueError: for an unknown kind, a missing parameter, or a map size it does not divide.
    """
    n, c = h * w, dim

    def need(value: int | None, name: str) -> int:
        if value is None:
            raise ValueError(f"attention_macs({kind!r}) needs {name}")
        if h % value or w % value:
            raise ValueError(f"{name}={value} does not divide the {h}x{w} token map")
        return value

    if kind == "msa":
        return 4 * n * c * c + 2 * n * n * c
    if kind == "w-msa":
        m = need(window_size, "window_size")
        return 4 * n * c * c + 2 * m * m * n * c
    if kind == "sra":
        r = need(sr_ratio, "sr_ratio")
        n_kv = n // (r * r)
        reduction = n * c * c if r > 1 else 0
        return 2 * n * c * c + reduction + 2 * n_kv * c * c + 2 * n * n_kv * c
    if kind == "cvt":
        s = need(stride_kv, "stride_kv")
        n_kv = n // (s * s)
        k2 = kernel_size * kernel_size
        return k2 * c * (n + 2 * n_kv) + 2 * n * c * c + 2 * n_kv * c * c + 2 * n * n_kv * c
    raise ValueError(f"unknown attention kind {kind!r}; expected 'msa', 'w-msa', 'sra' or 'cvt'")


def measured_macs(module: nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-adds of ``module(*inputs)`` as counted by ``FlopCounterMode`` (FLOPs / 2), attention on its explicit path."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), keep_attention(module), counter:
        module(*inputs)
    return int(counter.get_total_flops() // 2)
