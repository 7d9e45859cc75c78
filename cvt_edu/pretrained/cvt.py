"""Hugging Face CvT (``transformers``' ``CvtForImageClassification``, e.g. ``microsoft/cvt-13``) in the course's CvT.

Two small, explicit pieces: the config translation (:func:`cvt_config_from_hf`) and the key mapping
(:data:`HF_CVT_KEYS`, applied by :func:`cvt_edu.pretrained.renaming.rename_state_dict`). Sources: CvT-13 and CvT-21
(Wu et al., ICCV 2021, Table 2), ``microsoft/cvt-13`` and ``microsoft/cvt-21`` on the Hugging Face Hub.
"""

from __future__ import annotations

from typing import Any

from ..cvt import CvTConfig, CvTStageConfig
from .common import _num_labels
from .renaming import Rule, module_rules

__all__ = ["cvt_config_from_hf", "HF_CVT_KEYS"]

_HF_CVT_DEFAULTS: dict[str, Any] = dict(
    num_channels=3,
    patch_sizes=[7, 3, 3],
    patch_stride=[4, 2, 2],
    patch_padding=[2, 1, 1],
    embed_dim=[64, 192, 384],
    num_heads=[1, 3, 6],
    depth=[1, 2, 10],
    mlp_ratio=[4.0, 4.0, 4.0],
    attention_drop_rate=[0.0, 0.0, 0.0],
    drop_rate=[0.0, 0.0, 0.0],
    drop_path_rate=[0.0, 0.0, 0.1],
    qkv_bias=[True, True, True],
    cls_token=[False, False, True],
    qkv_projection_method=["dw_bn", "dw_bn", "dw_bn"],
    kernel_qkv=[3, 3, 3],
    padding_kv=[1, 1, 1],
    stride_kv=[2, 2, 2],
    padding_q=[1, 1, 1],
    stride_q=[1, 1, 1],
)


def cvt_config_from_hf(config: dict[str, Any]) -> CvTConfig:
    """Translate a Hugging Face CvT ``config.json`` (already parsed) into a :class:`CvTConfig`.

    Every per-stage field is a list with one entry per stage. Hugging Face names -> ``cvt_edu``:
    ``patch_sizes``/``patch_stride``/``patch_padding`` -> the token embedding's ``kernel_size``/
    ``stride``/``padding`` (Sec. 3.1); ``kernel_qkv``, ``padding_q``, ``stride_q``, ``padding_kv``,
    ``stride_kv`` -> the convolutional projection (Sec. 3.2); ``qkv_projection_method`` ->
    ``projection``; ``attention_drop_rate`` -> ``attn_drop_rate``; ``drop_path_rate`` -> ``drop_path``.

    The config's ``layer_norm_eps`` (1e-12) is deliberately *not* used: Hugging Face's CvT never
    passes it to its LayerNorms, which all keep PyTorch's 1e-5 (as in Microsoft's code), and so
    does ``CvTConfig``. The attention scale is 1 / sqrt(C), as in both.

    Raises:
        ValueError: if a stage uses a projection other than ``"dw_bn"`` (the only one Hugging
            Face's CvT implements), or a [CLS] token in a stage before the last. A config whose last stage
            has no [CLS] token gives ``pool="gap"``: the classifier reads the mean of the normalised tokens.
    """
    c = {**_HF_CVT_DEFAULTS, **config}
    methods = set(c["qkv_projection_method"])
    if methods != {"dw_bn"}:
        raise ValueError(f"qkv_projection_method {sorted(methods)}: only 'dw_bn' is supported for Hugging Face CvT")
    if any(c["cls_token"][:-1]):
        raise ValueError(f"cls_token {list(c['cls_token'])}: a [CLS] token is supported in the last stage only (CvT, Sec. 3)")
    pool = "cls" if c["cls_token"][-1] else "gap"  # Hugging Face then averages the normalised tokens
    stages = tuple(
        CvTStageConfig(
            embed_dim=c["embed_dim"][i],
            depth=c["depth"][i],
            num_heads=c["num_heads"][i],
            mlp_ratio=c["mlp_ratio"][i],
            kernel_size=c["patch_sizes"][i],
            stride=c["patch_stride"][i],
            padding=c["patch_padding"][i],
            kernel_qkv=c["kernel_qkv"][i],
            padding_q=c["padding_q"][i],
            stride_q=c["stride_q"][i],
            padding_kv=c["padding_kv"][i],
            stride_kv=c["stride_kv"][i],
            projection="dw_bn",
            qkv_bias=c["qkv_bias"][i],
            cls_token=c["cls_token"][i],
            drop_rate=c["drop_rate"][i],
            attn_drop_rate=c["attention_drop_rate"][i],
            drop_path=c["drop_path_rate"][i],
        )
        for i in range(len(c["depth"]))
    )
    return CvTConfig(stages=stages, in_chans=c["num_channels"], num_classes=_num_labels(config), attn_scale="embed_dim",
                     pool=pool)


_HF_CVT_BLOCK = {
    "layernorm_before": "norm1",
    "attention.attention.convolution_projection_query.convolution_projection.convolution": "attn.qkv.conv_q.conv",
    "attention.attention.convolution_projection_query.convolution_projection.normalization": "attn.qkv.conv_q.norm",
    "attention.attention.convolution_projection_key.convolution_projection.convolution": "attn.qkv.conv_k.conv",
    "attention.attention.convolution_projection_key.convolution_projection.normalization": "attn.qkv.conv_k.norm",
    "attention.attention.convolution_projection_value.convolution_projection.convolution": "attn.qkv.conv_v.conv",
    "attention.attention.convolution_projection_value.convolution_projection.normalization": "attn.qkv.conv_v.norm",
    "attention.attention.projection_query": "attn.qkv.q",
    "attention.attention.projection_key": "attn.qkv.k",
    "attention.attention.projection_value": "attn.qkv.v",
    "attention.output.dense": "attn.mha.proj",
    "layernorm_after": "norm2",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
}


HF_CVT_KEYS: list[Rule] = [
    (r"cvt\.encoder\.stages\.(\d+)\.embedding\.convolution_embeddings\.projection\.", r"stages.\1.embed.proj."),
    (r"cvt\.encoder\.stages\.(\d+)\.embedding\.convolution_embeddings\.normalization\.", r"stages.\1.embed.norm."),
    (r"cvt\.encoder\.stages\.(\d+)\.cls_token$", r"stages.\1.cls_token"),
    *module_rules(r"cvt\.encoder\.stages\.(\d+)\.layers\.(\d+)\.", r"stages.\1.blocks.\2.", _HF_CVT_BLOCK),
    (r"layernorm\.", "norm."),
    (r"classifier\.", "head."),
]
