"""Chapter 5's controls: resnet-20 (He et al. 2016) and cvt-tiny-linear (cvt-tiny without its convolutions).

ResNet's basic block is proved equal to torchvision's on the same weights; both models are checked for their
shapes, parameters, gradients, the property that makes them controls, a save/load round trip and training
from the command line.
"""

import json

import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock as TorchvisionBasicBlock

from cvt_edu import load_pretrained
from cvt_edu.attention import attention_maps
from cvt_edu.cli import main
from cvt_edu.cost.flops import count_flops, count_params
from cvt_edu.cvt import CvTConfig, LinearCvT
from cvt_edu.models import arch_of, build_model, model_config
from cvt_edu.resnet import BasicBlock
from cvt_edu.train.checkpoint import load_checkpoint, save_pretrained

BASELINES = ["resnet-20", "cvt-tiny-linear"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomise(module: nn.Module, seed: int = 0) -> None:
    """Random weights and BatchNorm statistics, so that no part of a block can hide behind its initial values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + 0.5 if name.endswith("running_var") else torch.randn(t.shape, generator=g) * 0.3)


@pytest.mark.parametrize("in_chans, out_chans, stride", [(16, 16, 1), (16, 32, 2), (32, 64, 2)])
def test_basic_block_equals_torchvision_on_the_same_weights(in_chans, out_chans, stride):
    ours = BasicBlock(in_chans=in_chans, out_chans=out_chans, stride=stride)
    projection = stride != 1 or in_chans != out_chans
    downsample = nn.Sequential(nn.Conv2d(in_chans, out_chans, 1, stride=stride, bias=False), nn.BatchNorm2d(out_chans)) if projection else None
    theirs = TorchvisionBasicBlock(in_chans, out_chans, stride=stride, downsample=downsample)
    randomise(theirs)
    state = {k.replace("downsample.", "shortcut."): v for k, v in theirs.state_dict().items()}
    ours.load_state_dict(state)  # strict: the same weights, name for name
    x = torch.randn(4, in_chans, 16, 16)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        y = ours(x)
        assert y.shape == (4, out_chans, 16 // stride, 16 // stride)
        torch.testing.assert_close(y, theirs(x), atol=1e-6, rtol=0)
    ours.train(), theirs.train()  # batch statistics too
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-6, rtol=0)


def test_resnet20_is_the_papers_cifar_network():
    model = build_model("resnet-20")
    features = model.forward_features(torch.randn(2, 3, 32, 32))
    assert [tuple(m.shape) for m in features.maps] == [(2, 16, 32, 32), (2, 32, 16, 16), (2, 64, 8, 8)]
    assert features.cls is None and model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    # 6n + 2 = 20 weighted layers: 19 3x3 convolutions and the linear head; 1x1 projections on the 2 shortcuts (option B)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert sum(c.kernel_size == (3, 3) for c in convs) == 19 and model.config.depth == 20
    assert [c.stride for c in convs if c.kernel_size == (1, 1)] == [(2, 2), (2, 2)]

    def conv_bn(i, o, k):
        return i * o * k * k + 2 * o

    stage = lambda i, o: conv_bn(i, o, 3) + conv_bn(o, o, 3) + (conv_bn(i, o, 1) if i != o else 0) + 2 * 2 * conv_bn(o, o, 3)  # noqa: E731
    expected = conv_bn(3, 16, 3) + stage(16, 16) + stage(16, 32) + stage(32, 64) + 64 * 10 + 10
    print(f"resnet-20: {count_params(model):,} parameters")
    assert count_params(model) == expected == 272_474  # the paper: 0.27 M (option A: 269,722)


def test_resnet_refuses_bad_input_in_one_line():
    model = build_model("resnet-20")
    with pytest.raises(TypeError, match="normalised"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="expected 3 channels, got 1"):
        model(torch.zeros(1, 1, 32, 32))


@pytest.mark.parametrize("name", BASELINES)
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    model = build_model(name)
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    nn.functional.cross_entropy(model(images), labels).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


def test_cvt_tiny_linear_keeps_cvt_tinys_stages_and_maps():
    _, tiny = model_config("cvt-tiny")
    arch, linear = model_config("cvt-tiny-linear")
    assert arch == "cvt-linear"
    kept = ("embed_dim", "depth", "num_heads", "mlp_ratio", "cls_token", "qkv_bias", "drop_rate", "attn_drop_rate", "drop_path")
    for a, b in zip(tiny.stages, linear.stages, strict=True):
        assert {k: getattr(a, k) for k in kept} == {k: getattr(b, k) for k in kept}
    assert (tiny.image_size, tiny.num_classes, tiny.attn_scale) == (linear.image_size, linear.num_classes, linear.attn_scale)
    images = torch.randn(2, 3, 32, 32)
    maps = lambda name: [tuple(m.shape) for m in build_model(name).forward_features(images).maps]  # noqa: E731
    assert maps("cvt-tiny-linear") == maps("cvt-tiny") == [(2, 64, 16, 16), (2, 128, 8, 8), (2, 192, 4, 4)]
    assert build_model("cvt-tiny-linear")(images).shape == (2, 10)


def test_cvt_tiny_linear_has_only_linear_patch_maps_and_full_attention():
    linear, tiny = build_model("cvt-tiny-linear").eval(), build_model("cvt-tiny").eval()
    convs = [m for m in linear.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3  # the three patch embeddings, nothing in the projections
    for c in convs:  # a linear map of each non-overlapping patch
        assert c.kernel_size == c.stride and c.padding == (0, 0) and c.groups == 1, c
    assert not any(isinstance(m, nn.BatchNorm2d) for m in linear.modules())
    assert any(c.kernel_size != c.stride for c in tiny.modules() if isinstance(c, nn.Conv2d))  # what the control removes
    # no squeeze: every query sees every token of its stage (cvt-tiny: a quarter of them)
    images = torch.randn(1, 3, 32, 32)
    assert [tuple(a.shape[-2:]) for a in attention_maps(linear, images)] == [(256, 256), (64, 64), (64, 64), (17, 17), (17, 17)]
    assert [tuple(a.shape[-2:]) for a in attention_maps(tiny, images)] == [(256, 64), (64, 16), (64, 16), (17, 5), (17, 5)]


def test_cvt_tiny_linear_positional_embeddings_tell_positions_apart():
    model = build_model("cvt-tiny-linear").eval()
    assert [tuple(s.pos_embed.shape) for s in model.stages] == [(1, 256, 64), (1, 64, 128), (1, 16, 192)]
    assert all(0.01 < s.pos_embed.std() < 0.03 for s in model.stages)  # trunc-normal, std 0.02
    assert all(s.pos_embed is None for s in build_model("cvt-tiny").stages)
    # Swap two 8x8-pixel blocks, which every stage's patches tile: stage 3 sees the same tokens in another order.
    image = torch.randn(1, 3, 32, 32)
    swapped = image.clone()
    swapped[..., 0:8, 0:8], swapped[..., 16:24, 24:32] = image[..., 16:24, 24:32], image[..., 0:8, 0:8]
    with torch.no_grad():
        with_positions = (model(image) - model(swapped)).abs().max()
        for s in model.stages:
            s.pos_embed.zero_()
        without = (model(image) - model(swapped)).abs().max()
    print(f"logit change from swapping two blocks: {with_positions:.2e} with the positional embeddings, {without:.2e} without")
    assert with_positions > 1e-4 and with_positions > 100 * without
    # without them the model is blind to the swap: nothing but the embeddings tells it where a token is
    assert without < 1e-5


def test_cvt_tiny_linear_parameters_and_macs_against_cvt_tiny():
    linear, tiny = build_model("cvt-tiny-linear"), build_model("cvt-tiny")
    p_linear, p_tiny = count_params(linear), count_params(tiny)
    m_linear, m_tiny = count_flops(linear)["macs"], count_flops(tiny)["macs"]
    print(f"cvt-tiny: {p_tiny:,} parameters, {m_tiny / 1e6:.1f} M MACs; cvt-tiny-linear: {p_linear:,}, {m_linear / 1e6:.1f} M MACs")
    # what changes, stage by stage: the embedding kernel 3x3 -> 2x2, no depthwise 3x3 conv + BatchNorm on q, k, v,
    # a positional embedding per token of the map
    _, cfg = model_config("cvt-tiny")
    removed, added, chans, side = 0, 0, 3, 32
    for s in cfg.stages:
        side //= 2
        removed += (9 - 4) * chans * s.embed_dim + s.depth * 3 * (9 * s.embed_dim + 2 * s.embed_dim)
        added += side * side * s.embed_dim
        chans = s.embed_dim
    assert p_linear == p_tiny - removed + added
    assert m_linear > m_tiny  # attention over all N keys costs more than the squeezed projection saves


def test_linear_cvt_refuses_a_convolutional_stage_and_other_image_sizes():
    _, cfg = model_config("cvt-tiny")
    with pytest.raises(ValueError, match="stage 1 of a LinearCvT needs a linear patch embedding.*kernel_size=3, stride=2, padding=1"):
        LinearCvT(cfg)
    model = build_model("cvt-tiny-linear")
    with pytest.raises(ValueError, match="expected 32x32 images .* got 64x64"):
        model(torch.randn(1, 3, 64, 64))
    _, linear = model_config("cvt-tiny-linear")
    with pytest.raises(ValueError, match="does not split into 2x2 patches"):
        LinearCvT(CvTConfig(stages=linear.stages, num_classes=10, image_size=28))  # 28 -> 14 -> 7, odd


@pytest.mark.parametrize("name", BASELINES)
def test_save_and_load_round_trip_through_a_run_folder(name, tmp_path):
    model = build_model(name).eval()
    randomise(model, seed=1) if name == "resnet-20" else None  # BatchNorm statistics saved and read back too
    save_pretrained(model, tmp_path, name=name)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["arch"] == arch_of(model) == {"resnet-20": "resnet", "cvt-tiny-linear": "cvt-linear"}[name]
    images = torch.randn(2, 3, 32, 32)
    loaded, _ = load_checkpoint(tmp_path)
    pretrained, labels = load_pretrained(tmp_path)
    assert type(loaded) is type(model) and loaded.config == model.config and len(labels) == 10
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images), atol=0, rtol=0)
        torch.testing.assert_close(pretrained(images), model(images), atol=0, rtol=0)


@pytest.fixture(scope="module")
def few_images(data_dir, tmp_path_factory):
    """A slice of the real CIFAR-10 subset, 16 training and 4 test images per class (links), which loads in a moment."""
    root = tmp_path_factory.mktemp("few")
    for split, n in (("train", 16), ("test", 4)):
        for class_dir in sorted((data_dir / split).iterdir()):
            (root / split / class_dir.name).mkdir(parents=True)
            for image in sorted(class_dir.iterdir())[:n]:
                (root / split / class_dir.name / image.name).symlink_to(image)
    return root


@pytest.mark.parametrize("name", BASELINES)
def test_train_quick_from_the_command_line(name, tmp_path, few_images, capsys):
    out = tmp_path / "run"
    code = main(["train", "--model", name, "--data", str(few_images), "--out", str(out), "--quick", "--no-progress"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(stdout.strip().splitlines()[-1])["model"] == name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["params"] == count_params(build_model(name)) and metrics["flops"] > 0 and len(metrics["history"]) == 1
    assert sum(map(sum, metrics["confusion"])) == 40  # every test image scored
    assert json.loads((out / "config.json").read_text())["arch"] == arch_of(build_model(name))
    model, _ = load_checkpoint(out)
    assert type(model) is type(build_model(name))
