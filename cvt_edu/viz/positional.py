"""The figure of chapters 1 and 2 on positional embeddings: how similar the embeddings of two positions are.

Its text comes from the string table (:mod:`cvt_edu.course.i18n`) in ``lang``; ``None``: the notebook's language.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from einops import rearrange

from ..course.i18n import t

__all__ = ["plot_pos_similarity"]


def plot_pos_similarity(
    similarities: Mapping[str, torch.Tensor], *, shared_scale: bool = True, lang: str | None = None
) -> matplotlib.figure.Figure:
    """One panel per set of embeddings, drawn as in ViT's Fig. 7 (center): tile (i, j) of a panel
    shows the similarity of patch (i, j) with every patch.

    Args:
        similarities: panel title -> a tensor (H/P, W/P, H/P, W/P) from
            :func:`cvt_edu.positional.pos_embed_similarity`.
        shared_scale: every panel on one colour range, from the smallest similarity of all panels to
            the largest, so that the same colour means the same cosine; ``False``: each panel its own range.
        lang: language of the text.
    """
    scale = {}
    if shared_scale:
        values = torch.cat([s.float().flatten() for s in similarities.values()])
        scale = dict(vmin=values.min().item(), vmax=values.max().item())
    fig, axes = plt.subplots(1, len(similarities), figsize=(5.0 * len(similarities), 4.4), squeeze=False)
    for ax, (name, sim) in zip(axes[0], similarities.items()):
        gh, gw = sim.shape[:2]
        tiles = F.pad(sim.float(), (0, 1, 0, 1), value=float("nan"))  # a blank line between tiles
        shown = ax.imshow(rearrange(tiles, "i j k l -> (i k) (j l)").numpy(), cmap="viridis", interpolation="nearest", **scale)
        fig.colorbar(shown, ax=ax, fraction=0.046, label=t("cosine_similarity", lang))
        ax.set_xticks([j * (gw + 1) + (gw - 1) / 2 for j in range(gw)], [str(j + 1) for j in range(gw)])
        ax.set_yticks([i * (gh + 1) + (gh - 1) / 2 for i in range(gh)], [str(i + 1) for i in range(gh)])
        ax.tick_params(length=0)
        ax.set(title=name, xlabel=t("patch_column", lang), ylabel=t("patch_row", lang))
    fig.suptitle(t("pos_sim_title", lang))
    fig.tight_layout()
    return fig
