"""Pictures of Swin's windows: the geometry they draw is the model's (labels vs mask, merging order), figures and widget."""

import matplotlib
import pytest
import torch
from einops import rearrange

from cvt_edu.course.i18n import t
from cvt_edu.viz.windows import (
    image_as_map,
    merging_order,
    plot_cyclic_shift,
    plot_patch_merging,
    plot_relative_position_index,
    plot_shift_mask,
    plot_shifts,
    plot_window_partition,
    shift_widget,
)
from cvt_edu.windows import relative_position_index, shifted_window_labels, shifted_window_mask, window_partition

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def image(cifar_mini):
    return cifar_mini[0].images[0]


def test_image_as_map(image):
    x = image_as_map(image)
    assert x.shape == (1, 32, 32, 3) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert torch.equal(x[0, 3, 5], image[:, 3, 5].float() / 255)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        image_as_map(image[None])


def test_shifted_window_labels_number_the_displaced_windows_row_by_row():
    # an 8 x 12 map, M = 4, s = 1: window borders at rows 1, 5 and columns 1, 5, 9 -> 3 x 4 windows
    labels = shifted_window_labels(8, 12, 4, 1)
    rows = torch.tensor([0, 1, 1, 1, 1, 2, 2, 2])
    cols = torch.tensor([0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3])
    assert torch.equal(labels, rows[:, None] * 4 + cols[None, :])
    assert torch.equal(shifted_window_labels(8, 8, 4, 0), torch.tensor([0] * 4 + [1] * 4)[:, None] * 2 + torch.tensor([0] * 4 + [1] * 4))


@pytest.mark.parametrize("h,w,m,s", [(16, 16, 4, 2), (8, 12, 4, 1), (14, 14, 7, 3), (16, 16, 4, 3)])
def test_the_mask_keeps_apart_the_tokens_the_cyclic_shift_brings_together(h, w, m, s):
    # the paper's Fig. 4: on the rolled map, each axis has the bands [0, H-M), [H-M, H-s), [H-s, H)
    def bands(n):
        idx = torch.arange(n)
        return (idx >= n - m).long() + (idx >= n - s).long()

    region = 3 * bands(h)[:, None] + bands(w)[None, :]
    per_window = rearrange(window_partition(region[None, :, :, None], m), "n a b 1 -> n (a b)")
    different = per_window[:, :, None] != per_window[:, None, :]
    assert torch.equal(different, shifted_window_mask(h, w, m, s) != 0)
    n_windows = (h // m + (s > 0)) * (w // m + (s > 0))
    assert int(shifted_window_labels(h, w, m, s).max()) + 1 == n_windows


def test_shifted_window_labels_errors():
    with pytest.raises(ValueError, match="shift_size"):
        shifted_window_labels(8, 8, 4, 4)


def test_merging_order_is_the_reference_order():
    order = merging_order(4, 4)
    assert order.shape == (2, 2, 4)
    # (row 0, col 0), (row 1, col 0), (row 0, col 1), (row 1, col 1) of each 2x2 group
    assert order[0, 0].tolist() == [0, 4, 1, 5] and order[1, 1].tolist() == [10, 14, 11, 15]
    assert sorted(order.flatten().tolist()) == list(range(16))
    with pytest.raises(ValueError, match="even"):
        merging_order(3, 4)


@pytest.mark.parametrize("lang", ["pt", "es"])
def test_window_partition_figure(image, lang):
    fig = plot_window_partition(image, 2, 4, lang=lang)
    tiles = [ax for ax in fig.get_axes() if ax.get_title().isdigit()]
    assert len(tiles) == 16  # a 16x16 token map in 4x4-token windows
    assert fig._suptitle.get_text() == t("win_title", lang)
    with pytest.raises(ValueError, match="window size 5"):
        plot_window_partition(image, 2, 5)
    with pytest.raises(ValueError, match="patch size 3"):
        plot_window_partition(image, 3, 4)


def test_cyclic_shift_figures_and_widget(image):
    fig = plot_cyclic_shift(image, 2, 4, 2, lang="es")
    top, bottom = fig.get_axes()
    assert top.get_title() == t("shift_displaced", "es").format(s=2, n=25)  # 16x16 tokens: 4 + 1 windows per side
    assert bottom.get_title() == t("shift_rolled", "es").format(s=2, n=16)  # after the roll: 4 x 4 regular windows
    fig = plot_shifts(image, 2, 4, [0, 1, 2, 3], lang="pt")
    assert len(fig.get_axes()) == 8 and fig._suptitle.get_text() == t("shift_title", "pt")
    assert t("shift_displaced", "pt").format(s=2, n=25) in [ax.get_title() for ax in fig.get_axes()]
    widget = shift_widget(image, 2, 4, lang="pt")
    slider = widget.children[0]
    assert (slider.min, slider.max, slider.value) == (0, 3, 2)
    with pytest.raises(ValueError, match="shift_size"):
        plot_cyclic_shift(image, 2, 4, 4)


def test_mask_figure_counts_blocked_pairs():
    fig = plot_shift_mask(16, 16, 4, 2, lang="pt")
    titles = [ax.get_title() for ax in fig.get_axes()]
    assert len(titles) == 16
    blocked = [int((m != 0).sum()) for m in shifted_window_mask(16, 16, 4, 2)]
    assert titles == [t("mask_window", "pt").format(k=k, b=b) for k, b in enumerate(blocked)]
    assert blocked[0] == 0 and blocked[-1] > 0


def test_relative_position_index_figure():
    fig = plot_relative_position_index(4, query=5, lang="es")
    table_ax, row_ax = fig.get_axes()[:2]  # the table, the query's row (then the colour bar)
    assert table_ax.get_images()[0].get_array().shape == (16, 16)
    values = [int(x.get_text()) for x in row_ax.texts]
    assert values == relative_position_index(4)[5].tolist()
    with pytest.raises(ValueError, match="query"):
        plot_relative_position_index(4, query=16)


def test_patch_merging_figure():
    fig = plot_patch_merging(4, 4, lang="pt")
    before, after = fig.get_axes()
    assert len(before.texts) == 16 and after.texts[0].get_text() == "[0, 4, 1, 5]"
