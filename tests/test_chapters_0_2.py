"""The package code behind chapters 0-2: patch pictures, positional embeddings, attention rollout and maps."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from cvt_edu.attention import attention_maps
from cvt_edu.course.i18n import t
from cvt_edu.models import build_model
from cvt_edu.patching import num_patches, patchify
from cvt_edu.positional import pos_embed_similarity, sincos_pos_embed_2d
from cvt_edu.viz.attention import (
    attention_rollout,
    cls_attention_map,
    mean_attention_distance,
    overlay_attention,
    plot_attention_distance,
    plot_attention_matrix,
    plot_attention_time,
    plot_cls_attention,
)
from cvt_edu.viz.patches import (
    patch_canvas,
    patch_size_widget,
    plot_num_tokens,
    show_patch_grid,
    show_patches,
    show_side_by_side,
)
from cvt_edu.viz.positional import plot_pos_similarity


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def image(cifar_mini):
    return cifar_mini[0].images[0]  # a real CIFAR-10 image, uint8 (3, 32, 32)


def random_attention(b=2, h=3, n=10, layers=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.softmax(torch.randn(b, h, n, n, generator=g), dim=-1) for _ in range(layers)]


# patching.num_patches and patch_viz


@pytest.mark.parametrize("size, p, n", [(32, 4, 64), (224, 16, 196), ((32, 16), 8, 8), (32, 32, 1), (32, 1, 1024)])
def test_num_patches_is_hw_over_p_squared(size, p, n):
    assert num_patches(size, p) == n


@pytest.mark.parametrize("p", [3, 0, 64])
def test_num_patches_rejects_a_patch_size_that_does_not_divide(p):
    with pytest.raises(ValueError, match="not divisible"):
        num_patches(32, p)


def test_patch_canvas_puts_patch_k_of_patchify_at_its_place(image):
    p, gap = 8, 1
    canvas = patch_canvas(image, p, gap)
    assert canvas.shape == (32 + 4, 32 + 4, 3) and canvas.dtype == torch.uint8
    patches = patchify(image[None], p)[0]  # (16, 8*8*3), flattened as (p1, p2, c)
    for k in (0, 5, 15):
        i, j = divmod(k, 4)
        block = canvas[i * (p + gap) : i * (p + gap) + p, j * (p + gap) : j * (p + gap) + p]
        assert torch.equal(block.reshape(-1), patches[k])
    assert (canvas[p, :] == 255).all()  # the white line under the first row of patches


def test_patch_canvas_reads_float_images_and_rejects_bad_shapes(image):
    assert torch.equal(patch_canvas(image.float() / 255, 4, 0), image.permute(1, 2, 0))
    with pytest.raises(ValueError, match="not divisible"):
        patch_canvas(image, 5)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        patch_canvas(image[None], 4)


def test_patch_figures_have_a_panel_per_patch_size_and_their_titles(image):
    fig = show_patch_grid(image, [2, 4, 8, 16], lang="es")
    assert [ax.get_title() for ax in fig.axes] == [t("patch_grid_panel", "es", p=p, n=n) for p, n in [(2, 256), (4, 64), (8, 16), (16, 4)]]
    assert fig._suptitle.get_text() == t("patch_grid_title", "es")
    fig = show_patches(image, 4, lang="pt")
    assert "(64, 48)" in fig.axes[1].get_title() and fig.axes[1].get_xlabel() == t("patch_vector_axis", "pt")
    assert fig._suptitle.get_text() == t("patch_sequence_title", "pt", p=4)
    assert len(fig.axes[0].texts) == 64  # every patch numbered
    fig = plot_num_tokens([32, 48], [1, 2, 4, 8, 16, 32], lang="pt")
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == [t("image_side", "pt", s=32), t("image_side", "pt", s=48)]
    assert list(lines[0].get_ydata()) == [1024, 256, 64, 16, 4, 1]
    assert list(lines[1].get_xdata()) == [1, 2, 4, 8, 16]  # 32 does not divide 48
    with pytest.raises(ValueError):
        show_patch_grid(image, [3])


def test_side_by_side_shows_each_image_with_its_title(image):
    fig = show_side_by_side([image, image.flip(-1)], ["a", "b"], title="T")
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    assert (fig.axes[1].get_images()[0].get_array() == image.flip(-1).permute(1, 2, 0).numpy()).all()
    with pytest.raises(ValueError, match="titles"):
        show_side_by_side([image], ["a", "b"])


def test_patch_size_widget_offers_the_patch_sizes_and_draws(image):
    widget = patch_size_widget(image, (2, 4, 8), lang="es")
    slider = widget.children[0]
    assert tuple(slider.options) == (2, 4, 8)
    assert slider.value == 4
    slider.value = 8  # redraws without error
    with pytest.raises(ValueError):
        patch_size_widget(image, (4, 5))


# positional


def test_sincos_embeddings_code_rows_and_columns():
    e = sincos_pos_embed_2d(4, 16)
    assert e.shape == (16, 16) and e.dtype == torch.float32
    assert torch.allclose(e[0], torch.tensor([0.0] * 4 + [1.0] * 4 + [0.0] * 4 + [1.0] * 4))  # position (0, 0)
    assert torch.equal(e[1, :8], e[0, :8]) and torch.equal(e[4, 8:], e[0, 8:])  # same row / same column
    assert torch.allclose(e[5, 0], torch.tensor(1.0).sin())  # row 1, lowest frequency 1
    assert sincos_pos_embed_2d((2, 3), 8).shape == (6, 8)
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_pos_embed_2d(4, 10)


def test_pos_embed_similarity_drops_cls_and_is_a_cosine():
    e = sincos_pos_embed_2d(4, 32)
    sim = pos_embed_similarity(e, 4)
    assert sim.shape == (4, 4, 4, 4)
    i, j = torch.arange(4)[:, None], torch.arange(4)
    assert torch.allclose(sim[i, j, i, j], torch.ones(4, 4))  # every patch is itself
    assert sim[0, 0, 0, 1] > sim[0, 0, 0, 3]  # nearer patches are more similar
    with_cls = torch.cat([torch.randn(1, 32), e])[None]  # (1, 1 + N, D), as ViT.pos_embed
    assert torch.allclose(pos_embed_similarity(with_cls, 4), sim)
    vit = build_model("vit-tiny")
    assert pos_embed_similarity(vit.pos_embed, 8).shape == (8, 8, 8, 8)
    with pytest.raises(ValueError, match="do not fit"):
        pos_embed_similarity(e, 5)
    fig = plot_pos_similarity({"a": sim, "b": sim}, lang="es")
    assert [ax.get_title() for ax in fig.axes[:2]] == ["a", "b"] and fig.axes[0].get_xlabel() == t("patch_column", "es")
    assert fig._suptitle.get_text() == t("pos_sim_title", "es")
    assert {im.get_clim() for ax in fig.axes for im in ax.get_images()} == {(sim.min().item(), sim.max().item())}  # one colour scale
    own = plot_pos_similarity({"a": sim, "b": 0.5 * sim}, shared_scale=False)
    assert own.axes[1].get_images()[0].get_clim() == pytest.approx((0.5 * sim.min().item(), 0.5))


# attention_viz


def test_rollout_of_one_layer_is_half_attention_half_identity():
    maps = random_attention(layers=1)
    expected = 0.5 * maps[0].mean(1) + 0.5 * torch.eye(10)
    assert torch.allclose(attention_rollout(maps), expected, atol=1e-6)


def test_rollout_multiplies_layers_in_order_and_rows_sum_to_one():
    maps = random_attention(layers=3)
    a = [0.5 * m.mean(1) + 0.5 * torch.eye(10) for m in maps]
    rollout = attention_rollout(maps)
    assert rollout.shape == (2, 10, 10)
    assert torch.allclose(rollout, a[2] @ a[1] @ a[0], atol=1e-6)
    assert torch.allclose(rollout.sum(-1), torch.ones(2, 10), atol=1e-5)


def test_rollout_of_identity_attention_is_identity():
    eye = torch.eye(6).expand(1, 2, 6, 6)
    assert torch.allclose(attention_rollout([eye, eye, eye]), torch.eye(6)[None])


def test_rollout_head_fusion_and_discard_ratio():
    maps = random_attention(layers=1)
    for fusion, reduce in (("max", lambda m: m.amax(1)), ("min", lambda m: m.amin(1))):
        fused = 0.5 * reduce(maps[0]) + 0.5 * torch.eye(10)
        assert torch.allclose(attention_rollout(maps, head_fusion=fusion), fused / fused.sum(-1, keepdim=True), atol=1e-6)
    kept = attention_rollout(maps, discard_ratio=0.5)
    off_diagonal = kept * (1 - torch.eye(10))
    assert ((off_diagonal > 0).sum(-1) <= 5).all()  # the 5 weakest of each row are gone
    assert torch.allclose(kept.sum(-1), torch.ones(2, 10), atol=1e-5)


@pytest.mark.parametrize(
    "maps, kwargs, match",
    [
        ([], {}, "at least one"),
        ([torch.rand(2, 10, 10)], {}, r"\(B, h, N, N\)"),
        ([torch.rand(1, 2, 5, 5), torch.rand(1, 2, 6, 6)], {}, "same N"),
        (random_attention(), {"discard_ratio": 1.0}, "discard_ratio"),
        (random_attention(), {"head_fusion": "median"}, "head_fusion"),
    ],
)
def test_rollout_errors(maps, kwargs, match):
    with pytest.raises(ValueError, match=match):
        attention_rollout(maps, **kwargs)


def test_cls_attention_map_reads_row_zero_without_cls_column():
    a = torch.arange(2 * 17 * 17, dtype=torch.float).reshape(2, 17, 17)
    m = cls_attention_map(a)
    assert m.shape == (2, 4, 4)
    assert torch.equal(m[1].flatten(), a[1, 0, 1:])
    assert cls_attention_map(torch.rand(3, 4, 7, 7), (2, 3)).shape == (3, 4, 2, 3)
    with pytest.raises(ValueError, match="square grid"):
        cls_attention_map(torch.rand(1, 7, 7))
    with pytest.raises(ValueError, match="do not fit"):
        cls_attention_map(torch.rand(1, 17, 17), 3)
    with pytest.raises(ValueError, match="square attention"):
        cls_attention_map(torch.rand(1, 17, 16))


def test_mean_attention_distance_in_pixels():
    n = 1 + 4 * 4
    local = torch.eye(n).expand(2, 3, n, n)  # every patch attends to itself: distance 0
    assert torch.allclose(mean_attention_distance([local, local], patch_size=4), torch.zeros(2, 3))
    # patch (0, 0) of a 1x2 grid attending only to patch (0, 1) and back: one patch = P pixels away
    swap = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, 1, 0]]).expand(1, 1, 3, 3)
    assert torch.allclose(mean_attention_distance([swap], patch_size=8, grid_size=(1, 2)), torch.tensor([[8.0]]))
    fig = plot_attention_distance(torch.rand(9, 4), uniform=16.0, lang="pt")
    legend = [x.get_text() for x in fig.axes[0].get_legend().get_texts()]
    assert legend == [t("head_n", "pt", h=h) for h in (1, 2, 3, 4)] + [t("uniform_attention", "pt")]


def test_uniform_attention_looks_about_half_the_image_away():
    n = 1 + 8 * 8
    uniform = torch.full((1, 1, n, n), 1.0 / n)
    d = mean_attention_distance([uniform], patch_size=4)
    assert 15.0 < float(d) < 18.0  # the mean distance between two random patch centres of a 32x32 image


def test_attention_time_plot_draws_the_n_squared_reference():
    fig = plot_attention_time([64, 128, 256], [1.0, 3.0, 12.0], lang="es")
    measured, reference = fig.axes[0].get_lines()
    assert measured.get_label() == t("measured", "es") and reference.get_label() == t("n_squared", "es")
    assert list(reference.get_ydata()) == pytest.approx([0.75, 3.0, 12.0])
    with pytest.raises(ValueError):
        plot_attention_time([64, 128], [1.0])


def test_maps_of_a_real_vit_run_through_every_function(cifar_mini):
    torch.manual_seed(0)
    model = build_model("vit-tiny").eval()
    images = cifar_mini[1].images[:3]
    maps = attention_maps(model, images.float() / 255)
    assert len(maps) == 9 and maps[0].shape == (3, 4, 65, 65)
    rollout = attention_rollout(maps, discard_ratio=0.9, head_fusion="max")
    heat = cls_attention_map(rollout)
    assert heat.shape == (3, 8, 8) and (heat >= 0).all()
    assert mean_attention_distance(maps, patch_size=4).shape == (9, 4)
    fig = overlay_attention(images, heat, captions=["a", "b", "c"], lang="pt")
    assert len(fig.axes) == 6 and fig.axes[0].get_title() == "a" and fig._suptitle.get_text() == t("rollout_title", "pt")
    with pytest.raises(ValueError, match="captions"):
        overlay_attention(images, heat, captions=["a"])
    fig = plot_cls_attention(maps, images, 1, lang="es")
    assert len(fig.axes) == 9 * 5 + 1 and fig.axes[1].get_title() == t("head_n", "es", h=1)  # + the colour bar
    assert fig.axes[0].get_ylabel() == t("layer_n", "es", l=1) and fig.axes[0].get_title() == t("mean_heads", "es")
    largest = max(cls_attention_map(m[1]).max().item() for m in maps)
    assert [im.get_clim() for ax in fig.axes[:-1] for im in ax.get_images()[-1:]] == [(0.0, largest)] * 45  # one scale
    fig = plot_cls_attention(maps, images, 1, vmax=0.5, title="T", lang="es")
    assert fig.axes[1].get_images()[0].get_clim() == (0.0, 0.5) and fig._suptitle.get_text() == "T"
    control = torch.full_like(heat, 1.0 / 65)
    fig = overlay_attention(images, heat, control_maps=control, shared_scale=True, row_labels=["A", "B"], lang="pt")
    assert len(fig.axes) == 3 * 3 + 1 and fig.axes[3].get_ylabel() == "A" and fig.axes[6].get_ylabel() == "B"
    lo, hi = min(heat.min().item(), 1 / 65), max(heat.max().item(), 1 / 65)
    assert fig.axes[6].get_images()[-1].get_clim() == pytest.approx((lo, hi))  # the flat control on the same range
    with pytest.raises(ValueError, match="control"):
        overlay_attention(images, heat, control_maps=control[:2])
    with pytest.raises(ValueError, match="row labels"):
        overlay_attention(images, heat, control_maps=control, row_labels=["A"])
    fig = plot_attention_matrix(maps[0][0, :2], panel_titles=["x", "y"], title="A", lang="pt")
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["x", "y"] and fig._suptitle.get_text() == "A"
    assert fig.axes[0].get_xlabel() == t("key_token", "pt") and fig.axes[0].get_ylabel() == t("query_token", "pt")
    with pytest.raises(ValueError, match="panel titles"):
        plot_attention_matrix(maps[0][0, :2], panel_titles=["x"])
    fig = plot_attention_matrix(maps[0][0], shared_scale=True)
    clims = {ax.get_images()[0].get_clim() for ax in fig.axes if ax.get_images()}
    assert clims == {(maps[0][0].min().item(), maps[0][0].max().item())}

