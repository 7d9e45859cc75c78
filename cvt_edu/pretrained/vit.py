"""Hugging Face ViT (``ViTForImageClassification``, e.g. ``google/vit-base-patch16-224``), torchvision's
``vit_b_16`` and timm's ``VisionTransformer`` ([CLS], GAP or MAP pooling) in the course's ViT (Dosovitskiy et al., ICLR 2021, Table 1).

Each format: a config translation (:func:`vit_config_from_hf`; torchvision's module is read directly) and a key
mapping (:data:`HF_VIT_KEYS`, :data:`TORCHVISION_VIT_KEYS`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..vit import ViT, ViTConfig
from .common import _num_labels, _side
from .renaming import Rule, module_rules, rename_state_dict

__all__ = ["vit_config_from_hf", "HF_VIT_KEYS", "TORCHVISION_VIT_KEYS", "TIMM_VIT_KEYS", "torchvision_vit_state_dict",
           "vit_from_torchvision", "vit_from_timm"]

_HF_VIT_DEFAULTS: dict[str, Any] = dict(
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_act="gelu",
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    layer_norm_eps=1e-12,
    image_size=224,
    patch_size=16,
    num_channels=3,
    qkv_bias=True,
)


def _mlp_ratio(dim: int, hidden: int) -> float:
    """The ``mlp_ratio`` that gives an MLP of width ``hidden`` on tokens of width ``dim``."""
    ratio = hidden / dim
    if int(dim * ratio) != hidden:
        raise ValueError(f"an MLP width of {hidden} is not int(mlp_ratio * {dim}) for any float mlp_ratio")
    return ratio


def vit_config_from_hf(config: dict[str, Any]) -> ViTConfig:
    """Translate a Hugging Face ViT ``config.json`` (already parsed) into a :class:`ViTConfig`.

    Hugging Face names -> ``cvt_edu``: ``hidden_size`` -> ``embed_dim`` (D), ``num_hidden_layers``
    -> ``depth`` (L), ``num_attention_heads`` -> ``num_heads``, ``intermediate_size`` -> ``mlp_ratio``
    * D (the MLP width), ``hidden_dropout_prob`` -> ``drop_rate``, ``attention_probs_dropout_prob``
    -> ``attn_drop_rate``; ``layer_norm_eps`` (1e-12 in Hugging Face's ViT, 1e-6 in Google's) is
    kept as it is.

    Raises:
        ValueError: for an activation other than (exact) GELU, a non-square image or patch, or an
            MLP width that is not a whole multiple ``mlp_ratio`` of D can express.
    """
    c = {**_HF_VIT_DEFAULTS, **config}
    if c["hidden_act"] != "gelu":
        raise ValueError(f"hidden_act {c['hidden_act']!r}: only 'gelu' is supported (the MLP of ViT, Eq. 3)")
    return ViTConfig(
        image_size=_side(c["image_size"], "image_size"),
        patch_size=_side(c["patch_size"], "patch_size"),
        in_chans=c["num_channels"],
        num_classes=_num_labels(config),
        embed_dim=c["hidden_size"],
        depth=c["num_hidden_layers"],
        num_heads=c["num_attention_heads"],
        mlp_ratio=_mlp_ratio(c["hidden_size"], c["intermediate_size"]),
        qkv_bias=c["qkv_bias"],
        drop_rate=c["hidden_dropout_prob"],
        attn_drop_rate=c["attention_probs_dropout_prob"],
        layer_norm_eps=c["layer_norm_eps"],
    )


_HF_VIT_LAYER = {
    "layernorm_before": "norm1",
    "attention.attention.query": "attn.qkv.q",
    "attention.attention.key": "attn.qkv.k",
    "attention.attention.value": "attn.qkv.v",
    "attention.output.dense": "attn.mha.proj",
    "layernorm_after": "norm2",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
}


HF_VIT_KEYS: list[Rule] = [
    (r"vit\.embeddings\.cls_token$", "cls_token"),
    (r"vit\.embeddings\.position_embeddings$", "pos_embed"),
    (r"vit\.embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    *module_rules(r"vit\.encoder\.layer\.(\d+)\.", r"blocks.\1.", _HF_VIT_LAYER),
    (r"vit\.layernorm\.", "norm."),
    (r"classifier\.", "head."),
]


_TV_VIT_LAYER = {
    "ln_1": "norm1",
    "self_attention.in_proj.q": "attn.qkv.q",
    "self_attention.in_proj.k": "attn.qkv.k",
    "self_attention.in_proj.v": "attn.qkv.v",
    "self_attention.out_proj": "attn.mha.proj",
    "ln_2": "norm2",
    "mlp.0": "mlp.fc1",
    "mlp.3": "mlp.fc2",
}


TORCHVISION_VIT_KEYS: list[Rule] = [
    (r"conv_proj\.", "patch_embed.proj."),
    (r"class_token$", "cls_token"),
    (r"encoder\.pos_embedding$", "pos_embed"),
    *module_rules(r"encoder\.layers\.encoder_layer_(\d+)\.", r"blocks.\1.", _TV_VIT_LAYER),
    (r"encoder\.ln\.", "norm."),
    (r"heads\.head\.", "head."),
]


def torchvision_vit_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a torchvision ``VisionTransformer`` state dict onto :class:`~cvt_edu.vit.ViT` names.

    torchvision keeps W^Q, W^K, W^V of a layer in one ``nn.MultiheadAttention`` whose
    ``in_proj_weight`` (3D, D) and ``in_proj_bias`` (3D,) stack them in the order q, k, v; they
    are cut into three (``in_proj.q.weight`` ...) and then renamed with
    :data:`TORCHVISION_VIT_KEYS`. Its MLP is an ``nn.Sequential`` whose linear layers are items 0 and 3.

    Args:
        state: ``tv_model.state_dict()``.

    Returns:
        A state dict for ``ViT``, ready for ``load_state_dict(strict=True)``.

    Raises:
        ValueError: if a torchvision tensor has no place in the ViT (see
            :func:`~cvt_edu.pretrained.renaming.rename_state_dict`).
    """
    unpacked = {}
    for key, tensor in state.items():
        module, _, leaf = key.rpartition(".")
        if leaf in ("in_proj_weight", "in_proj_bias"):
            for name, third in zip("qkv", tensor.chunk(3, dim=0)):
                unpacked[f"{module}.in_proj.{name}.{leaf.removeprefix('in_proj_')}"] = third
        else:
            unpacked[key] = tensor
    return rename_state_dict(unpacked, TORCHVISION_VIT_KEYS, "torchvision ViT")


