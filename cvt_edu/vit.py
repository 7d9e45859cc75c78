"""Vision Transformer (Dosovitskiy et al., ICLR 2021).

An image becomes a sequence: linear patch embedding, a learned [CLS] token in front,
learned positional embeddings added (Eq. 1); then L pre-norm blocks of multi-head
self-attention (MHSA) and MLP (Eq. 2-3); the classifier reads the normalised [CLS]
token (Eq. 4), or, with ``ViTConfig(pool="gap" | "map")``, the mean of the normalised patch
tokens or a MAP head over them (:mod:`cvt_edu.pooling`).

z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos                (Eq. 1)
z'_l = MSA(LN(z_{l-1})) + z_{l-1},  z_l = MLP(LN(z'_l)) + z'_l  (Eq. 2-3)
y = LN(z_L^0)                                                  (Eq. 4)

Names, as in every course model: W^Q, W^K, W^V are ``blocks[i].attn.qkv.q``, ``.k``, ``.v`` and W^O
is ``blocks[i].attn.mha.proj``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from .attention import SelfAttention
from .layers import Classifier, Features, TransformerBlock, classifier_head, init_weights
from .patching import PatchEmbedding, check_image
from .pooling import MAPHead, check_pool
from .positional import check_learned_size, learned_pos_embed
from .projection import LinearQKV

__all__ = ["ViTConfig", "ViTAttention", "ViTBlock", "ViT"]


@dataclass(frozen=True)
class ViTConfig:
    """Hyper-parameters of a ViT; names follow the paper (Table 1).

    ``layer_norm_eps`` is the epsilon of every LayerNorm (1e-6 in the original ViT code and in
    torchvision; Hugging Face's ViT uses 1e-12). ``num_classes = 0`` builds the model without a
    classifier: ``head`` is the identity and the model returns the normalised [CLS] token, (B, D).
    ``pool`` is what the classifier reads (see :mod:`cvt_edu.pooling`): ``"cls"``, the [CLS] token (the
    paper's choice); ``"gap"``, no [CLS] token, the mean of the normalised patch tokens (App. D.3); ``"map"``,
    no [CLS] token, a MAP head over the normalised patch tokens with h heads and the blocks' ``mlp_ratio``.
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
    pool: str = "cls"

    def __post_init__(self) -> None:
        check_pool(self.pool, "ViTConfig")


class ViTAttention(SelfAttention):
    """ViT's MHSA (Eq. 2, App. A): linear W^Q, W^K, W^V (``qkv.q``, ``.k``, ``.v``), attention over all tokens, W^O (``mha.proj``).

    Args:
        config: a :class:`ViTConfig` (D, h, ``qkv_bias``, dropouts).

    Shapes:
        tokens (B, N, D) -> (B, N, D); attention is global, so the token-map size is not needed.
    """

    def __init__(self, config: ViTConfig) -> None:
        c = config
        super().__init__(LinearQKV(dim=c.embed_dim, bias=c.qkv_bias), embed_dim=c.embed_dim, num_heads=c.num_heads,
                         attn_drop=c.attn_drop_rate, proj_drop=c.drop_rate)


class ViTBlock(TransformerBlock):
    """A pre-norm transformer block: x + MHSA(LN(x)), then x + MLP(LN(x)) (ViT, Eq. 2-3).

    Args:
        config: a :class:`ViTConfig`.
        drop_path: this block's stochastic-depth probability.

    Shapes:
        (B, N, D) -> (B, N, D).
    """

    def __init__(self, config: ViTConfig, *, drop_path: float = 0.0) -> None:
        c = config
        super().__init__(ViTAttention(c), dim=c.embed_dim, mlp_ratio=c.mlp_ratio, drop=c.drop_rate, drop_path=drop_path,
                         eps=c.layer_norm_eps)


class ViT(Classifier):
    """Vision Transformer classifier.

    Args:
        config: a :class:`ViTConfig`.

    Shapes:
        images (B, C, H, W) with H = W = ``config.image_size`` -> logits (B, num_classes).
        ``forward_features`` returns :class:`~cvt_edu.layers.Features`: one map, the normalised
        patch tokens (B, D, H/P, W/P), and what the head reads, (B, D): the normalised [CLS] token
        (``pool="cls"``), the MAP head's output (``pool="map"``), or, for ``"gap"``, the map's mean.

    Raises:
        ValueError: if the images have another size or channel count than the config says.
        TypeError: for images that are not float tensors of the weights' dtype (uint8 pixels, float64), see
            :func:`~cvt_edu.patching.check_image`.
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        c = self.config = config
        if c.image_size % c.patch_size:
            raise ValueError(f"image_size {c.image_size} is not divisible by patch_size {c.patch_size}")
        self.patch_embed = PatchEmbedding(patch_size=c.patch_size, in_chans=c.in_chans, embed_dim=c.embed_dim)
        with_cls = c.pool == "cls"
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim)) if with_cls else None
        self.pos_embed = learned_pos_embed(c.image_size // c.patch_size, c.embed_dim, cls_token=with_cls)
        self.pos_drop = nn.Dropout(c.drop_rate)
        rates = torch.linspace(0, c.drop_path_rate, c.depth).tolist()
        self.blocks = nn.Sequential(*(ViTBlock(c, drop_path=rate) for rate in rates))
        self.norm = nn.LayerNorm(c.embed_dim, eps=c.layer_norm_eps)
        self.map_head = MAPHead(c.embed_dim, c.num_heads, c.mlp_ratio, c.layer_norm_eps) if c.pool == "map" else None
        self.head = classifier_head(c.embed_dim, c.num_classes)
        self.apply(init_weights)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        if self.map_head is not None:
            nn.init.trunc_normal_(self.map_head.probe, std=c.embed_dim**-0.5)

    def forward_features(self, images: torch.Tensor) -> Features:
        c = self.config
        check_image(images, c.in_chans, c.patch_size, dtype=self.patch_embed.proj.weight.dtype)
        check_learned_size(images, c.image_size)
        x = self.patch_embed(images)
        n_cls = 0
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
            n_cls = 1
        x = self.norm(self.blocks(self.pos_drop(x + self.pos_embed)))
        side = c.image_size // c.patch_size
        tokens = x[:, n_cls:]
        return Features(maps=[rearrange(tokens, "b (h w) d -> b d h w", h=side, w=side)],
                        cls=x[:, 0] if n_cls else None,
                        pool=self.map_head(tokens) if self.map_head is not None else None)
