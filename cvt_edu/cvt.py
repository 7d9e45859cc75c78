"""Convolutional vision Transformer, CvT (Wu et al., ICCV 2021).

A hierarchy of stages. Each stage starts with a convolutional token embedding that
shrinks the token map and widens the tokens (Sec. 3.1), then runs transformer blocks
whose queries, keys and values come from a convolutional projection (Sec. 3.2), with
keys and values squeezed by a stride of 2. There is no positional embedding: the
convolutions already know where each token is. Only the last stage has a [CLS]
token, which the classifier reads (Sec. 3, Fig. 2).

x_i = LN(Conv2d(x_{i-1}))                                       (Sec. 3.1, token embedding)
x^{q/k/v} = Flatten(Conv2d(Reshape2D(x), s)), then W^Q, W^K, W^V  (Sec. 3.2, Eq. 2)

Names, as in every course model: W^Q, W^K, W^V are ``stages[i].blocks[j].attn.qkv.q``, ``.k``, ``.v``,
the depthwise convolutions and BatchNorms beside them ``...attn.qkv.conv_q``, ``.conv_k``, ``.conv_v``,
and W^O is ``...attn.mha.proj``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from .attention import SelfAttention
from .layers import Classifier, Features, TransformerBlock, classifier_head, init_weights, run_stages
from .patching import ConvTokenEmbedding, check_image, conv_output_size
from .pooling import check_pool
from .positional import check_learned_size, learned_pos_embed
from .projection import ConvQKV

__all__ = ["CvTStageConfig", "CvTConfig", "CvTAttention", "CvTBlock", "CvTStage", "CvT", "LinearCvT"]


@dataclass(frozen=True)
class CvTStageConfig:
    """One stage of a CvT (paper Table 2; names follow the released configuration).

    ``kernel_size``, ``stride``, ``padding`` belong to the convolutional token embedding;
    ``kernel_qkv``, ``padding_q``, ``stride_q``, ``padding_kv``, ``stride_kv`` and
    ``projection`` to the convolutional projection; ``drop_path`` is the largest
    stochastic-depth rate in the stage (rates grow linearly from 0 to it).
    """

    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    kernel_size: int = 3
    stride: int = 2
    padding: int = 1
    kernel_qkv: int = 3
    padding_q: int = 1
    stride_q: int = 1
    padding_kv: int = 1
    stride_kv: int = 2
    projection: str = "dw_bn"
    qkv_bias: bool = True
    cls_token: bool = False
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path: float = 0.0


@dataclass(frozen=True)
class CvTConfig:
    """A CvT: its stages and classifier.

    ``attn_scale`` chooses the factor on Q K^T: ``"embed_dim"`` (1 / sqrt(C), what the
    released CvT code and its pretrained weights use) or ``"head_dim"`` (1 / sqrt(C / h),
    the textbook choice). ``image_size`` is informative (FLOP counts); CvT accepts other
    sizes because it has no positional embedding. ``layer_norm_eps`` is the epsilon of every
    LayerNorm (token embeddings, blocks, final norm); 1e-5, PyTorch's default, is what the released
    CvT code and Hugging Face's CvT use. ``num_classes = 0`` builds the model without a
    classifier: ``head`` is the identity and the model returns the normalised [CLS] token (B, C).
    ``pool``: ``"cls"``, the paper's [CLS] token in the last stage, which the classifier reads (Sec. 3,
    Fig. 2); ``"gap"``, no [CLS] token in any stage, the final LayerNorm on every token of the last map and
    the classifier on their mean (what Hugging Face's CvT does when the last stage has no [CLS] token). See
    :mod:`cvt_edu.pooling`.
    """

    stages: tuple[CvTStageConfig, ...]
    in_chans: int = 3
    num_classes: int = 1000
    image_size: int = 224
    attn_scale: str = "embed_dim"
    layer_norm_eps: float = 1e-5
    pool: str = "cls"

    def __post_init__(self) -> None:
        # Accept stages given as dicts (for example read back from config.json).
        stages = tuple(s if isinstance(s, CvTStageConfig) else CvTStageConfig(**s) for s in self.stages)
        object.__setattr__(self, "stages", stages)
        if self.attn_scale not in ("embed_dim", "head_dim"):
            raise ValueError(f"attn_scale must be 'embed_dim' or 'head_dim', got {self.attn_scale!r}")
        check_pool(self.pool, "CvTConfig")
        if self.pool == "map":
            raise ValueError("CvTConfig: pool must be 'cls' or 'gap' (a MAP head is implemented for ViT only), got 'map'")


class CvTAttention(SelfAttention):
    """MHSA on CvT's convolutional projection (Sec. 3.2, Fig. 3): ``qkv`` is a :class:`~cvt_edu.projection.ConvQKV`.

    Args:
        stage: the :class:`CvTStageConfig` of the stage (width, heads, projection settings, dropouts).
        scale: factor on Q K^T.

    Shapes:
        tokens (B, [1 +] H*W, C) and the map size (H, W) -> (B, [1 +] H*W, C).
    """

    def __init__(self, stage: CvTStageConfig, *, scale: float) -> None:
        qkv = ConvQKV(
            dim=stage.embed_dim,
            kernel_size=stage.kernel_qkv,
            padding_q=stage.padding_q,
            stride_q=stage.stride_q,
            padding_kv=stage.padding_kv,
            stride_kv=stage.stride_kv,
            method=stage.projection,
            bias=stage.qkv_bias,
            with_cls_token=stage.cls_token,
        )
        super().__init__(qkv, embed_dim=stage.embed_dim, num_heads=stage.num_heads, scale=scale,
                         attn_drop=stage.attn_drop_rate, proj_drop=stage.drop_rate)


class CvTBlock(TransformerBlock):
    """A CvT transformer block: x + MHSA(ConvProj(LN(x))), then x + MLP(LN(x)) (Sec. 3.2, Fig. 2b).

    Args:
        stage: the :class:`CvTStageConfig` of the stage the block belongs to.
        drop_path: this block's stochastic-depth probability.
        scale: factor on Q K^T.
        eps: LayerNorm epsilon.

    Shapes:
        tokens (B, [1 +] H*W, C) and the map size (H, W) -> (B, [1 +] H*W, C).
    """

    def __init__(self, stage: CvTStageConfig, *, drop_path: float, scale: float, eps: float = 1e-5) -> None:
        super().__init__(CvTAttention(stage, scale=scale), dim=stage.embed_dim, mlp_ratio=stage.mlp_ratio, drop=stage.drop_rate,
                         drop_path=drop_path, eps=eps)


class CvTStage(nn.Module):
    """One CvT stage: convolutional token embedding, optional [CLS] token, blocks.

    Args:
        stage: its :class:`CvTStageConfig`.
        in_chans: channels of the incoming map (3 for the image).
        attn_scale: ``"embed_dim"`` or ``"head_dim"``, see :class:`CvTConfig`.
        eps: LayerNorm epsilon in the blocks.

    Shapes:
        map (B, C_{i-1}, H_{i-1}, W_{i-1}) -> map (B, C_i, H_i, W_i) and the [CLS]
        token (B, 1, C_i), or ``None`` when the stage has none.
    """

    def __init__(self, stage: CvTStageConfig, *, in_chans: int, attn_scale: str = "embed_dim", eps: float = 1e-5) -> None:
        super().__init__()
        self.embed = ConvTokenEmbedding(
            in_chans=in_chans, embed_dim=stage.embed_dim, kernel_size=stage.kernel_size, stride=stage.stride, padding=stage.padding
        )
        self.drop = nn.Dropout(stage.drop_rate)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, stage.embed_dim)) if stage.cls_token else None
        self.pos_embed: nn.Parameter | None = None  # CvT has none; LinearCvT, the control, adds one per stage
        scale = (stage.embed_dim if attn_scale == "embed_dim" else stage.embed_dim // stage.num_heads) ** -0.5
        rates = torch.linspace(0, stage.drop_path, stage.depth).tolist()
        self.blocks = nn.ModuleList(CvTBlock(stage, drop_path=r, scale=scale, eps=eps) for r in rates)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        tokens, (h, w) = self.embed(x)
        if self.pos_embed is not None:
            tokens = tokens + self.pos_embed
        tokens = self.drop(tokens)
        n_cls = 0
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
            n_cls = 1
        for block in self.blocks:
            tokens = block(tokens, (h, w))
        cls = tokens[:, :n_cls] if n_cls else None
        return rearrange(tokens[:, n_cls:], "b (h w) c -> b c h w", h=h, w=w), cls


class CvT(Classifier):
    """CvT classifier.

    Args:
        config: a :class:`CvTConfig`.

    Shapes:
        images (B, C, H, W) -> logits (B, num_classes). ``forward_features`` returns
        :class:`~cvt_edu.layers.Features`: the token map of every stage, (B, C_i, H_i, W_i), as the
        stage outputs it, and what the head reads, (B, C): the normalised [CLS] token of the last stage
        (``pool="cls"``), or the mean of the last map's normalised tokens (``pool="gap"``).

    Raises:
        ValueError: for a config whose [CLS] tokens do not fit ``pool`` (``"cls"``: one in the last stage only
            is read; ``"gap"``: none at all), on a wrong channel count, or images too small for the embeddings' kernels.
        TypeError: for images that are not float tensors of the weights' dtype (uint8 pixels, float64), see
            :func:`~cvt_edu.patching.check_image`.
    """

    def __init__(self, config: CvTConfig) -> None:
        super().__init__()
        c = self.config = config
        if c.pool == "cls" and not c.stages[-1].cls_token:
            raise ValueError("the last CvT stage must have the [CLS] token the classifier reads (pool='cls'); "
                             "for mean pooling set pool='gap'")
        with_cls = [i for i, s in enumerate(c.stages) if s.cls_token]
        if c.pool == "gap" and with_cls:
            raise ValueError(f"pool='gap' averages the last map's tokens and has no [CLS] token, but stage {with_cls[0]} "
                             f"has cls_token=True")
        chans = [c.in_chans] + [s.embed_dim for s in c.stages[:-1]]
        self.stages = nn.ModuleList(
            CvTStage(s, in_chans=ch, attn_scale=c.attn_scale, eps=c.layer_norm_eps) for s, ch in zip(c.stages, chans)
        )
        self.norm = nn.LayerNorm(c.stages[-1].embed_dim, eps=c.layer_norm_eps)
        self.head = classifier_head(c.stages[-1].embed_dim, c.num_classes)
        self.apply(init_weights)
        for stage in self.stages:
            if stage.cls_token is not None:
                nn.init.trunc_normal_(stage.cls_token, std=0.02)

    def forward_features(self, images: torch.Tensor) -> Features:
        check_image(images, self.config.in_chans, dtype=self.stages[0].embed.proj.weight.dtype)
        maps, cls = run_stages(self.stages, images)
        if self.config.pool == "gap":
            return Features(maps=maps, pool=self.norm(rearrange(maps[-1], "b c h w -> b (h w) c")).mean(dim=1))
        return Features(maps=maps, cls=self.norm(cls[:, 0]))


class LinearCvT(CvT):
    """CvT without its convolutions: the control that isolates what they contribute (chapter 5).

    The same stages as a :class:`CvT` of the same config (token-map sizes, widths, heads, depths, MLP
    ratio, LayerNorm after each embedding, [CLS] token in the last stage, stochastic depth, attention
    scale), with the two convolutional parts made linear:

    - token embedding: non-overlapping patches, kernel = stride and no padding (for ``cvt-tiny-linear``
      2x2 patches in every stage, so a 32x32 image still gives 16x16, 8x8 and 4x4 token maps), the linear
      patch embedding of ViT (Eq. 1) and the patch merging of Swin and PVT, instead of CvT's overlapping
      3x3 convolutions (Sec. 3.1);
    - projection: ``projection="linear"``, W^Q, W^K, W^V on each token as in ViT, instead of the
      depthwise convolution and BatchNorm (Sec. 3.2; the paper ablates the same choice in Sec. 4.4).

    Two consequences are part of the control, not side effects:

    - no squeeze: without the convolutional projection there is no stride on keys and values, so
      attention sees all N = H*W tokens of a stage, not N / 4; the control costs more multiply-adds than
      the CvT it controls (``cvt_edu.cost.flops.count_flops`` gives both), and a difference in accuracy
      cannot come from seeing fewer keys;
    - positions: a model with no convolution (beyond the patch maps) and no positional embedding treats its
      tokens as a set and cannot tell where a token is, which would confound "no convolution" with "no
      position". So each stage adds a learned absolute positional embedding (ViT, Eq. 1; PVT, Sec. 3.1)
      to its tokens after the embedding, one vector per position of its map (the [CLS] token has none),
      drawn from a truncated normal with std 0.02 as in ViT. The embeddings fix the image size to
      ``config.image_size``.

    Args:
        config: a :class:`CvTConfig` whose every stage has ``kernel_size == stride``, ``padding == 0`` and
            ``projection == "linear"`` (the settings of the projection's convolutions are then unused).

    Shapes:
        images (B, C, image_size, image_size) -> logits (B, num_classes); ``forward_features`` as in
        :class:`CvT`.

    Raises:
        ValueError: in the constructor, for a stage that overlaps, pads or projects by convolution (naming
            the stage and its settings), or a stage map that ``image_size`` does not fill; in forward, for
            images of another size than ``image_size`` and as :class:`CvT` does.
    """

    def __init__(self, config: CvTConfig) -> None:
        for i, s in enumerate(config.stages):
            if s.kernel_size != s.stride or s.padding != 0 or s.projection != "linear":
                raise ValueError(
                    f"stage {i + 1} of a LinearCvT needs a linear patch embedding (kernel_size == stride, padding 0) and "
                    f"projection 'linear', got kernel_size={s.kernel_size}, stride={s.stride}, padding={s.padding}, "
                    f"projection={s.projection!r}"
                )
        super().__init__(config)
        side = config.image_size
        for i, (stage, s) in enumerate(zip(self.stages, config.stages)):
            if side % s.stride:
                raise ValueError(f"a {side}x{side} map of stage {i + 1}'s input does not split into {s.stride}x{s.stride} patches "
                                 f"(image_size {config.image_size})")
            side = conv_output_size(side, s.kernel_size, s.stride, s.padding)
            stage.pos_embed = learned_pos_embed(side, s.embed_dim)
            nn.init.trunc_normal_(stage.pos_embed, std=0.02)

    def forward_features(self, images: torch.Tensor) -> Features:
        check_image(images, self.config.in_chans, dtype=self.stages[0].embed.proj.weight.dtype)
        check_learned_size(images, self.config.image_size)
        return super().forward_features(images)
