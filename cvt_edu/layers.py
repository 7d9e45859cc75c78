"""What the four models share: the MLP, stochastic depth, the pre-norm transformer block, the
:class:`Features` every model computes, and the classifier on top of them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Mlp", "DropPath", "TransformerBlock", "Features", "Classifier", "classifier_head", "run_stages", "init_weights"]


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


class TransformerBlock(nn.Module):
    """The pre-norm transformer block of every course model; only its attention differs.

    z' = z + DropPath(Attn(LN(z), size)), z'' = z' + DropPath(MLP(LN(z'))): ViT (Eq. 2-3), CvT (Fig. 2b),
    Swin (Eq. 3, with (S)W-MSA), PVT (Sec. 3.3, with SRA).

    Args:
        attn: the attention module, stored as ``attn``; called ``attn(tokens, size)``.
        dim: C, the token width.
        mlp_ratio: hidden width of the MLP over C.
        drop: dropout in the MLP (the attention has its own).
        drop_path: stochastic-depth probability of both residual branches.
        eps: LayerNorm epsilon.

    Shapes:
        tokens (B, N, C) and the token-map size (H, W) (``None`` where the attention needs none, ViT)
        -> (B, N, C).
    """

    def __init__(self, attn: nn.Module, *, dim: int, mlp_ratio: float, drop: float = 0.0, drop_path: float = 0.0,
                 eps: float = 1e-5) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = attn
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim=dim, hidden_dim=int(dim * mlp_ratio), drop=drop)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), size))
        return x + self.drop_path(self.mlp(self.norm2(x)))


@dataclass(frozen=True)
class Features:
    """What a model computes before its classifier, the same for every course model.

    Attributes:
        maps: the feature map of every stage, first stage first, each (B, C_i, H_i, W_i). ViT has
            one: its final normalised patch tokens, (B, D, H/P, W/P). Where the final LayerNorm acts
            on every token (ViT, Swin) the last map is after it; CvT and PVT normalise only the
            [CLS] token their head reads, so their maps are what the stages output.
        cls: the normalised [CLS] token, (B, C), or ``None`` for a model without one (Swin, a CNN, a model
            pooled by ``"gap"`` or ``"map"``).
        pool: what the model's own pooling computed, (B, C), when it is neither the [CLS] token nor the
            mean of the last map as it stands: the mean of the normalised tokens (CvT with ``pool="gap"``),
            the MAP head's output (``pool="map"``, see :mod:`cvt_edu.pooling`); else ``None``.
    """

    maps: list[torch.Tensor]
    cls: torch.Tensor | None = None
    pool: torch.Tensor | None = None

    def pooled(self) -> torch.Tensor:
        """What a classifier reads, (B, C): ``pool`` if the model set it, else the [CLS] token, else the last map
        averaged over H and W."""
        if self.pool is not None:
            return self.pool
        return self.cls if self.cls is not None else self.maps[-1].mean(dim=(-2, -1))


def run_stages(stages: nn.ModuleList, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """Run stages that each map a map to a map and a [CLS] token (B, 1, C) or ``None``; every map and the last token."""
    maps, cls = [], None
    for stage in stages:
        x, cls = stage(x)
        maps.append(x)
    return maps, cls


def classifier_head(width: int, num_classes: int) -> nn.Module:
    """Linear(width -> num_classes); with ``num_classes = 0`` the identity (the model returns its features)."""
    return nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity()


class Classifier(nn.Module):
    """What every course model shares: ``forward = forward_head . forward_features``.

    Subclasses define ``forward_features(images) -> Features`` and a ``head`` (:func:`classifier_head`).

    Shapes:
        ``forward_features``: images (B, C, H, W) -> :class:`Features`. ``forward_head``: features ->
        logits (B, num_classes), the head applied to :meth:`Features.pooled`. ``forward``: images -> logits.
    """

    head: nn.Module

    def forward_features(self, images: torch.Tensor) -> Features:
        raise NotImplementedError

    def forward_head(self, features: Features) -> torch.Tensor:
        return self.head(features.pooled())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(images))
