"""Attention cost: the formulas against FlopCounterMode on the real layers, the resolution sweep, its figure, table and CLI."""

import json
import subprocess
import sys
import time

import matplotlib
import pytest
import torch

from cvt_edu.cost.flops import measured_macs
from cvt_edu.cost.formulas import attention_macs
from cvt_edu.cost.sweep import (
    SWEEP_MODELS,
    AttentionLayer,
    _measure_isolated,
    build_sweep_model,
    check_attention_formula,
    formula_table,
    growth_exponents,
    load_or_run_sweep,
    measure_point,
    resolution_sweep,
    sweep_attention_macs,
    sweep_table,
    sweep_tokens,
    swin_window_size,
    write_sweep,
)
from cvt_edu.course.i18n import t
from cvt_edu.viz.cost import MEMORY_FLOOR_MIB, plot_attention_cost, plot_sweep

matplotlib.use("Agg")

# (kind, parameters) x (map side, width): several map sizes and widths for every kind.
CASES = [
    ("msa", {}),
    ("w-msa", {"window_size": 4}),
    ("w-msa", {"window_size": 4, "shifted": True}),
    ("w-msa", {"window_size": 7}),
    ("w-msa", {"window_size": 7, "shifted": True}),
    ("sra", {"sr_ratio": 1}),
    ("sra", {"sr_ratio": 2}),
    ("sra", {"sr_ratio": 4}),
    ("sra", {"sr_ratio": 7}),
    ("cvt", {"stride_kv": 2}),
    ("cvt", {"stride_kv": 1}),
    ("cvt", {"stride_kv": 2, "kernel_size": 5}),
]
SIZES = [(8, 32), (16, 64), (28, 96), (56, 64)]


def _fits(params, side):
    m = params.get("window_size") or params.get("sr_ratio") or params.get("stride_kv") or 1
    return side % m == 0


POINTS = [(kind, params, side, dim) for kind, params in CASES for side, dim in SIZES if _fits(params, side)]


@pytest.mark.parametrize(
    "kind,params,side,dim", POINTS, ids=[f"{k}-{'-'.join(f'{a}{b}' for a, b in p.items())}-{s}x{s}-C{d}" for k, p, s, d in POINTS]
)
def test_attention_formula_matches_measured_macs_within_1_percent(kind, params, side, dim):
    check = check_attention_formula(kind, side, side, dim, **params)
    assert check["measured"] > 0 and check["tokens"] == side * side
    assert check["ratio"] == pytest.approx(1.0, abs=0.01), check


def test_formula_on_a_rectangular_map():
    for kind, params in [("msa", {}), ("w-msa", {"window_size": 4}), ("sra", {"sr_ratio": 4}), ("cvt", {"stride_kv": 2})]:
        assert check_attention_formula(kind, 8, 16, 32, **params)["ratio"] == pytest.approx(1.0, abs=0.01)


def test_the_swin_paper_equations():
    # Liu et al. 2021, Eq. 1-2, with h = w = 56, C = 96, M = 7 (Swin-T's first stage).
    h = w = 56
    c, m = 96, 7
    assert attention_macs("msa", h, w, c) == 4 * h * w * c**2 + 2 * (h * w) ** 2 * c
    assert attention_macs("w-msa", h, w, c, window_size=m) == 4 * h * w * c**2 + 2 * m**2 * h * w * c
    # SRA with R = 1 is global attention, and CvT with s = 1 adds only its depthwise convolutions.
    assert attention_macs("sra", h, w, c, sr_ratio=1) == attention_macs("msa", h, w, c)
    assert attention_macs("cvt", h, w, c, stride_kv=1) == attention_macs("msa", h, w, c) + 9 * 3 * h * w * c


def test_attention_layer_shapes_and_errors():
    x = torch.randn(2, 8, 8, 32)
    layers = [("msa", {}), ("w-msa", {"window_size": 4, "shifted": True}), ("sra", {"sr_ratio": 2}), ("cvt", {"stride_kv": 2})]
    for kind, params in layers:
        assert AttentionLayer(kind, dim=32, num_heads=2, **params)(x).shape == (2, 64, 32)
    with pytest.raises(ValueError, match="unknown attention kind"):
        AttentionLayer("conv", dim=32)
    with pytest.raises(ValueError, match="needs window_size"):
        AttentionLayer("w-msa", dim=32)
    with pytest.raises(ValueError, match="does not divide"):
        check_attention_formula("sra", 10, 10, 32, sr_ratio=4)


