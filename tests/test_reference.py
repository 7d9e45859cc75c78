"""Reference implementations: Hugging Face and torchvision models, loaded into cvt_edu's ViT and
CvT, give the same outputs. Offline and on the CPU: the reference models get random weights."""

import json
import re
from dataclasses import replace

import huggingface_hub
import pytest
import torch
import torchvision
import transformers
from safetensors.torch import load_file
from torch import nn
from torch.testing import assert_close

from cvt_edu import build_model, load_pretrained, save_pretrained
from cvt_edu.pretrained.renaming import rename_state_dict
from cvt_edu.pretrained.swin import swin_config_from_hf
from cvt_edu.pretrained.vit import HF_VIT_KEYS, vit_config_from_hf, vit_from_torchvision

TOL = dict(atol=1e-5, rtol=1e-5)
LABELS = {i: f"class-{i}" for i in range(10)}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a small shared CPU, threads that wait for each other make these
    224x224 forward passes several times slower (depthwise convolutions above all)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@torch.no_grad()
def randomise(model: nn.Module) -> nn.Module:
    """Give every tensor a random value, so that a tensor loaded into the wrong place shows.

    The libraries start biases, LayerNorm and BatchNorm at 0 and 1 (and torchvision its head at 0);
    BatchNorm's running statistics are randomised too, so that they matter in eval mode.
    """
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)) and name == "weight":
                p.uniform_(0.5, 1.5)
            elif name.endswith("bias") or not p.any():
                p.normal_(0.0, 0.05)
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("name,depth", [("cvt-13", [1, 2, 10]), ("cvt-21", [1, 4, 16])], ids=["cvt-13", "cvt-21"])
def test_hf_cvt_gives_the_same_stage_maps_and_logits(tmp_path, name, depth):
    torch.manual_seed(0)
    hf = randomise(transformers.CvtForImageClassification(transformers.CvtConfig(depth=depth, id2label=LABELS)))
    hf.save_pretrained(tmp_path)
    model, labels = load_pretrained(tmp_path)

    assert model.config == build_model(name, num_classes=10).config
    assert labels == list(LABELS.values()) and not model.training
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        want = hf(images, output_hidden_states=True)
        maps = model.forward_features(images).maps
        logits = model(images)
    assert len(maps) == len(want.hidden_states) == 3
    for got, ref in zip(maps, want.hidden_states):
        assert_close(got, ref, **TOL)
    assert_close(logits, want.logits, **TOL)


def test_hf_vit_b16_gives_the_same_logits(tmp_path):
    torch.manual_seed(0)
    hf = randomise(transformers.ViTForImageClassification(transformers.ViTConfig(id2label=LABELS)))  # ViT-B/16 sizes
    hf.save_pretrained(tmp_path)
    model, labels = load_pretrained(tmp_path)

    assert model.config == replace(build_model("vit-b16").config, num_classes=10, layer_norm_eps=1e-12)
    assert labels == list(LABELS.values())
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert_close(model(images), hf(images).logits, **TOL)


def test_torchvision_vit_b16_gives_the_same_logits():
    torch.manual_seed(0)
    tv = randomise(torchvision.models.vit_b_16(weights=None))
    model = vit_from_torchvision(tv)

    assert model.config == build_model("vit-b16").config
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert_close(model(images), tv(images), **TOL)


def test_hf_model_without_classifier_returns_the_cls_features(tmp_path):
    torch.manual_seed(0)
    small = transformers.ViTConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, image_size=32, num_labels=0
    )
    hf = randomise(transformers.ViTForImageClassification(small))
    hf.save_pretrained(tmp_path)
    model, labels = load_pretrained(tmp_path)

    assert labels == [] and isinstance(model.head, nn.Identity)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert_close(model(images), hf(images).logits, **TOL)  # (2, 64): the normalised [CLS] token


def test_a_hub_id_is_downloaded_preferring_safetensors_then_pickled_weights(tmp_path, monkeypatch):
    # A fake Hub (never the network): the repository has only config.json and pytorch_model.bin.
    torch.manual_seed(0)
    small = transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=32)
    hf = randomise(transformers.ViTForImageClassification(small))
    hf.save_pretrained(tmp_path)
    torch.save(load_file(tmp_path / "model.safetensors"), tmp_path / "pytorch_model.bin")
    (tmp_path / "model.safetensors").unlink()
    asked = []

    def snapshot_download(repo_id, allow_patterns):
        asked.append((repo_id, allow_patterns))
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    model, labels = load_pretrained("google/vit-tiny-test")

    assert [patterns[-1] for _, patterns in asked] == ["model.safetensors", "pytorch_model.bin"]
    assert {repo for repo, _ in asked} == {"google/vit-tiny-test"} and labels == ["LABEL_0", "LABEL_1"]
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert_close(model(images), hf(images).logits, **TOL)


def test_a_cvt_edu_checkpoint_loads_too(tmp_path):
    model = build_model("cvt-tiny").eval()
    classes = [f"c{i}" for i in range(10)]
    save_pretrained(model, tmp_path, name="cvt-tiny", classes=classes)
    loaded, labels = load_pretrained(tmp_path)

    assert labels == classes and not loaded.training
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))


def test_an_unsupported_model_type_lists_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "deit"}))
    with pytest.raises(ValueError, match=r"model_type 'deit' is not supported; supported model types: cvt, vit, swin, pvt"):
        load_pretrained(tmp_path)


def test_a_missing_folder_config_or_weights_is_a_clear_error(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match=f"there is no folder {re.escape(str(missing))}"):
        load_pretrained(missing)
    with pytest.raises(FileNotFoundError, match=f"{re.escape(str(tmp_path))} has no config.json"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(FileNotFoundError, match="no weights: expected model.safetensors or pytorch_model.bin"):
        load_pretrained(tmp_path)


def test_a_tensor_with_no_place_in_the_model_is_an_error():
    state = {"classifier.weight": torch.zeros(1), "vit.pooler.dense.weight": torch.zeros(1)}
    assert list(rename_state_dict(state, HF_VIT_KEYS, "ViT", ignore=("vit.pooler.",))) == ["head.weight"]
    with pytest.raises(ValueError, match=r"1 Hugging Face ViT tensors have no place.*'vit\.extra\.weight'"):
        rename_state_dict({**state, "vit.extra.weight": torch.zeros(1)}, HF_VIT_KEYS, "Hugging Face ViT", ignore=("vit.pooler.",))


def test_a_non_square_image_size_in_a_config_is_a_clear_error():
    vit = transformers.ViTConfig(image_size=[224, 192]).to_dict()
    with pytest.raises(ValueError, match=r"only square image_sizes are supported, got \[224, 192\]"):
        vit_config_from_hf(vit)
    swin = transformers.SwinConfig(patch_size=[4, 2]).to_dict()
    with pytest.raises(ValueError, match=r"only square patch_sizes are supported, got \[4, 2\]"):
        swin_config_from_hf(swin, num_classes=10)
