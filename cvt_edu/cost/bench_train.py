"""Training throughput of the course's tiny models: ``python -m cvt_edu bench --train``.

For each model and each mode (eager, ``torch.compile``), a fresh subprocess runs the very
training step of :func:`cvt_edu.train.loop.fit` (:meth:`cvt_edu.train.loop.PreparedRun.step`) under the
small-data recipe (:meth:`cvt_edu.train.config.TrainConfig.small_data`: TrivialAugment, MixUp/CutMix,
and on CUDA the fast path, bf16 autocast, channels-last and fused AdamW), on batches drawn by
its loader from a synthetic uint8 data set of CIFAR-10's shape (the pixel values do not change
the speed). It reports images per second, the time of a 50,000-image epoch, peak memory, the
achieved FLOP rate and the model FLOPs utilisation (MFU).

MFU = images/s x training FLOPs per image / the GPU's dense bf16 peak. Training FLOPs per
image are taken as 3 x the forward FLOPs counted by :func:`cvt_edu.cost.flops.count_flops` (the
backward pass costs about twice the forward); augmentation and the optimizer are not counted
as model FLOPs. On a CPU, or a GPU missing from :data:`BF16_PEAK_TFLOPS`, MFU is not given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..viz.tables import markdown_table
from .measure import PeakMemory, device_name, isolated_row, seconds_once, seconds_per_call

__all__ = ["BF16_PEAK_TFLOPS", "TrainBenchConfig", "bf16_peak_tflops", "measure_training", "run_train_bench", "train_bench_table"]

# Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s; T4 and V100
# have no bf16 units, so their fp16 peak (what autocast uses there) is given.
BF16_PEAK_TFLOPS = {
    "H200": 989.4,
    "H100 PCIe": 756.0,
    "H100": 989.4,  # SXM
    "A100": 312.0,
    "L4": 121.0,
    "A10G": 70.0,
    "T4": 65.0,
    "V100": 125.0,
}
EPOCH_IMAGES = 50_000  # the full CIFAR-10 training set


def bf16_peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU named like ``torch.cuda.get_device_name``, or ``None`` if unknown."""
    for key, peak in BF16_PEAK_TFLOPS.items():  # "H100 PCIe" is tried before "H100"
        if key in device_name:
            return peak
    return None


@dataclass
class TrainBenchConfig:
    """What ``bench --train`` measures.

    Attributes:
        models: registry names.
        modes: ``"eager"`` and/or ``"compiled"``.
        batch_size: images per step; ``None`` takes the recipe's.
        steps: timed steps after ``warmup`` untimed ones (the compilation happens in the warm-up; the
            Timer adds two more untimed steps of its own).
        warmup: untimed steps, timed together as ``warmup_seconds``.
        device: ``None`` picks cuda when there is one.
        threads: CPU threads (``None``: torch's default).
        fast_path: as :attr:`cvt_edu.train.config.TrainConfig.fast_path` (``None``: on for CUDA only).
        timeout_s: a measurement that has not finished after this many seconds is stopped and
            reported as an error.
    """

    models: tuple[str, ...] = ("vit-tiny", "cvt-tiny")
    modes: tuple[str, ...] = ("eager", "compiled")
    batch_size: int | None = None
    steps: int = 50
    warmup: int = 10
    device: str | None = None
    threads: int | None = None
    fast_path: bool | None = None
    timeout_s: float | None = 1800.0


def measure_training(name: str, mode: str, cfg: TrainBenchConfig) -> dict[str, Any]:
    """Throughput, peak memory and MFU of training model ``name`` in ``mode`` (run it in a fresh process)."""
    from ..models import build_model
    from ..train.config import TrainConfig
    from ..train.data import CIFAR10_CLASSES, ImageTensors
    from ..train.env import pick_device
    from ..train.loop import prepare
    from .flops import count_flops

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    overrides = {"batch_size": cfg.batch_size} if cfg.batch_size else {}
    recipe = TrainConfig.small_data(device=str(device), compile=mode == "compiled", fast_path=cfg.fast_path, **overrides)
    batch = recipe.batch_size
    torch.manual_seed(0)
    model = build_model(name)
    fwd_flops = count_flops(model)["flops"]  # one 32x32 image
    n = batch * 4
    data = ImageTensors(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8), torch.arange(n) % 10, CIFAR10_CLASSES)
    run = prepare(model, data, recipe, device)
    model.train()
    peak = PeakMemory(device)
    peak.start()

    def batches():
        while True:
            yield from run.loader

    it = batches()

    def step() -> None:
        images, labels = next(it)
        run.step(images.to(device, non_blocking=True), labels.to(device, non_blocking=True))

    def warm_up() -> None:
        for _ in range(cfg.warmup):
            step()

    warmup_s = seconds_once(warm_up)
    ips = batch / seconds_per_call(step, cfg.steps)
    tflops = ips * 3 * fwd_flops / 1e12
    name_of_device = device_name(device)
    peak_tflops = bf16_peak_tflops(name_of_device) if device.type == "cuda" else None
    return {
        "model": name,
        "mode": mode,
        "batch_size": batch,
        "images_per_second": ips,
        "epoch_seconds": EPOCH_IMAGES / ips,
        "peak_memory_mib": peak.mib(),
        "forward_flops_per_image": fwd_flops,
        "tflops": tflops,
        "mfu": tflops / peak_tflops if peak_tflops else None,
        "warmup_seconds": warmup_s,
        "fast_path": run.fast,
        "precision": "bf16 autocast" if device.type == "cuda" and recipe.amp else "float32",
        "device": name_of_device,
    }


def run_train_bench(cfg: TrainBenchConfig) -> list[dict[str, Any]]:
    """Every model in every mode, each in a fresh child process (a measurement that gave no result is a row with its ``error``)."""
    return [{"model": m, "mode": mode, **isolated_row(measure_training, m, mode, cfg, timeout_s=cfg.timeout_s)}
            for m in cfg.models for mode in cfg.modes]


def train_bench_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the measurements, one row per model and mode."""
    first = next((r for r in rows if "device" in r), {})
    title = (f"Training step of the small-data recipe on {first.get('device', '?')}, {first.get('precision', '?')}, "
             f"fast path {'on' if first.get('fast_path') else 'off'}, batch {first.get('batch_size', '?')}")
    cells = []
    for r in rows:
        if "error" in r:
            cells.append([r["model"], r["mode"], f"error: {r['error']}", "", "", "", "", ""])
            continue
        mfu = f"{100 * r['mfu']:.1f} %" if r["mfu"] is not None else "n/a"
        cells.append([r["model"], r["mode"], f"{r['images_per_second']:,.0f}", f"{r['epoch_seconds']:.1f}", f"{r['peak_memory_mib']:.0f}",
                      f"{r['tflops']:.3f}", mfu, f"{r['warmup_seconds']:.1f}"])
    headers = ["model", "mode", "images/s", "50,000-image epoch (s)", "peak memory (MiB)", "model TFLOP/s", "MFU", "warm-up (s)"]
    return title + "\n\n" + markdown_table(cells, headers, align="llrrrrrr")
