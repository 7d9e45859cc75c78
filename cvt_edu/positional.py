"""Positional embeddings: telling a model that reads a set of tokens where each patch sits.

ViT adds a learned vector E_pos per position to the patch embeddings (Dosovitskiy et al. 2021,
Eq. 1); Sec. 4.5 and Fig. 7 (center) show that after training on much data the learned vectors
of nearby patches are similar, in a 2-D pattern of rows and columns. A fixed alternative is the
sine-cosine embedding of Vaswani et al. (2017, Sec. 3.5), in its 2-D form (one half of the
channels codes the row, the other the column) as used by MAE (He et al. 2022). PVT learns one E_pos
per stage (Wang et al. 2021, Sec. 3.1); CvT and Swin have none (their convolutions and relative
position bias know where a token is).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

__all__ = ["learned_pos_embed", "check_learned_size", "sincos_pos_embed_2d", "pos_embed_similarity"]


def learned_pos_embed(grid_size: int | tuple[int, int], embed_dim: int, *, cls_token: bool = False) -> nn.Parameter:
    """Learned positional embeddings E_pos, one D-vector per position (ViT, Eq. 1; PVT, Sec. 3.1).

    z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos, E_pos of shape (1 [+ 1], N, D), added to the tokens.
    The values start at 0: the model draws them (truncated normal, std 0.02) after its other weights.

    Args:
        grid_size: H/P, or (H/P, W/P), the token grid; N = H/P * W/P.
        embed_dim: D.
        cls_token: whether the sequence has a [CLS] token in front, which gets a position too.

    Returns:
        An ``nn.Parameter`` of zeros, shape (1, [1 +] N, D).

    Raises:
        ValueError: if the grid is empty.
    """
    gh, gw = _grid(grid_size)
    return nn.Parameter(torch.zeros(1, int(cls_token) + gh * gw, embed_dim))


def check_learned_size(images: torch.Tensor, image_size: int) -> None:
    """Refuse images of another size than the ``image_size`` x ``image_size`` learned positional embeddings know.

    Args:
        images: (B, C, H, W).
        image_size: the side the embeddings were learned for, in pixels.

    Raises:
        ValueError: if H or W differ from ``image_size``.
    """
    if images.shape[-2:] != (image_size, image_size):
        raise ValueError(
            f"expected {image_size}x{image_size} images (the positional embeddings are learned for that size), "
            f"got {images.shape[-2]}x{images.shape[-1]}"
        )


def _grid(grid_size: int | tuple[int, int]) -> tuple[int, int]:
    gh, gw = (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
    if gh <= 0 or gw <= 0:
        raise ValueError(f"grid size must be positive, got {gh}x{gw}")
    return gh, gw


def sincos_pos_embed_2d(grid_size: int | tuple[int, int], embed_dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed 2-D sine-cosine positional embeddings, one per patch of a grid (row-major order).

    Channels [0, D/2) code the row and [D/2, D) the column; each half is
    [sin(pos * w_k), cos(pos * w_k)] with w_k = temperature^(-k / (D/4)), k = 0 .. D/4 - 1.

    Args:
        grid_size: H/P, or (H/P, W/P), the token grid.
        embed_dim: D; must be divisible by 4.
        temperature: the base of the frequencies (10000 in Vaswani et al.).

    Returns:
        Tensor (H/P * W/P, D), float32.

    Raises:
        ValueError: if D is not divisible by 4 or the grid is empty.
    """
    gh, gw = _grid(grid_size)
    if embed_dim % 4:
        raise ValueError(f"embed_dim {embed_dim} must be divisible by 4 (sin and cos for rows and columns)")
    omega = temperature ** (-torch.arange(embed_dim // 4, dtype=torch.float64) / (embed_dim // 4))

    def code(positions: torch.Tensor) -> torch.Tensor:  # (n,) -> (n, D/2)
        angles = positions.double()[:, None] * omega[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    return torch.cat([code(rows.flatten()), code(cols.flatten())], dim=1).float()


def pos_embed_similarity(pos_embed: torch.Tensor, grid_size: int | tuple[int, int]) -> torch.Tensor:
    """Cosine similarity between the positional embeddings of every pair of patches.

    Args:
        pos_embed: (N, D), (1, N, D), or with the [CLS] position first, (1 + N, D) or (1, 1 + N, D),
            as ``ViT.pos_embed``; N = H/P * W/P. The [CLS] row, if present, is dropped.
        grid_size: H/P, or (H/P, W/P).

    Returns:
        Tensor (H/P, W/P, H/P, W/P): entry [i, j, k, l] is the similarity of patch (i, j) with patch (k, l).

    Raises:
        ValueError: if the number of embeddings is neither N nor 1 + N.
    """
    gh, gw = _grid(grid_size)
    e = pos_embed.detach().float()
    if e.ndim == 3 and e.shape[0] == 1:
        e = e[0]
    if e.ndim != 2:
        raise ValueError(f"expected positional embeddings (N, D) or (1, N, D), got shape {tuple(pos_embed.shape)}")
    n = gh * gw
    if e.shape[0] == n + 1:
        e = e[1:]
    elif e.shape[0] != n:
        raise ValueError(f"{e.shape[0]} embeddings do not fit a {gh}x{gw} grid ({n} patches, or {n + 1} with [CLS])")
    e = F.normalize(e, dim=1)
    return rearrange(e @ e.T, "(i j) (k l) -> i j k l", i=gh, k=gh)


