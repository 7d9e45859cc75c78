"""Transfer learning: pretrained weights or a random stand-in, ImageNet inputs, predictions, a new head, fine-tuning."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from torch import nn

from cvt_edu import save_pretrained
from cvt_edu.course.i18n import t
from cvt_edu.lab import transfer
from cvt_edu.lab.transfer import (
    ImageNetInput,
    finetune,
    imagenet_batch,
    imagenet_classes,
    load_or_random,
    replace_head,
    top_k,
)
from cvt_edu.models import build_model
from cvt_edu.train.checkpoint import load_checkpoint
from cvt_edu.train.config import TrainConfig
from cvt_edu.train.data import eval_transform
from cvt_edu.viz.transfer import plot_top_k, show_predictions


def test_imagenet_classes_are_the_1000_in_label_order():
    names = imagenet_classes()
    assert len(names) == 1000 and names[0] == "tench" and names[404] == "airliner"


def test_without_the_weights_a_random_model_of_the_same_shape_stands_in(monkeypatch, tmp_path):
    def offline(name):
        raise FileNotFoundError("'microsoft/cvt-13' is not a local folder, and downloading it failed\nmore detail")

    monkeypatch.setattr(transfer, "load_pretrained", offline)
    loaded = load_or_random("microsoft/cvt-13", fallback="cvt-13")
    assert not loaded.pretrained and loaded.error.startswith("'microsoft/cvt-13' is not a local folder")
    assert "\n" not in loaded.error
    assert loaded.model.config == build_model("cvt-13").config and not loaded.model.training
    assert loaded.labels == imagenet_classes()
    with pytest.raises(KeyError, match="unknown model"):
        load_or_random("microsoft/cvt-13", fallback="cvt-99")


def test_a_missing_local_folder_falls_back_and_a_real_checkpoint_loads(tmp_path):
    loaded = load_or_random(tmp_path / "missing", fallback="cvt-tiny")
    assert not loaded.pretrained and loaded.labels == [str(i) for i in range(10)]
    model = build_model("cvt-tiny")
    save_pretrained(model, tmp_path / "ckpt", classes=[f"c{i}" for i in range(10)])
    loaded = load_or_random(tmp_path / "ckpt", fallback="cvt-tiny")
    assert loaded.pretrained and loaded.error is None and loaded.labels[3] == "c3"
    torch.testing.assert_close(loaded.model.head.weight, model.head.weight)


def test_imagenet_batch_resizes_and_normalises():
    grey = torch.tensor(transfer.IMAGENET_MEAN).mul(255).round().to(torch.uint8).view(1, 3, 1, 1).expand(2, 3, 32, 32)
    batch = imagenet_batch(grey.contiguous(), size=96)
    assert batch.shape == (2, 3, 96, 96) and batch.dtype == torch.float32
    assert batch.abs().max() < 0.01  # the ImageNet mean maps to 0


def test_top_k_is_sorted_and_named():
    torch.manual_seed(0)
    model = build_model("cvt-tiny")
    top = top_k(model, torch.randn(3, 3, 32, 32), [f"c{i}" for i in range(10)], k=4)
    assert len(top) == 3 and all(len(t) == 4 for t in top)
    probs = [p for _, p in top[0]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    with pytest.raises(ValueError, match="10 classes, there are 5 labels"):
        top_k(model, torch.randn(1, 3, 32, 32), ["a"] * 5)


class Recorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.seen = None

    def forward(self, x):
        self.seen = x
        return x.mean((2, 3))


def test_imagenet_input_turns_cifar_batches_into_imagenet_ones():
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    recorder = Recorder()
    ImageNetInput(recorder, 64)(eval_transform()(images))
    assert recorder.seen.shape == (2, 3, 64, 64)
    torch.testing.assert_close(recorder.seen, imagenet_batch(images, 64), atol=1e-4, rtol=1e-4)


def test_replace_head_gives_the_new_number_of_classes_and_saves():
    model = build_model("cvt-tiny")
    old_features = model.forward_features(torch.randn(1, 3, 32, 32)).cls
    replace_head(model, 7)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7) and model.config.num_classes == 7
    assert model.head.bias.abs().sum() == 0 and old_features.shape == (1, 192)
    vit = replace_head(build_model("vit-tiny"), 3)
    assert vit(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    with pytest.raises(ValueError, match="at least 1"):
        replace_head(model, 0)
    with pytest.raises(TypeError, match="not a cvt_edu"):
        replace_head(nn.Linear(2, 2), 3)


def test_finetune_trains_saves_and_reuses_a_run(cifar_mini, tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=32, train_subset=64, test_subset=32, lr=1e-4, progress=False)
    model = build_model("cvt-tiny", num_classes=1000)  # stands in for an ImageNet model
    wrapped, metrics = finetune(model, cifar_mini, cfg, tmp_path, image_size=48, weights="random", name="ft", quick=False)
    assert not metrics["reused"] and metrics["image_size"] == 48 and metrics["n_test"] == 32
    assert wrapped(eval_transform()(cifar_mini[1].images[:2])).shape == (2, 10)
    saved, config = load_checkpoint(tmp_path)
    assert config["classes"][0] == "airplane" and saved.config.num_classes == 10
    again_model = build_model("cvt-tiny", num_classes=1000)
    _, reused = finetune(again_model, cifar_mini, cfg, tmp_path, image_size=48, weights="random", name="ft", quick=False)
    assert reused["reused"] and reused["test_accuracy"] == metrics["test_accuracy"]
    torch.testing.assert_close(again_model.head.weight, model.head.weight)
    fresh = build_model("cvt-tiny", num_classes=1000)
    with pytest.raises(ValueError, match=r"another model or recipe \(weights random -> pretrained\)"):  # not over it unasked
        finetune(fresh, cifar_mini, cfg, tmp_path, image_size=48, weights="pretrained", quick=False)
    _, other = finetune(fresh, cifar_mini, cfg, tmp_path, image_size=48, weights="pretrained", quick=False, overwrite=True)
    assert not other["reused"] and other["weights"] == "pretrained"  # other starting weights: trained again


def test_prediction_figures():
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    preds = [[("cat", 0.5), ("dog", 0.2)]] * 3
    fig = show_predictions(images, preds, true_labels=["a", "b", "c"], title="T", cols=3, lang="pt")
    assert fig.axes[1].get_title() == f"{t('true_prefix', 'pt', label='b')}\ncat 50%\ndog 20%" and fig._suptitle.get_text() == "T"
    with pytest.raises(ValueError, match="one per image"):
        show_predictions(images, preds, true_labels=["a"])
    fig = plot_top_k(images[0], preds[0], title="T", lang="es")
    assert fig.axes[1].get_xlabel() == t("probability", "es") and fig.axes[1].get_xlim()[1] == pytest.approx(62.5)
    assert [t.get_text() for t in fig.axes[1].texts] == ["20%", "50%"]
    fig = show_predictions(images[:1], [[("tench", 0.0012)]])
    assert fig.axes[0].get_title() == "tench 0.1%"
