"""Pictures of PVT's spatial reduction and of token-map pyramids: values, shapes, errors."""

import matplotlib
import pytest
import torch
import torch.nn.functional as F

from cvt_edu.course.i18n import t
from cvt_edu.models import build_model
from cvt_edu.viz.pyramid import pca_rgb, plot_spatial_reduction, plot_token_maps, reduce_image

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def image(cifar_mini):
    return cifar_mini[0].images[1]


@pytest.mark.parametrize("r", [1, 2, 4, 8])
def test_reduce_image_is_the_block_average(image, r):
    reduced = reduce_image(image, r)
    assert reduced.shape == (3, 32 // r, 32 // r)
    expected = F.avg_pool2d(image[None].float() / 255, r)[0]
    torch.testing.assert_close(reduced, expected, atol=1e-5, rtol=0)


def test_reduce_image_errors(image):
    with pytest.raises(ValueError, match="sr_ratio 3"):
        reduce_image(image, 3)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        reduce_image(image[:2], 2)


def test_spatial_reduction_figure(image):
    fig = plot_spatial_reduction(image, [1, 2, 4, 8], patch_size=2, lang="pt")
    axes = fig.get_axes()
    assert len(axes) == 4
    assert [ax.get_images()[0].get_array().shape[:2] for ax in axes] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    assert axes[2].get_title() == t("sr_panel", "pt").format(r=4, h=4, w=4, n=16, q=256)
    assert fig._suptitle.get_text() == t("sr_title", "pt")


def test_pca_rgb():
    x = torch.randn(1, 48, 5, 7)
    rgb = pca_rgb(x)
    assert rgb.shape == (5, 7, 3) and rgb.min() >= 0 and rgb.max() <= 1
    torch.testing.assert_close(rgb, pca_rgb(x[0]))  # (1, C, H, W) or (C, H, W): the same picture
    one = pca_rgb(torch.randn(2, 1, 1))  # one token, fewer channels than colours
    assert one.shape == (1, 1, 3) and (one == 0).all()


@pytest.mark.parametrize("name", ["pvt-tiny", "swin-tiny"])
def test_token_maps_figure(image, name):
    model = build_model(name).eval()
    with torch.no_grad():
        maps = model.forward_features(image[None].float() / 255).maps
    fig = plot_token_maps(image, maps, lang="es")
    axes = fig.get_axes()
    assert len(axes) == 4
    assert axes[1].get_title() == t("maps_stage", "es").format(i=1, h=16, w=16, c=48, n=256)
    assert axes[3].get_images()[0].get_array().shape[:2] == (4, 4)
