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

Token maps are kept channels-last, (B, H, W, C), inside the stages.

Sizes: this implementation does not pad. The image side must be a multiple of the patch
size, every stage's token map a multiple of its window, and every merged map even;
:meth:`Swin.forward_features` raises a ``ValueError`` naming H, W, the stage and the window
otherwise. (The reference code pads the maps with zeros instead.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange, repeat
from torch import nn

from .attention import MultiHeadAttention
from .layers import DropPath, Mlp, init_weights
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

__all__ = [
    "WindowAttention",
    "SwinBlock",
    "PatchMerging",
    "SwinStage",
    "SwinConfig",
    "Swin",
]

class WindowAttention(nn.Module):
    """Window multi-head self-attention, W-MSA (shift 0) or SW-MSA (shift s > 0) (Sec. 3.2).

    The map is rolled by s (SW-MSA), cut into M x M windows, and each window attends
    within itself: Attention(Q, K, V) = softmax(Q K^T / sqrt(d) + B) V with the relative
    position bias B read from a learned table B_hat of shape ((2M-1)^2, h) (Eq. 4), plus the
    mask of :func:`shifted_window_mask` in SW-MSA; then windows are put back and the roll undone.

    Args:
        dim: C.
        num_heads: h.
        window_size: M.
        shift_size: s; 0 for W-MSA.
        resolution: the (H, W) the model is built for; its SW-MSA mask is computed once.
        qkv_bias: bias in W^Q, W^K, W^V.
        attn_drop: dropout on the attention weights.
        proj_drop: dropout after the output projection.

    Shapes:
        (B, H, W, C) -> (B, H, W, C); inside, windows (B * H/M * W/M, M*M, C).

    Raises:
        ValueError: if M does not divide H or W.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        window_size: int,
        shift_size: int = 0,
        resolution: tuple[int, int] | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError(f"shift_size must be in [0, window_size={window_size}), got {shift_size}")
        self.window_size = window_size
        self.shift_size = shift_size
        self.qkv = LinearQKV(dim=dim, bias=qkv_bias)
        self.mha = MultiHeadAttention(embed_dim=dim, num_heads=num_heads, attn_drop=attn_drop, proj_drop=proj_drop)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=False)
        self.resolution = tuple(resolution) if resolution is not None else None
        mask = shifted_window_mask(*resolution, window_size, shift_size) if shift_size and resolution else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def relative_position_bias(self) -> torch.Tensor:
        """B of Eq. 4: the table read at every token pair, shape (h, M*M, M*M)."""
        return rearrange(self.relative_position_bias_table[self.relative_position_index], "n m h -> h n m")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        m, s = self.window_size, self.shift_size
        if s:
            x = cyclic_shift(x, s)
        windows = rearrange(window_partition(x, m), "bw m1 m2 c -> bw (m1 m2) c")
        bias = self.relative_position_bias()  # (h, M*M, M*M), shared by every window
        if s:
            mask = self.attn_mask if (h, w) == self.resolution else shifted_window_mask(h, w, m, s).to(x.device)
            bias = repeat(bias[None] + mask[:, None], "nw h n m -> (b nw) h n m", b=b)
        out = self.mha(*self.qkv(windows), attn_bias=bias)
        x = window_reverse(rearrange(out, "bw (m1 m2) c -> bw m1 m2 c", m1=m), m, h, w)
        return reverse_cyclic_shift(x, s) if s else x


class SwinBlock(nn.Module):
    """A Swin Transformer block (Sec. 3.2, Eq. 3): pre-norm window attention and MLP.

    z' = (S)W-MSA(LN(z)) + z, then z'' = MLP(LN(z')) + z'. Blocks alternate shift 0
    (W-MSA) and shift M/2 (SW-MSA).

    Args:
        dim: C.
        num_heads: h.
        window_size: M (already fitted to the map, see :func:`window_and_shift`).
        shift_size: s.
        resolution: (H, W) the model is built for.
        mlp_ratio: MLP hidden width over C.
        qkv_bias: bias in W^Q, W^K, W^V.
        drop: dropout after attention and in the MLP.
        attn_drop: dropout on the attention weights.
        drop_path: stochastic-depth probability.
        eps: LayerNorm epsilon.

    Shapes:
        (B, H, W, C) -> (B, H, W, C).
    """

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        window_size: int,
        shift_size: int = 0,
        resolution: tuple[int, int] | None = None,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = WindowAttention(
            dim=dim,
            num_heads=num_heads,
            window_size=window_size,
            shift_size=shift_size,
            resolution=resolution,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=drop,
        )
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim=dim, hidden_dim=int(dim * mlp_ratio), drop=drop)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


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
        dim: C_i, the width of the stage (twice the width of the incoming map when it merges).
        depth: number of blocks.
        num_heads: h.
        window_size: M, before fitting to the map.
        resolution: (H_i, W_i), the stage's token map for the size the model is built for.
        downsample: whether the stage starts with a :class:`PatchMerging`.
        drop_paths: one stochastic-depth probability per block.
        mlp_ratio, qkv_bias, drop, attn_drop, eps: as in :class:`SwinBlock`.

    Shapes:
        (B, 2H_i, 2W_i, C_i/2) with merging, or (B, H_i, W_i, C_i) without -> (B, H_i, W_i, C_i).
    """

    def __init__(
        self,
        *,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        resolution: tuple[int, int],
        downsample: bool,
        drop_paths: list[float],
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.downsample = PatchMerging(dim=dim // 2, eps=eps) if downsample else None
        self.window_size, shift = window_and_shift(resolution, window_size, window_size // 2)
        self.blocks = nn.ModuleList(
            SwinBlock(
                dim=dim,
                num_heads=num_heads,
                window_size=self.window_size,
                shift_size=shift if j % 2 else 0,
                resolution=resolution,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                drop=drop,
                attn_drop=attn_drop,
                drop_path=drop_paths[j],
                eps=eps,
            )
            for j in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        for block in self.blocks:
            x = block(x)
        return x


def _as_tuple(values) -> tuple:
    return tuple(values) if isinstance(values, (list, tuple)) else values


@dataclass(frozen=True)
class SwinConfig:
    """Hyper-parameters of a Swin Transformer (Sec. 3.3; defaults: Swin-T).

    Stage i has width ``embed_dim * 2**i``, ``depths[i]`` blocks and ``num_heads[i]`` heads.
    ``image_size`` is the size the model is built for: it fixes where a window shrinks to
    a small map (:func:`window_and_shift`); other sizes work when the windows divide every map.
    """

    image_size: int = 224
    patch_size: int = 4
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        # Accept lists (for example read back from config.json).
        object.__setattr__(self, "depths", _as_tuple(self.depths))
        object.__setattr__(self, "num_heads", _as_tuple(self.num_heads))
        if len(self.depths) != len(self.num_heads):
            raise ValueError(f"depths {self.depths} and num_heads {self.num_heads} must have one entry per stage")
        if self.image_size % (self.patch_size * 2 ** (len(self.depths) - 1)):
            raise ValueError(
                f"image_size {self.image_size} must be divisible by patch_size * 2**(stages - 1) = "
                f"{self.patch_size * 2 ** (len(self.depths) - 1)}"
            )


class Swin(nn.Module):
    """Swin Transformer classifier (Liu et al. 2021, Fig. 3a).

    Patch embedding (conv P x P, stride P, then LayerNorm), stages, final LayerNorm,
    average pooling over the tokens, linear head.

    Args:
        config: a :class:`SwinConfig`.

    Shapes:
        images (B, C, H, W) -> logits (B, num_classes). ``forward_stages`` returns the map
        of every stage, (B, C_i, H_i, W_i); ``forward_features`` the normalised last map
        (B, H/(P 2^(S-1)), W/(P 2^(S-1)), C_{S-1}), channels last.

    Raises:
        ValueError: on a wrong channel count; on a size the patch does not divide; or when a
            stage's token map is odd before merging or not divisible by its window (no padding
            here), naming H, W, the stage, its map and the window size.
    """

    def __init__(self, config: SwinConfig) -> None:
        super().__init__()
        c = self.config = config
        self.patch_embed = ConvTokenEmbedding(
            in_chans=c.in_chans,
            embed_dim=c.embed_dim,
            kernel_size=c.patch_size,
            stride=c.patch_size,
            padding=0,
            eps=c.layer_norm_eps,
        )
        self.pos_drop = nn.Dropout(c.drop_rate)
        rates = torch.linspace(0, c.drop_path_rate, sum(c.depths)).tolist()
        side = c.image_size // c.patch_size
        self.stages = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(c.depths, c.num_heads)):
            first = sum(c.depths[:i])
            self.stages.append(
                SwinStage(
                    dim=c.embed_dim * 2**i,
                    depth=depth,
                    num_heads=heads,
                    window_size=c.window_size,
                    resolution=(side >> i, side >> i),
                    downsample=i > 0,
                    drop_paths=rates[first : first + depth],
                    mlp_ratio=c.mlp_ratio,
                    qkv_bias=c.qkv_bias,
                    drop=c.drop_rate,
                    attn_drop=c.attn_drop_rate,
                    eps=c.layer_norm_eps,
                )
            )
        self.num_features = c.embed_dim * 2 ** (len(c.depths) - 1)
        self.norm = nn.LayerNorm(self.num_features, eps=c.layer_norm_eps)
        self.head = nn.Linear(self.num_features, c.num_classes)
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

    def _stage_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        c = self.config
        check_image(images, c.in_chans, c.patch_size)
        self.check_size(*images.shape[-2:])
        tokens, (h, w) = self.patch_embed(images)
        x = self.pos_drop(rearrange(tokens, "b (h w) c -> b h w c", h=h, w=w))
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def forward_stages(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The token map after every stage, channels first: (B, C_i, H_i, W_i)."""
        return [rearrange(m, "b h w c -> b c h w") for m in self._stage_maps(images)]

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.norm(self._stage_maps(images)[-1])

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features.mean(dim=(1, 2)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(images))
