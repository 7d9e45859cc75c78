"""From images to tokens: patches, the linear patch embedding (ViT) and the
convolutional token embedding (CvT).

ViT (Dosovitskiy et al., ICLR 2021, Sec. 3.1, Eq. 1) cuts an image into
non-overlapping P x P patches and projects each flattened patch linearly.
CvT (Wu et al., ICCV 2021, Sec. 3.1) replaces this with an overlapping strided
convolution followed by LayerNorm, so that every stage sees a 2-D token map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import nn

__all__ = [
    "check_image",
    "num_patches",
    "patchify",
    "unpatchify",
    "conv_output_size",
    "token_window",
    "compose_embeddings",
    "PatchEmbedding",
    "ConvTokenEmbedding",
]


_AUTOCAST_DTYPES = (torch.float16, torch.bfloat16)


def check_image(
    x: torch.Tensor, in_chans: int, multiple_of: int = 1, what: str = "patch size", *, dtype: torch.dtype | None = None
) -> None:
    """Check that ``x`` is a batch of images a model can read.

    A model calls it first in ``forward_features``, so a wrong input is one clear error instead of a
    traceback from inside a convolution. It compares a dtype, a rank and a size: nothing measurable,
    and ``torch.compile`` turns it into guards.

    Args:
        x: images, shape (B, C, H, W).
        in_chans: the channel count C the model expects.
        multiple_of: H and W must be multiples of this (for example the patch size P).
        what: the name of ``multiple_of`` used in the error message.
        dtype: the dtype of the model's weights; when given, ``x`` must have it, or be float16 or
            bfloat16 under ``torch.autocast`` (which computes in those; under autocast a float32 input
            is the weights' dtype anyway).

    Raises:
        TypeError: if ``dtype`` is given and ``x`` is not a tensor, holds integers (uint8 pixels: the
            message says to normalise them first, with :func:`cvt_edu.train.data.eval_transform`), or
            has another floating dtype (float64 into float32 weights).
        ValueError: if ``x`` is not 4-D, has another channel count, or a side that
            ``multiple_of`` does not divide; the message names what was expected and what came.
    """
    if dtype is not None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a tensor of images (B, {in_chans}, H, W), got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(
                f"expected a float tensor of normalised images (B, {in_chans}, H, W), got {x.dtype} of shape {tuple(x.shape)}; "
                f"pixels must be converted and normalised first, as evaluation does with cvt_edu.train.data.eval_transform()"
            )
        if x.dtype != dtype and not (x.dtype in _AUTOCAST_DTYPES and torch.is_autocast_enabled(x.device.type)):
            raise TypeError(
                f"expected a {dtype} tensor of images (B, {in_chans}, H, W), the dtype of the model's weights "
                f"(or float16/bfloat16 under torch.autocast), got {x.dtype} of shape {tuple(x.shape)}; use images.to({dtype})"
            )
    if x.ndim != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got a tensor of shape {tuple(x.shape)}")
    if x.shape[1] != in_chans:
        raise ValueError(f"expected {in_chans} channels, got {x.shape[1]} (input shape {tuple(x.shape)})")
    h, w = x.shape[-2:]
    if h % multiple_of or w % multiple_of:
        raise ValueError(f"image size {h}x{w} is not divisible by the {what} {multiple_of}")


def num_patches(image_size: int | tuple[int, int], patch_size: int) -> int:
    """N = H*W / P^2, the number of patches (tokens) of an image (ViT, Sec. 3.1).

    Args:
        image_size: H, or (H, W), in pixels.
        patch_size: P, the patch side in pixels.

    Returns:
        N, the sequence length before the [CLS] token is added.

    Raises:
        ValueError: if P is not positive or does not divide H or W.
    """
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    if patch_size <= 0 or h % patch_size or w % patch_size:
        raise ValueError(f"image size {h}x{w} is not divisible by the patch size {patch_size}")
    return (h // patch_size) * (w // patch_size)


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into flattened non-overlapping patches (ViT, Sec. 3.1).

    Args:
        images: shape (B, C, H, W); H and W must be multiples of ``patch_size``.
        patch_size: P, the patch side in pixels.

    Returns:
        Patches, shape (B, N, P*P*C) with N = H*W / P^2, in row-major order; each
        patch is flattened as (P, P, C), the order used by ``unpatchify``.

    Raises:
        ValueError: if P does not divide H or W.
    """
    check_image(images, images.shape[1] if images.ndim == 4 else -1, patch_size)
    return rearrange(images, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=patch_size, p2=patch_size)


def unpatchify(patches: torch.Tensor, patch_size: int, height: int, width: int) -> torch.Tensor:
    """Put flattened patches back into images; the inverse of :func:`patchify`.

    Args:
        patches: shape (B, N, P*P*C) with N = (H/P) * (W/P).
        patch_size: P, in pixels.
        height, width: H and W of the image, in pixels.

    Returns:
        Images, shape (B, C, H, W).

    Raises:
        ValueError: if N or the last dimension do not fit P, H and W.
    """
    b, n, d = patches.shape
    if height % patch_size or width % patch_size or n != (height // patch_size) * (width // patch_size):
        raise ValueError(f"{n} patches of side {patch_size} do not tile a {height}x{width} image")
    if d % (patch_size * patch_size):
        raise ValueError(f"patch vectors of length {d} are not P*P*C for P={patch_size}")
    return rearrange(patches, "b (h w) (p1 p2 c) -> b c (h p1) (w p2)", h=height // patch_size, p1=patch_size, p2=patch_size)


def conv_output_size(size: int, kernel_size: int, stride: int, padding: int) -> int:
    """Side of the token map after a convolutional token embedding (CvT, Sec. 3.1, Eq. 1).

    H_i = floor((H_{i-1} + 2p - s) / (s - o)) + 1, with kernel s, stride s - o, padding p.

    Args:
        size: H_{i-1}, the input side in pixels or tokens.
        kernel_size, stride, padding: s, s - o and p.

    Returns:
        H_i, the output side in tokens.

    Raises:
        ValueError: if the kernel does not fit in the padded input.
    """
    if size + 2 * padding < kernel_size:
        raise ValueError(f"input side {size} with padding {padding} is smaller than the kernel {kernel_size}")
    return (size + 2 * padding - kernel_size) // stride + 1


class PatchEmbedding(nn.Module):
    """Linear patch embedding of ViT (Dosovitskiy et al. 2021, Eq. 1): x_p^i E.

    Implemented as a convolution with kernel = stride = P, which is the same linear
    map applied to every flattened patch.

    Args:
        patch_size: P, in pixels.
        in_chans: C, input channels.
        embed_dim: D, the token width.

    Shapes:
        input (B, C, H, W) -> output (B, N, D), N = H*W / P^2.

    Raises:
        ValueError: on a wrong channel count or a size P does not divide.
    """

    def __init__(self, *, patch_size: int, in_chans: int = 3, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_image(images, self.in_chans, self.patch_size)
        return rearrange(self.proj(images), "b d h w -> b (h w) d")


class ConvTokenEmbedding(nn.Module):
    """Convolutional token embedding of CvT (Wu et al. 2021, Sec. 3.1).

    An overlapping strided convolution (kernel s, stride s - o, padding p) maps a
    token map (or the image) to a new token map, then LayerNorm normalises every token.

    Args:
        in_chans: channels of the input map.
        embed_dim: C_i, the width of the new tokens.
        kernel_size, stride, padding: s, s - o and p.
        eps: LayerNorm epsilon.

    Shapes:
        input (B, C_{i-1}, H_{i-1}, W_{i-1}) -> output (B, H_i*W_i, C_i) and the
        token-map size (H_i, W_i) given by :func:`conv_output_size`.

    Raises:
        ValueError: on a wrong channel count, or a map smaller than the kernel.
    """

    def __init__(self, *, in_chans: int, embed_dim: int, kernel_size: int, stride: int, padding: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=kernel_size, stride=stride, padding=padding)
        self.norm = nn.LayerNorm(embed_dim, eps=eps)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        check_image(x, self.in_chans)
        for side in x.shape[-2:]:
            conv_output_size(side, self.proj.kernel_size[0], self.proj.stride[0], self.proj.padding[0])
        x = self.proj(x)
        size = (x.shape[2], x.shape[3])
        return self.norm(rearrange(x, "b c h w -> b (h w) c")), size


def token_window(index: int, kernel_size: int, stride: int, padding: int) -> tuple[int, int]:
    """The pixels, along one axis, that the embedding convolution reads for token ``index``.

    Token i reads input positions [i * stride - padding, i * stride - padding + kernel_size);
    positions below 0 or past the image are zero padding.

    Args:
        index: i, the token's row or column in the token map (0-based).
        kernel_size, stride, padding: s, s - o and p of the convolution (CvT, Sec. 3.1).

    Returns:
        (start, stop), a half-open range of input positions; it may reach into the padding.

    Raises:
        ValueError: for a negative index or padding, or a kernel or stride below 1.
    """
    if index < 0 or padding < 0 or kernel_size < 1 or stride < 1:
        raise ValueError(
            f"need index >= 0, kernel_size >= 1, stride >= 1, padding >= 0; got index={index}, "
            f"kernel_size={kernel_size}, stride={stride}, padding={padding}"
        )
    start = index * stride - padding
    return start, start + kernel_size


def compose_embeddings(layers: Sequence[tuple[int, int, int]]) -> tuple[int, int, int]:
    """One (kernel, stride, padding) equivalent, in pixels, to a stack of convolutions.

    For convolutions (k_1, s_1, p_1), (k_2, s_2, p_2), ... applied one after the other, a token of
    the last map reads a window of k = k_1 + sum_i (k_i - 1) s_1 ... s_{i-1} pixels, neighbouring
    tokens are s = s_1 s_2 ... pixels apart, and the window starts p = p_1 + sum_i p_i s_1 ... s_{i-1}
    pixels before i * s (so :func:`token_window` applies to the result).

    Args:
        layers: (kernel_size, stride, padding) of each convolution, first one first.

    Returns:
        (kernel_size, stride, padding) in input pixels.

    Raises:
        ValueError: for an empty list.
    """
    if not layers:
        raise ValueError("need at least one (kernel_size, stride, padding) layer")
    k, s, p = layers[0]
    for k_i, s_i, p_i in layers[1:]:
        k, p, s = k + (k_i - 1) * s, p + p_i * s, s * s_i
    return k, s, p
