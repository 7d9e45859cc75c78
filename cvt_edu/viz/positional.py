"""The figure of chapter 1 on positional embeddings: how similar the embeddings of two positions are."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from einops import rearrange

__all__ = ["plot_pos_similarity"]

def plot_pos_similarity(
    similarities: Mapping[str, torch.Tensor],
    *,
    title: str = "Cosine similarity of positional embeddings",
    xlabel: str = "column of the patch",
    ylabel: str = "row of the patch",
    colorbar_label: str = "cosine similarity",
) -> matplotlib.figure.Figure:
    """One panel per set of embeddings, drawn as in ViT's Fig. 7 (center): tile (i, j) of a panel
    shows the similarity of patch (i, j) with every patch. Each panel has its own colour scale.

    Args:
        similarities: panel title -> a tensor (H/P, W/P, H/P, W/P) from :func:`pos_embed_similarity`.
        title, xlabel, ylabel, colorbar_label: the text of the figure.
    """
    fig, axes = plt.subplots(1, len(similarities), figsize=(5.0 * len(similarities), 4.4), squeeze=False)
    for ax, (name, sim) in zip(axes[0], similarities.items()):
        gh, gw = sim.shape[:2]
        tiles = F.pad(sim.float(), (0, 1, 0, 1), value=float("nan"))  # a blank line between tiles
        shown = ax.imshow(rearrange(tiles, "i j k l -> (i k) (j l)").numpy(), cmap="viridis", interpolation="nearest")
        fig.colorbar(shown, ax=ax, fraction=0.046, label=colorbar_label)
        ax.set_xticks([j * (gw + 1) + (gw - 1) / 2 for j in range(gw)], [str(j + 1) for j in range(gw)])
        ax.set_yticks([i * (gh + 1) + (gh - 1) / 2 for i in range(gh)], [str(i + 1) for i in range(gh)])
        ax.tick_params(length=0)
        ax.set(title=name, xlabel=xlabel, ylabel=ylabel)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
