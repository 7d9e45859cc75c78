"""Solutions of the four TPs, written from scratch with torch and einops as a student would (the package
ships none): the tests check them with cvt_edu.tp.check and grade notebooks built from their source."""

import math

import torch
import torch.nn.functional as F
from einops import rearrange


# TP1 ------------------------------------------------------------------------------------------------------------
def patchify(images, patch_size):
    return rearrange(images, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=patch_size, p2=patch_size)


def patch_embedding(images, weight, bias, cls_token, pos_embed, patch_size):
    x = patchify(images, patch_size) @ weight.T + bias
    return torch.cat([cls_token.expand(x.shape[0], -1, -1), x], dim=1) + pos_embed


def scaled_dot_product_attention(q, k, v):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return torch.softmax(scores, dim=-1) @ v


def multi_head_attention(x, qkv_weight, qkv_bias, proj_weight, proj_bias, num_heads):
    q, k, v = (x @ qkv_weight.T + qkv_bias).chunk(3, dim=-1)
    q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=num_heads) for t in (q, k, v))
    out = rearrange(scaled_dot_product_attention(q, k, v), "b h n d -> b n (h d)")
    return out @ proj_weight.T + proj_bias


def encoder_block(x, params, num_heads):
    p = params
    d = x.shape[-1]
    y = F.layer_norm(x, (d,), p["norm1.weight"], p["norm1.bias"], eps=1e-6)
    x = x + multi_head_attention(y, p["qkv.weight"], p["qkv.bias"], p["proj.weight"], p["proj.bias"], num_heads)
    y = F.layer_norm(x, (d,), p["norm2.weight"], p["norm2.bias"], eps=1e-6)
    return x + F.gelu(y @ p["fc1.weight"].T + p["fc1.bias"]) @ p["fc2.weight"].T + p["fc2.bias"]


# TP2 ------------------------------------------------------------------------------------------------------------
def token_map_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def conv_token_embedding(images, weight, bias, stride, padding, norm_weight, norm_bias):
    x = F.conv2d(images, weight, bias, stride=stride, padding=padding)
    size = (x.shape[2], x.shape[3])
    tokens = rearrange(x, "b d h w -> b (h w) d")
    return F.layer_norm(tokens, (tokens.shape[-1],), norm_weight, norm_bias, eps=1e-5), size


def _dw_bn(tokens, height, width, dw_weight, bn_weight, bn_bias, bn_mean, bn_var, stride):
    x = rearrange(tokens, "b (h w) d -> b d h w", h=height, w=width)
    x = F.conv2d(x, dw_weight, stride=stride, padding=1, groups=x.shape[1])
    x = F.batch_norm(x, bn_mean, bn_var, bn_weight, bn_bias, training=False, eps=1e-5)
    return rearrange(x, "b d h w -> b (h w) d")


def conv_projection(tokens, height, width, dw_weight, bn_weight, bn_bias, bn_mean, bn_var, pw_weight, stride):
    return _dw_bn(tokens, height, width, dw_weight, bn_weight, bn_bias, bn_mean, bn_var, stride) @ pw_weight.T


def conv_projection_with_cls(tokens, height, width, dw_weight, bn_weight, bn_bias, bn_mean, bn_var, pw_weight, stride):
    cls, rest = tokens[:, :1], tokens[:, 1:]
    rest = _dw_bn(rest, height, width, dw_weight, bn_weight, bn_bias, bn_mean, bn_var, stride)
    return torch.cat([cls, rest], dim=1) @ pw_weight.T


# TP3 ------------------------------------------------------------------------------------------------------------
def window_partition(x, window):
    return rearrange(x, "b (nh m1) (nw m2) c -> (b nh nw) m1 m2 c", m1=window, m2=window)


def window_reverse(windows, window, height, width):
    return rearrange(windows, "(b nh nw) m1 m2 c -> b (nh m1) (nw m2) c", nh=height // window, nw=width // window)


def cyclic_shift(x, shift):
    return torch.roll(x, (-shift, -shift), (1, 2))


def shifted_window_mask(height, width, window, shift):
    def bands(n):  # the shifted window of each row (column): borders at shift, shift + window, ...
        return (torch.arange(n) - shift + window) // window if shift else torch.arange(n) // window

    labels = bands(height)[:, None] * (width + 1) + bands(width)[None, :]
    labels = cyclic_shift(labels[None, :, :, None], shift)
    labels = rearrange(window_partition(labels, window), "nw m1 m2 1 -> nw (m1 m2)")
    return labels[:, :, None] == labels[:, None, :]


def relative_position_index(window):
    rows, cols = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    dy = rows[:, None] - rows[None, :]
    dx = cols[:, None] - cols[None, :]
    return (dy + window - 1) * (2 * window - 1) + (dx + window - 1)


# TP4 ------------------------------------------------------------------------------------------------------------
def spatial_reduction_attention(x, height, width, params, num_heads, sr_ratio):
    p = params
    q = x @ p["q.weight"].T + p["q.bias"]
    reduced = x
    if sr_ratio > 1:
        m = rearrange(x, "b (h w) d -> b d h w", h=height, w=width)
        m = F.conv2d(m, p["sr.weight"], p["sr.bias"], stride=sr_ratio)
        reduced = rearrange(m, "b d h w -> b (h w) d")
        reduced = F.layer_norm(reduced, (x.shape[-1],), p["norm.weight"], p["norm.bias"], eps=1e-5)
    k, v = (reduced @ p["kv.weight"].T + p["kv.bias"]).chunk(2, dim=-1)
    q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=num_heads) for t in (q, k, v))
    out = rearrange(scaled_dot_product_attention(q, k, v), "b h n d -> b n (h d)")
    return out @ p["proj.weight"].T + p["proj.bias"]


def online_softmax(scores, block_size):
    n = scores.shape[-1]
    m = torch.full(scores.shape[:-1] + (1,), -math.inf)
    s = torch.zeros(scores.shape[:-1] + (1,))
    for start in range(0, n, block_size):
        block = scores[..., start : start + block_size]
        new_m = torch.maximum(m, block.amax(dim=-1, keepdim=True))
        s = s * torch.exp(m - new_m) + torch.exp(block - new_m).sum(dim=-1, keepdim=True)
        m = new_m
    return torch.exp(scores - m) / s


def tiled_attention(q, k, v, block_size):
    scale = q.shape[-1] ** -0.5
    m = torch.full(q.shape[:-1] + (1,), -math.inf)
    s = torch.zeros(q.shape[:-1] + (1,))
    out = torch.zeros_like(q)
    for start in range(0, k.shape[-2], block_size):
        kb, vb = k[..., start : start + block_size, :], v[..., start : start + block_size, :]
        scores = q @ kb.transpose(-2, -1) * scale
        new_m = torch.maximum(m, scores.amax(dim=-1, keepdim=True))
        alpha = torch.exp(m - new_m)
        p = torch.exp(scores - new_m)
        s = s * alpha + p.sum(dim=-1, keepdim=True)
        out = out * alpha + p @ vb
        m = new_m
    return out / s


SOLUTIONS = {name: fn for name, fn in dict(globals()).items() if callable(fn) and not name.startswith("_") and fn.__module__ == __name__}
