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

from ..attention import keep_attention

__all__ = ["count_params", "count_flops", "measured_macs"]


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


def measured_macs(module: nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-adds of ``module(*inputs)`` as counted by ``FlopCounterMode`` (FLOPs / 2), attention on its explicit path."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), keep_attention(module), counter:
        module(*inputs)
    return int(counter.get_total_flops() // 2)
