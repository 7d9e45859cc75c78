"""Hugging Face Swin (``SwinForImageClassification``, e.g. ``microsoft/swin-tiny-patch4-window7-224``) in the
course's Swin (Liu et al., ICCV 2021).

:func:`swin_from_hf` takes the ``config.json`` as a dict and the state dict, builds the matching
:class:`~cvt_edu.swin.Swin` and renames every weight with an explicit table of rules (:data:`SWIN_KEYS`), then
loads them with ``strict=True``, so that a weight left over or missing is an error, never a silent random layer.

Swin checkpoints exist under two sets of names: the files on the Hub use the older ones
(``attention.self.query``, ``intermediate.dense``, ...), ``transformers`` >= 5 renames them on loading
(``attention.q_proj``, ``mlp.fc1``, ...). Both are accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..swin import Swin, SwinConfig, SwinStageConfig
from ..windows import relative_position_index
from .common import _check_act, _num_classes, _side
from .renaming import Rule, rename_state_dict

__all__ = ["swin_from_hf", "swin_config_from_hf", "SWIN_KEYS"]

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
