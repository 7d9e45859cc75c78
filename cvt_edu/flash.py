"""Tiled attention with the online softmax: FlashAttention's algorithm in plain PyTorch (Dao et al. 2022, Alg. 1;
the loop order of FlashAttention-2, Dao 2023, Alg. 1).

Softmax attention O = softmax(S) V with S = Q K^T * scale needs every score of a query row before it can
normalise that row, which is why a plain implementation builds the whole (N_q, N_k) matrix S. The online
softmax removes that need. Cut the keys and values into blocks K_j, V_j; for a block of queries Q_i keep,
per query row, a running max m, a running sum l and an unnormalised output O, and for each key block:

    S_ij  = Q_i K_j^T * scale                       (B_q, B_k) scores of this tile only
    m_new = max(m, rowmax(S_ij))
    P_ij  = exp(S_ij - m_new)                       (unnormalised probabilities, all <= 1)
    l     = exp(m - m_new) * l + rowsum(P_ij)
    O     = exp(m - m_new) * O + P_ij V_j
    m     = m_new

and after the last block O_i = O / l. The factor exp(m_old - m_new) rescales what was summed against an
older, smaller maximum, so at the end every term carries exp(s - m_final): exactly softmax's numerator,
without ever overflowing. The largest tensor a step creates is one (B, h, B_q, B_k) tile, never (N_q, N_k).

This module shows the algorithm, not the speed: the real kernel keeps each tile in the GPU's on-chip SRAM
and reads Q, K, V from HBM once per tile, where here every step is a separate PyTorch operation. Gradients
flow through the loop by autograd, which stores every tile's P for the backward pass (N_q * N_k numbers in
all, though never in one tensor); the real kernel stores only O and the row statistics m + log(l), and
recomputes the tiles in its backward pass (Dao et al. 2022, Sec. 3.1, "Recomputation").
"""

from __future__ import annotations

import torch

__all__ = ["flash_attention", "naive_attention"]


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_size: int) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4 or not t.is_floating_point():
            got = f"shape {tuple(t.shape)}, dtype {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a floating-point tensor of shape (B, h, N, d), got {got}")
    if k.shape != v.shape[:3] + k.shape[3:] or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ValueError(f"q (B, h, N_q, d), k (B, h, N_k, d) and v (B, h, N_k, d_v) do not match: "
                         f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k and v must have one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    block_size: int = 64,
    causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """Softmax attention computed tile by tile with the online softmax, never building the (N_q, N_k) scores.

    For each block of ``block_size`` queries (outer loop) and each block of ``block_size`` keys (inner loop),
    the recurrence of the module docstring updates the running max m, the running sum l and the partial
    output O; the result equals ``softmax(Q K^T * scale) V`` up to rounding. N_q and N_k need not be multiples
    of ``block_size`` (the last block is shorter).

    Args:
        q: queries, shape (B, h, N_q, d).
        k: keys, shape (B, h, N_k, d).
        v: values, shape (B, h, N_k, d_v).
        block_size: B_q = B_k, queries and keys per tile; the largest tensor created has
            B * h * block_size * max(block_size, d, d_v) elements.
        causal: query i attends to keys 0..i only (the top-left aligned mask of
            ``scaled_dot_product_attention(is_causal=True)``); key blocks wholly in the future are skipped.
        scale: the factor on Q K^T; ``None`` means 1 / sqrt(d) (Vaswani et al. 2017, Eq. 1).

    Returns:
        The attention output, shape (B, h, N_q, d_v), in the inputs' dtype.

    Raises:
        ValueError: if q, k, v are not 4-D floating-point tensors of matching shapes and one dtype, or
            ``block_size`` is not a positive int.
    """
    _check(q, k, v, block_size)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    n_q, n_k = q.shape[2], k.shape[2]
    outputs = []
    for i in range(0, n_q, block_size):
        q_i = q[:, :, i : i + block_size] * scale  # (B, h, B_q, d)
        rows = torch.arange(i, i + q_i.shape[2], device=q.device)[:, None]  # query indices, for the causal mask
        m = q.new_full(q_i.shape[:3] + (1,), float("-inf"))  # running max, (B, h, B_q, 1)
        l = q.new_zeros(q_i.shape[:3] + (1,))  # noqa: E741 (the paper's l): running sum of exp(s - m)
        o = q.new_zeros(q_i.shape[:3] + v.shape[3:])  # unnormalised output, (B, h, B_q, d_v)
        for j in range(0, n_k if not causal else min(n_k, i + q_i.shape[2]), block_size):
            s = q_i @ k[:, :, j : j + block_size].transpose(-2, -1)  # one tile of scores, (B, h, B_q, B_k)
            if causal:
                cols = torch.arange(j, j + s.shape[-1], device=q.device)[None, :]
                s = s.masked_fill(cols > rows, float("-inf"))  # key 0 is always allowed, so m stays finite
            m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
            p = torch.exp(s - m_new)
            alpha = torch.exp(m - m_new)  # rescales what was summed against the old max (0 at the first tile)
            l = alpha * l + p.sum(dim=-1, keepdim=True)  # noqa: E741
            o = alpha * o + p @ v[:, :, j : j + block_size]
            m = m_new
        outputs.append(o / l)
    return torch.cat(outputs, dim=2)


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
                    scale: float | None = None) -> torch.Tensor:
    """Softmax attention the plain way, softmax(Q K^T * scale) V, building the (B, h, N_q, N_k) scores and weights.

    The control of :func:`flash_attention`: same arguments (without ``block_size``), same shapes, same result.

    Raises:
        ValueError: as :func:`flash_attention`.
    """
    _check(q, k, v, 1)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    s = q @ k.transpose(-2, -1) * scale  # (B, h, N_q, N_k)
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    return torch.softmax(s, dim=-1) @ v
