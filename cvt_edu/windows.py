"""Window geometry of Swin (Liu et al., ICCV 2021, Sec. 3.2): pure functions, no learned weights.

W-MSA cuts the token map into non-overlapping M x M windows (:func:`window_partition`,
:func:`window_reverse`); SW-MSA displaces the grid by (M/2, M/2), computed as a cyclic shift of the
map (:func:`cyclic_shift`) plus a mask that keeps tokens of different regions apart
(:func:`shifted_window_labels`, :func:`shifted_window_mask`); the relative position bias reads a
table of (2M-1)^2 entries through :func:`relative_position_index` (Eq. 4).
"""

from __future__ import annotations

import torch
from einops import rearrange

__all__ = [
    "MASK_VALUE",
    "window_partition",
    "window_reverse",
    "cyclic_shift",
    "reverse_cyclic_shift",
    "shifted_window_labels",
    "shifted_window_mask",
    "relative_position_index",
    "window_and_shift",
]

MASK_VALUE = -100.0  # what the reference adds to the scores of token pairs from different regions


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """Cut a token map into non-overlapping square windows (Swin, Liu et al. 2021, Sec. 3.2).

    Args:
        x: token map, shape (B, H, W, C).
        window_size: M, the window side in tokens; must divide H and W.

    Returns:
        Windows, shape (B * H/M * W/M, M, M, C): for each image, its windows in row-major order.

    Raises:
        ValueError: if M does not divide H or W, naming H, W and M.
    """
    _, h, w, _ = x.shape
    if h % window_size or w % window_size:
        raise ValueError(
            f"a {h}x{w} token map cannot be cut into windows of size {window_size}: {window_size} must divide H and W"
        )
    return rearrange(x, "b (nh m1) (nw m2) c -> (b nh nw) m1 m2 c", m1=window_size, m2=window_size)


def window_reverse(windows: torch.Tensor, window_size: int, H: int, W: int) -> torch.Tensor:
    """Put windows back into a token map; the inverse of :func:`window_partition` (Sec. 3.2).

    Args:
        windows: shape (B * H/M * W/M, M, M, C).
        window_size: M.
        H, W: size of the token map.

    Returns:
        Token map, shape (B, H, W, C).

    Raises:
        ValueError: if M does not divide H or W, or the number of windows is not a multiple of H/M * W/M.
    """
    if H % window_size or W % window_size:
        raise ValueError(
            f"a {H}x{W} token map cannot be made of windows of size {window_size}: {window_size} must divide H and W"
        )
    nh, nw = H // window_size, W // window_size
    if windows.shape[0] % (nh * nw):
        raise ValueError(f"{windows.shape[0]} windows are not a whole number of {H}x{W} maps ({nh * nw} windows each)")
    return rearrange(windows, "(b nh nw) m1 m2 c -> b (nh m1) (nw m2) c", nh=nh, nw=nw)


def cyclic_shift(x: torch.Tensor, shift_size: int) -> torch.Tensor:
    """Roll a token map up and left by ``shift_size`` tokens (Sec. 3.2, Fig. 4).

    After the roll, the regular window grid on the rolled map is the grid displaced by
    (M/2, M/2) on the original map; the rows and columns that fall off the top and left
    reappear at the bottom and right.

    Args:
        x: token map, shape (B, H, W, C).
        shift_size: s, usually M // 2.

    Returns:
        The rolled map, shape (B, H, W, C).
    """
    return torch.roll(x, shifts=(-shift_size, -shift_size), dims=(1, 2))


def reverse_cyclic_shift(x: torch.Tensor, shift_size: int) -> torch.Tensor:
    """Undo :func:`cyclic_shift`: roll down and right by ``shift_size``. Shapes (B, H, W, C) -> (B, H, W, C)."""
    return torch.roll(x, shifts=(shift_size, shift_size), dims=(1, 2))