def vit_from_torchvision(tv_model: nn.Module) -> ViT:
    """A course :class:`~cvt_edu.vit.ViT` with the weights of a torchvision ``VisionTransformer``.

    For example ``vit_from_torchvision(torchvision.models.vit_b_16(weights="IMAGENET1K_V1"))``;
    the sizes (image and patch size, D, L, heads, MLP width, classes, LayerNorm epsilon) are read
    from the torchvision model. Both read the class from the final [CLS] token (ViT, Eq. 4).

    Returns:
        The ViT in eval mode: images (B, 3, H, W) -> logits (B, num_classes), equal to the
        torchvision model's up to float rounding.

    Raises:
        ValueError: for a torchvision model with a convolutional stem or a ``pre_logits`` layer
            (``representation_size``), which ``cvt_edu``'s ViT does not have, or an MLP width that
            ``mlp_ratio`` cannot express.
    """
    if not isinstance(tv_model.conv_proj, nn.Conv2d):
        raise ValueError("torchvision ViTs with a convolutional stem are not supported")
    if tv_model.representation_size is not None:
        raise ValueError("torchvision ViTs with a pre_logits layer (representation_size) are not supported")
    layers = tv_model.encoder.layers
    config = ViTConfig(
        image_size=tv_model.image_size,
        patch_size=tv_model.patch_size,
        in_chans=tv_model.conv_proj.in_channels,
        num_classes=tv_model.num_classes,
        embed_dim=tv_model.hidden_dim,
        depth=len(layers),
        num_heads=layers[0].num_heads,
        mlp_ratio=_mlp_ratio(tv_model.hidden_dim, tv_model.mlp_dim),
        layer_norm_eps=tv_model.encoder.ln.eps,
    )
    model = ViT(config)
    model.load_state_dict(torchvision_vit_state_dict(tv_model.state_dict()), strict=True)
    return model.eval()