def test_swin_window_fits_every_stage():
    assert swin_window_size(224) == 7  # maps 56, 28, 14
    assert swin_window_size(384) == 8  # 96, 48, 24: 7 does not divide
    assert swin_window_size(32) == 8  # 8, 4, 2: every map is one window
    for r in (32, 48, 64, 96, 128, 160, 224, 384, 512):
        model = build_sweep_model("swin", r)
        model.check_size(r, r)  # raises if a window does not fit
    with pytest.raises(ValueError, match="multiple of 16"):
        swin_window_size(100)


@pytest.mark.parametrize("name", list(SWEEP_MODELS))
def test_sweep_models_are_comparable_and_run(name):
    for r in (32, 64):
        model = build_sweep_model(name, r)
        assert model(torch.randn(1, 3, r, r)).shape == (1, 10)
    # every model starts from an (r/4) x (r/4) map of width 64
    model = build_sweep_model(name, 64)
    if name == "vit":
        first = model.patch_embed(torch.zeros(1, 3, 64, 64))
        assert first.shape == (1, 16 * 16, 64)
    else:
        maps = model.forward_features(torch.zeros(1, 3, 64, 64)).maps
        assert maps[0].shape == (1, 64, 16, 16)
    assert sweep_attention_macs(name, 64) > 0


def test_sweep_model_errors_and_overrides():
    with pytest.raises(KeyError, match="unknown sweep model"):
        build_sweep_model("resnet", 32)
    with pytest.raises(ValueError, match="multiple of 16"):
        build_sweep_model("vit", 40)
    assert build_sweep_model("vit", 64, patch_size=16).patch_embed(torch.zeros(1, 3, 64, 64)).shape[1] == 16
    assert sweep_attention_macs("vit", 64, patch_size=16) == attention_macs("msa", 4, 4, 64)
    assert sweep_attention_macs("swin", 224) == attention_macs("w-msa", 56, 56, 64, window_size=7)
    assert sweep_attention_macs("pvt", 224) == attention_macs("sra", 56, 56, 64, sr_ratio=8)


def test_measure_point_in_process():
    point = measure_point("swin", 32, steps=2, num_threads=1)
    assert point["status"] == "ok" and point["ms"] > 0 and point["peak_mib"] >= 0
    assert point["device"].startswith("cpu")


