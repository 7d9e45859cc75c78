"""Small pieces every transformer block uses: the MLP and stochastic depth."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Mlp", "DropPath", "StagedClassifier", "init_weights"]


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


def init_weights(m: nn.Module) -> None:
    """Truncated-normal linear weights (std 0.02), zero biases, unit LayerNorm: the ViT/CvT/Swin/PVT initialisation."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class StagedClassifier(nn.Module):
    """What hierarchical classifiers whose last stage carries a [CLS] token share (CvT, PVT).

    Subclasses set ``self.stages`` (each stage maps a map (B, C_{i-1}, H, W) to a map
    (B, C_i, H_i, W_i) and a [CLS] token (B, 1, C_i) or ``None``), ``self.norm`` and ``self.head``.

    Shapes:
        ``forward_stages``: images (B, C, H, W) -> the map of every stage and the last [CLS] token (B, 1, C).
        ``forward_features``: the normalised [CLS] token, (B, C). ``forward``: logits (B, num_classes).
    """

    stages: nn.ModuleList

    def forward_stages(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        maps, x, cls = [], images, None
        for stage in self.stages:
            x, cls = stage(x)
            maps.append(x)
        return maps, cls

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.norm(self.forward_stages(images)[1][:, 0])

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(images))
