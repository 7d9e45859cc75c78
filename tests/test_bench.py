"""The speed benchmark and the measurement every cost figure shares: isolation, peak memory, timing."""

import math
import os
import signal
import time

import pytest
import torch

from cvt_edu.cost.bench import BenchConfig, build_implementation, format_table, measure
from cvt_edu.cost.measure import IsolationError, PeakMemory, isolated, isolated_row, seconds_per_call

CFG = BenchConfig(batch_size=2, image_size=64, steps=1, warmup=1, device="cpu")


def test_both_implementations_of_the_benchmark_hold_the_same_weights():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    outputs = []
    for impl in ("transformers", "cvt_edu"):
        fn, model = build_implementation(impl, CFG)
        model.eval()  # no dropout, BatchNorm on its running statistics
        with torch.no_grad():
            outputs.append(fn(x))
    assert outputs[0].shape == (2, 1000)
    torch.testing.assert_close(outputs[1], outputs[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="compares cvt-13 or cvt-21, got 'cvt-tiny'"):
        build_implementation("cvt_edu", BenchConfig(model="cvt-tiny"))


def test_bench_measures_an_implementation():
    row = measure("cvt_edu", "infer", CFG)
    assert row["images_per_second"] > 0 and math.isfinite(row["peak_memory_mib"]) and row["peak_memory_mib"] >= 0
    assert row["device"].startswith("cpu (") and (row["impl"], row["mode"]) == ("cvt_edu", "infer")


def test_bench_table_gives_the_speed_up_over_transformers_and_shows_failures():
    rows = [
        {"impl": "transformers", "mode": "train", "images_per_second": 10.0, "peak_memory_mib": 300.0, "device": "cpu (x)"},
        {"impl": "cvt_edu", "mode": "train", "images_per_second": 25.0, "peak_memory_mib": 200.0, "device": "cpu (x)"},
        {"impl": "transformers", "mode": "infer", "error": "f gave no result within 5 s"},
        {"impl": "cvt_edu", "mode": "infer", "images_per_second": 40.0, "peak_memory_mib": 50.0, "device": "cpu (x)"},
    ]
    table = format_table(rows, CFG)
    flat = " ".join(table.split())  # the table's columns are padded
    assert "| train | transformers | 10.0 | 300 | 1.00x |" in flat and "| train | cvt_edu | 25.0 | 200 | 2.50x |" in flat
    assert "| infer | transformers | error: f gave no result within 5 s |" in flat and "| infer | cvt_edu | 40.0 | 50 | n/a |" in flat
    assert "on cpu (x)" in table.splitlines()[0]
    assert "| train | cvt_edu | error: missing |" in " ".join(format_table(rows[:1], CFG).split())


def test_a_measurement_runs_in_a_fresh_process_and_its_result_comes_back():
    assert isolated(os.getpid, timeout_s=60) != os.getpid()
    assert isolated(divmod, 7, 2) == (3, 1)


@pytest.mark.parametrize(
    "fn,args,reason,message",
    [
        (int, ("x",), "raised", "int raised ValueError: invalid literal"),
        (os._exit, (3,), "exited", "exited with code 3 without a result"),
        (signal.raise_signal, (signal.SIGKILL,), "killed", "killed (SIGKILL; out of memory, most likely)"),
    ],
    ids=["raises", "exits", "is-killed"],
)
def test_a_child_that_fails_gives_a_clear_error_not_a_hang(fn, args, reason, message):
    with pytest.raises(IsolationError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        isolated(fn, *args, timeout_s=60)
    assert err.value.reason == reason
    assert isolated_row(fn, *args, timeout_s=60) == {"error": str(err.value)}


def test_a_child_past_its_time_limit_is_killed():
    start = time.monotonic()
    with pytest.raises(IsolationError, match="sleep gave no result within 1 s") as err:
        isolated(time.sleep, 60, timeout_s=1)
    assert err.value.reason == "timeout" and time.monotonic() - start < 10


def _peaks_of_an_allocation(mib: int) -> tuple[float, float]:
    """In a fresh process (where no freed heap can serve the allocation): the peak seen while ``mib`` MiB are
    allocated and touched, then the peak after a new start with them freed."""
    peak = PeakMemory("cpu")
    assert peak.resettable  # Linux: /proc/self/status and clear_refs
    peak.start()
    x = torch.ones(mib * 2**20 // 4)
    grown = peak.mib()
    del x
    peak.start()
    return grown, peak.mib()


def test_peak_memory_sees_what_a_step_allocates_on_the_cpu():
    grown, after = isolated(_peaks_of_an_allocation, 64, timeout_s=120)
    assert 60 <= grown < 128
    assert after < 16  # a new start forgets the old peak


def test_timing_is_the_mean_of_the_timed_calls_after_a_warm_up():
    calls = []

    def work():
        calls.append(1)
        time.sleep(0.01)

    seconds = seconds_per_call(work, 3)
    assert len(calls) == 2 + 3 and 0.009 <= seconds < 0.05
    with pytest.raises(ValueError, match="steps must be at least 1, got 0"):
        seconds_per_call(work, 0)
