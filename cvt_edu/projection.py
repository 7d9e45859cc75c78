"""How tokens become queries, keys and values.

- ViT: a linear projection of each token (Dosovitskiy et al. 2021, Eq. 2; W^Q, W^K, W^V).
- CvT: a convolutional projection (Wu et al. 2021, Sec. 3.2): the tokens are reshaped
  into a 2-D token map, passed through a depthwise convolution and BatchNorm, flattened,
  and only then projected linearly. A stride of 2 on the keys and values (the
  squeezed projection) shrinks N_k by 4. The [CLS] token has no place on the map: it is
  split off before the convolution and joined back after it, never convolved.

Names, the same in every course model: a projection module holds the linear maps W^Q, W^K, W^V
as ``.q``, ``.k``, ``.v`` (``nn.Linear``); CvT's convolutional parts sit beside them as ``.conv_q``,
``.conv_k``, ``.conv_v``. Inside a model the projection is ``block.attn.qkv``. Every projection is
called ``qkv(tokens, size)`` with tokens (B, N, C) and the token-map size (H, W), which the
linear projection does not need.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

__all__ = ["LinearQKV", "ConvProjection", "ConvQKV", "PROJECTION_METHODS"]

PROJECTION_METHODS = ("dw_bn", "avg", "linear")


class LinearQKV(nn.Module):
    """Linear projection of tokens into queries, keys and values (ViT).

    Args:
        dim: C, the token width.
        bias: whether W^Q, W^K, W^V have a bias.

    Shapes:
        tokens (B, N, C) -> three tensors (B, N, C); ``size``, the token-map size, is not needed.
    """

    def __init__(self, *, dim: int, bias: bool = True) -> None:
        super().__init__()
        self.q = nn.Linear(dim, dim, bias=bias)
        self.k = nn.Linear(dim, dim, bias=bias)
        self.v = nn.Linear(dim, dim, bias=bias)

    def forward(
        self, x: torch.Tensor, size: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.q(x), self.k(x), self.v(x)


class ConvProjection(nn.Module):
    """The convolutional part of CvT's projection, before the linear map (Sec. 3.2, Fig. 3).

    Methods, as in the paper's ablation (Sec. 4.4) and the released code:
        ``"dw_bn"``: depthwise convolution (no bias) then BatchNorm;
        ``"avg"``: average pooling with the same kernel, stride and padding;
        ``"linear"``: nothing (the plain linear projection of ViT).

    Args:
        dim: C, channels of the token map.
        kernel_size, stride, padding: of the depthwise convolution or the pooling.
        method: one of ``PROJECTION_METHODS``.

    Shapes:
        (B, C, H, W) -> (B, H'*W', C). With kernel 3, stride 2 and padding 1, H' = ceil(H / 2) for
        ``"dw_bn"``; ``"avg"`` pools with ``ceil_mode=True`` as the released code does, which can keep
        one more row and column (a 16x16 map gives 9x9).

    Raises:
        ValueError: on an unknown method.
    """

    def __init__(self, *, dim: int, kernel_size: int = 3, stride: int = 1, padding: int = 1, method: str = "dw_bn") -> None:
        super().__init__()
        if method == "dw_bn":
            self.conv = nn.Conv2d(dim, dim, kernel_size, stride=stride, padding=padding, groups=dim, bias=False)
            self.norm = nn.BatchNorm2d(dim)
        elif method == "avg":
            self.pool = nn.AvgPool2d(kernel_size, stride=stride, padding=padding, ceil_mode=True)
        elif method != "linear":
            raise ValueError(f"unknown projection method {method!r}; expected one of {PROJECTION_METHODS}")
        self.method = method

    def forward(self, token_map: torch.Tensor) -> torch.Tensor:
        if self.method == "dw_bn":
            token_map = self.norm(self.conv(token_map))
        elif self.method == "avg":
            token_map = self.pool(token_map)
        return rearrange(token_map, "b c h w -> b (h w) c")


class ConvQKV(nn.Module):
    """Convolutional projection of CvT into queries, keys and values (Sec. 3.2, Eq. 2).

    x^{q/k/v} = Flatten(Conv2d(Reshape2D(x^i), s)), then the linear maps W^Q, W^K, W^V
    (``.q``, ``.k``, ``.v``, as in :class:`LinearQKV`); the convolutional parts are ``.conv_q``,
    ``.conv_k``, ``.conv_v`` (:class:`ConvProjection`).

    Args:
        dim: C, the token width.
        kernel_size: s, the kernel of the depthwise convolutions.
        padding_q, stride_q: for the queries (stride 1 keeps N_q = H*W).
        padding_kv, stride_kv: for keys and values; ``stride_kv=2`` is the squeezed projection.
        method: ``"dw_bn"``, ``"avg"`` or ``"linear"`` (see :class:`ConvProjection`); with
            ``"avg"`` only keys and values are pooled, as in the released code.
        bias: whether W^Q, W^K, W^V have a bias.
        with_cls_token: whether the first token is a [CLS] token to keep off the map.

    Shapes:
        tokens (B, [1 +] H*W, C) and the map size (H, W) -> q (B, [1 +] H_q*W_q, C),
        k and v (B, [1 +] H_kv*W_kv, C).

    Raises:
        ValueError: if the number of tokens does not match (H, W) and the [CLS] setting.
    """

    def __init__(
        self,
        *,
        dim: int,
        kernel_size: int = 3,
        padding_q: int = 1,
        stride_q: int = 1,
        padding_kv: int = 1,
        stride_kv: int = 2,
        method: str = "dw_bn",
        bias: bool = True,
        with_cls_token: bool = False,
    ) -> None:
        super().__init__()
        self.with_cls_token = with_cls_token
        # As in the released CvT code, "avg" pools keys and values only; the queries stay linear.
        method_q = "linear" if method == "avg" else method
        self.conv_q = ConvProjection(dim=dim, kernel_size=kernel_size, stride=stride_q, padding=padding_q, method=method_q)
        self.conv_k = ConvProjection(dim=dim, kernel_size=kernel_size, stride=stride_kv, padding=padding_kv, method=method)
        self.conv_v = ConvProjection(dim=dim, kernel_size=kernel_size, stride=stride_kv, padding=padding_kv, method=method)
        self.q = nn.Linear(dim, dim, bias=bias)
        self.k = nn.Linear(dim, dim, bias=bias)
        self.v = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h, w = size
        n_cls = int(self.with_cls_token)
        if x.shape[1] != n_cls + h * w:
            raise ValueError(
                f"expected {n_cls} [CLS] + {h}x{w} tokens = {n_cls + h * w}, got {x.shape[1]} (shape {tuple(x.shape)})"
            )
        cls, tokens = x[:, :n_cls], x[:, n_cls:]
        token_map = rearrange(tokens, "b (h w) c -> b c h w", h=h, w=w)
        q, k, v = (torch.cat([cls, conv(token_map)], dim=1) for conv in (self.conv_q, self.conv_k, self.conv_v))
        return self.q(q), self.k(k), self.v(v)
