"""[CLS], GAP and MAP pooling: the MAP head and the GAP variants against timm and Hugging Face on the same weights,
shapes, gradients, and the refusal of configs that do not fit their pooling."""

from __future__ import annotations

import pytest
import timm
import torch
import transformers
from timm.layers import AttentionPoolLatent

from cvt_edu import build_model, load_pretrained
from cvt_edu.cvt import CvT, CvTConfig, CvTStageConfig
from cvt_edu.pooling import MAPHead
from cvt_edu.pretrained.vit import vit_from_timm
from cvt_edu.vit import ViT, ViTConfig

torch.manual_seed(0)


def _timm_vit(global_pool: str, **kw) -> torch.nn.Module:
    """A small, non-default timm ViT with every weight random (biases and LayerNorms included)."""
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=24, patch_size=4, in_chans=3, num_classes=7, embed_dim=48, depth=2, num_heads=3, mlp_ratio=2.5,
        global_pool=global_pool, **kw)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    return model.eval()


@pytest.mark.parametrize("global_pool,kw,pool", [
    ("token", {}, "cls"),
    ("avg", {"class_token": False, "fc_norm": False}, "gap"),
    ("map", {"class_token": False}, "map"),
], ids=["cls", "gap", "map"])
def test_each_pooling_equals_timm_on_the_same_weights(global_pool, kw, pool):
    theirs = _timm_vit(global_pool, **kw)
    ours = vit_from_timm(theirs)
    assert ours.config.pool == pool
    assert (ours.cls_token is None) == (pool != "cls") and (ours.map_head is None) == (pool != "map")
    x = torch.randn(3, 3, 24, 24)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5, rtol=0)
        assert torch.allclose(ours.forward_features(x).pooled(), theirs.forward_head(theirs.forward_features(x), pre_logits=True),
                              atol=1e-5, rtol=0)


def test_the_map_head_alone_equals_timm_attention_pool_latent():
    dim, heads = 40, 4
    theirs = AttentionPoolLatent(dim, num_heads=heads, mlp_ratio=3.0, norm_layer=torch.nn.LayerNorm).eval()
    ours = MAPHead(dim, heads, mlp_ratio=3.0, eps=1e-5).eval()
    with torch.no_grad():
        for p in theirs.parameters():
            p.normal_(0, 0.3)
        ours.probe.copy_(theirs.latent)
        ours.q.load_state_dict(theirs.q.state_dict())
        wk, wv = theirs.kv.weight.chunk(2)
        bk, bv = theirs.kv.bias.chunk(2)
        ours.k.weight.copy_(wk), ours.k.bias.copy_(bk), ours.v.weight.copy_(wv), ours.v.bias.copy_(bv)
        ours.attn.proj.load_state_dict(theirs.proj.state_dict())
        ours.norm.load_state_dict(theirs.norm.state_dict())
        ours.mlp.fc1.load_state_dict(theirs.mlp.fc1.state_dict())
        ours.mlp.fc2.load_state_dict(theirs.mlp.fc2.state_dict())
        tokens = torch.randn(5, 17, dim)
        out = ours(tokens)
        assert out.shape == (5, dim)
        assert torch.allclose(out, theirs(tokens), atol=1e-5, rtol=0)


def test_the_map_probe_weights_the_tokens_and_learns():
    """Permuting the tokens leaves MAP unchanged (it is an attention over a set); its probe gets a gradient."""
    head = MAPHead(16, 2, mlp_ratio=2.0)
    tokens = torch.randn(2, 9, 16)
    out = head(tokens)
    assert torch.allclose(out, head(tokens[:, torch.randperm(9)]), atol=1e-6)
    out.square().sum().backward()
    assert head.probe.grad is not None and head.probe.grad.abs().sum() > 0


def test_hf_cvt_without_cls_token_loads_as_gap_and_gives_the_same_logits(tmp_path):
    cfg = transformers.CvtConfig(depth=[1, 2, 3], embed_dim=[16, 32, 48], num_heads=[1, 2, 3], cls_token=[False, False, False],
                                 id2label={i: str(i) for i in range(5)})
    hf = transformers.CvtForImageClassification(cfg).eval()
    with torch.no_grad():
        for name, b in hf.named_buffers():
            if "running_var" in name:
                b.uniform_(0.5, 2.0)
            elif "running_mean" in name:
                b.normal_(0, 0.3)
    hf.save_pretrained(tmp_path)
    ours, _ = load_pretrained(tmp_path)
    assert ours.config.pool == "gap" and all(s.cls_token is None for s in ours.stages)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        # transformers' own head fails here (its output tuple has no cls_token_value to index when no stage has one),
        # so the reference is its encoder, its final LayerNorm on every token, the mean and its classifier, in that order.
        tokens = hf.cvt(pixel_values=x).last_hidden_state.flatten(2).transpose(1, 2)
        reference = hf.classifier(hf.layernorm(tokens).mean(dim=1))
        assert torch.allclose(ours(x), reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name,pool", [("vit-tiny-gap", "gap"), ("vit-tiny-map", "map"), ("cvt-tiny-gap", "gap")])
def test_the_pooling_variants_are_in_the_registry_and_train(name, pool):
    model = build_model(name)
    assert model.config.pool == pool
    x = torch.randn(4, 3, 32, 32)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad), "a parameter got no gradient"


def test_a_config_that_does_not_fit_its_pooling_is_refused():
    with pytest.raises(ValueError, match=r"ViTConfig: pool must be one of 'cls', 'gap', 'map', got 'mean'"):
        ViTConfig(pool="mean")
    stages = (CvTStageConfig(embed_dim=16, depth=1, num_heads=1, cls_token=True),)
    with pytest.raises(ValueError, match=r"pool='gap' .* stage 0 has cls_token=True"):
        CvT(CvTConfig(stages=stages, pool="gap"))
    with pytest.raises(ValueError, match=r"a MAP head is implemented for ViT only"):
        CvTConfig(stages=stages, pool="map")
    with pytest.raises(ValueError, match=r"timm VisionTransformer with fc_norm"):
        vit_from_timm(_timm_vit("avg", class_token=False))


def test_a_vit_saved_with_its_pooling_loads_back_the_same(tmp_path):
    from cvt_edu import save_pretrained

    model = ViT(ViTConfig(image_size=16, patch_size=4, num_classes=3, embed_dim=32, depth=1, num_heads=2, pool="map")).eval()
    save_pretrained(model, tmp_path, name="vit-map")
    back, _ = load_pretrained(tmp_path)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert back.config.pool == "map" and torch.equal(back(x), model(x))
