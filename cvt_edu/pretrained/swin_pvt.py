"""Pretrained Swin and PVT weights from Hugging Face ``transformers`` checkpoints.

``swin_from_hf`` reads a ``SwinForImageClassification`` checkpoint (for example
``microsoft/swin-tiny-patch4-window7-224``) and ``pvt_from_hf`` a ``PvtForImageClassification``
one (for example ``Xrenya/pvt-tiny-224``): the ``config.json`` as a dict and the state dict
(from ``model.safetensors`` or ``model.state_dict()``). Each builds the matching
:class:`~cvt_edu.swin.Swin` / :class:`~cvt_edu.pvt.PVT` and renames every weight with an
explicit table of rules (:mod:`cvt_edu.pretrained.renaming`: :data:`SWIN_KEYS`, :data:`PVT_KEYS`), then
loads them with ``strict=True``, so that a weight left over or missing is an error, never a
silent random layer.

Swin checkpoints exist under two sets of names: the files on the Hub use the older ones
(``attention.self.query``, ``intermediate.dense``, ...), ``transformers`` >= 5 renames them
on loading (``attention.q_proj``, ``mlp.fc1``, ...). Both are accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..pvt import PVT, PVTConfig, PVTStageConfig
from ..swin import Swin, SwinConfig, SwinStageConfig
from ..windows import relative_position_index
from .renaming import Rule, module_rules, rename_state_dict

__all__ = ["swin_from_hf", "pvt_from_hf", "swin_config_from_hf", "pvt_config_from_hf", "SWIN_KEYS", "PVT_KEYS"]

_SWIN_BLOCK = r"swin\.encoder\.layers\.(\d+)\.blocks\.(\d+)\."
_OUR_BLOCK = r"stages.\1.blocks.\2."

# (Hugging Face name, cvt_edu name): regular expressions matched at the start of each key. Written
# out rule by rule, not with module_rules, because most accept two generations of names.
SWIN_KEYS: list[Rule] = [
    (r"swin\.embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"swin\.embeddings\.norm\.", "patch_embed.norm."),
    (_SWIN_BLOCK + r"layernorm_before\.", _OUR_BLOCK + "norm1."),
    (_SWIN_BLOCK + r"attention\.(?:q_proj|self\.query)\.", _OUR_BLOCK + "attn.qkv.q."),
    (_SWIN_BLOCK + r"attention\.(?:k_proj|self\.key)\.", _OUR_BLOCK + "attn.qkv.k."),
    (_SWIN_BLOCK + r"attention\.(?:v_proj|self\.value)\.", _OUR_BLOCK + "attn.qkv.v."),
    (_SWIN_BLOCK + r"attention\.(?:o_proj|output\.dense)\.", _OUR_BLOCK + "attn.mha.proj."),
    (
        _SWIN_BLOCK + r"attention\.(?:relative_position_bias|self)\.relative_position_bias_table$",
        _OUR_BLOCK + "attn.relative_position_bias_table",
    ),
    (_SWIN_BLOCK + r"layernorm_after\.", _OUR_BLOCK + "norm2."),
    (_SWIN_BLOCK + r"(?:mlp\.fc1|intermediate\.dense)\.", _OUR_BLOCK + "mlp.fc1."),
    (_SWIN_BLOCK + r"(?:mlp\.fc2|output\.dense)\.", _OUR_BLOCK + "mlp.fc2."),
    # transformers merges patches at the end of stage i; the paper (and cvt_edu) at the start of stage i + 1
    (r"swin\.encoder\.layers\.(\d+)\.downsample\.", lambda m: f"stages.{int(m[1]) + 1}.downsample."),
    (r"swin\.layernorm\.", "norm."),
    (r"classifier\.", "head."),
]

_PVT_BLOCK = r"pvt\.encoder\.block\.(\d+)\.(\d+)\."

# Inside one transformer block: Hugging Face module -> cvt_edu module.
_PVT_BLOCK_MODULES = {
    "layer_norm_1": "norm1",
    "attention.self.query": "attn.qkv.q",
    "attention.self.key": "attn.qkv.k",
    "attention.self.value": "attn.qkv.v",
    "attention.self.sequence_reduction": "attn.sr",
    "attention.self.layer_norm": "attn.norm",
    "attention.output.dense": "attn.mha.proj",
    "layer_norm_2": "norm2",
    "mlp.dense1": "mlp.fc1",
    "mlp.dense2": "mlp.fc2",
}

PVT_KEYS: list[Rule] = [
    (r"pvt\.encoder\.patch_embeddings\.(\d+)\.projection\.", r"stages.\1.embed.proj."),
    (r"pvt\.encoder\.patch_embeddings\.(\d+)\.layer_norm\.", r"stages.\1.embed.norm."),
    (r"pvt\.encoder\.patch_embeddings\.(\d+)\.position_embeddings$", r"stages.\1.pos_embed"),
    (r"pvt\.encoder\.patch_embeddings\.(\d+)\.cls_token$", r"stages.\1.cls_token"),
    *module_rules(_PVT_BLOCK, _OUR_BLOCK, _PVT_BLOCK_MODULES),
    (r"pvt\.encoder\.layer_norm\.", "norm."),
    (r"classifier\.", "head."),
]


def _side(value: int | list[int] | tuple[int, ...], name: str) -> int:
    """A square size given as an int or as [height, width] in a ``transformers`` config.

    Raises:
        ValueError: for a size that is not square.
    """
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ValueError(f"only square {name}s are supported, got {value}")
        return int(value[0])
    return int(value)


def _num_classes(state_dict: Mapping[str, torch.Tensor]) -> int:
    if "classifier.weight" not in state_dict:
        raise KeyError("the state dict has no 'classifier.weight': expected an image-classification checkpoint")
    return state_dict["classifier.weight"].shape[0]


def _check_act(config: Mapping[str, Any]) -> None:
    if config.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"only the GELU activation is supported, got {config['hidden_act']!r}")


def swin_config_from_hf(config: Mapping[str, Any], num_classes: int) -> SwinConfig:
    """A :class:`SwinConfig` from a ``transformers`` ``SwinConfig`` dict (absent keys take its defaults).

    Note: ``transformers`` applies ``layer_norm_eps`` to the block and final LayerNorms and
    1e-5 to the embedding and merging ones; cvt_edu uses one epsilon (all released Swin
    checkpoints use 1e-5 everywhere).

    Raises:
        ValueError: for settings cvt_edu does not implement (absolute position embeddings,
            another activation, non-square sizes), or ``depths`` and ``num_heads`` of different lengths.
    """
    if config.get("use_absolute_embeddings", False):
        raise ValueError("Swin with absolute position embeddings ('ape') is not supported")
    _check_act(config)
    width, depths, heads = config.get("embed_dim", 96), config.get("depths", (2, 2, 6, 2)), config.get("num_heads", (3, 6, 12, 24))
    if len(depths) != len(heads):
        raise ValueError(f"depths {list(depths)} and num_heads {list(heads)} must have one entry per stage")
    stages = tuple(
        SwinStageConfig(
            embed_dim=width * 2**i,
            depth=depth,
            num_heads=num_heads,
            window_size=config.get("window_size", 7),
            mlp_ratio=float(config.get("mlp_ratio", 4.0)),
            qkv_bias=config.get("qkv_bias", True),
            drop_rate=config.get("hidden_dropout_prob", 0.0),
            attn_drop_rate=config.get("attention_probs_dropout_prob", 0.0),
        )
        for i, (depth, num_heads) in enumerate(zip(depths, heads))
    )
    return SwinConfig(
        stages=stages,
        image_size=_side(config.get("image_size", 224), "image_size"),
        patch_size=_side(config.get("patch_size", 4), "patch_size"),
        in_chans=config.get("num_channels", 3),
        num_classes=num_classes,
        drop_path_rate=config.get("drop_path_rate", 0.1),
        layer_norm_eps=config.get("layer_norm_eps", 1e-5),
    )


def pvt_config_from_hf(config: Mapping[str, Any], num_classes: int) -> PVTConfig:
    """A :class:`PVTConfig` from a ``transformers`` ``PvtConfig`` dict (absent keys take its defaults).

    ``transformers`` uses ``layer_norm_eps`` (1e-6) in every LayerNorm, including those after
    the embedding and SR convolutions, so ``embed_norm_eps`` is set to it as well.

    Raises:
        ValueError: for settings cvt_edu does not implement (strides other than the patch
            sizes, another activation, non-square images), or per-stage lists of different lengths.
    """
    _check_act(config)
    patch_sizes = tuple(config.get("patch_sizes", (4, 2, 2, 2)))
    strides = tuple(config.get("strides", (4, 2, 2, 2)))
    if strides != patch_sizes:
        raise ValueError(f"PVT v1 embeds non-overlapping patches: strides {strides} must equal patch_sizes {patch_sizes}")
    per_stage = {  # PVTStageConfig field -> the transformers list
        "embed_dim": config.get("hidden_sizes", (64, 128, 320, 512)),
        "depth": config.get("depths", (2, 2, 2, 2)),
        "num_heads": config.get("num_attention_heads", (1, 2, 5, 8)),
        "mlp_ratio": config.get("mlp_ratios", (8, 8, 4, 4)),
        "sr_ratio": config.get("sequence_reduction_ratios", (8, 4, 2, 1)),
        "patch_size": patch_sizes,
    }
    lengths = {name: len(values) for name, values in per_stage.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"every per-stage setting needs one entry per stage, got lengths {lengths}")
    stages = tuple(
        PVTStageConfig(
            **{name: values[i] for name, values in per_stage.items()},
            qkv_bias=config.get("qkv_bias", True),
            drop_rate=config.get("hidden_dropout_prob", 0.0),
            attn_drop_rate=config.get("attention_probs_dropout_prob", 0.0),
        )
        for i in range(lengths["depth"])
    )
    eps = config.get("layer_norm_eps", 1e-6)
    return PVTConfig(
        stages=stages,
        image_size=_side(config.get("image_size", 224), "image_size"),
        in_chans=config.get("num_channels", 3),
        num_classes=num_classes,
        drop_path_rate=config.get("drop_path_rate", 0.0),
        layer_norm_eps=eps,
        embed_norm_eps=eps,
    )


def swin_from_hf(config_dict: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> Swin:
    """A :class:`~cvt_edu.swin.Swin` with the weights of a ``SwinForImageClassification`` checkpoint.

    Args:
        config_dict: the checkpoint's ``config.json`` as a dict (``model_type`` "swin").
        state_dict: its weights, under either the Hub's or ``transformers`` 5's names.

    Returns:
        The model, in eval mode.

    Raises:
        KeyError: for a checkpoint without a classifier.
        ValueError: for weights with no counterpart, unsupported settings, or a stored relative
            position index that differs from :func:`~cvt_edu.windows.relative_position_index`.
        RuntimeError: from ``load_state_dict(strict=True)`` on missing weights or shape mismatches.
    """
    config = swin_config_from_hf(config_dict, _num_classes(state_dict))
    weights = {}
    for key, value in state_dict.items():
        if key.endswith("relative_position_index"):  # a buffer in old checkpoints; cvt_edu recomputes it
            side = round((value.numel() ** 0.5) ** 0.5)
            if not torch.equal(value.reshape(side * side, side * side).long(), relative_position_index(side)):
                raise ValueError(f"{key} differs from the relative position index of a {side}x{side} window")
            continue
        weights[key] = value
    model = Swin(config)
    model.load_state_dict(rename_state_dict(weights, SWIN_KEYS, "Swin"), strict=True)
    return model.eval()


def pvt_from_hf(config_dict: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> PVT:
    """A :class:`~cvt_edu.pvt.PVT` with the weights of a ``PvtForImageClassification`` checkpoint.

    Args:
        config_dict: the checkpoint's ``config.json`` as a dict (``model_type`` "pvt").
        state_dict: its weights.

    Returns:
        The model, in eval mode.

    Raises:
        KeyError: for a checkpoint without a classifier.
        ValueError: for weights with no counterpart, or unsupported settings.
        RuntimeError: from ``load_state_dict(strict=True)`` on missing weights or shape mismatches.
    """
    config = pvt_config_from_hf(config_dict, _num_classes(state_dict))
    model = PVT(config)
    model.load_state_dict(rename_state_dict(state_dict, PVT_KEYS, "PVT"), strict=True)
    return model.eval()
