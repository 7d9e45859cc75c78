"""What every converter of ``transformers`` checkpoints needs: square sizes, label names and counts, BatchNorm's step counters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


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


def _keep_batch_counters(state: dict[str, torch.Tensor], model: nn.Module) -> None:
    """Fill in BatchNorm's ``num_batches_tracked`` where a checkpoint lacks it.

    It only counts training steps (and matters only when BatchNorm's momentum is ``None``),
    never the output in eval mode; some converted checkpoints leave it out.
    """
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state.setdefault(key, value)
