"""Geometry of the convolutional token embedding: token windows, stacked embeddings, stage tables, drawings."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from torch import nn

from cvt_edu.models import build_model
from cvt_edu.patching import compose_embeddings, token_window
from cvt_edu.viz.embedding import cvt_embeddings, pca_rgb, plot_receptive_fields, plot_token_maps, stage_summary, stage_table


def support_of_token(layers, size, i, j):
    """Pixels that change token (i, j) of a stack of convolutions, found with autograd."""
    convs = nn.Sequential(*(nn.Conv2d(1, 1, k, stride=s, padding=p, bias=False) for k, s, p in layers))
    for conv in convs:
        nn.init.constant_(conv.weight, 1.0)
    x = torch.ones(1, 1, size, size, requires_grad=True)
    convs(x)[0, 0, i, j].backward()
    rows = x.grad[0, 0].abs().sum(1).nonzero().flatten()
    cols = x.grad[0, 0].abs().sum(0).nonzero().flatten()
    return (int(rows.min()), int(rows.max()) + 1), (int(cols.min()), int(cols.max()) + 1)


def clip(window, size):
    return max(window[0], 0), min(window[1], size)


@pytest.mark.parametrize("layers", [[(4, 4, 0)], [(3, 2, 1)], [(7, 4, 2)], [(3, 2, 1)] * 3, [(7, 4, 2), (3, 2, 1)]])
def test_token_windows_are_the_pixels_the_convolutions_read(layers):
    k, s, p = compose_embeddings(layers)
    for i, j in [(0, 0), (1, 2), (2, 1)]:
        rows, cols = support_of_token(layers, 32, i, j)
        assert rows == clip(token_window(i, k, s, p), 32)
        assert cols == clip(token_window(j, k, s, p), 32)


def test_vit_patches_do_not_overlap_and_cvt_windows_do():
    assert token_window(1, 4, 4, 0) == (4, 8) and token_window(0, 4, 4, 0)[1] == 4  # ViT: tiles
    first, second = token_window(0, 3, 2, 1), token_window(1, 3, 2, 1)
    assert first == (-1, 2) and second == (1, 4)  # CvT: one shared pixel, one padding pixel
    assert compose_embeddings([(3, 2, 1)] * 3) == (15, 8, 7)


def test_bad_windows_are_rejected():
    with pytest.raises(ValueError, match="stride >= 1"):
        token_window(0, 3, 0, 1)
    with pytest.raises(ValueError, match="at least one"):
        compose_embeddings([])


@pytest.mark.parametrize(
    "name,size,sides,widths",
    [("cvt-tiny", 32, [16, 8, 4], [64, 128, 192]), ("cvt-13", 224, [56, 28, 14], [64, 192, 384])],
)
def test_stage_summary_reads_the_real_stages(name, size, sides, widths):
    model = build_model(name)
    rows = stage_summary(model, size)
    assert [r["height"] for r in rows] == [r["formula"] for r in rows] == sides
    assert [r["embed_dim"] for r in rows] == widths
    assert rows[-1]["tokens"] == sides[-1] ** 2 + 1  # the [CLS] token of the last stage
    assert cvt_embeddings(model)[0] == (rows[0]["kernel_size"], rows[0]["stride"], rows[0]["padding"])
    assert model.training  # the mode is restored
    table = stage_table(rows)
    assert table.count("\n") == 1 + len(rows) and f"{sides[0]} x {sides[0]}" in table


def test_pca_rgb_is_an_image_in_0_1():
    rgb = pca_rgb(torch.randn(16, 5, 7))
    assert rgb.shape == (5, 7, 3) and rgb.min() >= 0 and rgb.max() <= 1
    assert torch.allclose(rgb.amax((0, 1)), torch.ones(3))
    with pytest.raises(ValueError, match="C >= 3"):
        pca_rgb(torch.randn(2, 4, 4))


def test_figures_have_one_panel_per_embedding_and_their_labels():
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    fig = plot_receptive_fields(image, {"ViT": (4, 4, 0), "CvT": (3, 2, 1)}, title="T", xlabel="x (px)")
    assert len(fig.axes) == 2 and fig._suptitle.get_text() == "T"
    assert fig.axes[0].get_title().endswith("8x8 tokens") and fig.axes[1].get_title().endswith("16x16 tokens")
    assert fig.axes[1].get_xlabel() == "x (px)"
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        plot_receptive_fields(image[None], {"ViT": (4, 4, 0)})
    maps = [[torch.randn(8, 16, 16), torch.randn(8, 4, 4)]]
    fig = plot_token_maps([image], maps, row_labels=["cvt"], col_labels=["image", "1", "3"])
    assert len(fig.axes) == 3 and fig.axes[2].get_title() == "3"
    with pytest.raises(ValueError, match="column labels"):
        plot_token_maps([image], maps, row_labels=["cvt"], col_labels=["image"])
