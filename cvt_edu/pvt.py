"""Pyramid Vision Transformer, PVT v1 (Wang et al., ICCV 2021).

A pyramid of four stages, like a CNN: each stage starts with a patch embedding
(convolution with kernel = stride = P_i, then LayerNorm) that shrinks the token map and
widens the tokens, adds its own learned positional embedding, and runs transformer
blocks (Sec. 3.1-3.2, Fig. 3). The blocks use spatial-reduction attention (SRA,
Sec. 3.3, Eq. 2-4): queries come from every token, but keys and values from the token
map reduced R_i times per side, so attention costs (H W)^2 / R_i^2 instead of (H W)^2.
As in ViT, a [CLS] token, added in the last stage only, is what the classifier reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from .attention import MultiHeadAttention
from .layers import DropPath, Mlp, StagedClassifier, init_weights
from .patching import ConvTokenEmbedding, check_image
from .projection import LinearQKV

__all__ = ["SpatialReductionAttention", "PVTBlock", "PVTStage", "PVTConfig", "PVT"]


class SpatialReductionAttention(nn.Module):
    """Spatial-reduction attention, SRA (PVT, Sec. 3.3, Eq. 2-4).

    SRA(Q, K, V) = Concat(head_1, ..., head_h) W^O, head_j = Attention(Q W_j^Q, SR(K) W_j^K, SR(V) W_j^V),
    SR(x) = Norm(Reshape(x, R) W^S): the H x W token map is cut into R x R patches, each
    projected linearly to C, which is a Conv2d(C, C, kernel R, stride R); then LayerNorm.
    With R = 1 there is no reduction (plain multi-head self-attention).

    Args:
        dim: C.
        num_heads: h.
        sr_ratio: R.
        qkv_bias: bias in W^Q, W^K, W^V.
        attn_drop: dropout on the attention weights.
        proj_drop: dropout after W^O.
        eps: epsilon of the LayerNorm after the reduction.

    Shapes:
        tokens (B, N, C) and the map size (H, W) -> (B, N, C). N = H*W, or with R = 1 also
        1 + H*W (a [CLS] token in front). Keys and values: (B, floor(H/R) * floor(W/R), C).

    Raises:
        ValueError: if R > 1 and N is not H*W.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        sr_ratio: int = 1,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.sr_ratio = sr_ratio
        self.qkv = LinearQKV(dim=dim, bias=qkv_bias)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim, eps=eps)
        self.mha = MultiHeadAttention(embed_dim=dim, num_heads=num_heads, attn_drop=attn_drop, proj_drop=proj_drop)

    def reduce(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """SR(x) of Eq. 4: (B, H*W, C) -> (B, H/R * W/R, C); the identity when R = 1."""
        if self.sr_ratio == 1:
            return x
        h, w = size
        if x.shape[1] != h * w:
            raise ValueError(f"spatial reduction needs the {h}x{w} = {h * w} map tokens only, got {x.shape[1]} tokens")
        x = self.sr(rearrange(x, "b (h w) c -> b c h w", h=h, w=w))
        return self.norm(rearrange(x, "b c h w -> b (h w) c"))

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        reduced = self.reduce(x, size)
        return self.mha(self.qkv.q(x), self.qkv.k(reduced), self.qkv.v(reduced))


class PVTBlock(nn.Module):
    """A PVT encoder block (Sec. 3.3): x + SRA(LN(x)), then x + FFN(LN(x)).

    Args:
        dim: C_i.
        num_heads: N_i in the paper.
        mlp_ratio: E_i, the FFN expansion.
        sr_ratio: R_i.
        qkv_bias: bias in W^Q, W^K, W^V.
        drop: dropout after attention and in the FFN.
        attn_drop: dropout on the attention weights.
        drop_path: stochastic-depth probability.
        eps: epsilon of the block's two LayerNorms.
        reduction_eps: epsilon of the LayerNorm inside SR.

    Shapes:
        tokens (B, [1 +] H*W, C) and (H, W) -> (B, [1 +] H*W, C).
    """

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        sr_ratio: int = 1,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        eps: float = 1e-6,
        reduction_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = SpatialReductionAttention(
            dim=dim,
            num_heads=num_heads,
            sr_ratio=sr_ratio,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=drop,
            eps=reduction_eps,
        )
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim=dim, hidden_dim=int(dim * mlp_ratio), drop=drop)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), size))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PVTStage(nn.Module):
    """One PVT stage (Sec. 3.1, Fig. 3): patch embedding, [CLS] (last stage), positional embedding, blocks.

    Args:
        in_chans: C_{i-1} (3 for the image).
        embed_dim: C_i.
        patch_size: P_i, kernel and stride of the embedding convolution.
        resolution: (H_i, W_i), the stage's token map for the image size the model is built for.
        cls_token: whether to put a learned [CLS] token in front.
        depth: L_i, the number of blocks.
        drop_paths: one stochastic-depth probability per block.
        drop: dropout after adding the positional embedding, and in the blocks.
        embed_eps: epsilon of the LayerNorms after the embedding and SR convolutions.
        num_heads, mlp_ratio, sr_ratio, qkv_bias, attn_drop, eps: as in :class:`PVTBlock`.

    Shapes:
        map (B, C_{i-1}, H_{i-1}, W_{i-1}) -> map (B, C_i, H_i, W_i) and the [CLS] token
        (B, 1, C_i), or ``None``.
    """

    def __init__(
        self,
        *,
        in_chans: int,
        embed_dim: int,
        patch_size: int,
        resolution: tuple[int, int],
        cls_token: bool,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        sr_ratio: int,
        drop_paths: list[float],
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        eps: float = 1e-6,
        embed_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.embed = ConvTokenEmbedding(
            in_chans=in_chans, embed_dim=embed_dim, kernel_size=patch_size, stride=patch_size, padding=0, eps=embed_eps
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if cls_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, int(cls_token) + resolution[0] * resolution[1], embed_dim))
        self.pos_drop = nn.Dropout(drop)
        self.blocks = nn.ModuleList(
            PVTBlock(
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                sr_ratio=sr_ratio,
                qkv_bias=qkv_bias,
                drop=drop,
                attn_drop=attn_drop,
                drop_path=rate,
                eps=eps,
                reduction_eps=embed_eps,
            )
            for rate in drop_paths
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        tokens, (h, w) = self.embed(x)
        n_cls = 0
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
            n_cls = 1
        tokens = self.pos_drop(tokens + self.pos_embed)
        for block in self.blocks:
            tokens = block(tokens, (h, w))
        cls = tokens[:, :n_cls] if n_cls else None
        return rearrange(tokens[:, n_cls:], "b (h w) c -> b c h w", h=h, w=w), cls


def _as_tuple(values) -> tuple:
    return tuple(values) if isinstance(values, (list, tuple)) else values


PER_STAGE = ("embed_dims", "depths", "num_heads", "mlp_ratios", "sr_ratios", "patch_sizes")


@dataclass(frozen=True)
class PVTConfig:
    """Hyper-parameters of a PVT v1 (paper Table 1; defaults: PVT-Tiny). One tuple entry per stage.

    ``layer_norm_eps`` is the epsilon of the LayerNorms in the blocks and before the head
    (1e-6), ``embed_norm_eps`` that of the LayerNorms after the patch-embedding and
    spatial-reduction convolutions (1e-5 in the authors' release; the ``transformers``
    port uses ``layer_norm_eps`` for every LayerNorm). The positional embeddings are learned
    for ``image_size``, the only size the model accepts.
    """

    image_size: int = 224
    in_chans: int = 3
    num_classes: int = 1000
    embed_dims: tuple[int, ...] = (64, 128, 320, 512)
    depths: tuple[int, ...] = (2, 2, 2, 2)
    num_heads: tuple[int, ...] = (1, 2, 5, 8)
    mlp_ratios: tuple[float, ...] = (8, 8, 4, 4)
    sr_ratios: tuple[int, ...] = (8, 4, 2, 1)
    patch_sizes: tuple[int, ...] = (4, 2, 2, 2)
    qkv_bias: bool = True
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    layer_norm_eps: float = 1e-6
    embed_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in PER_STAGE:  # accept lists, for example read back from config.json
            object.__setattr__(self, name, _as_tuple(getattr(self, name)))
        lengths = {name: len(getattr(self, name)) for name in PER_STAGE}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"every per-stage setting needs one entry per stage, got lengths {lengths}")
        if self.sr_ratios[-1] != 1:
            raise ValueError(
                "the last stage holds the [CLS] token and cannot reduce its keys: "
                f"sr_ratios[-1] must be 1, got {self.sr_ratios[-1]}"
            )
        if self.image_size % math.prod(self.patch_sizes):
            raise ValueError(
                f"image_size {self.image_size} is not divisible by the product of patch_sizes {math.prod(self.patch_sizes)}"
            )


