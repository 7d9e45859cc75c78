"""Pretrained weights from Hugging Face and torchvision, loaded into the course's own models.

The course builds ViT and CvT from scratch; this module shows that they are the real thing:
the ImageNet weights published with the papers run unchanged in them. Each outside format
gets two small, explicit pieces:

1. a *config translation*: the outside ``config.json`` (or torchvision module) becomes a
   :class:`~cvt_edu.vit.ViTConfig` or :class:`~cvt_edu.cvt.CvTConfig`;
2. a *key mapping*: a table of rules that pairs every outside tensor name with the ``cvt_edu``
   name of the same tensor (:data:`HF_CVT_KEYS`, :data:`HF_VIT_KEYS`, :data:`TORCHVISION_VIT_KEYS`;
   applied by :func:`cvt_edu.pretrained.renaming.rename_state_dict`, as Swin's and PVT's are).

The weights are then loaded with ``strict=True``, so a tensor left out or left over is an error.

Sources: CvT-13 and CvT-21 (Wu et al., ICCV 2021, Table 2), ``microsoft/cvt-13`` and
``microsoft/cvt-21`` on the Hugging Face Hub; ViT-B/16 (Dosovitskiy et al., ICLR 2021, Table 1),
``google/vit-base-patch16-224`` on the Hub or ``torchvision.models.vit_b_16``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from ..cvt import CvT, CvTConfig, CvTStageConfig
from ..train.checkpoint import load_checkpoint
from ..vit import ViT, ViTConfig
from .renaming import Rule, module_rules, rename_state_dict
from .swin_pvt import _side, pvt_from_hf, swin_from_hf

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "load_pretrained",
    "cvt_config_from_hf",
    "vit_config_from_hf",
    "HF_CVT_KEYS",
    "HF_VIT_KEYS",
    "TORCHVISION_VIT_KEYS",
    "torchvision_vit_state_dict",
    "vit_from_torchvision",
]

SUPPORTED_MODEL_TYPES = ("cvt", "vit", "swin", "pvt")

# A Hub id is "owner/name"; anything else (or an existing folder) is a local path.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def load_pretrained(name_or_path: str | os.PathLike) -> tuple[nn.Module, list[str]]:
    """Load pretrained weights into a course model.

    Args:
        name_or_path: one of
            - a Hugging Face Hub id, ``"microsoft/cvt-13"``, ``"microsoft/cvt-21"``,
              ``"google/vit-base-patch16-224"``, ``"microsoft/swin-tiny-patch4-window7-224"`` or a
              PVT-Tiny checkpoint of the ``transformers`` PVT model such as ``"Zetatech/pvt-tiny-224"``
              (downloaded with ``huggingface_hub``: needs internet);
            - a folder written by ``transformers``' ``save_pretrained`` (``config.json`` whose
              ``model_type`` is ``"cvt"``, ``"vit"``, ``"swin"`` or ``"pvt"``, plus ``model.safetensors``
              or ``pytorch_model.bin``) of an image classifier;
            - a folder written by :func:`cvt_edu.save_pretrained` (``config.json`` with ``"arch"``).

    Returns:
        The model (a :class:`~cvt_edu.cvt.CvT`, :class:`~cvt_edu.vit.ViT`, :class:`~cvt_edu.swin.Swin`
        or :class:`~cvt_edu.pvt.PVT`, on the CPU, in eval
        mode), mapping images (B, 3, H, W) to logits (B, K), and the K label names: from
        ``id2label`` for Hugging Face folders, from the ``classes`` saved with a ``cvt_edu``
        checkpoint, else ``"0"`` ... ``"K-1"``.

    Raises:
        FileNotFoundError: if there is no such folder (and no such Hub repository), or the
            folder lacks ``config.json`` or the weights; the message names the path.
        ValueError: if ``model_type`` is not one of :data:`SUPPORTED_MODEL_TYPES` (the message
            lists them), or the config uses a feature ``cvt_edu`` does not implement, or the
            weights hold tensors the model has no place for.
        RuntimeError: from ``load_state_dict`` if a tensor is missing or has the wrong shape.
    """
    folder = _resolve(name_or_path)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder} has no config.json, so it is not a model folder")
    config = json.loads(config_path.read_text(encoding="utf-8"))

    if "arch" in config:  # written by cvt_edu.save_pretrained
        model, saved = load_checkpoint(folder)
        return model, list(saved.get("classes") or _numbered(model.config.num_classes))

    model_type = config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"{config_path}: model_type {model_type!r} is not supported; "
            f"supported model types: {', '.join(SUPPORTED_MODEL_TYPES)} (or a cvt_edu checkpoint)"
        )
    return model_from_hf(config, _read_weights(folder)), _hf_label_names(config)


def model_from_hf(config: dict[str, Any], state: dict[str, torch.Tensor]) -> nn.Module:
    """The ``cvt_edu`` model holding the weights of a ``transformers`` image classifier.

    Args:
        config: the model's ``config.json`` as a dict (``model_type`` "cvt", "vit", "swin" or "pvt").
        state: its state dict, ``transformers`` names.

    Returns:
        The model, in eval mode.

    Raises:
        ValueError: for another ``model_type``, or tensors with no place in the model.
        RuntimeError: from ``load_state_dict`` if a tensor is missing or has the wrong shape.
    """
    model_type = config.get("model_type")
    if model_type in ("swin", "pvt"):
        return (swin_from_hf if model_type == "swin" else pvt_from_hf)(config, state).eval()
    if model_type == "cvt":
        model, rules, what = CvT(cvt_config_from_hf(config)), HF_CVT_KEYS, "Hugging Face CvT"
    elif model_type == "vit":
        model, rules, what = ViT(vit_config_from_hf(config)), HF_VIT_KEYS, "Hugging Face ViT"
    else:
        raise ValueError(f"model_type {model_type!r} is not supported; supported model types: {', '.join(SUPPORTED_MODEL_TYPES)}")
    state = rename_state_dict(state, rules, what, ignore=_HF_IGNORED)
    _keep_batch_counters(state, model)
    model.load_state_dict(state, strict=True)
    return model.eval()


def _resolve(name_or_path: str | os.PathLike) -> Path:
    """A local folder as is; a Hub id (``owner/name``) that is not a local folder is downloaded."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if path.exists():
        raise FileNotFoundError(f"{path} is a file; expected a model folder")
    if not _HUB_ID.match(str(name_or_path)):
        raise FileNotFoundError(f"there is no folder {path}")
    try:
        from huggingface_hub import snapshot_download  # only needed, and only reachable, online
    except ImportError as e:
        raise FileNotFoundError(f"there is no folder {path}; to download it from the Hub, pip install huggingface_hub") from e
    try:
        # Fetch the safetensors weights if the repository has them, else the pickled ones.
        got = Path(snapshot_download(str(name_or_path), allow_patterns=["config.json", "model.safetensors"]))
        if not (got / "model.safetensors").is_file():
            got = Path(snapshot_download(str(name_or_path), allow_patterns=["config.json", "pytorch_model.bin"]))
    except Exception as e:  # offline, unknown repository, no access ...
        raise FileNotFoundError(
            f"{name_or_path!r} is not a local folder, and downloading it from the Hugging Face Hub failed: {e}"
        ) from e
    return got


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``model.safetensors`` or, failing that, ``pytorch_model.bin``.

    Raises:
        FileNotFoundError: if neither file is there (sharded checkpoints are not supported).
    """
    if (folder / "model.safetensors").is_file():
        return load_file(str(folder / "model.safetensors"))
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{folder} has config.json but no weights: expected model.safetensors or pytorch_model.bin")


def _numbered(n: int) -> list[str]:
    return [str(i) for i in range(n)]


def _hf_label_names(config: dict[str, Any]) -> list[str]:
    """Label names in class order from ``id2label`` (JSON keys are strings: {"0": "tench", ...})."""
    id2label = config.get("id2label")
    if id2label is None:  # transformers omits it for the default of two labels
        return [f"LABEL_{i}" for i in range(config.get("num_labels", 2))]
    return [id2label[str(i)] for i in range(len(id2label))]


def _num_labels(config: dict[str, Any]) -> int:
    return len(config["id2label"]) if "id2label" in config else config.get("num_labels", 2)


# --------------------------------------------------------------------------------------------
# Renaming state dicts
# --------------------------------------------------------------------------------------------

# Hugging Face tensors the classifier never uses: ViT's pooler (a dense + tanh layer on [CLS]
# that ViTModel checkpoints carry; ViTForImageClassification reads [CLS] without it).
_HF_IGNORED = ("vit.pooler.",)


def _keep_batch_counters(state: dict[str, torch.Tensor], model: nn.Module) -> None:
    """Fill in BatchNorm's ``num_batches_tracked`` where a checkpoint lacks it.

    It only counts training steps (and matters only when BatchNorm's momentum is ``None``),
    never the output in eval mode; some converted checkpoints leave it out.
    """
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state.setdefault(key, value)


# --------------------------------------------------------------------------------------------
# Hugging Face CvT (transformers' CvtForImageClassification)
# --------------------------------------------------------------------------------------------

# The CvT-13 values, used for any field a config.json leaves out.
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
            Face's CvT implements), or the last stage has no [CLS] token.
    """
    c = {**_HF_CVT_DEFAULTS, **config}
    methods = set(c["qkv_projection_method"])
    if methods != {"dw_bn"}:
        raise ValueError(f"qkv_projection_method {sorted(methods)}: only 'dw_bn' is supported for Hugging Face CvT")
    if not c["cls_token"][-1]:
        raise ValueError("the last stage has no [CLS] token; cvt_edu's CvT classifies from it (mean pooling is not supported)")
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
    return CvTConfig(stages=stages, in_chans=c["num_channels"], num_classes=_num_labels(config), attn_scale="embed_dim")


# Inside one transformer block: Hugging Face module (under cvt.encoder.stages.{i}.layers.{j})
# -> cvt_edu module (under stages.{i}.blocks.{j}).
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


# ``CvtForImageClassification`` names -> :class:`~cvt_edu.cvt.CvT` names (see :mod:`cvt_edu.pretrained.renaming`).
HF_CVT_KEYS: list[Rule] = [
    (r"cvt\.encoder\.stages\.(\d+)\.embedding\.convolution_embeddings\.projection\.", r"stages.\1.embed.proj."),
    (r"cvt\.encoder\.stages\.(\d+)\.embedding\.convolution_embeddings\.normalization\.", r"stages.\1.embed.norm."),
    (r"cvt\.encoder\.stages\.(\d+)\.cls_token$", r"stages.\1.cls_token"),
    *module_rules(r"cvt\.encoder\.stages\.(\d+)\.layers\.(\d+)\.", r"stages.\1.blocks.\2.", _HF_CVT_BLOCK),
    (r"layernorm\.", "norm."),
    (r"classifier\.", "head."),
]


# --------------------------------------------------------------------------------------------
# Hugging Face ViT (transformers' ViTForImageClassification)
# --------------------------------------------------------------------------------------------

# The ViT-B/16 values, used for any field a config.json leaves out.
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


# Inside one transformer layer: Hugging Face module (under vit.encoder.layer.{i}) -> cvt_edu
# module (under blocks.{i}). These are the names on disk (Hub files and save_pretrained output).
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

# ``ViTForImageClassification`` names -> :class:`~cvt_edu.vit.ViT` names (see :mod:`cvt_edu.pretrained.renaming`).
HF_VIT_KEYS: list[Rule] = [
    (r"vit\.embeddings\.cls_token$", "cls_token"),
    (r"vit\.embeddings\.position_embeddings$", "pos_embed"),
    (r"vit\.embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    *module_rules(r"vit\.encoder\.layer\.(\d+)\.", r"blocks.\1.", _HF_VIT_LAYER),
    (r"vit\.layernorm\.", "norm."),
    (r"classifier\.", "head."),
]


# --------------------------------------------------------------------------------------------
# torchvision ViT (torchvision.models.vit_b_16 and friends)
# --------------------------------------------------------------------------------------------


# Inside one encoder layer: torchvision module (under encoder.layers.encoder_layer_{i}) -> cvt_edu
# module (under blocks.{i}). ``in_proj.q`` ... are the thirds of the packed projection (see below).
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

# torchvision ``VisionTransformer`` names (packed q, k, v unpacked) -> :class:`~cvt_edu.vit.ViT` names.
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
