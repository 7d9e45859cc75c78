"""The models: shapes, gradients, sizes, errors, and the registry."""

import pytest
import torch
from torch import nn

from cvt_edu.attention import attention_maps
from cvt_edu.cost.flops import count_flops, count_params
from cvt_edu.layers import Classifier, Features, TransformerBlock, classifier_head
from cvt_edu.models import build_model, list_models
from cvt_edu.train.checkpoint import load_checkpoint, save_pretrained

TINY = ["vit-tiny", "cvt-tiny", "swin-tiny", "pvt-tiny"]


@pytest.mark.parametrize("name", TINY)
def test_tiny_models_map_cifar_images_to_ten_logits(name):
    model = build_model(name)
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 10)
    assert 1.0e6 < count_params(model) < 1.4e6


@pytest.mark.parametrize("name", TINY)
def test_a_gradient_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = build_model(name).train()
    images = torch.randn(8, 3, 32, 32)
    loss = torch.nn.functional.cross_entropy(model(images), torch.arange(8))
    if name == "cvt-tiny":
        # The classifier reads only [CLS], so the queries of the other tokens in the very last
        # block cannot change the logits; a loss on the last token map reaches them too.
        loss = loss + model.forward_features(images).maps[-1].square().mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, f"no gradient reaches {missing}"


@pytest.mark.parametrize("name", TINY)
def test_the_four_models_read_alike(name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(images)
        logits = model(images)
    assert isinstance(features, Features) and all(m.ndim == 4 and m.shape[0] == 2 for m in features.maps)
    assert torch.equal(model.forward_head(features), logits)  # forward = forward_head . forward_features
    if name in ("vit-tiny", "swin-tiny"):  # the last map is after the final LayerNorm (weight 1, bias 0 at init)
        torch.testing.assert_close(features.maps[-1].mean(1), torch.zeros_like(features.maps[-1][:, 0]), atol=1e-5, rtol=0)
    assert (features.cls is None) == (name == "swin-tiny")
    blocks = [m for m in model.modules() if isinstance(m, TransformerBlock)]
    assert len(blocks) == (9 if name == "vit-tiny" else 5 if name == "cvt-tiny" else 6)
    for block in blocks:  # W^Q, W^K, W^V and W^O have the same names in every model
        assert all(isinstance(getattr(block.attn.qkv, w), nn.Linear) for w in "qkv") and isinstance(block.attn.mha.proj, nn.Linear)


class TinyCNN(Classifier):
    """A model without attention or [CLS]: two strided convolutions, a head on the pooled last map."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleList([nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Conv2d(8, 16, 3, stride=2, padding=1)])
        self.head = classifier_head(16, 10)

    def forward_features(self, images: torch.Tensor) -> Features:
        maps, x = [], images
        for conv in self.stages:
            x = conv(x).relu()
            maps.append(x)
        return Features(maps=maps)


def test_features_fit_a_cnn_and_a_model_without_attention_gets_a_clear_error():
    model = TinyCNN().eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(images)
        assert features.cls is None and features.maps[-1].shape == (2, 16, 8, 8)
        torch.testing.assert_close(model(images), model.head(features.maps[-1].mean(dim=(2, 3))))
    assert count_flops(model, (1, 3, 32, 32))["macs"] == 3 * 8 * 9 * 16 * 16 + 8 * 16 * 9 * 8 * 8 + 16 * 10
    with pytest.raises(TypeError, match=r"TinyCNN has no attention layer"):
        attention_maps(model, images)


def test_tiny_models_have_parameter_counts_within_15_percent():
    vit, cvt = (count_params(build_model(n)) for n in ("vit-tiny", "cvt-tiny"))
    assert abs(vit - cvt) / max(vit, cvt) <= 0.15, (vit, cvt)


def test_cvt_tiny_is_hierarchical_with_cls_only_in_the_last_stage():
    model = build_model("cvt-tiny")
    features = model.forward_features(torch.randn(2, 3, 32, 32))
    assert [tuple(m.shape) for m in features.maps] == [(2, 64, 16, 16), (2, 128, 8, 8), (2, 192, 4, 4)]
    assert features.cls.shape == (2, 192)
    assert [s.cls_token is not None for s in model.stages] == [False, False, True]
    assert not any("pos_embed" in n for n, _ in model.named_parameters())


@pytest.mark.parametrize("name,expected_millions", [("cvt-13", 20.0), ("cvt-21", 31.6), ("vit-b16", 86.6)])
def test_imagenet_specifications_match_the_papers(name, expected_millions):
    assert count_params(build_model(name)) / 1e6 == pytest.approx(expected_millions, rel=0.01)


def test_cvt13_costs_about_4_5_g_multiply_adds_at_224():
    macs = count_flops(build_model("cvt-13"), (1, 3, 224, 224))["macs"]
    assert macs / 1e9 == pytest.approx(4.5, rel=0.03)


@pytest.mark.parametrize("name", TINY)
def test_wrong_channel_count_is_a_clear_error(name):
    with pytest.raises(ValueError, match=r"expected 3 channels, got 1"):
        build_model(name)(torch.randn(1, 1, 32, 32))


def test_vit_rejects_sizes_the_patch_does_not_divide_or_the_embeddings_do_not_know():
    model = build_model("vit-tiny")
    with pytest.raises(ValueError, match=r"30x30 is not divisible by the patch size 4"):
        model(torch.randn(1, 3, 30, 30))
    with pytest.raises(ValueError, match=r"expected 32x32 images .* got 64x64"):
        model(torch.randn(1, 3, 64, 64))


def test_cvt_accepts_other_sizes_but_not_images_smaller_than_its_kernel():
    assert build_model("cvt-tiny")(torch.randn(1, 3, 48, 40)).shape == (1, 10)
    with pytest.raises(ValueError, match=r"input side 2 with padding 2 is smaller than the kernel 7"):
        build_model("cvt-13")(torch.randn(1, 3, 2, 2))


def test_registry_names_the_known_models():
    assert {"vit-tiny", "cvt-tiny", "cvt-13", "cvt-21", "cvt-w24", "vit-ti16", "vit-s16", "vit-b16"} <= set(list_models())
    with pytest.raises(KeyError, match="known models: .*cvt-tiny"):
        build_model("resnet-50")


@pytest.mark.parametrize("name", TINY)
def test_checkpoint_round_trip_gives_the_same_logits(name, tmp_path):
    torch.manual_seed(0)
    model = build_model(name).eval()
    # non-trivial BatchNorm statistics must travel too
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    save_pretrained(model, tmp_path, name=name)
    loaded, config = load_checkpoint(tmp_path)
    assert type(loaded) is type(model) and loaded.config == model.config
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images))
    assert config["name"] == name and config["arch"] == name.split("-")[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
