"""Renaming the tensors of an outside checkpoint to the names of a ``cvt_edu`` model.

Every pretrained format the course loads (Hugging Face CvT, ViT, Swin and PVT, torchvision ViT)
pairs its tensor names with ours through one explicit table of :data:`Rule` s: a regular expression
matched at the start of the outside name and its replacement, for example
``(r"vit\\.encoder\\.layer\\.(\\d+)\\.layernorm_before\\.", r"blocks.\\1.norm1.")``, which maps
``vit.encoder.layer.3.layernorm_before.weight`` to ``blocks.3.norm1.weight``. The weights are
then loaded with ``strict=True``, so a tensor no rule knows, or a model tensor no rule fills, is
an error, never a silently random layer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import torch

__all__ = ["Rule", "module_rules", "rename_state_dict"]

# (pattern matched at the start of an outside name, replacement: a template with \1, \2, ...
# or a function of the match), as re.sub takes them.
Rule = tuple[str, "str | Callable[[re.Match[str]], str]"]


def rename_state_dict(
    state: Mapping[str, torch.Tensor], rules: list[Rule], what: str, ignore: tuple[str, ...] = ()
) -> dict[str, torch.Tensor]:
    """Rename every tensor of an outside state dict with the first rule whose pattern matches its start.

    Args:
        state: outside name -> tensor.
        rules: the format's table, tried in order.
        what: the format, for error messages (``"Hugging Face ViT"``).
        ignore: prefixes of outside names to drop (tensors the course model does not use).

    Returns:
        ``cvt_edu`` name -> tensor (the same tensors, not copies).

    Raises:
        ValueError: if a tensor matches no rule and is not ignored; the message counts such
            tensors and names the first five.
    """
    out, unknown = {}, []
    for key, tensor in state.items():
        for pattern, replacement in rules:
            new, matched = re.subn("^" + pattern, replacement, key, count=1)
            if matched:
                out[new] = tensor
                break
        else:
            if not key.startswith(ignore):
                unknown.append(key)
    if unknown:
        raise ValueError(
            f"{len(unknown)} {what} tensors have no place in the cvt_edu model, for example {unknown[:5]}"
        )
    return out


def module_rules(outside_prefix: str, edu_prefix: str, modules: dict[str, str]) -> list[Rule]:
    r"""Rules for the modules of a repeated block: ``outside_prefix`` + name -> ``edu_prefix`` + name.

    Args:
        outside_prefix: a regular expression for the block, with groups
            (``r"vit\.encoder\.layer\.(\d+)\."``).
        edu_prefix: its replacement (``r"blocks.\1."``).
        modules: outside module name -> ``cvt_edu`` module name inside the block, both plain
            dotted names (``"layernorm_before" -> "norm1"``); each module keeps its tensors' last
            name part (``weight``, ``bias``, BatchNorm's ``running_mean`` ...).

    Returns:
        One :data:`Rule` per module, in the order of ``modules``.
    """
    return [(outside_prefix + re.escape(outside) + r"\.", edu_prefix + edu + ".") for outside, edu in modules.items()]
