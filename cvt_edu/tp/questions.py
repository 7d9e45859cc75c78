"""The TP questions: inputs, references and tolerances.

Each :class:`Question` says how to draw its inputs from a ``torch.Generator`` for a list of shape
settings (the public ones, which :func:`cvt_edu.tp.check` uses with fixed seeds, and hidden ones,
other shapes and odd sizes included, which the grader draws at grading time), and what the right
output is. The references are the course's own modules with the given weights loaded into them
(:mod:`cvt_edu.patching`, :mod:`cvt_edu.attention`, :mod:`cvt_edu.layers`, :mod:`cvt_edu.projection`,
:mod:`cvt_edu.windows`, :mod:`cvt_edu.pvt`); ``online_softmax`` and ``tiled_attention`` are compared
with plain softmax attention. The students' solutions are not here: the references call the
modules the chapters teach.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from einops import rearrange
from torch import nn

from .. import attention, layers, patching, projection, pvt, windows
from .assignments import TPS

__all__ = ["Question", "QUESTIONS", "SDPA_OPS", "SOFTMAX_OPS", "question"]

# aten operators (by name fragment) that a question's answer may not reach: the fused attention kernels
# behind torch.nn.functional.scaled_dot_product_attention, and for the online-softmax questions softmax itself.
SDPA_OPS = ("scaled_dot_product",)
SOFTMAX_OPS = SDPA_OPS + ("aten::_softmax", "aten::softmax", "aten::_safe_softmax", "aten::_log_softmax")


@dataclass(frozen=True)
class Question:
    """One question of a TP.

    Attributes:
        name: the function's name in the answer cell.
        arg_names: its parameters, for the messages.
        public: shape settings of the check cells' cases.
        hidden: shape settings of the grader's cases (others than the public ones).
        make: ``make(generator, setting) -> args``, the inputs of one case (a tuple, positional).
        reference: ``reference(*args) -> output``, the right answer.
        atol, rtol: the tolerance of a float output, |got - expected| <= atol + rtol * |expected|.
        forbidden_ops: aten operator name fragments the answer may not run (ready-made implementations).
        full_matrix: for tiled attention, ``full_matrix(args) -> N_q * N_k`` (or ``None`` where the case
            cannot tell): no tensor that large may be created during the call.
    """

    name: str
    arg_names: tuple[str, ...]
    public: tuple
    hidden: tuple
    make: Callable[[torch.Generator, Any], tuple]
    reference: Callable[..., Any]
    atol: float = 1e-4
    rtol: float = 1e-4
    forbidden_ops: tuple[str, ...] = SDPA_OPS
    full_matrix: Callable[[tuple], int | None] | None = None

    def cases(self, *, seed: int | None = None, quick: bool = False) -> list[tuple]:
        """The inputs: ``seed=None`` gives the public cases (seed i for case i), else the hidden ones
        drawn from ``seed`` (``quick``: the first two settings only)."""
        if seed is None:
            return [self.make(torch.Generator().manual_seed(i), s) for i, s in enumerate(self.public)]
        gen = torch.Generator().manual_seed(seed)
        return [self.make(gen, s) for s in (self.hidden[:2] if quick else self.hidden)]


def question(name: str) -> Question:
    """The question ``name``.

    Raises:
        KeyError: for an unknown name, listing the known ones.
    """
    if name not in QUESTIONS:
        raise KeyError(f"unknown question {name!r}; expected one of {sorted(QUESTIONS)}")
    return QUESTIONS[name]


def _randn(gen: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=gen) * scale


def _load(module: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    module.load_state_dict(state, strict=False)
    return module.eval()


# TP1: ViT ------------------------------------------------------------------------------------------------------

def _make_images(gen, s):
    b, c, h, w, p = s
    return _randn(gen, b, c, h, w), p


def _ref_patchify(images, patch_size):
    return patching.patchify(images, patch_size)


def _make_patch_embedding(gen, s):
    b, c, h, w, p, d = s
    n = (h // p) * (w // p)
    return (_randn(gen, b, c, h, w), _randn(gen, d, p * p * c, scale=0.2), _randn(gen, d, scale=0.1),
            _randn(gen, 1, 1, d), _randn(gen, 1, 1 + n, d, scale=0.1), p)


@torch.no_grad()
def _ref_patch_embedding(images, weight, bias, cls_token, pos_embed, patch_size):
    c = images.shape[1]
    embed = patching.PatchEmbedding(patch_size=patch_size, in_chans=c, embed_dim=weight.shape[0])
    conv_weight = rearrange(weight, "d (p1 p2 c) -> d c p1 p2", p1=patch_size, p2=patch_size, c=c)
    _load(embed, {"proj.weight": conv_weight, "proj.bias": bias})
    tokens = embed(images)
    return torch.cat([cls_token.expand(len(tokens), -1, -1), tokens], dim=1) + pos_embed


def _make_qkv(gen, s):
    b, h, nq, nk, d = s
    return _randn(gen, b, h, nq, d), _randn(gen, b, h, nk, d), _randn(gen, b, h, nk, d)


@torch.no_grad()
def _ref_sdpa(q, k, v):
    h, d = q.shape[1], q.shape[-1]
    mha = attention.MultiHeadAttention(embed_dim=h * d, num_heads=h).eval()
    _load(mha, {"proj.weight": torch.eye(h * d), "proj.bias": torch.zeros(h * d)})
    mha.keep_attention = True  # the explicit softmax path
    out = mha(*(rearrange(t, "b h n d -> b n (h d)") for t in (q, k, v)))
    return rearrange(out, "b n (h d) -> b h n d", h=h)


def _make_mha(gen, s):
    b, n, d, h = s
    return (_randn(gen, b, n, d), _randn(gen, 3 * d, d, scale=d**-0.5), _randn(gen, 3 * d, scale=0.1),
            _randn(gen, d, d, scale=d**-0.5), _randn(gen, d, scale=0.1), h)


def _self_attention(d: int, h: int) -> attention.SelfAttention:
    return attention.SelfAttention(projection.LinearQKV(dim=d), embed_dim=d, num_heads=h)


def _qkv_state(prefix: str, weight: torch.Tensor, bias: torch.Tensor) -> dict[str, torch.Tensor]:
    return {f"{prefix}{n}.{p}": t for p, full in (("weight", weight), ("bias", bias)) for n, t in zip("qkv", full.chunk(3))}


@torch.no_grad()
def _ref_mha(x, qkv_weight, qkv_bias, proj_weight, proj_bias, num_heads):
    attn = _self_attention(x.shape[-1], num_heads)
    _load(attn, {**_qkv_state("qkv.", qkv_weight, qkv_bias), "mha.proj.weight": proj_weight, "mha.proj.bias": proj_bias})
    attn.mha.keep_attention = True
    return attn(x)


def _make_block(gen, s):
    b, n, d, h, hidden = s
    params = {
        "norm1.weight": 1 + _randn(gen, d, scale=0.1), "norm1.bias": _randn(gen, d, scale=0.1),
        "qkv.weight": _randn(gen, 3 * d, d, scale=d**-0.5), "qkv.bias": _randn(gen, 3 * d, scale=0.1),
        "proj.weight": _randn(gen, d, d, scale=d**-0.5), "proj.bias": _randn(gen, d, scale=0.1),
        "norm2.weight": 1 + _randn(gen, d, scale=0.1), "norm2.bias": _randn(gen, d, scale=0.1),
        "fc1.weight": _randn(gen, hidden, d, scale=d**-0.5), "fc1.bias": _randn(gen, hidden, scale=0.1),
        "fc2.weight": _randn(gen, d, hidden, scale=hidden**-0.5), "fc2.bias": _randn(gen, d, scale=0.1),
    }
    return _randn(gen, b, n, d), params, h


@torch.no_grad()
def _ref_block(x, params, num_heads):
    d, hidden = x.shape[-1], params["fc1.weight"].shape[0]
    block = layers.TransformerBlock(_self_attention(d, num_heads), dim=d, mlp_ratio=hidden / d, eps=1e-6)
    p = params
    state = {**_qkv_state("attn.qkv.", p["qkv.weight"], p["qkv.bias"]), "attn.mha.proj.weight": p["proj.weight"],
             "attn.mha.proj.bias": p["proj.bias"]}
    state |= {k: p[k] for k in ("norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias")}
    state |= {f"mlp.{k}": p[k] for k in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")}
    _load(block, state)
    block.attn.mha.keep_attention = True
    return block(x)


# TP2: CvT ------------------------------------------------------------------------------------------------------

def _make_map_size(gen, s):
    if s is not None:
        return s
    kernel = int(torch.randint(1, 8, (1,), generator=gen))
    stride = int(torch.randint(1, 5, (1,), generator=gen))
    padding = int(torch.randint(0, kernel // 2 + 1, (1,), generator=gen))
    size = int(torch.randint(max(kernel - 2 * padding, 1), 65, (1,), generator=gen))
    return size, kernel, stride, padding


def _ref_map_size(size, kernel, stride, padding):
    return patching.conv_output_size(size, kernel, stride, padding)


def _make_conv_embedding(gen, s):
    b, c, h, w, d, k, stride, padding = s
    return (_randn(gen, b, c, h, w), _randn(gen, d, c, k, k, scale=(c * k * k) ** -0.5), _randn(gen, d, scale=0.1),
            stride, padding, 1 + _randn(gen, d, scale=0.1), _randn(gen, d, scale=0.1))


@torch.no_grad()
def _ref_conv_embedding(images, weight, bias, stride, padding, norm_weight, norm_bias):
    d, c, k, _ = weight.shape
    embed = patching.ConvTokenEmbedding(in_chans=c, embed_dim=d, kernel_size=k, stride=stride, padding=padding, eps=1e-5)
    _load(embed, {"proj.weight": weight, "proj.bias": bias, "norm.weight": norm_weight, "norm.bias": norm_bias})
    return embed(images)


def _make_conv_projection(gen, s, cls: bool = False):
    b, h, w, d, d_out, stride = s
    return (_randn(gen, b, int(cls) + h * w, d), h, w, _randn(gen, d, 1, 3, 3, scale=1 / 3), 1 + _randn(gen, d, scale=0.1),
            _randn(gen, d, scale=0.1), _randn(gen, d, scale=0.1), 0.5 + torch.rand(d, generator=gen),
            _randn(gen, d_out, d, scale=d**-0.5), stride)


def _bn_state(prefix, dw_weight, bn_weight, bn_bias, bn_mean, bn_var):
    return {f"{prefix}conv.weight": dw_weight, f"{prefix}norm.weight": bn_weight, f"{prefix}norm.bias": bn_bias,
            f"{prefix}norm.running_mean": bn_mean, f"{prefix}norm.running_var": bn_var}


@torch.no_grad()
def _ref_conv_projection(tokens, height, width, dw_weight, bn_weight, bn_bias, bn_mean, bn_var, pw_weight, stride):
    conv = projection.ConvProjection(dim=tokens.shape[-1], kernel_size=3, stride=stride, padding=1, method="dw_bn")
    _load(conv, _bn_state("", dw_weight, bn_weight, bn_bias, bn_mean, bn_var))
    pointwise = _load(nn.Linear(pw_weight.shape[1], pw_weight.shape[0], bias=False), {"weight": pw_weight})
    return pointwise(conv(rearrange(tokens, "b (h w) d -> b d h w", h=height, w=width)))


@torch.no_grad()
def _ref_conv_projection_cls(tokens, height, width, dw_weight, bn_weight, bn_bias, bn_mean, bn_var, pw_weight, stride):
    d_out, d = pw_weight.shape
    qkv = projection.ConvQKV(dim=d, kernel_size=3, padding_q=1, stride_q=stride, method="dw_bn", with_cls_token=True)
    qkv.q = nn.Linear(d, d_out, bias=False)  # W^Q as the pointwise projection; CvT's last stage holds [CLS]
    _load(qkv, {**_bn_state("conv_q.", dw_weight, bn_weight, bn_bias, bn_mean, bn_var), "q.weight": pw_weight})
    return qkv(tokens, (height, width))[0]


# TP3: Swin -----------------------------------------------------------------------------------------------------

def _make_window_partition(gen, s):
    b, h, w, c, m = s
    return _randn(gen, b, h, w, c), m


def _make_window_reverse(gen, s):
    b, h, w, c, m = s
    return _randn(gen, b * (h // m) * (w // m), m, m, c), m, h, w


def _make_shift(gen, s):
    b, h, w, c, shift = s
    return _randn(gen, b, h, w, c), shift


def _ref_mask(height, width, window, shift):
    return windows.shifted_window_mask(height, width, window, shift) == 0


# TP4: efficient attention --------------------------------------------------------------------------------------

def _make_sra(gen, s):
    b, h, w, d, heads, r = s
    params = {"q.weight": _randn(gen, d, d, scale=d**-0.5), "q.bias": _randn(gen, d, scale=0.1),
              "kv.weight": _randn(gen, 2 * d, d, scale=d**-0.5), "kv.bias": _randn(gen, 2 * d, scale=0.1),
              "proj.weight": _randn(gen, d, d, scale=d**-0.5), "proj.bias": _randn(gen, d, scale=0.1)}
    if r > 1:
        params |= {"sr.weight": _randn(gen, d, d, r, r, scale=(d * r * r) ** -0.5), "sr.bias": _randn(gen, d, scale=0.1),
                   "norm.weight": 1 + _randn(gen, d, scale=0.1), "norm.bias": _randn(gen, d, scale=0.1)}
    return _randn(gen, b, h * w, d), h, w, params, heads, r


@torch.no_grad()
def _ref_sra(x, height, width, params, num_heads, sr_ratio):
    d = x.shape[-1]
    sra = pvt.SpatialReductionAttention(pvt.PVTStageConfig(embed_dim=d, depth=1, num_heads=num_heads, sr_ratio=sr_ratio), eps=1e-5)
    p = params
    (k_w, v_w), (k_b, v_b) = p["kv.weight"].chunk(2), p["kv.bias"].chunk(2)
    state = {"qkv.q.weight": p["q.weight"], "qkv.q.bias": p["q.bias"], "qkv.k.weight": k_w, "qkv.k.bias": k_b,
             "qkv.v.weight": v_w, "qkv.v.bias": v_b, "mha.proj.weight": p["proj.weight"], "mha.proj.bias": p["proj.bias"]}
    state |= {k: v for k, v in p.items() if k.startswith(("sr.", "norm."))}
    _load(sra, state)
    sra.mha.keep_attention = True
    return sra(x, (height, width))


def _make_scores(gen, s):
    shape, block, scale = s
    return _randn(gen, *shape, scale=scale), block


def _ref_softmax(scores, block_size):
    return torch.softmax(scores, dim=-1)


def _make_tiled(gen, s):
    *qkv, block = s
    return (*_make_qkv(gen, qkv), block)


def _ref_tiled(q, k, v, block_size):
    return torch.softmax(q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5, dim=-1) @ v


def _tiled_full_matrix(args) -> int | None:
    """N_q * N_k, where no legitimate tensor of the call is that large (else ``None``: not checked)."""
    q, k, _, block = args
    b, h, nq, d = q.shape
    nk = k.shape[2]
    return nq * nk if b * h * max(block, d) < nk and b * h * d < nq else None


_QUESTIONS = [
    Question("patchify", ("images", "patch_size"), public=((2, 3, 16, 16, 4), (1, 1, 6, 9, 3), (2, 2, 4, 4, 2)),
             hidden=((3, 3, 12, 8, 4), (1, 4, 10, 10, 5), (2, 1, 6, 6, 3), (1, 3, 16, 16, 8)),
             make=_make_images, reference=_ref_patchify),
    Question("patch_embedding", ("images", "weight", "bias", "cls_token", "pos_embed", "patch_size"),
             public=((2, 3, 8, 8, 4, 16), (1, 1, 6, 9, 3, 5)),
             hidden=((3, 3, 12, 8, 4, 12), (1, 2, 10, 10, 5, 7), (2, 3, 6, 6, 2, 8), (1, 1, 8, 8, 8, 4)),
             make=_make_patch_embedding, reference=_ref_patch_embedding),
    Question("scaled_dot_product_attention", ("q", "k", "v"), public=((2, 2, 5, 5, 4), (1, 3, 4, 7, 8)),
             hidden=((2, 1, 6, 9, 5), (1, 4, 3, 3, 16), (3, 2, 8, 2, 4), (1, 1, 1, 5, 3)),
             make=_make_qkv, reference=_ref_sdpa),
    Question("multi_head_attention", ("x", "qkv_weight", "qkv_bias", "proj_weight", "proj_bias", "num_heads"),
             public=((2, 5, 8, 2), (1, 4, 12, 3)), hidden=((3, 7, 12, 4), (1, 9, 8, 1), (2, 3, 10, 5), (1, 1, 6, 2)),
             make=_make_mha, reference=_ref_mha),
    Question("encoder_block", ("x", "params", "num_heads"), public=((2, 5, 8, 2, 16), (1, 4, 12, 3, 24)),
             hidden=((3, 7, 12, 4, 48), (1, 9, 8, 1, 8), (2, 3, 10, 5, 20), (1, 2, 6, 2, 12)),
             make=_make_block, reference=_ref_block),
    Question("token_map_size", ("size", "kernel", "stride", "padding"), public=((224, 7, 4, 2), (56, 3, 2, 1), (15, 3, 1, 0)),
             hidden=(None, None, None, None, (5, 5, 2, 0), (7, 3, 3, 1)), make=_make_map_size, reference=_ref_map_size),
    Question("conv_token_embedding", ("images", "weight", "bias", "stride", "padding", "norm_weight", "norm_bias"),
             public=((2, 3, 16, 16, 8, 7, 4, 2), (1, 3, 9, 7, 4, 3, 2, 1)),
             hidden=((2, 3, 20, 12, 6, 7, 4, 2), (1, 2, 11, 11, 5, 3, 2, 1), (3, 4, 8, 8, 8, 3, 1, 1), (2, 3, 15, 17, 4, 5, 3, 0)),
             make=_make_conv_embedding, reference=_ref_conv_embedding),
    Question("conv_projection", ("tokens", "height", "width", "dw_weight", "bn_weight", "bn_bias", "bn_mean", "bn_var",
                                 "pw_weight", "stride"),
             public=((2, 4, 4, 8, 8, 1), (1, 5, 3, 6, 4, 2)),
             hidden=((2, 6, 4, 8, 12, 2), (1, 7, 7, 4, 4, 1), (3, 3, 5, 6, 6, 2), (1, 8, 8, 5, 3, 3)),
             make=_make_conv_projection, reference=_ref_conv_projection),
    Question("conv_projection_with_cls", ("tokens", "height", "width", "dw_weight", "bn_weight", "bn_bias", "bn_mean",
                                          "bn_var", "pw_weight", "stride"),
             public=((2, 4, 4, 8, 8, 1), (1, 5, 3, 6, 4, 2)),
             hidden=((2, 6, 4, 8, 12, 2), (1, 7, 7, 4, 4, 1), (3, 3, 5, 6, 6, 2), (1, 8, 8, 5, 3, 3)),
             make=lambda gen, s: _make_conv_projection(gen, s, cls=True), reference=_ref_conv_projection_cls),
    Question("window_partition", ("x", "window"), public=((2, 8, 8, 3, 4), (1, 6, 4, 2, 2)),
             hidden=((3, 12, 8, 4, 4), (1, 9, 6, 5, 3), (2, 4, 4, 1, 4), (1, 10, 15, 2, 5)),
             make=_make_window_partition, reference=windows.window_partition),
    Question("window_reverse", ("windows", "window", "height", "width"), public=((2, 8, 8, 3, 4), (1, 6, 4, 2, 2)),
             hidden=((3, 12, 8, 4, 4), (1, 9, 6, 5, 3), (2, 4, 4, 1, 4), (1, 10, 15, 2, 5)),
             make=_make_window_reverse, reference=windows.window_reverse),
    Question("cyclic_shift", ("x", "shift"), public=((2, 8, 8, 3, 2), (1, 6, 4, 2, 1)),
             hidden=((3, 12, 8, 4, 3), (1, 9, 6, 5, 1), (2, 4, 4, 1, 0), (1, 10, 15, 2, 2)),
             make=_make_shift, reference=windows.cyclic_shift),
    Question("shifted_window_mask", ("height", "width", "window", "shift"), public=((8, 8, 4, 2), (4, 4, 2, 0)),
             hidden=((12, 8, 4, 2), (9, 6, 3, 1), (8, 8, 4, 1), (6, 6, 6, 3), (8, 8, 4, 0)),
             make=lambda gen, s: s, reference=_ref_mask),
    Question("relative_position_index", ("window",), public=((2,), (3,)), hidden=((4,), (5,), (7,), (1,)),
             make=lambda gen, s: s, reference=windows.relative_position_index),
    Question("spatial_reduction_attention", ("x", "height", "width", "params", "num_heads", "sr_ratio"),
             public=((2, 4, 4, 8, 2, 2), (1, 3, 3, 4, 1, 1)),
             hidden=((2, 6, 4, 8, 2, 2), (1, 8, 8, 12, 3, 4), (2, 5, 5, 6, 2, 1), (1, 6, 6, 8, 4, 3)),
             make=_make_sra, reference=_ref_sra),
    Question("online_softmax", ("scores", "block_size"), public=(((2, 3, 10), 4, 1.0), ((5, 8), 8, 1.0)),
             hidden=(((2, 2, 3, 17), 5, 3.0), ((4, 33), 7, 50.0), ((1, 9), 1, 1.0), ((3, 12), 16, 1.0)),
             make=_make_scores, reference=_ref_softmax, forbidden_ops=SOFTMAX_OPS),
    Question("tiled_attention", ("q", "k", "v", "block_size"), public=((1, 2, 64, 96, 8, 16), (2, 1, 5, 7, 4, 3)),
             hidden=((1, 2, 48, 80, 8, 16), (2, 2, 9, 13, 4, 4), (1, 1, 40, 100, 6, 10), (1, 3, 7, 7, 5, 7)),
             make=_make_tiled, reference=_ref_tiled, forbidden_ops=SOFTMAX_OPS, full_matrix=_tiled_full_matrix),
]
QUESTIONS: dict[str, Question] = {q.name: q for q in _QUESTIONS}
assert sorted(QUESTIONS) == sorted(n for a in TPS.values() for n in a.questions), "TPS and QUESTIONS disagree"
