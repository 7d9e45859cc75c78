"""Shifting images: the shift itself, token maps of both models, equivariance errors, the test-set sweep."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from cvt_edu.course.i18n import t
from cvt_edu.lab.shift import (
    equivariance_errors,
    prediction_changes,
    shift_images,
    shift_sweep,
    shuffle_patches,
    token_maps,
)
from cvt_edu.models import build_model
from cvt_edu.viz.shift import plot_equivariance, plot_error_maps, plot_prediction_changes, plot_shift_sweep, show_shifted


def test_shift_moves_content_down_and_right():
    x = torch.arange(16).reshape(1, 1, 4, 4)
    rolled = shift_images(x, 1)
    assert rolled[0, 0, 1, 1] == x[0, 0, 0, 0] and rolled[0, 0, 0, 0] == x[0, 0, 3, 3]  # wraps around
    padded = shift_images(x, (1, 2), mode="zeros")
    assert torch.equal(padded[0, 0, 1:, 2:], x[0, 0, :3, :2])
    assert padded[0, 0, 0].sum() == 0 and padded[0, 0, :, :2].sum() == 0
    back = shift_images(x, (-1, -2), mode="zeros")
    assert torch.equal(back[0, 0, :3, :2], x[0, 0, 1:, 2:])
    assert shift_images(x.to(torch.uint8), 2, "zeros").dtype == torch.uint8


def test_bad_shifts_are_rejected():
    with pytest.raises(ValueError, match="unknown shift mode 'reflect'"):
        shift_images(torch.zeros(1, 1, 4, 4), 1, mode="reflect")
    with pytest.raises(ValueError, match="out of a 4x4 image"):
        shift_images(torch.zeros(1, 1, 4, 4), 4, mode="zeros")


def test_shuffled_patches_keep_their_pixels_in_another_order():
    x = torch.arange(2 * 3 * 8 * 8).reshape(2, 3, 8, 8)
    y = shuffle_patches(x, 4, seed=1)
    assert y.shape == x.shape and not torch.equal(x, y)
    def patches(t):
        return sorted(tuple(t[0, :, r : r + 4, c : c + 4].flatten().tolist()) for r in (0, 4) for c in (0, 4))

    assert patches(x) == patches(y)
    assert torch.equal(shuffle_patches(x, 4, seed=1), y)  # seeded
    with pytest.raises(ValueError, match="not divisible by the patch size 3"):
        shuffle_patches(x, 3)


def test_a_vit_without_positional_embedding_ignores_the_order_of_its_patches():
    torch.manual_seed(0)
    vit = build_model("vit-tiny").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        vit.pos_embed.zero_()
        torch.testing.assert_close(vit(shuffle_patches(x, 4)), vit(x), rtol=1e-4, atol=1e-5)
        cvt = build_model("cvt-tiny").eval()
        assert (cvt(shuffle_patches(x, 4)) - cvt(x)).abs().max() > 1e-3


def test_token_maps_of_both_models():
    x = torch.randn(2, 3, 32, 32)
    cvt = [m.shape for m in token_maps(build_model("cvt-tiny"), x)]
    assert cvt == [(2, 64, 16, 16), (2, 64, 16, 16), (2, 128, 8, 8), (2, 192, 4, 4)]
    vit = token_maps(build_model("vit-tiny"), x)
    assert len(vit) == 1 + 9 and all(m.shape == (2, 128, 8, 8) for m in vit)
    with pytest.raises(TypeError, match="CvT or ViT"):
        token_maps(torch.nn.Linear(2, 2), x)


def test_vit_maps_follow_a_whole_patch_shift_except_for_the_positional_embedding():
    torch.manual_seed(0)
    vit = build_model("vit-tiny")
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        vit.pos_embed.zero_()
    rows = equivariance_errors(vit, x, 4)
    assert max(r["follow"] for r in rows) < 1e-4  # without it, ViT just permutes its patches
    assert min(r["stay"] for r in rows) > 0.5
    with torch.no_grad():
        vit.pos_embed.normal_(0, 1.0)
    assert equivariance_errors(vit, x, 4)[0]["follow"] > 0.3


def test_cvt_embedding_follows_the_shift_away_from_the_borders():
    torch.manual_seed(0)
    cvt = build_model("cvt-tiny")
    x = torch.zeros(2, 3, 32, 32)
    x[:, :, 8:20, 10:22] = torch.randn(2, 3, 12, 12)  # an object away from the borders
    rows = equivariance_errors(cvt, x, 4)
    assert rows[0]["follow"] < 1e-5  # the convolutional embedding is exactly equivariant here
    assert rows[0]["follow_map"].shape == (16, 16) and rows[0]["follow_map"].max() < 1e-5
    assert rows[-1]["follow_map"] is None
    assert [r["stride"] for r in rows] == [2, 2, 4, 8]
    assert rows[-1]["follow"] != rows[-1]["follow"]  # nan: 4 px is half a stage-3 token


def test_shift_sweep_on_real_images(cifar_mini):
    _, test = cifar_mini
    test = test.subset(64)
    torch.manual_seed(0)
    rows = shift_sweep(build_model("cvt-tiny"), test, [0, 2], mode="zeros")
    assert [r["shift"] for r in rows] == [0, 2]
    assert rows[0]["consistency"] == 1.0 and 0 <= rows[1]["consistency"] <= 1
    assert 0 <= rows[1]["accuracy"] <= 1
    with pytest.raises(ValueError, match="unknown shift mode"):
        shift_sweep(build_model("cvt-tiny"), test, [1], mode="wrap")


def test_prediction_changes_compare_with_the_unchanged_predictions(cifar_mini):
    _, test = cifar_mini
    test = test.subset(64)
    torch.manual_seed(0)
    model = build_model("vit-tiny")
    report = prediction_changes(model, test, {"same": test.images.clone(), "flipped": test.images.flip(-1)})
    assert report["same"]["consistency"] == 1.0 and 0 <= report["flipped"]["consistency"] <= 1
    with pytest.raises(ValueError, match="expected"):
        prediction_changes(model, test, {"small": test.images[:, :, :16, :16]})


def test_figures_speak_the_given_language():
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    fig = show_shifted(image, [0, 4], lang="es")
    assert len(fig.axes) == 4 and fig.axes[3].get_title() == t("shift_caption", "es", mode=t("zeros", "es"), shift=4)
    assert (fig.axes[1].get_images()[0].get_array() == shift_images(image, 4).permute(1, 2, 0).numpy()).all()
    fig = plot_equivariance({"a": (0.1, 1.0), "b": (0.5, 1.2)}, 8, lang="pt")
    assert fig.axes[0].get_ylabel() == t("relative_difference", "pt") and fig.axes[0].get_title() == t("eq_title", "pt", shift=8)
    rows = [{"shift": 0, "accuracy": 0.5, "consistency": 1.0}, {"shift": 2, "accuracy": 0.4, "consistency": 0.8}]
    fig = plot_shift_sweep({"cvt": {"circular": rows}}, lang="es")
    assert fig.axes[0].get_xlabel() == t("shift_px", "es")
    assert fig.axes[1].get_legend().get_texts()[0].get_text() == f"cvt ({t('circular', 'es')})"
    fig = plot_error_maps({"a": torch.rand(16, 16), "b": torch.rand(8, 8)}, lang="pt")
    assert fig.axes[1].get_title() == "b\n8x8" and fig.axes[-1].get_ylabel() == t("relative_difference", "pt")
    report = {"vit": {"x": {"accuracy": 0.3, "consistency": 0.9}}, "cvt": {"x": {"accuracy": 0.4, "consistency": 0.4}}}
    fig = plot_prediction_changes(report, title="T", lang="es")
    assert [ax.get_ylabel() for ax in fig.axes] == [t("test_accuracy", "es"), t("unchanged_predictions", "es")]
    assert fig._suptitle.get_text() == "T"
