"""Pyramid Vision Transformer, PVT v1 (Wang et al., ICCV 2021).

A pyramid of four stages, like a CNN: each stage starts with a patch embedding
(convolution with kernel = stride = P_i, then LayerNorm) that shrinks the token map and
widens the tokens, adds its own learned positional embedding, and runs transformer
blocks (Sec. 3.1-3.2, Fig. 3). The blocks use spatial-reduction attention (SRA,
Sec. 3.3, Eq. 2-4): queries come from every token, but keys and values from the token
map reduced R_i times per side, so attention costs (H W)^2 / R_i^2 instead of (H W)^2.
As in ViT, a [CLS] token, added in the last stage only, is what the classifier reads.

Names, as in every course model: W^Q, W^K, W^V are ``stages[i].blocks[j].attn.qkv.q``, ``.k``, ``.v``,
the reduction SR is ``...attn.sr`` and ``...attn.norm``, and W^O is ``...attn.mha.proj``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from .attention import MultiHeadAttention
from .layers import Classifier, Features, TransformerBlock, classifier_head, init_weights, run_stages
from .patching import ConvTokenEmbedding, check_image
from .positional import check_learned_size, learned_pos_embed
from .projection import LinearQKV

__all__ = ["PVTStageConfig", "PVTConfig", "SpatialReductionAttention", "PVTBlock", "PVTStage", "PVT"]


@dataclass(frozen=True)
class PVTStageConfig:
    """One stage of a PVT v1 (paper Table 1; PVT-Tiny: C_i 64-128-320-512, L_i 2-2-2-2, N_i 1-2-5-8,
    E_i 8-8-4-4, R_i 8-4-2-1, P_i 4-2-2-2).

    ``embed_dim`` is C_i, ``depth`` L_i, ``num_heads`` N_i, ``mlp_ratio`` E_i, ``sr_ratio`` R_i,
    ``patch_size`` P_i (kernel and stride of the stage's patch embedding).
    """

    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    sr_ratio: int = 1
    patch_size: int = 2
    qkv_bias: bool = True
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0


@dataclass(frozen=True)
class PVTConfig:
    """Hyper-parameters of a PVT v1: the stages and the classifier. The last stage holds the [CLS] token.

    ``layer_norm_eps`` is the epsilon of the LayerNorms in the blocks and before the head
    (1e-6), ``embed_norm_eps`` that of the LayerNorms after the patch-embedding and
    spatial-reduction convolutions (1e-5 in the authors' release; the ``transformers``
    port uses ``layer_norm_eps`` for every LayerNorm). The positional embeddings are learned
    for ``image_size``, the only size the model accepts. ``drop_path_rate`` is the stochastic
    depth of the last block, growing linearly from 0 over all blocks.
    """

    stages: tuple[PVTStageConfig, ...]
    image_size: int = 224
    in_chans: int = 3
    num_classes: int = 1000
    drop_path_rate: float = 0.0
    layer_norm_eps: float = 1e-6
    embed_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        # Accept stages given as dicts (for example read back from config.json).
        stages = tuple(s if isinstance(s, PVTStageConfig) else PVTStageConfig(**s) for s in self.stages)
        object.__setattr__(self, "stages", stages)
        if stages[-1].sr_ratio != 1:
            raise ValueError(
                f"the last stage holds the [CLS] token and cannot reduce its keys: its sr_ratio must be 1, got {stages[-1].sr_ratio}"
            )
        if self.image_size % math.prod(s.patch_size for s in stages):
            raise ValueError(
                f"image_size {self.image_size} is not divisible by the product of the patch sizes "
                f"{math.prod(s.patch_size for s in stages)}"
            )


class SpatialReductionAttention(nn.Module):
    """Spatial-reduction attention, SRA (PVT, Sec. 3.3, Eq. 2-4).

    SRA(Q, K, V) = Concat(head_1, ..., head_h) W^O, head_j = Attention(Q W_j^Q, SR(K) W_j^K, SR(V) W_j^V),
    SR(x) = Norm(Reshape(x, R) W^S): the H x W token map is cut into R x R patches, each
    projected linearly to C, which is a Conv2d(C, C, kernel R, stride R); then LayerNorm.
    With R = 1 there is no reduction (plain multi-head self-attention).

    Args:
        stage: the :class:`PVTStageConfig` (C, heads, R, ``qkv_bias``, dropouts).
        eps: epsilon of the LayerNorm after the reduction.

    Shapes:
        tokens (B, N, C) and the map size (H, W) -> (B, N, C). N = H*W, or with R = 1 also
        1 + H*W (a [CLS] token in front). Keys and values: (B, floor(H/R) * floor(W/R), C).

    Raises:
        ValueError: if R > 1 and N is not H*W.
    """

    def __init__(self, stage: PVTStageConfig, *, eps: float = 1e-5) -> None:
        super().__init__()
        dim = stage.embed_dim
        self.sr_ratio = stage.sr_ratio
        self.qkv = LinearQKV(dim=dim, bias=stage.qkv_bias)
        if stage.sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=stage.sr_ratio, stride=stage.sr_ratio)
            self.norm = nn.LayerNorm(dim, eps=eps)
        self.mha = MultiHeadAttention(embed_dim=dim, num_heads=stage.num_heads, attn_drop=stage.attn_drop_rate,
                                      proj_drop=stage.drop_rate)

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


class PVTBlock(TransformerBlock):
    """A PVT encoder block (Sec. 3.3): x + SRA(LN(x)), then x + FFN(LN(x)).

    Args:
        stage: the :class:`PVTStageConfig` of its stage.
        drop_path: stochastic-depth probability.
        eps: epsilon of the block's two LayerNorms.
        reduction_eps: epsilon of the LayerNorm inside SR.

    Shapes:
        tokens (B, [1 +] H*W, C) and (H, W) -> (B, [1 +] H*W, C).
    """

    def __init__(self, stage: PVTStageConfig, *, drop_path: float = 0.0, eps: float = 1e-6, reduction_eps: float = 1e-5) -> None:
        super().__init__(SpatialReductionAttention(stage, eps=reduction_eps), dim=stage.embed_dim, mlp_ratio=stage.mlp_ratio,
                         drop=stage.drop_rate, drop_path=drop_path, eps=eps)


class PVTStage(nn.Module):
    """One PVT stage (Sec. 3.1, Fig. 3): patch embedding, [CLS] (last stage), positional embedding, blocks.

    Args:
        stage: its :class:`PVTStageConfig`.
        in_chans: C_{i-1} (3 for the image).
        resolution: (H_i, W_i), the stage's token map for the image size the model is built for.
        cls_token: whether to put a learned [CLS] token in front.
        drop_paths: one stochastic-depth probability per block.
        eps, embed_eps: epsilons of the blocks' LayerNorms and of those after the embedding and SR convolutions.

    Shapes:
        map (B, C_{i-1}, H_{i-1}, W_{i-1}) -> map (B, C_i, H_i, W_i) and the [CLS] token
        (B, 1, C_i), or ``None``.
    """

    def __init__(self, stage: PVTStageConfig, *, in_chans: int, resolution: tuple[int, int], cls_token: bool,
                 drop_paths: list[float], eps: float = 1e-6, embed_eps: float = 1e-5) -> None:
        super().__init__()
        self.embed = ConvTokenEmbedding(
            in_chans=in_chans, embed_dim=stage.embed_dim, kernel_size=stage.patch_size, stride=stage.patch_size, padding=0,
            eps=embed_eps,
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, stage.embed_dim)) if cls_token else None
        self.pos_embed = learned_pos_embed(resolution, stage.embed_dim, cls_token=cls_token)
        self.pos_drop = nn.Dropout(stage.drop_rate)
        self.blocks = nn.ModuleList(PVTBlock(stage, drop_path=rate, eps=eps, reduction_eps=embed_eps) for rate in drop_paths)

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


class PVT(Classifier):
    """PVT v1 classifier: four (or any number of) stages, LayerNorm, the [CLS] token, a linear head.

    Args:
        config: a :class:`PVTConfig`.

    Shapes:
        images (B, C, H, W) with H = W = ``config.image_size`` -> logits (B, num_classes).
        ``forward_features`` returns :class:`~cvt_edu.layers.Features`: the map of every stage,
        (B, C_i, H_i, W_i), as the stage outputs it, and the normalised [CLS] token (B, C), which the head reads.

    Raises:
        ValueError: on a wrong channel count, a size the patches do not divide, or another
            size than ``config.image_size`` (the positional embeddings are learned for it).
        TypeError: for images that are not float tensors of the weights' dtype (uint8 pixels, float64), see
            :func:`~cvt_edu.patching.check_image`.
    """

    def __init__(self, config: PVTConfig) -> None:
        super().__init__()
        c = self.config = config
        rates = torch.linspace(0, c.drop_path_rate, sum(s.depth for s in c.stages)).tolist()
        chans = (c.in_chans, *(s.embed_dim for s in c.stages[:-1]))
        side, first = c.image_size, 0
        self.stages = nn.ModuleList()
        for i, stage in enumerate(c.stages):
            side //= stage.patch_size
            self.stages.append(
                PVTStage(stage, in_chans=chans[i], resolution=(side, side), cls_token=i == len(c.stages) - 1,
                         drop_paths=rates[first : first + stage.depth], eps=c.layer_norm_eps, embed_eps=c.embed_norm_eps)
            )
            first += stage.depth
        self.norm = nn.LayerNorm(c.stages[-1].embed_dim, eps=c.layer_norm_eps)
        self.head = classifier_head(c.stages[-1].embed_dim, c.num_classes)
        self.apply(init_weights)
        for stage in self.stages:
            nn.init.trunc_normal_(stage.pos_embed, std=0.02)
            if stage.cls_token is not None:
                nn.init.trunc_normal_(stage.cls_token, std=0.02)

    def forward_features(self, images: torch.Tensor) -> Features:
        c = self.config
        check_image(images, c.in_chans, math.prod(s.patch_size for s in c.stages), "product of the patch sizes",
                    dtype=self.stages[0].embed.proj.weight.dtype)
        check_learned_size(images, c.image_size)
        maps, cls = run_stages(self.stages, images)
        return Features(maps=maps, cls=self.norm(cls[:, 0]))