_TIMM_VIT_LAYER = {
    "norm1": "norm1",
    "attn.qkv.q": "attn.qkv.q",
    "attn.qkv.k": "attn.qkv.k",
    "attn.qkv.v": "attn.qkv.v",
    "attn.proj": "attn.mha.proj",
    "norm2": "norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}


TIMM_VIT_KEYS: list[Rule] = [
    (r"patch_embed\.proj\.", "patch_embed.proj."),
    (r"cls_token$", "cls_token"),
    (r"pos_embed$", "pos_embed"),
    *module_rules(r"blocks\.(\d+)\.", r"blocks.\1.", _TIMM_VIT_LAYER),
    (r"norm\.", "norm."),
    (r"attn_pool\.latent$", "map_head.probe"),
    (r"attn_pool\.q\.", "map_head.q."),
    (r"attn_pool\.kv\.k\.", "map_head.k."),
    (r"attn_pool\.kv\.v\.", "map_head.v."),
    (r"attn_pool\.proj\.", "map_head.attn.proj."),
    (r"attn_pool\.norm\.", "map_head.norm."),
    (r"attn_pool\.mlp\.", "map_head.mlp."),
    (r"head\.", "head."),
]

_TIMM_POOLS = {"token": "cls", "avg": "gap", "map": "map"}


def _timm_vit_unsupported(m: nn.Module) -> str | None:
    """Why a timm ``VisionTransformer`` has no course ViT equal to it, or ``None``."""
    if m.global_pool not in _TIMM_POOLS:
        return f"global_pool {m.global_pool!r} (supported: {', '.join(map(repr, _TIMM_POOLS))})"
    if (m.cls_token is not None) != (m.global_pool == "token"):
        return f"a [CLS] token {'with' if m.cls_token is not None else 'without'} global_pool={m.global_pool!r}"
    if getattr(m, "reg_token", None) is not None or m.no_embed_class:
        return "register tokens or no_embed_class"
    if not isinstance(m.fc_norm, nn.Identity):
        return "fc_norm (a LayerNorm after pooling; the course's GAP normalises every token, then averages)"
    extras = [n for n in ("norm_pre", "patch_drop") if not isinstance(getattr(m, n, nn.Identity()), (nn.Identity, nn.Dropout))]
    block = m.blocks[0]
    extras += [n for n in ("ls1", "ls2") if not isinstance(getattr(block, n, nn.Identity()), nn.Identity)]
    extras += [n for n in ("q_norm", "k_norm") if not isinstance(getattr(block.attn, n, nn.Identity()), nn.Identity)]
    if not isinstance(getattr(m.patch_embed, "norm", nn.Identity()), nn.Identity):
        extras.append("patch_embed.norm")
    return f"{', '.join(extras)} (not in the course's ViT)" if extras else None


def vit_from_timm(timm_model: nn.Module) -> ViT:
    """A course :class:`~cvt_edu.vit.ViT` with the weights of a timm ``VisionTransformer``.

    timm's ``global_pool`` becomes ``ViTConfig.pool``: ``"token"`` -> ``"cls"``, ``"avg"`` (with
    ``class_token=False, fc_norm=False``) -> ``"gap"``, ``"map"`` (``class_token=False``) -> ``"map"``, its
    ``AttentionPoolLatent`` the :class:`~cvt_edu.pooling.MAPHead` (the fused ``kv`` cut into W^K and W^V).
    W^Q, W^K, W^V of each block come out of timm's fused ``qkv`` (3D, D), in that order.

    Returns:
        The ViT in eval mode, equal to the timm model up to float rounding.

    Raises:
        ValueError: for a timm ViT the course's ViT does not have (another pooling, register tokens, layer scale,
            q/k normalisation, a LayerNorm after pooling, a normalised patch embedding), naming what it has.
    """
    why = _timm_vit_unsupported(timm_model)
    if why:
        raise ValueError(f"timm VisionTransformer with {why} is not supported")
    block = timm_model.blocks[0]
    dim = timm_model.embed_dim
    config = ViTConfig(
        image_size=_side(timm_model.patch_embed.img_size, "img_size"),
        patch_size=_side(timm_model.patch_embed.patch_size, "patch_size"),
        in_chans=timm_model.patch_embed.proj.in_channels,
        num_classes=timm_model.num_classes,
        embed_dim=dim,
        depth=len(timm_model.blocks),
        num_heads=block.attn.num_heads,
        mlp_ratio=_mlp_ratio(dim, block.mlp.fc1.out_features),
        qkv_bias=block.attn.qkv.bias is not None,
        layer_norm_eps=timm_model.norm.eps,
        pool=_TIMM_POOLS[timm_model.global_pool],
    )
    unpacked = {}
    for key, tensor in timm_model.state_dict().items():
        module, _, leaf = key.rpartition(".")
        if module.endswith("attn.qkv"):
            for name, third in zip("qkv", tensor.chunk(3, dim=0)):
                unpacked[f"{module}.{name}.{leaf}"] = third
        elif module == "attn_pool.kv":
            for name, half in zip("kv", tensor.chunk(2, dim=0)):
                unpacked[f"{module}.{name}.{leaf}"] = half
        else:
            unpacked[key] = tensor
    model = ViT(config)
    model.load_state_dict(rename_state_dict(unpacked, TIMM_VIT_KEYS, "timm ViT"), strict=True)
    return model.eval()
