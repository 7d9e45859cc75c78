"""Pretrained weights from Hugging Face and torchvision, loaded into the course's own models.

The course builds its models from scratch; this package shows that they are the real thing: the ImageNet
weights published with the papers run unchanged in them. :func:`load_pretrained` is the one entry point (a Hub
id, a folder written by ``transformers``, or a ``cvt_edu`` checkpoint); each outside format has its own module
with two small, explicit pieces, a *config translation* and a *key mapping* (a table of rules that pairs every
outside tensor name with the ``cvt_edu`` name of the same tensor, applied by
:func:`cvt_edu.pretrained.renaming.rename_state_dict`):

- :mod:`.cvt`: Hugging Face CvT (``microsoft/cvt-13``, ``microsoft/cvt-21``; Wu et al., ICCV 2021, Table 2);
- :mod:`.vit`: Hugging Face ViT (``google/vit-base-patch16-224``) and torchvision's ``vit_b_16``;
- :mod:`.swin`: Hugging Face Swin (``microsoft/swin-tiny-patch4-window7-224``);
- :mod:`.pvt`: Hugging Face PVT v1.

The weights are then loaded with ``strict=True``, so a tensor left out or left over is an error.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..cvt import CvT
from ..train.checkpoint import load_checkpoint, read_json_object, read_weights
from ..vit import ViT
from .common import _hf_label_names, _keep_batch_counters, _numbered
from .cvt import HF_CVT_KEYS, cvt_config_from_hf
from .pvt import pvt_from_hf
from .renaming import rename_state_dict
from .swin import swin_from_hf
from .vit import HF_VIT_KEYS, vit_config_from_hf

__all__ = ["SUPPORTED_MODEL_TYPES", "load_pretrained", "model_from_hf"]

SUPPORTED_MODEL_TYPES = ("cvt", "vit", "swin", "pvt")

# A Hub id is "owner/name"; anything else (or an existing folder) is a local path.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# A URL (http://..., https://..., hf://...) is neither; a Hub page's URL holds the id after the host.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_HUB_URL = re.compile(r"^https?://(?:www\.)?(?:huggingface\.co|hf\.co)/(?!datasets/|spaces/)([A-Za-z0-9][\w.-]*/[\w.-]+)")


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
        ValueError: if ``name_or_path`` is a URL (a Hub id or a folder is expected; for a Hub page's
            URL the message gives its id); if ``config.json`` is not a JSON object or the weights file is
            truncated or corrupt (naming the file); if ``model_type`` is not one of
            :data:`SUPPORTED_MODEL_TYPES` (the message lists them), or the config uses a feature
            ``cvt_edu`` does not implement, or the weights hold tensors the model has no place for; and
            for a ``cvt_edu`` checkpoint, whatever :func:`cvt_edu.train.checkpoint.load_checkpoint` refuses.
        RuntimeError: from ``load_state_dict`` if a tensor is missing or has the wrong shape.
    """
    folder = _resolve(name_or_path)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder} has no config.json, so it is not a model folder")
    config = read_json_object(config_path)

    if "arch" in config:  # written by cvt_edu.save_pretrained
        model, saved = load_checkpoint(folder)
        return model, list(saved.get("classes") or _numbered(model.config.num_classes))

    model_type = config.get("model_type")
    if "model_type" not in config:
        raise ValueError(
            f"{config_path}: has neither 'arch' (a cvt_edu checkpoint) nor 'model_type' (a transformers model); "
            f"supported model types: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
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
    """A local folder as is; a Hub id (``owner/name``) that is not a local folder is downloaded.

    Raises:
        ValueError: for a URL, which ``Path`` would silently turn into a wrong folder name (``https:/...``).
        FileNotFoundError: for a file, a missing folder, or a Hub id that cannot be downloaded.
    """
    if isinstance(name_or_path, str) and _URL.match(name_or_path):
        hub = _HUB_URL.match(name_or_path)
        hint = f"; for this model pass its Hub name {hub.group(1)!r}" if hub else ""
        raise ValueError(
            f"expected a Hugging Face Hub name such as 'microsoft/cvt-13' or a local folder, got the URL {name_or_path!r}{hint}"
        )
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
        ValueError: if ``model.safetensors`` is truncated or corrupt, naming it.
    """
    if (folder / "model.safetensors").is_file():
        return read_weights(folder / "model.safetensors")
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{folder} has config.json but no weights: expected model.safetensors or pytorch_model.bin")


# --------------------------------------------------------------------------------------------
# Renaming state dicts
# --------------------------------------------------------------------------------------------

# Hugging Face tensors the classifier never uses: ViT's pooler (a dense + tanh layer on [CLS]
# that ViTModel checkpoints carry; ViTForImageClassification reads [CLS] without it).
_HF_IGNORED = ("vit.pooler.",)


# --------------------------------------------------------------------------------------------
# Hugging Face CvT (transformers' CvtForImageClassification)
# --------------------------------------------------------------------------------------------

# The CvT-13 values, used for any field a config.json leaves out.
# Inside one transformer block: Hugging Face module (under cvt.encoder.stages.{i}.layers.{j})
# -> cvt_edu module (under stages.{i}.blocks.{j}).
# ``CvtForImageClassification`` names -> :class:`~cvt_edu.cvt.CvT` names (see :mod:`cvt_edu.pretrained.renaming`).
# --------------------------------------------------------------------------------------------
# Hugging Face ViT (transformers' ViTForImageClassification)
# --------------------------------------------------------------------------------------------

# The ViT-B/16 values, used for any field a config.json leaves out.
# Inside one transformer layer: Hugging Face module (under vit.encoder.layer.{i}) -> cvt_edu
# module (under blocks.{i}). These are the names on disk (Hub files and save_pretrained output).
# ``ViTForImageClassification`` names -> :class:`~cvt_edu.vit.ViT` names (see :mod:`cvt_edu.pretrained.renaming`).
# --------------------------------------------------------------------------------------------
# torchvision ViT (torchvision.models.vit_b_16 and friends)
# --------------------------------------------------------------------------------------------


# Inside one encoder layer: torchvision module (under encoder.layers.encoder_layer_{i}) -> cvt_edu
# module (under blocks.{i}). ``in_proj.q`` ... are the thirds of the packed projection (see below).
# torchvision ``VisionTransformer`` names (packed q, k, v unpacked) -> :class:`~cvt_edu.vit.ViT` names.