def shifted_window_labels(h: int, w: int, window_size: int, shift_size: int) -> torch.Tensor:
    """Which shifted window each token of an h x w map belongs to (SW-MSA, Sec. 3.2, Fig. 2).

    The shifted windows are the regular M x M grid moved by (s, s): window borders at
    rows and columns s, s + M, s + 2M, ...; the tokens above or left of the first border form
    their own, smaller windows. Numbered row by row from 0.

    After :func:`cvt_edu.windows.cyclic_shift` of this label map, two tokens of one regular window
    may attend to each other exactly when their labels are equal: that is the mask of
    :func:`cvt_edu.windows.shifted_window_mask` (checked in the tests).

    Args:
        h, w: the token map.
        window_size: M.
        shift_size: s, 0 <= s < M.

    Returns:
        int64 tensor (h, w).

    Raises:
        ValueError: if s is not in [0, M).
    """
    if not 0 <= shift_size < window_size:
        raise ValueError(f"shift_size must be in [0, window_size={window_size}), got {shift_size}")
    rows = torch.div(torch.arange(h) - shift_size, window_size, rounding_mode="floor") + int(shift_size > 0)
    cols = torch.div(torch.arange(w) - shift_size, window_size, rounding_mode="floor") + int(shift_size > 0)
    return rows[:, None] * (int(cols.max()) + 1) + cols[None, :]


def shifted_window_mask(H: int, W: int, window_size: int, shift_size: int) -> torch.Tensor:
    """The additive attention mask of shifted windows (SW-MSA, Sec. 3.2, Fig. 4).

    After :func:`cyclic_shift`, a window of the last window row or column can hold tokens
    that were far apart in the image (the rolled-over border). Two tokens of a window of the
    rolled map may attend to each other exactly when they belong to the same shifted window
    of the image, i.e. when the rolled :func:`shifted_window_labels` are equal; other pairs
    get -100 (as in the reference implementation; after the softmax the weight is e^-100,
    numerically 0). On the rolled map this splits each axis into the bands [0, H - M),
    [H - M, H - s) and [H - s, H) of the paper's Fig. 4.

    Args:
        H, W: size of the token map; multiples of M.
        window_size: M.
        shift_size: s, with 0 <= s < M (s = 0 gives an all-zero mask).

    Returns:
        Mask, shape (H/M * W/M, M*M, M*M), float32, 0 where two tokens of a window may
        attend to each other and -100 where they may not; windows in the order of
        :func:`window_partition`.

    Raises:
        ValueError: if M does not divide H or W, or s is not in [0, M).
    """
    if not 0 <= shift_size < window_size:
        raise ValueError(f"shift_size must be in [0, window_size={window_size}), got {shift_size}")

    rolled = cyclic_shift(shifted_window_labels(H, W, window_size, shift_size)[None, :, :, None], shift_size)
    windows = window_partition(rolled, window_size)  # (nW, M, M, 1)
    labels = rearrange(windows, "nw m1 m2 1 -> nw (m1 m2)")
    different = labels[:, :, None] != labels[:, None, :]
    return torch.where(different, MASK_VALUE, 0.0).float()


def relative_position_index(window_size: int) -> torch.Tensor:
    """Index of the relative position of every token pair in a window (Sec. 3.2, Eq. 4).

    Token i sits at (y_i, x_i) in the M x M window (row-major). The relative offset
    (y_i - y_j, x_i - x_j) lies in [-(M-1), M-1]^2, so there are (2M-1)^2 of them; the pair
    reads row (y_i - y_j + M - 1) * (2M - 1) + (x_i - x_j + M - 1) of the bias table B_hat.

    Args:
        window_size: M.

    Returns:
        Index, shape (M*M, M*M), int64, values in [0, (2M-1)^2).
    """
    m = window_size
    ys, xs = torch.meshgrid(torch.arange(m), torch.arange(m), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[:, None] - ys[None, :] + m - 1
    dx = xs[:, None] - xs[None, :] + m - 1
    return dy * (2 * m - 1) + dx


def window_and_shift(resolution: tuple[int, int], window_size: int, shift_size: int) -> tuple[int, int]:
    """The window and shift a block really uses on a token map of size ``resolution``.

    When the map is not larger than the window (min(H, W) <= M), one window covers it:
    the window shrinks to min(H, W) and there is no shift, as in the reference code
    (Swin-T's last stage has a 7x7 map and M = 7). ``transformers`` decides on min(H, W)
    as here, timm on each axis apart; both agree on square maps.

    Args:
        resolution: (H, W) of the token map.
        window_size: M.
        shift_size: s, usually M // 2.

    Returns:
        (window_size, shift_size).
    """
    side = min(resolution)
    return (side, 0) if side <= window_size else (window_size, shift_size)


