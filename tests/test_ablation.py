"""Ablation of the convolutional projection: variant configs, training from a config, the cost split, tables and figures."""

import json

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from cvt_edu.attention import MultiHeadAttention, attention_maps
from cvt_edu.cost.flops import measured_macs
from cvt_edu.cost.formulas import attention_macs, attention_terms
from cvt_edu.course.i18n import t
from cvt_edu.lab.ablation import (
    ablation_table,
    train_config_model,
    variant_config,
)
from cvt_edu.lab.stats import accuracy_stderr
from cvt_edu.models import build_model, config_to_dict, model_config, model_from_config
from cvt_edu.projection import ConvQKV
from cvt_edu.train.loop import TrainConfig
from cvt_edu.viz.attention import plot_key_attention
from cvt_edu.viz.cost import plot_attention_terms, plot_cost_curves
from cvt_edu.viz.plots import plot_ablation


def test_variant_config_changes_every_stage_and_nothing_else():
    base = model_config("cvt-tiny")[1]
    avg = variant_config("cvt-tiny", projection="avg", stride_kv=1)
    assert all(s.projection == "avg" and s.stride_kv == 1 for s in avg.stages)
    assert [s.embed_dim for s in avg.stages] == [s.embed_dim for s in base.stages]
    assert avg.num_classes == base.num_classes and variant_config(base) == base
    model = model_from_config("cvt", config_to_dict(avg))
    assert model.stages[0].blocks[0].attn.qkv.conv_k.method == "avg"
    with pytest.raises(ValueError, match="needs a CvT"):
        variant_config("vit-tiny", stride_kv=1)
    with pytest.raises(TypeError):
        variant_config("cvt-tiny", no_such_field=1)


@pytest.mark.parametrize("method,stride", [("linear", 1), ("dw_bn", 1), ("dw_bn", 2)])
def test_attention_terms_add_up_to_the_formula_and_to_the_measured_cost(method, stride):
    h = w = 16
    kind = "msa" if method == "linear" else "cvt"
    terms = attention_terms(kind, h, w, 64, stride_kv=stride)
    assert sum(terms.values()) == attention_macs(kind, h, w, 64, stride_kv=stride)
    qkv, attn = ConvQKV(dim=64, method=method, stride_kv=stride).eval(), MultiHeadAttention(embed_dim=64, num_heads=2)
    x = torch.randn(1, h * w, 64)
    q, k, v = qkv(x, (h, w))
    assert measured_macs(qkv, x, (h, w)) + measured_macs(attn, q, k, v) == sum(terms.values())
    assert (terms["conv"] == 0) == (kind == "msa")


def test_attention_terms_reject_unknown_kinds_and_strides():
    with pytest.raises(ValueError, match="'msa' and 'cvt'"):
        attention_terms("sra", 8, 8, 16)
    with pytest.raises(ValueError, match="does not divide"):
        attention_terms("cvt", 7, 7, 16, stride_kv=2)


def test_accuracy_stderr_is_binomial():
    assert accuracy_stderr(0.5, 100) == pytest.approx(0.05)
    assert accuracy_stderr(1.0, 10) == 0.0
    with pytest.raises(ValueError, match="accuracy"):
        accuracy_stderr(1.5, 10)


def test_train_config_model_trains_a_variant_and_reuses_a_finished_run(cifar_mini, tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=64, train_subset=256, test_subset=128, progress=False)
    config = variant_config("cvt-tiny", projection="linear")
    metrics = train_config_model("cvt", config, cifar_mini, cfg, tmp_path / "linear", name="linear", quick=False)
    assert metrics["epochs"] == 1 and metrics["n_test"] == 128 and metrics["macs"] > 0
    assert metrics["model_config"]["stages"][0]["projection"] == "linear"
    saved = json.loads((tmp_path / "linear" / "metrics.json").read_text())
    assert saved["test_accuracy"] == metrics["test_accuracy"] and saved["model_config"]["stages"][2]["projection"] == "linear"
    again = train_config_model("cvt", config_to_dict(config), cifar_mini, cfg, tmp_path / "linear", name="linear", quick=False)
    assert again["test_accuracy"] == metrics["test_accuracy"] and again["seconds"] == metrics["seconds"]
    # the same seed gives the same initial weights, whatever ran before
    torch.manual_seed(123)
    other = train_config_model("cvt", config, cifar_mini, cfg, tmp_path / "linear2", name="linear", quick=False)
    assert other["history"][0]["train_loss"] == pytest.approx(metrics["history"][0]["train_loss"], rel=1e-5)

    table = ablation_table({"linear": metrics})
    assert "| linear | linear | - |" in " ".join(table.split())
    fig = plot_ablation({"linear": metrics, "again": again}, lang="es")
    assert len(fig.axes) == 3 and fig.axes[0].get_ylabel() == t("accuracy_2se", "es")
    assert fig._suptitle.get_text() == t("ablation_title", "es", epochs=1)


def test_cost_curves_and_key_attention_figures():
    fig = plot_cost_curves([8, 16], {"MSA": [1e6, 1e7], "CvT": [5e5, 3e6]}, dim=64, lang="pt")
    assert fig.axes[0].get_xlabel() == t("map_side", "pt") and fig.axes[0].get_yscale() == "log"
    assert fig.axes[0].get_title() == t("cost_title", "pt", dim=64)
    terms = {"MSA": attention_terms("msa", 16, 16, 64), "CvT": attention_terms("cvt", 16, 16, 64, stride_kv=2)}
    fig = plot_attention_terms(terms, lang="es")
    ax = fig.axes[0]
    assert ax.get_ylabel() == t("macs_m", "es") and ax.get_legend().get_texts()[0].get_text() == t("term_conv", "es")
    assert [round(float(t.get_text()), 1) for t in ax.texts] == [12.6, 4.9]  # the totals, in millions
    model = build_model("cvt-tiny").eval()
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    weights = attention_maps(model, torch.randn(1, 3, 32, 32))[0][0]  # stage 1: (heads, 256, 64)
    fig = plot_key_attention(image, {"s=2": weights}, (8, 8), (16, 16), lang="en")
    assert fig.axes[1].get_title() == "s=2\n8x8 keys"
    last = attention_maps(model, torch.randn(1, 3, 32, 32))[-1][0]  # stage 3 with [CLS]: (heads, 17, 5)
    fig = plot_key_attention(image, {"cls": last}, (1, 1), (4, 4), lang="es")
    assert fig.axes[1].get_title() == f"cls\n{t('keys_subtitle', 'es', h=2, w=2)}"
    with pytest.raises(ValueError, match="do not fit"):
        plot_key_attention(image, {"bad": weights}, (0, 0), (8, 8))
