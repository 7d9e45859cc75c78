"""Pooling: how a transformer turns its N output tokens into the one vector its classifier reads.

Three choices, named as the field names them:

- ``"cls"``: a learned [CLS] token is put in front of the patch tokens and the classifier reads its final,
  normalised state (BERT; ViT, Sec. 3.1, Eq. 4).
- ``"gap"``: global average pooling, no [CLS] token; the final LayerNorm acts on every token and the
  classifier reads their mean (ViT, App. D.3; Beyer et al. 2022, "Better plain ViT baselines", Sec. 2).
- ``"map"``: multi-head attention pooling (Zhai et al. 2022, "Scaling Vision Transformers", Sec. 3.2; the
  "MAP head" of big_vision): a learned probe vector attends over the normalised tokens, and an MLP with a
  residual follows, as in a transformer block whose only query is the probe.

The MAP head, for tokens z (B, N, C) and a learned probe p (1, 1, C)::

    a = MHA(q = p W^Q, k = z W^K, v = z W^V) W^O        (B, 1, C)
    y = a + MLP(LN(a))                                   (B, 1, C) -> (B, C)
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import MultiHeadAttention
from .layers import Mlp

__all__ = ["POOLS", "check_pool", "MAPHead"]

POOLS = ("cls", "gap", "map")


def check_pool(pool: str, where: str) -> None:
    """Refuse a pooling name that is not one of :data:`POOLS`.

    Raises:
        ValueError: naming ``where`` (the config), what was expected and what came.
    """
    if pool not in POOLS:
        raise ValueError(f"{where}: pool must be one of {', '.join(map(repr, POOLS))}, got {pool!r}")


class MAPHead(nn.Module):
    """Multi-head attention pooling (MAP): one learned probe attends over the tokens, then an MLP with a residual.

    Zhai et al. 2022, Sec. 3.2. The probe is the only query, so the attention weights are (B, h, 1, N):
    no N x N matrix, and each head gives its own weighting of the tokens.

    Args:
        dim: C, the token width.
        num_heads: h; ``dim`` must be divisible by it.
        mlp_ratio: the MLP's hidden width is ``int(mlp_ratio * dim)``.
        eps: the LayerNorm's epsilon.

    Attributes:
        probe: the learned query, (1, 1, C).
        q, k, v: W^Q (on the probe), W^K, W^V (on the tokens), each Linear(C -> C).
        attn: the heads and W^O (``attn.proj``), see :class:`~cvt_edu.attention.MultiHeadAttention`.
        norm, mlp: LN and the MLP of the residual branch.

    Shapes:
        tokens (B, N, C) -> (B, C).

    Raises:
        ValueError: if C is not divisible by h.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.probe = nn.Parameter(torch.zeros(1, 1, dim))
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.attn = MultiHeadAttention(embed_dim=dim, num_heads=num_heads)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim=dim, hidden_dim=int(mlp_ratio * dim))
        nn.init.trunc_normal_(self.probe, std=dim**-0.5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        probe = self.probe.expand(tokens.shape[0], -1, -1)
        a = self.attn(self.q(probe), self.k(tokens), self.v(tokens))
        return (a + self.mlp(self.norm(a)))[:, 0]
