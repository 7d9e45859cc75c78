"""Swin Transformer (Liu et al., ICCV 2021): attention inside windows that shift.

The image is cut into 4x4 patches and embedded linearly (Sec. 3.1); four stages follow,
each starting with a patch merging that halves the token map and doubles the width
(except the first), so the model sees the image at 1/4, 1/8, 1/16 and 1/32 of its size,
like a CNN. Self-attention runs inside non-overlapping M x M windows (W-MSA, Sec. 3.2),
so its cost grows linearly with the number of tokens; every second block moves the
window grid by M/2 tokens (SW-MSA) so that neighbouring windows exchange information.
The shift is done with a cyclic roll of the map and an attention mask (Sec. 3.2,
"Efficient batch computation", Fig. 4), and every attention score gets a learned
relative position bias B (Eq. 4). The classifier averages the last token map.

z'_l = W-MSA(LN(z_{l-1})) + z_{l-1},   z_l = MLP(LN(z'_l)) + z'_l          (Eq. 3)
z'_{l+1} = SW-MSA(LN(z_l)) + z_l,      z_{l+1} = MLP(LN(z'_{l+1})) + z'_{l+1}
Attention(Q, K, V) = SoftMax(Q K^T / sqrt(d) + B) V                        (Eq. 4)

Between blocks the tokens are (B, H*W, C), as in the other models; window attention lays them
out as a channels-last map (B, H, W, C) inside. Names, as in every course model: W^Q, W^K, W^V
are ``stages[i].blocks[j].attn.qkv.q``, ``.k``, ``.v`` and W^O is ``...attn.mha.proj``.

Sizes: this implementation does not pad. The image side must be a multiple of the patch
size, every stage's token map a multiple of its window, and every merged map even;
:meth:`Swin.forward_features` raises a ``ValueError`` naming H, W, the stage and the window
otherwise. (The reference code pads the maps with zeros instead.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from itertools import pairwise

import torch
from einops import rearrange, repeat
from torch import nn

from .attention import MultiHeadAttention
from .layers import Classifier, Features, TransformerBlock, classifier_head, init_weights, run_stages
from .patching import ConvTokenEmbedding, check_image
from .projection import LinearQKV
from .windows import (
    cyclic_shift,
    relative_position_index,
    reverse_cyclic_shift,
    shifted_window_mask,
    window_and_shift,
    window_partition,
    window_reverse,
)

__all__ = ["SwinStageConfig", "SwinConfig", "WindowAttention", "SwinBlock", "PatchMerging", "SwinStage", "Swin"]


@dataclass(frozen=True)
class SwinStageConfig:
    """One stage of a Swin Transformer (Sec. 3.3; Swin-T: widths 96-192-384-768, depths 2-2-6-2, heads 3-6-12-24).

    ``embed_dim`` is C_i, twice the previous stage's (patch merging doubles the width);
    ``window_size`` is M before it is fitted to the stage's map (:func:`window_and_shift`).
    """

    embed_dim: int
    depth: int
    num_heads: int
    window_size: int = 7
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0


@dataclass(frozen=True)
class SwinConfig:
    """Hyper-parameters of a Swin Transformer: the patch embedding, the stages, the classifier.

    ``image_size`` is the size the model is built for: it fixes where a window shrinks to a small
    map (:func:`window_and_shift`); other sizes work when the windows divide every map.
    ``drop_path_rate`` is the stochastic depth of the last block, growing linearly from 0 over
    all blocks. ``num_classes = 0`` builds the model without a classifier (it returns the pooled features).
    """

    stages: tuple[SwinStageConfig, ...]
    image_size: int = 224
    patch_size: int = 4
    in_chans: int = 3
    num_classes: int = 1000
    drop_path_rate: float = 0.0
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        # Accept stages given as dicts (for example read back from config.json).
        stages = tuple(s if isinstance(s, SwinStageConfig) else SwinStageConfig(**s) for s in self.stages)
        object.__setattr__(self, "stages", stages)
        widths = [s.embed_dim for s in stages]
        if any(b != 2 * a for a, b in pairwise(widths)):
            raise ValueError(f"patch merging doubles the width from stage to stage; got widths {widths}")
        if self.image_size % (self.patch_size * 2 ** (len(stages) - 1)):
            raise ValueError(
                f"image_size {self.image_size} must be divisible by patch_size * 2**(stages - 1) = "
                f"{self.patch_size * 2 ** (len(stages) - 1)}"
            )


class WindowAttention(nn.Module):
    """Window multi-head self-attention, W-MSA (shift 0) or SW-MSA (shift s > 0) (Sec. 3.2).

    The map is rolled by s (SW-MSA), cut into M x M windows, and each window attends
    within itself: Attention(Q, K, V) = softmax(Q K^T / sqrt(d) + B) V with the relative
    position bias B read from a learned table B_hat of shape ((2M-1)^2, h) (Eq. 4), plus the
    mask of :func:`shifted_window_mask` in SW-MSA; then windows are put back and the roll undone.
    W^Q, W^K, W^V are ``qkv.q``, ``.k``, ``.v``; W^O is ``mha.proj``.

    Args:
        stage: the :class:`SwinStageConfig`; its ``window_size`` is the M used (already fitted to the map).
        shift_size: s; 0 for W-MSA.
        resolution: the (H, W) the model is built for; its SW-MSA mask is computed once.

    Shapes:
        tokens (B, H*W, C) and the map size (H, W) -> (B, H*W, C); inside, windows (B * H/M * W/M, M*M, C).

    Raises:
        ValueError: if s is not in [0, M), the tokens do not fill an H x W map, or M does not divide H or W.
    """

    def __init__(self, stage: SwinStageConfig, *, shift_size: int = 0, resolution: tuple[int, int] | None = None) -> None:
        super().__init__()
        m, dim = stage.window_size, stage.embed_dim
        if not 0 <= shift_size < m:
            raise ValueError(f"shift_size must be in [0, window_size={m}), got {shift_size}")
        self.window_size = m
        self.shift_size = shift_size
        self.qkv = LinearQKV(dim=dim, bias=stage.qkv_bias)
        self.mha = MultiHeadAttention(embed_dim=dim, num_heads=stage.num_heads, attn_drop=stage.attn_drop_rate,
                                      proj_drop=stage.drop_rate)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * m - 1) ** 2, stage.num_heads))
        self.register_buffer("relative_position_index", relative_position_index(m), persistent=False)
        self.resolution = tuple(resolution) if resolution is not None else None
        mask = shifted_window_mask(*resolution, m, shift_size) if shift_size and resolution else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def relative_position_bias(self) -> torch.Tensor:
        """B of Eq. 4: the table read at every token pair, shape (h, M*M, M*M)."""
        return rearrange(self.relative_position_bias_table[self.relative_position_index], "n m h -> h n m")

    def forward(self, tokens: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        (h, w), m, s = size, self.window_size, self.shift_size
        if tokens.shape[1] != h * w:
            raise ValueError(f"expected the {h}x{w} = {h * w} tokens of the map, got {tokens.shape[1]} (shape {tuple(tokens.shape)})")
        x = rearrange(tokens, "b (h w) c -> b h w c", h=h, w=w)
        if s:
            x = cyclic_shift(x, s)
        windows = rearrange(window_partition(x, m), "bw m1 m2 c -> bw (m1 m2) c")
        bias = self.relative_position_bias()  # (h, M*M, M*M), shared by every window
        if s:
            mask = self.attn_mask if (h, w) == self.resolution else shifted_window_mask(h, w, m, s).to(x.device)
            bias = repeat(bias[None] + mask[:, None], "nw h n m -> (b nw) h n m", b=x.shape[0])
        out = self.mha(*self.qkv(windows), attn_bias=bias)
        x = window_reverse(rearrange(out, "bw (m1 m2) c -> bw m1 m2 c", m1=m), m, h, w)
        return rearrange(reverse_cyclic_shift(x, s) if s else x, "b h w c -> b (h w) c")


class SwinBlock(TransformerBlock):
    """A Swin Transformer block (Sec. 3.2, Eq. 3): pre-norm window attention and MLP.

    z' = (S)W-MSA(LN(z)) + z, then z'' = MLP(LN(z')) + z'. Blocks alternate shift 0
    (W-MSA) and shift M/2 (SW-MSA).

    Args:
        stage: the :class:`SwinStageConfig`, its window fitted to the map (see :func:`window_and_shift`).
        shift_size: s.
        resolution: (H, W) the model is built for.
        drop_path: stochastic-depth probability.
        eps: LayerNorm epsilon.

    Shapes:
        tokens (B, H*W, C) and (H, W) -> (B, H*W, C).
    """

    def __init__(self, stage: SwinStageConfig, *, shift_size: int = 0, resolution: tuple[int, int] | None = None,
                 drop_path: float = 0.0, eps: float = 1e-5) -> None:
        super().__init__(WindowAttention(stage, shift_size=shift_size, resolution=resolution), dim=stage.embed_dim,
                         mlp_ratio=stage.mlp_ratio, drop=stage.drop_rate, drop_path=drop_path, eps=eps)


class PatchMerging(nn.Module):
    """Patch merging (Sec. 3.1): halve the token map, double the width.

    The features of each 2x2 group of neighbouring tokens are concatenated, in the order
    of the reference code: (row 0, col 0), (row 1, col 0), (row 0, col 1), (row 1, col 1);
    then LayerNorm(4C) and a linear map 4C -> 2C without bias.

    Args:
        dim: C.
        eps: LayerNorm epsilon.

    Shapes:
        (B, H, W, C) -> (B, H/2, W/2, 2C).

    Raises:
        ValueError: if H or W is odd.
    """

    def __init__(self, *, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=eps)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w, _ = x.shape
        if h % 2 or w % 2:
            raise ValueError(f"patch merging needs an even token map, got {h}x{w}")
        # (dw dh c): the column offset varies slowest, so the order is (0,0), (1,0), (0,1), (1,1) as (row, col)
        x = rearrange(x, "b (h dh) (w dw) c -> b h w (dw dh c)", dh=2, dw=2)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """One Swin stage: patch merging (except in stage 1), then ``depth`` blocks alternating W-MSA and SW-MSA.

    Args:
        stage: its :class:`SwinStageConfig`.
        resolution: (H_i, W_i), the stage's token map for the size the model is built for.
        downsample: whether the stage starts with a :class:`PatchMerging` (from C_i / 2 channels).
        drop_paths: one stochastic-depth probability per block.
        eps: LayerNorm epsilon.

    Shapes:
        map (B, C_i/2, 2H_i, 2W_i) with merging, or (B, C_i, H_i, W_i) without -> map (B, C_i, H_i, W_i)
        and ``None`` (Swin has no [CLS] token).
    """

    def __init__(
        self, stage: SwinStageConfig, *, resolution: tuple[int, int], downsample: bool, drop_paths: list[float], eps: float = 1e-5
    ) -> None:
        super().__init__()
        self.downsample = PatchMerging(dim=stage.embed_dim // 2, eps=eps) if downsample else None
        self.window_size, shift = window_and_shift(resolution, stage.window_size, stage.window_size // 2)
        fitted = replace(stage, window_size=self.window_size)
        self.blocks = nn.ModuleList(
            SwinBlock(fitted, shift_size=shift if j % 2 else 0, resolution=resolution, drop_path=drop_paths[j], eps=eps)
            for j in range(stage.depth)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        x = rearrange(x, "b c h w -> b h w c")
        if self.downsample is not None:
            x = self.downsample(x)
        _, h, w, _ = x.shape
        tokens = rearrange(x, "b h w c -> b (h w) c")
        for block in self.blocks:
            tokens = block(tokens, (h, w))
        return rearrange(tokens, "b (h w) c -> b c h w", h=h, w=w), None


class Swin(Classifier):
    """Swin Transformer classifier (Liu et al. 2021, Fig. 3a).

    Patch embedding (conv P x P, stride P, then LayerNorm), stages, final LayerNorm,
    average pooling over the tokens, linear head.

    Args:
        config: a :class:`SwinConfig`.

    Shapes:
        images (B, C, H, W) -> logits (B, num_classes). ``forward_features`` returns
        :class:`~cvt_edu.layers.Features`: the map of every stage, (B, C_i, H_i, W_i), the last one
        after the final LayerNorm, and no [CLS] token; the head averages the last map.

    Raises:
        ValueError: on a wrong channel count; on a size the patch does not divide; or when a
            stage's token map is odd before merging or not divisible by its window (no padding
            here), naming H, W, the stage, its map and the window size.
        TypeError: for images that are not float tensors of the weights' dtype (uint8 pixels, float64), see
            :func:`~cvt_edu.patching.check_image`.
    """

    def __init__(self, config: SwinConfig) -> None:
        super().__init__()
        c = self.config = config
        self.patch_embed = ConvTokenEmbedding(
            in_chans=c.in_chans,
            embed_dim=c.stages[0].embed_dim,
            kernel_size=c.patch_size,
            stride=c.patch_size,
            padding=0,
            eps=c.layer_norm_eps,
        )
        self.pos_drop = nn.Dropout(c.stages[0].drop_rate)
        rates = torch.linspace(0, c.drop_path_rate, sum(s.depth for s in c.stages)).tolist()
        side, first = c.image_size // c.patch_size, 0
        self.stages = nn.ModuleList()
        for i, stage in enumerate(c.stages):
            self.stages.append(
                SwinStage(stage, resolution=(side >> i, side >> i), downsample=i > 0, drop_paths=rates[first : first + stage.depth],
                          eps=c.layer_norm_eps)
            )
            first += stage.depth
        self.norm = nn.LayerNorm(c.stages[-1].embed_dim, eps=c.layer_norm_eps)
        self.head = classifier_head(c.stages[-1].embed_dim, c.num_classes)
        self.apply(init_weights)
        for stage in self.stages:
            for block in stage.blocks:
                nn.init.trunc_normal_(block.attn.relative_position_bias_table, std=0.02)

    def size_multiple(self) -> int:
        """The image side must be a multiple of this: lcm over stages i of P * 2^i * M_i."""
        p = self.config.patch_size
        return math.lcm(*(p * 2**i * stage.window_size for i, stage in enumerate(self.stages)))

    def check_size(self, height: int, width: int) -> None:
        """Raise a ``ValueError`` if images of ``height`` x ``width`` do not fit the windows of every stage."""
        h, w = height // self.config.patch_size, width // self.config.patch_size
        for i, stage in enumerate(self.stages):
            if i > 0:
                if h % 2 or w % 2:
                    raise ValueError(
                        f"image size {height}x{width} gives an odd {h}x{w} token map before the patch merging of stage {i + 1}; "
                        f"use sides that are multiples of {self.size_multiple()} (this Swin does not pad)"
                    )
                h, w = h // 2, w // 2
            m = stage.window_size
            if h % m or w % m:
                raise ValueError(
                    f"image size {height}x{width} gives a {h}x{w} token map in stage {i + 1}, which the window size {m} "
                    f"does not divide; use sides that are multiples of {self.size_multiple()} (this Swin does not pad)"
                )

    def forward_features(self, images: torch.Tensor) -> Features:
        c = self.config
        check_image(images, c.in_chans, c.patch_size, dtype=self.patch_embed.proj.weight.dtype)
        self.check_size(*images.shape[-2:])
        tokens, (h, w) = self.patch_embed(images)
        maps, _ = run_stages(self.stages, rearrange(self.pos_drop(tokens), "b (h w) c -> b c h w", h=h, w=w))
        last = self.norm(rearrange(maps[-1], "b c h w -> b h w c"))  # LayerNorm over the channels of every token
        return Features(maps=[*maps[:-1], rearrange(last, "b h w c -> b c h w")])
