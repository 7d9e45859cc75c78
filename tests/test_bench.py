"""The speed benchmark runs end to end (its figures are reported, not asserted)."""

import math

from cvt_edu.cost.bench import BenchConfig, format_table, measure


def test_bench_measures_both_implementations_on_the_same_weights():
    cfg = BenchConfig(batch_size=2, image_size=64, steps=1, warmup=1, device="cpu")
    rows = [measure(impl, mode, cfg) for mode in ("train", "infer") for impl in ("transformers", "cvt_edu")]
    assert all(r["images_per_second"] > 0 and math.isfinite(r["peak_memory_mib"]) for r in rows)
    table = format_table(rows, cfg)
    flat = " ".join(table.split())
    assert flat.count("| train |") == 2 and flat.count("| infer |") == 2 and "1.00x" in table
