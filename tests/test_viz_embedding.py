"""Geometry of the convolutional token embedding: token windows, stacked embeddings, stage tables, drawings."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from torch import nn

from cvt_edu.course.i18n import t
from cvt_edu.models import build_model
from cvt_edu.patching import compose_embeddings, token_window
from cvt_edu.viz.embedding import cvt_embeddings, plot_receptive_fields, stage_summary, stage_table
from cvt_edu.viz.pyramid import pca_rgb, plot_token_maps


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
    lines = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()]
    assert len(lines) == 2 + len(rows) and all(len(cells) == 11 for cells in lines)
    assert [cells[4] for cells in lines[2:]] == [f"{s} x {s}" for s in sides]


def test_pca_rgb_is_an_image_in_0_1_of_the_main_directions():
    rgb = pca_rgb(torch.randn(16, 5, 7))
    assert rgb.shape == (5, 7, 3) and rgb.min() >= 0 and rgb.max() <= 1
    assert torch.allclose(rgb.amax((0, 1)), torch.ones(3)) and torch.allclose(rgb.amin((0, 1)), torch.zeros(3))
    # tokens that vary along one direction only: red, the first component, follows it
    line = torch.linspace(-1, 1, 12)[:, None] * torch.tensor([3.0, 4.0, 0.0, 0.0])  # (12 tokens, C = 4)
    red = pca_rgb(line.T.reshape(4, 3, 4))[..., 0].flatten()
    assert torch.allclose(red, torch.linspace(0, 1, 12), atol=1e-5) or torch.allclose(red, torch.linspace(1, 0, 12), atol=1e-5)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        pca_rgb(torch.randn(2, 2, 4, 4))


def test_figures_have_one_panel_per_embedding_and_their_labels():
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    fig = plot_receptive_fields(image, {"ViT": (4, 4, 0), "CvT": (3, 2, 1)}, lang="es")
    assert len(fig.axes) == 2 and fig._suptitle.get_text() == t("rf_title", "es")
    assert fig.axes[0].get_title() == f"ViT\n{t('rf_subtitle', 'es', h=8, w=8)}"
    assert fig.axes[1].get_title() == f"CvT\n{t('rf_subtitle', 'es', h=16, w=16)}"
    assert fig.axes[1].get_xlabel() == t("x_pixels", "es")
    assert plot_receptive_fields(image, {"ViT": (4, 4, 0)}, title="T", lang="pt")._suptitle.get_text() == "T"
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        plot_receptive_fields(image[None], {"ViT": (4, 4, 0)})
    images = torch.stack([image, image.flip(-1)])
    maps = [torch.randn(2, 8, 16, 16), torch.randn(2, 8, 4, 4)]  # two stages, (B, C, H, W) each
    fig = plot_token_maps(images, maps, row_labels=["a", "b"], title="T", lang="pt")
    assert len(fig.axes) == 2 * 3 and fig.axes[2].get_title() == t("maps_stage", "pt", i=2, h=4, w=4, c=8)
    assert [fig.axes[i].get_ylabel() for i in (0, 3)] == ["a", "b"] and fig._suptitle.get_text() == "T"
    assert (fig.axes[5].get_images()[0].get_array() == pca_rgb(maps[1][1]).numpy()).all()  # row b draws map b
    with pytest.raises(ValueError, match="row labels"):
        plot_token_maps(images, maps, row_labels=["a"])
    with pytest.raises(ValueError, match="stage 2"):
        plot_token_maps(images, [maps[0], maps[1][:1]])
