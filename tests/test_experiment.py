"""The experiment helpers the chapters call: one rule for reusing and resuming runs, the data-fraction study,
figures in each language."""

import matplotlib

matplotlib.use("Agg")

import json
from dataclasses import replace

import pytest

import cvt_edu.train.loop as train_loop
import cvt_edu.train.run as run_module
from cvt_edu.course.i18n import class_names, t
from cvt_edu.lab.ablation import train_config_model, variant_config
from cvt_edu.lab.compare import data_fraction_study, train_model
from cvt_edu.train.config import TrainConfig
from cvt_edu.train.data import ImageTensors
from cvt_edu.viz.plots import plot_curves, plot_data_fraction


def small_split(cifar_mini, n_train=128, n_test=64):
    train, test = cifar_mini
    return ImageTensors(train.images[:n_train], train.labels[:n_train], train.classes), test.subset(n_test)


def test_data_fraction_study_trains_on_nested_subsets_and_reuses_the_full_run(cifar_mini, tmp_path, capsys):
    data = small_split(cifar_mini)  # every training image is used: train_subset is None, as in chapter 5 on cifar10-mini
    cfg = TrainConfig(epochs=1, batch_size=32)
    full = train_model("cvt-tiny", data, cfg, tmp_path / "cvt-tiny", quick=False)
    capsys.readouterr()
    acc = data_fraction_study(["cvt-tiny"], data, cfg, [0.5, 1.0], tmp_path, quick=False)
    assert set(acc["cvt-tiny"]) == {0.5, 1.0} and all(0 <= a <= 1 for a in acc["cvt-tiny"].values())
    assert f"reusing the finished run in {tmp_path / 'cvt-tiny'}" in capsys.readouterr().out
    assert acc["cvt-tiny"][1.0] == full["test_accuracy"]
    half = json.loads((tmp_path / "cvt-tiny-50pct" / "metrics.json").read_text())
    assert half["n_train"] == 64 and half["key"]["recipe"]["train_subset"] == 64
    with pytest.raises(ValueError, match="fractions must be in"):
        data_fraction_study(["cvt-tiny"], data, cfg, [0.0], tmp_path, quick=False)


def test_one_rule_reuses_a_finished_run_resumes_an_interrupted_one_and_refuses_another_model(cifar_mini, tmp_path, monkeypatch,
                                                                                            capsys):
    data = small_split(cifar_mini, 64, 32)
    cfg = TrainConfig(epochs=2, batch_size=32, lr=2e-3)
    squeezed, unsqueezed = variant_config("cvt-tiny", stride_kv=2), variant_config("cvt-tiny", stride_kv=1)  # the same weights' shapes
    first = train_config_model("cvt", squeezed, data, cfg, tmp_path / "run", name="s2", quick=False)
    assert not first["reused"] and first["key"]["model_config"]["stages"][0]["stride_kv"] == 2
    assert {p.name for p in (tmp_path / "run").iterdir()} >= {"model.safetensors", "config.json", "trainer_state.pt", "metrics.json"}

    # finished, same model and recipe: reused without training (nor evaluating) again
    monkeypatch.setattr(run_module, "fit", lambda *a, **k: pytest.fail("a finished run was trained again"))
    again = train_config_model("cvt", squeezed, data, replace(cfg, progress=False, device="cpu"), tmp_path / "run", quick=False)
    assert again["reused"] and again["history"] == first["history"] and again["seconds"] == first["seconds"]
    monkeypatch.undo()

    # another model in the same folder: refused, though its weights would load; replaced when told to overwrite
    with pytest.raises(ValueError, match=r"holds a finished run of another model or recipe \(model_config.stages\[0\].stride_kv 2 -> 1"):
        train_config_model("cvt", unsqueezed, data, cfg, tmp_path / "run", name="s1", quick=False)
    capsys.readouterr()
    other = train_config_model("cvt", unsqueezed, data, cfg, tmp_path / "run", name="s1", quick=False, overwrite=True)
    assert "s1: replacing a finished run of another model or recipe" in capsys.readouterr().out
    assert not other["reused"] and other["model_config"]["stages"][0]["stride_kv"] == 1 and len(other["history"]) == 2

    # interrupted after its first epoch: resumed, and it ends as the uninterrupted run did
    real_save = train_loop.save_trainer_state

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_loop, "save_trainer_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_config_model("cvt", squeezed, data, cfg, tmp_path / "killed", name="s2", quick=False)
    monkeypatch.undo()
    capsys.readouterr()
    resumed = train_config_model("cvt", squeezed, data, cfg, tmp_path / "killed", name="s2", quick=False)
    assert "resuming the interrupted run" in capsys.readouterr().out and not resumed["reused"]
    assert [h["test_accuracy"] for h in resumed["history"]] == [h["test_accuracy"] for h in first["history"]]
    assert resumed["history"][-1]["train_loss"] == pytest.approx(first["history"][-1]["train_loss"], rel=1e-5)


def test_figures_speak_the_chapters_language():
    history = [{"epoch": 1, "train_loss": 2.0, "test_loss": 1.9, "train_accuracy": 0.2, "test_accuracy": 0.25}]
    fig = plot_curves({"cvt-tiny": history}, lang="es")
    assert fig.axes[1].get_ylabel() == "exactitud (%)" and fig.axes[0].get_xlabel() == "época"
    fig = plot_data_fraction({"vit-tiny": {0.5: 0.3, 1.0: 0.4}}, n_train=4068, lang="pt")
    assert "4068" in fig.axes[0].get_xlabel() and fig.axes[0].get_title() == t("data_fraction", "pt")
    assert class_names(["cat", "dog", "unknown"], "pt") == ["gato", "cachorro", "unknown"]

