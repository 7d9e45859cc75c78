"""Small pieces every transformer block uses: the MLP and stochastic depth."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Mlp", "DropPath"]


class Mlp(nn.Module):
    """The position-wise feed-forward network of a transformer block (ViT, Sec. 3.1, Eq. 3).

    Linear(C -> hidden), GELU, dropout, Linear(hidden -> C), dropout.

    Args:
        dim: C, the token width.
        hidden_dim: width of the hidden layer, usually ``mlp_ratio * C``.
        drop: dropout probability after each linear layer.

    Shapes:
        (B, N, C) -> (B, N, C).
    """

    def __init__(self, *, dim: int, hidden_dim: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class DropPath(nn.Module):
    """Stochastic depth (Huang et al., ECCV 2016): drop a whole residual branch per sample.

    In training, each sample's branch output is zeroed with probability ``p`` and
    the survivors are scaled by 1 / (1 - p), so the expected value is unchanged.
    In evaluation it is the identity.

    Args:
        p: the drop probability, in [0, 1).

    Shapes:
        (B, ...) -> (B, ...).

    Raises:
        ValueError: if ``p`` is outside [0, 1).
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop_path probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device, dtype=x.dtype)
        return x * keep.bernoulli_(1.0 - self.p) / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"
