"""Swin and PVT: geometry against timm, weights and logits against transformers, shapes,
gradients, errors and checkpoints (that the tiny variants learn on real images is tested in test_train.py)."""

import json
from dataclasses import asdict, replace

import pytest
import torch
import transformers
from safetensors.torch import load_file
from timm.models import swin_transformer as timm_swin

from cvt_edu.attention import MultiHeadAttention, attention_maps
from cvt_edu.cost.flops import count_flops, count_params
from cvt_edu.models import arch_of, build_model, model_config
from cvt_edu.pretrained.pvt import pvt_from_hf
from cvt_edu.pretrained.swin import swin_from_hf
from cvt_edu.pvt import PVTStageConfig, SpatialReductionAttention
from cvt_edu.swin import PatchMerging
from cvt_edu.windows import (
    cyclic_shift,
    relative_position_index,
    reverse_cyclic_shift,
    shifted_window_mask,
    window_and_shift,
    window_partition,
    window_reverse,
)

TINY = ["swin-tiny", "pvt-tiny"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """On a small shared machine, threads that wait for each other's cores make training ~10x slower than one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- Swin geometry, exactly as timm ---------------------------------------------------------


@pytest.mark.parametrize("h,w,m", [(8, 8, 4), (14, 14, 7), (56, 56, 7), (12, 8, 4)])
def test_window_partition_and_reverse_match_timm(h, w, m):
    x = torch.randn(2, h, w, 5)
    ours, theirs = window_partition(x, m), timm_swin.window_partition(x, (m, m))
    assert torch.equal(ours, theirs) and ours.shape == (2 * (h // m) * (w // m), m, m, 5)
    assert torch.equal(window_reverse(ours, m, h, w), timm_swin.window_reverse(theirs, (m, m), h, w))
    assert torch.equal(window_reverse(ours, m, h, w), x)


@pytest.mark.parametrize("m", [2, 4, 7])
def test_relative_position_index_matches_timm(m):
    index = relative_position_index(m)
    assert index.shape == (m * m, m * m) and index.dtype == torch.int64
    assert torch.equal(index, timm_swin.get_relative_position_index(m, m))
    assert set(index.unique().tolist()) == set(range((2 * m - 1) ** 2))  # every table row is used


@pytest.mark.parametrize("h,w,m", [(8, 8, 4), (14, 14, 7), (56, 56, 7), (12, 8, 4)])
def test_shifted_window_mask_matches_timm(h, w, m):
    block = timm_swin.SwinTransformerBlock(dim=8, input_resolution=(h, w), num_heads=2, window_size=m, shift_size=m // 2)
    mask = shifted_window_mask(h, w, m, m // 2)
    assert mask.shape == ((h // m) * (w // m), m * m, m * m)
    assert torch.equal(mask, block.attn_mask)
    assert not mask[0].any()  # the first window holds no rolled-over tokens
    assert torch.equal(shifted_window_mask(h, w, m, 0), torch.zeros_like(mask))


def test_cyclic_shift_is_undone_and_moves_the_window_grid():
    x = torch.arange(64.0).reshape(1, 8, 8, 1)
    shifted = cyclic_shift(x, 2)
    assert shifted[0, 0, 0, 0] == x[0, 2, 2, 0]  # the first window now starts at (2, 2)
    assert torch.equal(reverse_cyclic_shift(shifted, 2), x)


def test_patch_merging_concatenates_neighbours_in_the_reference_order():
    torch.manual_seed(0)
    ours, theirs = PatchMerging(dim=6), timm_swin.PatchMerging(dim=6)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        assert ours(x).shape == (2, 2, 3, 12)
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-6)


def test_window_shrinks_to_a_map_not_larger_than_it_and_stops_shifting():
    assert window_and_shift((56, 56), 7, 3) == (7, 3)
    assert window_and_shift((7, 7), 7, 3) == (7, 0)
    assert window_and_shift((4, 4), 7, 3) == (4, 0)
    model = build_model("swin-tiny")
    assert [s.window_size for s in model.stages] == [4, 4, 4]
    shifts = [[b.attn.shift_size for b in s.blocks] for s in model.stages]
    assert shifts == [[0, 2], [0, 2], [0, 0]]  # stage 3 (4x4) is a single window


# --- attention with an additive bias --------------------------------------------------------


@pytest.mark.parametrize("bias_shape", [(4, 9, 5), (2, 4, 9, 5)])
def test_both_attention_paths_agree_with_a_bias(bias_shape):
    torch.manual_seed(0)
    attn = MultiHeadAttention(embed_dim=16, num_heads=4).eval()
    q, k, v = torch.randn(2, 9, 16), torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    bias = torch.randn(bias_shape)
    bias[..., 0] = -100.0  # a mask: nobody attends to key 0
    fused = attn(q, k, v, attn_bias=bias)
    attn.keep_attention = True
    explicit = attn(q, k, v, attn_bias=bias)
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-6)
    assert attn.last_attention[..., 0].max() < 1e-30
    assert not torch.allclose(explicit, attn(q, k, v))  # the bias matters


@pytest.mark.parametrize("name", TINY)
def test_attention_maps_of_swin_and_pvt(name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain = model(images)
    maps = attention_maps(model, images)
    with torch.no_grad():
        torch.testing.assert_close(model(images), plain)
    if name == "swin-tiny":  # stage 1: 2 images x 16 windows of 4x4 tokens; stage 3: one window per image
        assert maps[0].shape == (32, 3, 16, 16) and maps[-1].shape == (2, 12, 16, 16)
    else:  # stage 1: 16x16 queries, keys reduced 4x per side; stage 3: [CLS] + 4x4, no reduction
        assert maps[0].shape == (2, 1, 256, 16) and maps[-1].shape == (2, 5, 17, 17)


def test_spatial_reduction_shrinks_keys_and_values_only():
    torch.manual_seed(0)
    sra = SpatialReductionAttention(PVTStageConfig(embed_dim=8, depth=1, num_heads=2, sr_ratio=4))
    x = torch.randn(2, 64, 8)
    assert sra.reduce(x, (8, 8)).shape == (2, 4, 8)
    assert sra(x, (8, 8)).shape == (2, 64, 8)
    assert not hasattr(SpatialReductionAttention(PVTStageConfig(embed_dim=8, depth=1, num_heads=2, sr_ratio=1)), "sr")
    with pytest.raises(ValueError, match=r"8x8 = 64 map tokens only, got 65"):
        sra(torch.randn(2, 65, 8), (8, 8))


# --- weights from transformers --------------------------------------------------------------


def _randomize(model: torch.nn.Module) -> None:
    """Random weights of a useful size: the defaults leave position tables at zero and norms at one."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif name.endswith(("relative_position_bias_table", "position_embeddings")):
                p.normal_(0, 0.5)
            elif name == "classifier.weight":
                p.normal_(0, p.shape[1] ** -0.5)  # logits of order 1
            else:
                p.normal_(0, 0.02)


def _max_diff(hf: torch.nn.Module, ours: torch.nn.Module, size: int) -> float:
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = hf(pixel_values=images).logits, ours(images)
    assert expected.std() > 0.1  # the comparison is not between two near-zero outputs
    diff = (expected - got).abs().max().item()
    print(f"max |logits difference| {diff:.2e}, logits std {expected.std():.2f}")
    return diff


def test_swin_t_from_transformers_gives_the_same_logits():
    config = transformers.SwinConfig(num_labels=1000)  # Swin-T
    hf = transformers.SwinForImageClassification(config).eval()
    _randomize(hf)
    ours = swin_from_hf(config.to_dict(), hf.state_dict())
    # the registry's Swin-T, with transformers' default stochastic depth
    assert arch_of(ours) == "swin" and ours.config == replace(model_config("swin-t")[1], drop_path_rate=0.1)
    assert _max_diff(hf, ours, 224) < 1e-5


def test_swin_from_a_hub_style_checkpoint(tmp_path):
    """Files on the Hub use the older names (attention.self.query, intermediate.dense, ...)."""
    config = transformers.SwinConfig(
        image_size=32, patch_size=2, embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=4, num_labels=10
    )
    hf = transformers.SwinForImageClassification(config).eval()
    _randomize(hf)
    hf.save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    assert "swin.encoder.layers.0.blocks.0.intermediate.dense.weight" in state
    # older files also store the relative position index buffer
    state["swin.encoder.layers.0.blocks.0.attention.self.relative_position_index"] = relative_position_index(4)
    ours = swin_from_hf(json.loads((tmp_path / "config.json").read_text()), state)
    assert _max_diff(hf, ours, 32) < 1e-5
    state["swin.encoder.layers.0.blocks.0.attention.self.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"1 Swin tensors have no place.*attention\.self\.extra\.weight"):
        swin_from_hf(config.to_dict(), state)


def test_pvt_tiny_from_transformers_gives_the_same_logits():
    config = transformers.PvtConfig()  # PVT-Tiny
    hf = transformers.PvtForImageClassification(config).eval()
    _randomize(hf)
    ours = pvt_from_hf(config.to_dict(), hf.state_dict())
    assert arch_of(ours) == "pvt" and ours.config.embed_norm_eps == 1e-6
    assert _max_diff(hf, ours, 224) < 1e-5


# --- the models -----------------------------------------------------------------------------


def test_swin_and_pvt_are_pyramids():
    images = torch.randn(2, 3, 32, 32)
    swin = build_model("swin-tiny").forward_features(images)
    assert [tuple(m.shape) for m in swin.maps] == [(2, 48, 16, 16), (2, 96, 8, 8), (2, 192, 4, 4)] and swin.cls is None
    pvt = build_model("pvt-tiny").forward_features(images)
    assert [tuple(m.shape) for m in pvt.maps] == [(2, 48, 16, 16), (2, 96, 8, 8), (2, 160, 4, 4)]
    assert pvt.cls.shape == (2, 160)


def test_stage_configs_read_back_from_dicts_and_are_checked():
    for name in TINY:
        config = model_config(name)[1]
        as_dicts = replace(config, stages=[asdict(stage) for stage in config.stages])  # as config.json holds them
        assert as_dicts == config and isinstance(as_dicts.stages, tuple)
    swin = model_config("swin-tiny")[1]
    with pytest.raises(ValueError, match=r"patch merging doubles the width .* got widths \[48, 96, 96\]"):
        replace(swin, stages=(*swin.stages[:2], replace(swin.stages[2], embed_dim=96)))
    pvt = model_config("pvt-tiny")[1]
    with pytest.raises(ValueError, match=r"its sr_ratio must be 1, got 2"):
        replace(pvt, stages=(*pvt.stages[:2], replace(pvt.stages[2], sr_ratio=2)))


@pytest.mark.parametrize("name,params_m,macs_g", [("swin-t", 28.3, 4.5), ("pvt-v1-tiny", 13.2, 1.9)])
def test_imagenet_specifications_match_the_papers(name, params_m, macs_g):
    # Swin: Table 1 of Liu et al.; PVT: Table 2 of Wang et al. ("FLOPs" there are multiply-adds)
    model = build_model(name)
    assert count_params(model) / 1e6 == pytest.approx(params_m, rel=0.01)
    assert count_flops(model, (1, 3, 224, 224))["macs"] / 1e9 == pytest.approx(macs_g, rel=0.03)


def test_swin_rejects_sizes_its_patches_or_windows_do_not_divide():
    model = build_model("swin-tiny")
    with pytest.raises(ValueError, match=r"31x31 is not divisible by the patch size 2"):
        model(torch.randn(1, 3, 31, 31))
    with pytest.raises(ValueError, match=r"image size 36x36 gives a 18x18 token map in stage 1, which the window size 4"):
        model(torch.randn(1, 3, 36, 36))
    with pytest.raises(ValueError, match=r"image size 40x40 gives a 10x10 token map in stage 2, .* multiples of 32"):
        model(torch.randn(1, 3, 40, 40))
    with pytest.raises(ValueError, match=r"patch merging needs an even token map, got 3x4"):
        PatchMerging(dim=2)(torch.randn(1, 3, 4, 2))
    with pytest.raises(ValueError, match=r"a 6x6 token map cannot be cut into windows of size 4"):
        window_partition(torch.randn(1, 6, 6, 2), 4)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)  # relative positions work at any fitting size


def test_pvt_rejects_sizes_its_positional_embeddings_do_not_know():
    model = build_model("pvt-tiny")
    with pytest.raises(ValueError, match=r"30x30 is not divisible by the product of the patch sizes 8"):
        model(torch.randn(1, 3, 30, 30))
    with pytest.raises(ValueError, match=r"expected 32x32 images .* got 64x64"):
        model(torch.randn(1, 3, 64, 64))


@pytest.mark.parametrize("kind", ["swin", "pvt"])
def test_load_pretrained_reads_swin_and_pvt_folders(tmp_path, kind):
    from cvt_edu.pretrained.load import load_pretrained

    if kind == "swin":
        config = transformers.SwinConfig(
            image_size=32, patch_size=2, embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=4, num_labels=3,
            id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2},
        )
        hf = transformers.SwinForImageClassification(config).eval()
    else:
        config = transformers.PvtConfig(
            image_size=32, num_encoder_blocks=2, depths=[1, 1], sequence_reduction_ratios=[2, 1], hidden_sizes=[16, 32],
            patch_sizes=[4, 2], strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[2, 2], num_labels=3,
            id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2},
        )
        hf = transformers.PvtForImageClassification(config).eval()
    _randomize(hf)
    hf.save_pretrained(tmp_path)
    ours, labels = load_pretrained(tmp_path)
    assert labels == ["a", "b", "c"] and not ours.training
    assert _max_diff(hf, ours, 32) < 1e-5
