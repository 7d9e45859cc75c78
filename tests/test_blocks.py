"""The building blocks: patches, token embeddings, projections, attention, stochastic depth."""

import pytest
import torch
from torch import nn

from cvt_edu.attention import MultiHeadAttention, attention_maps
from cvt_edu.layers import DropPath
from cvt_edu.models import build_model
from cvt_edu.patching import ConvTokenEmbedding, PatchEmbedding, conv_output_size, patchify, unpatchify
from cvt_edu.projection import ConvProjection, ConvQKV


def test_patchify_puts_each_patch_in_row_major_order():
    images = torch.randn(2, 3, 8, 12)
    patches = patchify(images, 4)
    assert patches.shape == (2, 6, 4 * 4 * 3)
    # patch 4 is row 1, column 1 of the 2x3 grid; flattened as (P, P, C)
    assert torch.equal(patches[:, 4], images[:, :, 4:8, 4:8].permute(0, 2, 3, 1).reshape(2, -1))
    assert torch.equal(unpatchify(patches, 4, 8, 12), images)


def test_patchify_rejects_a_size_the_patch_does_not_divide():
    with pytest.raises(ValueError, match=r"30x32 is not divisible by the patch size 4"):
        patchify(torch.randn(1, 3, 30, 32), 4)


def test_linear_patch_embedding_is_a_linear_map_of_flattened_patches():
    embed = PatchEmbedding(patch_size=4, in_chans=3, embed_dim=16)
    images = torch.randn(2, 3, 8, 8)
    # the same map written as a matrix over (P, P, C)-flattened patches
    weight = embed.proj.weight.permute(0, 2, 3, 1).reshape(16, -1)
    expected = patchify(images, 4) @ weight.T + embed.proj.bias
    torch.testing.assert_close(embed(images), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size,kernel,stride,padding", [(224, 7, 4, 2), (56, 3, 2, 1), (32, 3, 2, 1), (15, 3, 2, 1)])
def test_token_map_size_formula_matches_the_convolution(size, kernel, stride, padding):
    embed = ConvTokenEmbedding(in_chans=3, embed_dim=8, kernel_size=kernel, stride=stride, padding=padding)
    tokens, (h, w) = embed(torch.randn(1, 3, size, size))
    expected = conv_output_size(size, kernel, stride, padding)
    assert (h, w) == (expected, expected)
    assert tokens.shape == (1, expected * expected, 8)


def test_conv_token_embedding_normalises_every_token():
    embed = ConvTokenEmbedding(in_chans=3, embed_dim=32, kernel_size=3, stride=2, padding=1)
    tokens, _ = embed(torch.randn(2, 3, 16, 16) * 5 + 3)
    torch.testing.assert_close(tokens.mean(-1), torch.zeros(2, 64), atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ["dw_bn", "avg", "linear"])
def test_squeezed_projection_keeps_cls_off_the_map(method):
    torch.manual_seed(0)
    proj = ConvQKV(dim=8, stride_kv=2, method=method, with_cls_token=True).eval()
    x = torch.randn(2, 1 + 5 * 7, 8)
    q, k, v = proj(x, (5, 7))
    assert q.shape == (2, 1 + 35, 8)
    side_kv = 1 if method == "linear" else 3 * 4  # ceil(5/2) * ceil(7/2), linear does not squeeze
    assert k.shape == v.shape == (2, 1 + (35 if method == "linear" else side_kv), 8)
    # the [CLS] token only goes through the linear maps
    torch.testing.assert_close(q[:, 0], proj.q(x[:, 0]))
    torch.testing.assert_close(k[:, 0], proj.k(x[:, 0]))
    # changing [CLS] changes no other query
    x2 = x.clone()
    x2[:, 0] += 1.0
    torch.testing.assert_close(proj(x2, (5, 7))[0][:, 1:], q[:, 1:])


def test_dw_bn_projection_is_depthwise():
    proj = ConvProjection(dim=6, stride=1, method="dw_bn")
    assert proj.conv.groups == 6 and proj.conv.weight.shape == (6, 1, 3, 3)
    assert isinstance(proj.norm, nn.BatchNorm2d)


def test_projection_rejects_tokens_that_do_not_fit_the_map():
    proj = ConvQKV(dim=8, with_cls_token=True)
    with pytest.raises(ValueError, match=r"expected 1 \[CLS\] \+ 4x4 tokens = 17, got 16"):
        proj(torch.randn(1, 16, 8), (4, 4))


def test_unknown_projection_method_is_named():
    with pytest.raises(ValueError, match="unknown projection method 'conv'"):
        ConvProjection(dim=4, method="conv")


def test_both_attention_paths_give_the_same_output():
    torch.manual_seed(0)
    attn = MultiHeadAttention(embed_dim=16, num_heads=4).eval()
    q, k, v = torch.randn(2, 9, 16), torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    fused = attn(q, k, v)
    attn.keep_attention = True
    explicit = attn(q, k, v)
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-6)
    weights = attn.last_attention
    assert weights.shape == (2, 4, 9, 5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 9))


@pytest.mark.parametrize("name", ["vit-tiny", "cvt-tiny"])
def test_attention_maps_cover_every_layer_and_leave_the_output_unchanged(name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain = model(images)
    maps = attention_maps(model, images)
    n_layers = sum(isinstance(m, MultiHeadAttention) for m in model.modules())
    assert len(maps) == n_layers and all(m.ndim == 4 and m.shape[0] == 2 for m in maps)
    with torch.no_grad():
        torch.testing.assert_close(model(images), plain)
    if name == "vit-tiny":
        assert maps[0].shape == (2, 4, 65, 65)
    else:  # stage 1: 16x16 queries, 8x8 squeezed keys; stage 3: [CLS] + 4x4 queries, [CLS] + 2x2 keys
        assert maps[0].shape == (2, 1, 256, 64) and maps[-1].shape == (2, 3, 17, 5)


def test_drop_path_drops_whole_samples_and_keeps_the_mean():
    torch.manual_seed(0)
    drop = DropPath(0.25)
    x = torch.ones(4000, 3, 5)
    y = drop(x)
    per_sample = y.flatten(1)
    assert set(per_sample.std(1).tolist()) == {0.0}  # a sample is dropped or kept whole
    assert abs((per_sample[:, 0] == 0).float().mean().item() - 0.25) < 0.03
    assert abs(y.mean().item() - 1.0) < 0.05
    assert torch.equal(drop.eval()(x), x)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        DropPath(1.0)
