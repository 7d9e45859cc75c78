"""The tiled attention of cvt_edu.flash: equal to softmax attention, gradients included, and never an N_q x N_k tensor."""

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from cvt_edu.cost.attention_memory import LiveTensors, load_curve
from cvt_edu.flash import flash_attention, naive_attention
from cvt_edu.tp.checks import _Trace


def _qkv(b, h, n_q, n_k, d, d_v=None, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, h, n_q, d, generator=g, dtype=dtype), torch.randn(b, h, n_k, d, generator=g, dtype=dtype),
            torch.randn(b, h, n_k, d_v or d, generator=g, dtype=dtype))


def _reference(q, k, v, causal=False):
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_q, n_k, d, block", [(64, 64, 16, 16), (100, 77, 32, 32), (33, 130, 64, 7), (257, 257, 8, 64),
                                                (5, 5, 4, 64), (1, 9, 4, 2)])
@pytest.mark.parametrize("causal", [False, True])
def test_equal_to_softmax_attention(dtype, n_q, n_k, d, block, causal):
    q, k, v = _qkv(2, 3, n_q, n_k, d, d_v=d + 3, dtype=dtype)
    out = flash_attention(q, k, v, block_size=block, causal=causal)
    assert out.shape == (2, 3, n_q, d + 3) and out.dtype == dtype
    torch.testing.assert_close(out, _reference(q, k, v, causal), atol=1e-5, rtol=0)
    torch.testing.assert_close(naive_attention(q, k, v, causal=causal), _reference(q, k, v, causal), atol=1e-5, rtol=0)


def test_large_scores_do_not_overflow():
    q, k, v = _qkv(1, 1, 40, 40, 8)
    out = flash_attention(q * 30, k * 30, v, block_size=8)  # scores of several hundred: exp would overflow unshifted
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, _reference(q * 30, k * 30, v), atol=1e-5, rtol=0)


def test_gradients_equal_softmax_attention():
    q, k, v = (t.requires_grad_() for t in _qkv(1, 2, 45, 45, 8, dtype=torch.float64))
    grad = torch.randn(1, 2, 45, 8, dtype=torch.float64)
    expected = torch.autograd.grad(_reference(q, k, v, causal=True), (q, k, v), grad)
    got = torch.autograd.grad(flash_attention(q, k, v, block_size=16, causal=True), (q, k, v), grad)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, atol=1e-10, rtol=0)


@pytest.mark.parametrize("causal", [False, True])
def test_no_tensor_as_large_as_the_score_matrix(causal):
    q, k, v = _qkv(2, 2, 300, 280, 16)
    limit = 300 * 280  # N_q * N_k: any tensor that large could hold one head's scores
    with _Trace((), limit) as trace:
        flash_attention(q, k, v, block_size=32, causal=causal)
    assert trace.big is None
    with _Trace((), limit) as trace:  # the control: the naive path does build the scores
        naive_attention(q, k, v, causal=causal)
    assert trace.big == (4, 300, 280)


def test_live_tensor_peak_of_naive_and_tiled_attention():
    n = 512
    q, k, v = _qkv(1, 1, n, n, 64)
    with LiveTensors(q, k, v) as naive:
        naive_attention(q, k, v)
    with LiveTensors(q, k, v) as tiled:
        flash_attention(q, k, v, block_size=64)
    nxn = n * n * 4  # one float32 (N, N) matrix, in bytes
    assert naive.peak_bytes >= 2 * nxn  # the scores and the weights are alive together
    assert naive.largest[-2:] == (n, n) and torch.Size(tiled.largest).numel() == n * 64  # tiled: the output is the largest
    assert tiled.peak_bytes < nxn / 2  # the blocks of the output, twice (before and after the concatenation), and one tile


def test_bad_inputs_are_one_clear_error():
    q, k, v = _qkv(1, 2, 8, 8, 4)
    with pytest.raises(ValueError, match=r"q must be a floating-point tensor of shape \(B, h, N, d\), got shape \(2, 8, 4\)"):
        flash_attention(q[0], k, v)
    with pytest.raises(ValueError, match="do not match"):
        flash_attention(q, k[..., :3], v)
    with pytest.raises(ValueError, match="one dtype"):
        flash_attention(q, k.double(), v)
    with pytest.raises(ValueError, match="block_size must be a positive int, got 0"):
        flash_attention(q, k, v, block_size=0)


def test_committed_memory_curve():
    curve = load_curve()
    rows = {(r["kind"], r["n"]): r for r in curve["rows"]}
    ns = sorted({n for _, n in rows})
    assert ns[0] <= 256 and ns[-1] >= 16384
    for n in ns:
        naive, tiled = rows["naive", n], rows["flash", n]
        assert naive["live_mib"] >= 2 * naive["nxn_mib"]  # two N x N matrices alive at once
        assert tiled["live_mib"] < naive["live_mib"] and torch.Size(tiled["largest"]).numel() < n * n
    big = rows["flash", ns[-1]]
    assert big["live_mib"] < 0.01 * rows["naive", ns[-1]]["live_mib"]


@pytest.mark.parametrize("lang, word", [("pt", "cabeça"), ("es", "cabeza"), ("en", "head")])
def test_memory_figure_of_the_committed_curve(lang, word):
    import matplotlib.pyplot as plt

    from cvt_edu.viz.cost import plot_flash_memory

    rows = load_curve()["rows"]
    fig = plot_flash_memory(rows, lang=lang)
    ax = fig.axes[0]
    naive, tiled, nxn = ax.get_lines()
    assert list(naive.get_ydata()) == [r["live_mib"] for r in sorted(rows, key=lambda r: r["n"]) if r["kind"] == "naive"]
    assert max(tiled.get_ydata()) < min(nxn.get_ydata()[-3:]) and word in ax.get_title()
    plt.close(fig)


def test_the_dispatch_mode_names_the_kernel_scaled_dot_product_attention_chose_on_the_cpu():
    q, k, v = _qkv(1, 2, 64, 64, 16)
    with LiveTensors() as fused:
        F.scaled_dot_product_attention(q, k, v, is_causal=True)
    with LiveTensors() as math:
        F.scaled_dot_product_attention(q, k, v, dropout_p=0.5)  # dropout: the math path, the scores built
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in fused.ops and "aten::bmm" not in fused.ops
    assert "aten::bmm" in math.ops and not any("flash" in op for op in math.ops)
    assert max(torch.Size(s).numel() for s in math.shapes) >= 2 * 64 * 64


def test_one_point_of_the_memory_curve_measured_in_this_process():
    from cvt_edu.cost.attention_memory import measure_attention_memory

    naive = measure_attention_memory("naive", 256, d=16, num_threads=None)
    tiled = measure_attention_memory("flash", 256, d=16, block_size=64, num_threads=None)
    assert naive["live_mib"] >= 2 * naive["nxn_mib"] == 0.5 and naive["largest"][-2:] == [256, 256]
    assert torch.Size(tiled["largest"]).numel() == 256 * 16 and tiled["live_mib"] < naive["nxn_mib"]
    assert tiled["block_size"] == 64 and naive["block_size"] is None and tiled["seconds"] > 0
    with pytest.raises(ValueError, match="kind must be 'naive' or 'flash', got 'fast'"):
        measure_attention_memory("fast", 256)


def test_the_tp_grader_disables_the_ready_made_tiled_attention():
    from cvt_edu.tp.stubs import stubbed_prefixes

    assert {"cvt_edu.flash", "cvt_edu.cost"} <= set(stubbed_prefixes())  # TP 4 asks students to write it
