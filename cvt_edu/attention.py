"""Multi-head scaled dot-product attention (Vaswani et al. 2017, Sec. 3.2; ViT, Eq. 2 and App. A).

Attention(Q, K, V) = softmax(Q K^T * scale) V, computed in ``num_heads`` heads of
width C / num_heads whose outputs are concatenated and projected.

Two paths give the same output: an explicit one that keeps the attention weights
for plotting, and ``torch.nn.functional.scaled_dot_product_attention`` (fused
kernels, no weights kept) used otherwise.

An optional additive bias B enters before the softmax, softmax(Q K^T * scale + B) V:
Swin's relative position bias and its shifted-window mask (Liu et al. 2021, Sec. 3.2,
Eq. 4) are such biases.

The same names in every course model (ViT, CvT, Swin, PVT): a block's attention is ``block.attn``,
a module that owns its projections and is called ``block.attn(tokens, size)`` with tokens (B, N, C)
and the token-map size (H, W); W^Q, W^K, W^V are ``block.attn.qkv.q``, ``.k``, ``.v``
(:mod:`cvt_edu.projection`) and W^O is ``block.attn.mha.proj``, in the :class:`MultiHeadAttention`
core ``block.attn.mha``. :class:`SelfAttention` is ViT's and CvT's; Swin's and PVT's live in their
model files.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

__all__ = ["MultiHeadAttention", "SelfAttention", "attention_maps"]


class MultiHeadAttention(nn.Module):
    """Multi-head attention over queries, keys and values that are already projected.

    The projections that make Q, K and V (linear in ViT, convolutional in CvT) live in
    :mod:`cvt_edu.projection`; this module splits heads, attends, and applies the
    output projection W^O.

    Args:
        embed_dim: C, the token width; must be divisible by ``num_heads``.
        num_heads: h.
        scale: the factor applied to Q K^T; ``None`` means 1 / sqrt(C / h).
        attn_drop: dropout on the attention weights (training only).
        proj_drop: dropout after the output projection.

    Shapes:
        query (B, N_q, C), key and value (B, N_k, C) -> (B, N_q, C).
        ``attn_bias``, optional, any shape that broadcasts to (B, h, N_q, N_k), for example
        (h, N_q, N_k) for a bias shared by the batch; it is added to the scaled scores.
        With ``keep_attention = True`` the weights, shape (B, h, N_q, N_k), are kept in
        ``last_attention`` after each forward.

    Raises:
        ValueError: if C is not divisible by h.
    """

    def __init__(
        self, *, embed_dim: int, num_heads: int, scale: float | None = None, attn_drop: float = 0.0, proj_drop: float = 0.0
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = scale if scale is not None else (embed_dim // num_heads) ** -0.5
        self.attn_drop = attn_drop
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.keep_attention = False
        self.last_attention: torch.Tensor | None = None

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=self.num_heads) for t in (query, key, value))
        drop = self.attn_drop if self.training else 0.0
        if attn_bias is not None:
            attn_bias = attn_bias.to(q.dtype)  # under autocast the scores are in the low precision
        if self.keep_attention:
            scores = (q @ k.transpose(-2, -1)) * self.scale
            if attn_bias is not None:
                scores = scores + attn_bias
            weights = torch.softmax(scores, dim=-1)
            self.last_attention = weights.detach()
            out = F.dropout(weights, drop, self.training) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, dropout_p=drop, scale=self.scale)
        return self.proj_drop(self.proj(rearrange(out, "b h n d -> b n (h d)")))


class SelfAttention(nn.Module):
    """Multi-head self-attention that owns its projections (Vaswani et al. 2017, Sec. 3.2.2).

    MHSA(x) = Concat(head_1, ..., head_h) W^O, head_j = Attention(Q_j, K_j, V_j), where Q, K, V = qkv(x, size).

    ViT's attention with :class:`~cvt_edu.projection.LinearQKV` (Eq. 2, App. A), CvT's with
    :class:`~cvt_edu.projection.ConvQKV` (Sec. 3.2).

    Args:
        qkv: the projection, stored as ``qkv``; called ``qkv(tokens, size)``, it returns (q, k, v).
        embed_dim, num_heads, scale, attn_drop, proj_drop: of the :class:`MultiHeadAttention`
            core, stored as ``mha`` (W^O is ``mha.proj``).

    Shapes:
        tokens (B, N, C) and the token-map size (H, W) (only a convolutional projection needs it)
        -> (B, N, C).
    """

    def __init__(
        self,
        qkv: nn.Module,
        *,
        embed_dim: int,
        num_heads: int,
        scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.qkv = qkv
        self.mha = MultiHeadAttention(embed_dim=embed_dim, num_heads=num_heads, scale=scale, attn_drop=attn_drop, proj_drop=proj_drop)

    def forward(self, tokens: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        return self.mha(*self.qkv(tokens, size))


@contextmanager
def keep_attention(model: nn.Module) -> Iterator[list[MultiHeadAttention]]:
    """Make every attention layer of ``model`` keep its weights inside a ``with`` block (none for a model without attention)."""
    layers = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    for layer in layers:
        layer.keep_attention = True
    try:
        yield layers
    finally:
        for layer in layers:
            layer.keep_attention = False
            layer.last_attention = None


@torch.no_grad()
def attention_maps(model: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """Run ``model`` on ``images`` and return the attention weights of every layer.

    Args:
        model: any ``cvt_edu`` model.
        images: shape (B, C, H, W).

    Returns:
        One tensor per attention layer, in forward order, shape (B, h, N_q, N_k).

    Raises:
        TypeError: for a model without attention layers (:class:`MultiHeadAttention`), such as a CNN.
    """
    with keep_attention(model) as layers:
        if not layers:
            raise TypeError(f"{type(model).__name__} has no attention layer (no MultiHeadAttention), so it has no attention maps")
        model(images)
        return [layer.last_attention for layer in layers]
