"""Training: a real short run learns, runs resume exactly, files are written atomically."""

import json

import pytest
import torch

import cvt_edu.train.loop as train_module
from cvt_edu.models import build_model
from cvt_edu.train.checkpoint import atomic_path, load_checkpoint
from cvt_edu.train.env import pick_device
from cvt_edu.train.loop import TrainConfig, evaluate, fit, make_scheduler


def test_a_short_run_on_real_cifar10_learns_well_above_chance(cifar_mini, tmp_path):
    train, test = cifar_mini
    cfg = TrainConfig(epochs=3, batch_size=64, lr=2e-3, warmup_epochs=0.5, progress=False)
    metrics = fit(build_model("cvt-tiny"), train, test, cfg, out_dir=tmp_path, name="cvt-tiny")
    assert metrics["test_accuracy"] > 0.30, metrics["history"]  # chance is 0.10
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    assert len(metrics["history"]) == 3 and metrics["device"] == "cpu" and metrics["params"] > 0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test_accuracy"] == metrics["test_accuracy"]
    assert sum(map(sum, saved["confusion"])) == len(test)
    # the saved model is the trained one
    model, config = load_checkpoint(tmp_path)
    assert evaluate(model, test)["accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert config["name"] == "cvt-tiny" and config["classes"][0] == "airplane"


def test_an_interrupted_run_resumes_where_it_stopped(cifar_mini, tmp_path, monkeypatch):
    train, test = cifar_mini
    cfg = TrainConfig(epochs=2, batch_size=64, train_subset=256, test_subset=128, progress=False)
    torch.manual_seed(0)
    straight = fit(build_model("vit-tiny"), train, test, cfg, out_dir=tmp_path / "straight")

    saves = []
    real_save = train_module._save_trainer_state

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        saves.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_save_trainer_state", save_then_die)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        fit(build_model("vit-tiny"), train, test, cfg, out_dir=tmp_path / "resumed")
    monkeypatch.setattr(train_module, "_save_trainer_state", real_save)
    torch.manual_seed(123)  # the resumed run must not depend on the global state it finds
    resumed = fit(build_model("vit-tiny"), train, test, cfg, out_dir=tmp_path / "resumed")
    assert saves == [1]
    for a, b in zip(straight["history"], resumed["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["test_accuracy"] == b["test_accuracy"]


def test_atomic_path_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_learning_rate_warms_up_linearly_then_decays_by_cosine():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=1.0)
    sched = make_scheduler(opt, TrainConfig(epochs=10, lr=1.0, min_lr=0.0, warmup_epochs=2), steps_per_epoch=10)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.01)
    assert lrs[10] == pytest.approx(0.01 + 0.99 * 10 / 20)
    assert lrs[20] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.5, abs=1e-6)  # halfway through the cosine
    assert lrs[99] < 0.001 and all(a >= b for a, b in zip(lrs[20:], lrs[21:]))


def test_device_choice_falls_back_to_cpu_here():
    assert pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu").type == "cpu"


def test_a_config_splits_off_the_same_seeded_subsets_that_fit_trains_and_tests_on(cifar_mini):
    train, test = cifar_mini
    assert TrainConfig().splits(train, test) == (train, test)  # no subsets: every image
    sub_train, sub_test = TrainConfig(seed=3).quick().splits(train, test)
    assert (len(sub_train), len(sub_test)) == (512, 256)
    assert torch.equal(sub_train.images, train.subset(512, 3).images) and torch.equal(sub_test.labels, test.subset(256, 3).labels)
    assert not torch.equal(sub_train.images, TrainConfig(seed=4).quick().splits(train, test)[0].images)


def test_a_config_for_quick_mode_is_its_quick_version_and_reads_the_environment_when_not_told(monkeypatch):
    cfg = TrainConfig.small_data()
    assert cfg.for_mode(True) == cfg.quick() and cfg.for_mode(True).epochs == 1
    assert cfg.for_mode(False) is cfg
    monkeypatch.setenv("CVT_EDU_QUICK", "1")
    assert cfg.for_mode() == cfg.quick()
    monkeypatch.setenv("CVT_EDU_QUICK", "0")
    assert cfg.for_mode() is cfg
