"""The experiment helpers the chapters call: the data-fraction study, figures in each language."""

import matplotlib

matplotlib.use("Agg")

import pytest

from cvt_edu.course.i18n import class_names, t
from cvt_edu.lab.compare import data_fraction_study
from cvt_edu.train.loop import TrainConfig
from cvt_edu.viz.plots import plot_curves, plot_data_fraction


def test_data_fraction_study_trains_on_nested_subsets_and_reuses_the_full_run(cifar_mini, tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=64, train_subset=256, test_subset=128, progress=False)
    acc = data_fraction_study(["cvt-tiny"], cifar_mini, cfg, [0.5, 1.0], tmp_path, quick=False)
    assert set(acc["cvt-tiny"]) == {0.5, 1.0} and all(0 <= a <= 1 for a in acc["cvt-tiny"].values())
    assert (tmp_path / "cvt-tiny-50pct" / "metrics.json").is_file() and (tmp_path / "cvt-tiny" / "metrics.json").is_file()
    with pytest.raises(ValueError, match="fractions must be in"):
        data_fraction_study(["cvt-tiny"], cifar_mini, cfg, [0.0], tmp_path, quick=False)


def test_figures_speak_the_chapters_language():
    history = [{"epoch": 1, "train_loss": 2.0, "test_loss": 1.9, "train_accuracy": 0.2, "test_accuracy": 0.25}]
    fig = plot_curves({"cvt-tiny": history}, lang="es")
    assert fig.axes[1].get_ylabel() == "exactitud (%)" and fig.axes[0].get_xlabel() == "época"
    fig = plot_data_fraction({"vit-tiny": {0.5: 0.3, 1.0: 0.4}}, n_train=4068, lang="pt")
    assert "4068" in fig.axes[0].get_xlabel() and fig.axes[0].get_title() == t("data_fraction", "pt")
    assert class_names(["cat", "dog", "unknown"], "pt") == ["gato", "cachorro", "unknown"]

