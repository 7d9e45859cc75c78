"""Vision Transformer (Dosovitskiy et al., ICLR 2021).

An image becomes a sequence: linear patch embedding, a learned [CLS] token in front,
learned positional embeddings added (Eq. 1); then L pre-norm blocks of multi-head
self-attention (MHSA) and MLP (Eq. 2-3); the classifier reads the normalised [CLS]
token (Eq. 4).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .attention import MultiHeadAttention
from .layers import DropPath, Mlp, init_weights
from .patching import PatchEmbedding, check_image
from .projection import LinearQKV

__all__ = ["ViTConfig", "ViTBlock", "ViT"]


@dataclass(frozen=True)
class ViTConfig:
    """Hyper-parameters of a ViT; names follow the paper (Table 1).

    ``layer_norm_eps`` is the epsilon of every LayerNorm (1e-6 in the original ViT code and in
    torchvision; Hugging Face's ViT uses 1e-12). ``num_classes = 0`` builds the model without a
    classifier: ``head`` is the identity and the model returns the normalised [CLS] token, (B, D).
    """

    image_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    layer_norm_eps: float = 1e-6


class ViTBlock(nn.Module):
    """A pre-norm transformer block: x + MHSA(LN(x)), then x + MLP(LN(x)) (ViT, Eq. 2-3).

    Args:
        dim: D, the token width.
        num_heads: h.
        mlp_ratio: hidden width of the MLP over D.
        qkv_bias: bias in W^Q, W^K, W^V.
        drop: dropout after the attention output and in the MLP.
        attn_drop: dropout on the attention weights.
        drop_path: stochastic-depth probability of both residual branches.
        eps: LayerNorm epsilon.

    Shapes:
        (B, N, D) -> (B, N, D).
    """

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.qkv = LinearQKV(dim=dim, bias=qkv_bias)
        self.attn = MultiHeadAttention(embed_dim=dim, num_heads=num_heads, attn_drop=attn_drop, proj_drop=drop)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim=dim, hidden_dim=int(dim * mlp_ratio), drop=drop)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(*self.qkv(self.norm1(x))))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ViT(nn.Module):
    """Vision Transformer classifier.

    Args:
        config: a :class:`ViTConfig`.

    Shapes:
        images (B, C, H, W) with H = W = ``config.image_size`` -> logits (B, num_classes).
        ``forward_features`` returns the normalised tokens (B, 1 + N, D), [CLS] first.

    Raises:
        ValueError: if the images have another size or channel count than the config says.
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        c = self.config = config
        if c.image_size % c.patch_size:
            raise ValueError(f"image_size {c.image_size} is not divisible by patch_size {c.patch_size}")
        self.patch_embed = PatchEmbedding(patch_size=c.patch_size, in_chans=c.in_chans, embed_dim=c.embed_dim)
        num_patches = (c.image_size // c.patch_size) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + num_patches, c.embed_dim))
        self.pos_drop = nn.Dropout(c.drop_rate)
        rates = torch.linspace(0, c.drop_path_rate, c.depth).tolist()
        self.blocks = nn.Sequential(
            *(
                ViTBlock(
                    dim=c.embed_dim,
                    num_heads=c.num_heads,
                    mlp_ratio=c.mlp_ratio,
                    qkv_bias=c.qkv_bias,
                    drop=c.drop_rate,
                    attn_drop=c.attn_drop_rate,
                    drop_path=rate,
                    eps=c.layer_norm_eps,
                )
                for rate in rates
            )
        )
        self.norm = nn.LayerNorm(c.embed_dim, eps=c.layer_norm_eps)
        self.head = nn.Linear(c.embed_dim, c.num_classes) if c.num_classes > 0 else nn.Identity()
        self.apply(init_weights)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        c = self.config
        check_image(images, c.in_chans, c.patch_size)
        if images.shape[-2:] != (c.image_size, c.image_size):
            raise ValueError(
                f"expected {c.image_size}x{c.image_size} images (the positional embeddings are learned for that size), "
                f"got {images.shape[-2]}x{images.shape[-1]}"
            )
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.pos_drop(x + self.pos_embed)
        return self.norm(self.blocks(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features[:, 0])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(images))