def test_resolution_sweep_measures_small_resolutions():
    rows = resolution_sweep(["vit", "cvt", "swin", "pvt"], [64, 32], steps=1)
    assert [(r["model"], r["resolution"]) for r in rows] == [(m, s) for m in ("vit", "cvt", "swin", "pvt") for s in (32, 64)]
    for r in rows:
        assert r["status"] == "ok", r
        assert r["ms"] > 0 and r["peak_mib"] >= 0 and r["params"] > 0
        assert r["macs"] == r["flops"] // 2 and r["attention_macs"] > 0
        assert r["tokens"] == (r["resolution"] // 4) ** 2
    for name in SWEEP_MODELS:
        small, large = (r for r in rows if r["model"] == name)
        assert large["flops"] > 3 * small["flops"]  # 4x the tokens
    json.dumps(rows)  # JSON-ready


def test_sweep_stops_a_model_at_its_first_timeout():
    rows = resolution_sweep(["vit", "pvt"], [32, 64], steps=1, time_limit_s=1e-6)
    assert [(r["model"], r["resolution"], r["status"]) for r in rows] == [("vit", 32, "timeout"), ("pvt", 32, "timeout")]
    assert rows[0]["ms"] > 0 and rows[0]["flops"] > 0


def test_sweep_stops_a_model_at_its_first_out_of_memory():
    # 2 MiB is enough for 32x32 but not for the 64x64 ViT's attention (256 x 256 scores, and more)
    rows = resolution_sweep(["vit"], [32, 64, 128], steps=1, memory_limit_mib=2)
    assert [r["status"] for r in rows][-1] == "OOM"
    assert len(rows) < 3 and rows[-1]["ms"] is None and rows[-1]["flops"] > 0


def test_a_point_whose_child_does_not_answer_in_time_is_a_timeout():
    # the child is killed after 1 s, long before its 50 passes at 256x256 are done
    start = time.monotonic()
    assert _measure_isolated("vit", 256, {"steps": 50, "num_threads": 1}, timeout_s=1) == {"status": "timeout", "ms": None,
                                                                                           "peak_mib": None}
    assert time.monotonic() - start < 10


def test_sweep_argument_errors():
    with pytest.raises(KeyError, match="unknown sweep model"):
        resolution_sweep(["deit"], [32])
    with pytest.raises(ValueError, match="multiple of 16"):
        resolution_sweep(["vit"], [32, 50])
    with pytest.raises(ValueError, match="steps"):
        resolution_sweep(["vit"], [32], steps=0)


ROWS = [
    {"model": "vit", "resolution": 32, "tokens": 64, "status": "ok", "ms": 2.0, "peak_mib": 0.5, "flops": 4e7, "macs": 2e7,
     "attention_macs": 1.5e6},
    {"model": "vit", "resolution": 64, "tokens": 256, "status": "OOM", "ms": None, "peak_mib": None, "flops": 2e8, "macs": 1e8,
     "attention_macs": 1.2e7},
    {"model": "swin", "resolution": 32, "tokens": 64, "status": "ok", "ms": 3.0, "peak_mib": 0.0, "flops": 4e7, "macs": 2e7,
     "attention_macs": 1.5e6, "window_size": 8},
    {"model": "swin", "resolution": 64, "tokens": 256, "status": "timeout", "ms": 900.0, "peak_mib": None, "flops": 1.7e8,
     "macs": 8.5e7, "attention_macs": 6.3e6, "window_size": 8},
]


@pytest.mark.parametrize("lang", ["pt", "es", "en"])
def test_plot_sweep_log_axes_labels_in_the_language_and_failures_marked(lang):
    fig = plot_sweep(ROWS, lang=lang)
    axes = fig.axes
    assert len(axes) == 3
    assert all(ax.get_xscale() == "log" and ax.get_yscale() == "log" for ax in axes)
    assert axes[1].get_ylabel() == t("sweep_time", lang) and axes[2].get_ylabel() == t("sweep_memory", lang)
    assert axes[0].get_xlabel() == t("sweep_resolution", lang)
    assert fig._suptitle.get_text() == t("sweep_title", lang)
    texts = [x.get_text() for ax in axes[1:] for x in ax.texts]
    assert texts.count("OOM") == 2 and texts.count("timeout") == 2
    with pytest.raises(ValueError, match="no sweep rows"):
        plot_sweep([], lang=lang)


def test_sweep_table_shows_every_point_and_status():
    table = sweep_table(ROWS)
    lines = table.splitlines()
    assert len(lines) == 2 + len(ROWS)
    assert "| vit | 64 | 256 | 0.2 | 12 | | | OOM |" in " ".join(table.split())
    assert "swin (M=8)" in table and "timeout" in table


def test_write_sweep_writes_three_files(tmp_path):
    paths = write_sweep(ROWS, tmp_path / "out", header="# test")
    assert json.loads(paths["json"].read_text())["rows"][1]["status"] == "OOM"
    assert paths["md"].read_text().startswith("# test") and paths["png"].stat().st_size > 1000
    assert not list((tmp_path / "out").glob(".*.tmp"))



def cli(*args):
    return subprocess.run([sys.executable, "-m", "cvt_edu", *args], capture_output=True, text=True)


def test_cli_cost_writes_table_json_and_figure(tmp_path):
    out = tmp_path / "cost"
    result = cli("cost", "--resolutions", "32", "64", "--models", "vit", "swin", "--steps", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    for name in ("cost.md", "cost.json", "cost.png"):
        assert (out / name).is_file(), name
    data = json.loads((out / "cost.json").read_text())
    assert [(r["model"], r["resolution"]) for r in data["rows"]] == [("vit", 32), ("vit", 64), ("swin", 32), ("swin", 64)]
    assert "| swin (M=8) | 64 |" in " ".join((out / "cost.md").read_text().split())


def test_cli_cost_rejects_a_bad_resolution(tmp_path):
    result = cli("cost", "--resolutions", "32", "50", "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "multiple of 16" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_formula_table_and_plot():
    checks = [check_attention_formula("msa", s, s, 64) for s in (8, 16, 32)]
    checks += [check_attention_formula("sra", s, s, 64, sr_ratio=4) for s in (8, 16, 32)]
    assert checks[3]["label"] == "sra R=4" and checks[0]["label"] == "msa"
    table = formula_table(checks)
    assert len(table.splitlines()) == 2 + 6 and "| msa | 32x32 | 64 |" in " ".join(table.split()) and "1.0000" in table
    fig = plot_attention_cost(checks, lang="pt")
    ax = fig.get_axes()[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() == t("attn_tokens", "pt") and ax.get_title() == t("attn_cost_title", "pt")
    assert [line.get_xdata()[-1] for line in ax.get_lines()[:2]] == [1024, 1024]
    with pytest.raises(ValueError, match="no formula checks"):
        plot_attention_cost([])


def test_formula_check_on_a_large_map_costs_nothing():
    # on the meta device: a 128 x 128 map (16384 tokens) of global attention is counted, not computed
    check = check_attention_formula("msa", 128, 128, 64)
    assert check["measured"] == 4 * 16384 * 64**2 + 2 * 16384**2 * 64


def test_growth_exponents():
    rows = [
        {"model": "a", "tokens": 64, "status": "ok", "flops": 10.0},
        {"model": "a", "tokens": 256, "status": "ok", "flops": 160.0},  # x16 for x4 tokens: quadratic
        {"model": "a", "tokens": 1024, "status": "OOM", "flops": 2560.0},
        {"model": "b", "tokens": 64, "status": "ok", "flops": 10.0},
        {"model": "b", "tokens": 256, "status": "ok", "flops": 40.0},  # linear
        {"model": "c", "tokens": 64, "status": "ok", "flops": 10.0},
    ]
    assert growth_exponents(rows) == pytest.approx({"a": 2.0, "b": 1.0})


def test_growth_exponents_over_one_range_for_every_model():
    rows = [{"model": m, "resolution": r, "tokens": (r // 4) ** 2, "status": "ok", "ms": (r // 4) ** (2 * k)}
            for m, k in (("quadratic", 2), ("linear", 1)) for r in (64, 128, 224)]
    rows[2]["ms"] *= 4  # the last point of the quadratic model is off: the common range 64-128 does not see it
    assert growth_exponents(rows, "ms", between=(64, 128)) == pytest.approx({"quadratic": 2.0, "linear": 1.0})
    assert growth_exponents(rows, "ms")["quadratic"] > 2.5
    assert growth_exponents(rows[:1] + rows[3:], "ms", between=(64, 128)) == pytest.approx({"linear": 1.0})


def test_load_or_run_sweep_reuses_a_finished_sweep(tmp_path):
    rows = load_or_run_sweep(tmp_path, ["swin"], [32], steps=1)
    assert (tmp_path / "cost.md").is_file() and rows[0]["status"] == "ok"
    saved = json.loads((tmp_path / "cost.json").read_text())
    assert saved["settings"] == {"models": ["swin"], "resolutions": [32], "steps": 1}
    saved["rows"][0]["ms"] = 123456.0  # a marker: reused rows come from the file
    (tmp_path / "cost.json").write_text(json.dumps(saved))
    assert load_or_run_sweep(tmp_path, ["swin"], [32], steps=1)[0]["ms"] == 123456.0
    assert load_or_run_sweep(tmp_path, ["swin"], [32], steps=2)[0]["ms"] != 123456.0  # other settings: measured again


def test_sweep_tokens():
    assert sweep_tokens("swin", 224) == 56 * 56 and sweep_tokens("cvt", 224) == 56 * 56 and sweep_tokens("pvt", 64) == 256
    assert sweep_tokens("vit", 224) == 56 * 56 and sweep_tokens("vit", 224, patch_size=16) == 14 * 14


def test_plot_sweep_leaves_tiny_memory_readings_out():
    fig = plot_sweep(ROWS, lang="en")
    memory = fig.axes[2]
    plotted = [y for line in memory.get_lines() for y in line.get_ydata() if line.get_marker() == "o"]
    assert MEMORY_FLOOR_MIB > 0.0 and 0.0 not in plotted and 0.5 in plotted


def test_plot_sweep_with_nothing_to_draw_in_a_panel():
    rows = [dict(ROWS[0], peak_mib=0.0), dict(ROWS[2], peak_mib=0.01)]  # both below the memory floor
    fig = plot_sweep(rows, lang="pt")
    assert fig.axes[2].get_yscale() == "linear" and fig.axes[1].get_yscale() == "log"


@pytest.mark.parametrize("kind,params", [("msa", {}), ("w-msa", {"window_size": 4, "shifted": True}), ("sra", {"sr_ratio": 4}),
                                         ("cvt", {"stride_kv": 2})])
def test_counting_on_meta_equals_counting_a_real_cpu_run(kind, params):
    # check_attention_formula counts on the meta device; a real forward on the CPU counts the same
    layer = AttentionLayer(kind, dim=32, num_heads=2, **params)
    on_cpu = measured_macs(layer, torch.randn(1, 16, 16, 32))
    assert on_cpu == check_attention_formula(kind, 16, 16, 32, **params)["measured"]