class PVT(StagedClassifier):
    """PVT v1 classifier: four (or any number of) stages, LayerNorm, the [CLS] token, a linear head.

    Args:
        config: a :class:`PVTConfig`.

    Shapes:
        images (B, C, H, W) with H = W = ``config.image_size`` -> logits (B, num_classes).
        ``forward_stages`` returns the map of every stage, (B, C_i, H_i, W_i), and the final
        [CLS] token (B, 1, C); ``forward_features`` the normalised [CLS] token (B, C).

    Raises:
        ValueError: on a wrong channel count, a size the patches do not divide, or another
            size than ``config.image_size`` (the positional embeddings are learned for it).
    """

    def __init__(self, config: PVTConfig) -> None:
        super().__init__()
        c = self.config = config
        rates = torch.linspace(0, c.drop_path_rate, sum(c.depths)).tolist()
        chans = (c.in_chans, *c.embed_dims[:-1])
        side, last = c.image_size, len(c.depths) - 1
        self.stages = nn.ModuleList()
        for i in range(len(c.depths)):
            side //= c.patch_sizes[i]
            first = sum(c.depths[:i])
            self.stages.append(
                PVTStage(
                    in_chans=chans[i],
                    embed_dim=c.embed_dims[i],
                    patch_size=c.patch_sizes[i],
                    resolution=(side, side),
                    cls_token=i == last,
                    depth=c.depths[i],
                    num_heads=c.num_heads[i],
                    mlp_ratio=c.mlp_ratios[i],
                    sr_ratio=c.sr_ratios[i],
                    drop_paths=rates[first : first + c.depths[i]],
                    qkv_bias=c.qkv_bias,
                    drop=c.drop_rate,
                    attn_drop=c.attn_drop_rate,
                    eps=c.layer_norm_eps,
                    embed_eps=c.embed_norm_eps,
                )
            )
        self.norm = nn.LayerNorm(c.embed_dims[-1], eps=c.layer_norm_eps)
        self.head = nn.Linear(c.embed_dims[-1], c.num_classes)
        self.apply(init_weights)
        for stage in self.stages:
            nn.init.trunc_normal_(stage.pos_embed, std=0.02)
            if stage.cls_token is not None:
                nn.init.trunc_normal_(stage.cls_token, std=0.02)

    def forward_stages(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        c = self.config
        check_image(images, c.in_chans, math.prod(c.patch_sizes), "product of the patch sizes")
        if images.shape[-2:] != (c.image_size, c.image_size):
            raise ValueError(
                f"expected {c.image_size}x{c.image_size} images (the positional embeddings are learned for that size), "
                f"got {images.shape[-2]}x{images.shape[-1]}"
            )
        return super().forward_stages(images)
