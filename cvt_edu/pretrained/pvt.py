"""Hugging Face PVT v1 (``PvtForImageClassification``, e.g. ``Xrenya/pvt-tiny-224``) in the course's PVT
(Wang et al., ICCV 2021).

:func:`pvt_from_hf` takes the ``config.json`` as a dict and the state dict, builds the matching
:class:`~cvt_edu.pvt.PVT`, renames every weight with an explicit table of rules (:data:`PVT_KEYS`) and loads them
with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..pvt import PVT, PVTConfig, PVTStageConfig
from .common import _check_act, _num_classes, _side
from .renaming import Rule, module_rules, rename_state_dict

__all__ = ["pvt_from_hf", "pvt_config_from_hf", "PVT_KEYS"]

_PVT_BLOCK = r"pvt\.encoder\.block\.(\d+)\.(\d+)\."


_OUR_BLOCK = r"stages.\1.blocks.\2."

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
