"""Speed benchmarks: ``python -m cvt_edu bench``.

Compares ``cvt_edu``'s CvT-13 with the ``transformers`` CvT-13 holding the same
weights, in one run: training-step and inference images per second and peak memory,
measured as :mod:`cvt_edu.cost.measure` measures: each implementation and mode in a fresh
child process, so that peak memory is that model's alone; peak memory is what the steps add
to the weights, input and optimizer already in place (CUDA's allocator peak, or the CPU
process's peak resident set); time per step from ``torch.utils.benchmark.Timer``.

A training step is forward, cross-entropy loss, backward and an AdamW step (the same
optimizer settings for both implementations).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..viz.tables import markdown_table
from .measure import PeakMemory, device_name, isolated_row, seconds_per_call

__all__ = ["BenchConfig", "hf_cvt_config", "build_implementation", "measure", "run_bench", "format_table"]


@dataclass
class BenchConfig:
    """What to measure.

    Attributes:
        model: registry name of the ``cvt_edu`` model (``cvt-13`` or ``cvt-21``).
        batch_size: images per step.
        image_size: input side in pixels.
        steps: timed steps after ``warmup`` untimed ones (and the Timer's own two).
        warmup: untimed steps (first-call costs, allocator warm-up, compilation).
        device: ``cuda`` or ``cpu``; ``None`` picks cuda when there is one.
        bf16: bfloat16 autocast (CUDA).
        compile: also measure ``torch.compile``-d models.
        seed: seeds the weights both implementations share.
        timeout_s: a measurement that has not finished after this many seconds is stopped and
            reported as an error.
    """

    model: str = "cvt-13"
    batch_size: int = 32
    image_size: int = 224
    steps: int = 5
    warmup: int = 2
    device: str | None = None
    bf16: bool = False
    compile: bool = False
    seed: int = 0
    timeout_s: float | None = 1800.0


def hf_cvt_config(name: str):
    """The ``transformers`` ``CvtConfig`` of CvT-13 or CvT-21 (1000 ImageNet classes)."""
    from transformers import CvtConfig

    depths = {"cvt-13": [1, 2, 10], "cvt-21": [1, 4, 16]}
    if name not in depths:
        raise ValueError(f"the benchmark compares cvt-13 or cvt-21, got {name!r}")
    return CvtConfig(depth=depths[name], num_labels=1000)


def build_implementation(impl: str, cfg: BenchConfig) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.nn.Module]:
    """The model of ``impl`` (``"cvt_edu"`` or ``"transformers"``) with the weights both share (seeded by
    ``cfg.seed``), and its function images (B, 3, H, W) -> logits (B, 1000).

    Raises:
        ValueError: for a model other than cvt-13 or cvt-21.
    """
    from transformers import CvtForImageClassification

    from ..pretrained.load import model_from_hf

    torch.manual_seed(cfg.seed)
    hf = CvtForImageClassification(hf_cvt_config(cfg.model))
    if impl == "transformers":
        return (lambda x: hf(x).logits), hf
    ours = model_from_hf(hf.config.to_dict(), hf.state_dict())
    return ours, ours


def measure(impl: str, mode: str, cfg: BenchConfig) -> dict[str, Any]:
    """Images per second and peak memory (MiB) of one implementation in ``"train"`` or ``"infer"`` mode, in this process.

    Raises:
        ValueError: for a model other than cvt-13 or cvt-21.
    """
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    fn, model = build_implementation(impl, cfg)
    model.to(device).train(mode == "train")
    if cfg.compile:
        fn = torch.compile(fn)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.bf16 else nullcontext()
    x = torch.randn(cfg.batch_size, 3, cfg.image_size, cfg.image_size, device=device)
    y = torch.randint(0, 1000, (cfg.batch_size,), device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4) if mode == "train" else None

    def step() -> None:
        if opt is None:
            with torch.no_grad(), autocast:
                fn(x)
            return
        with autocast:
            loss = F.cross_entropy(fn(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    peak = PeakMemory(device)
    peak.start()
    for _ in range(cfg.warmup):
        step()
    seconds = seconds_per_call(step, cfg.steps)
    return {
        "impl": impl,
        "mode": mode,
        "images_per_second": cfg.batch_size / seconds,
        "peak_memory_mib": peak.mib(),
        "device": device_name(device),
    }


def run_bench(cfg: BenchConfig) -> list[dict[str, Any]]:
    """Measure both implementations in training and inference, each in a fresh child process
    (a measurement that gave no result is a row with its ``error``)."""
    return [
        {"impl": impl, "mode": mode, **isolated_row(measure, impl, mode, cfg, timeout_s=cfg.timeout_s)}
        for mode in ("train", "infer")
        for impl in ("transformers", "cvt_edu")
    ]


def format_table(rows: list[dict[str, Any]], cfg: BenchConfig) -> str:
    """A Markdown table with the speed-up of each implementation over transformers per mode (``n/a`` where
    transformers gave no result); a measurement that gave none shows its error."""
    by = {(r["impl"], r["mode"]): r for r in rows}
    device = next((r["device"] for r in rows if "device" in r), "?")
    title = (f"{cfg.model}, batch {cfg.batch_size}, {cfg.image_size}x{cfg.image_size}, "
             f"{'bf16 autocast' if cfg.bf16 else 'float32'}{', torch.compile' if cfg.compile else ''}, on {device}")
    cells = []
    for mode in ("train", "infer"):
        ref = by.get(("transformers", mode), {})
        for impl in ("transformers", "cvt_edu"):
            r = by.get((impl, mode), {})
            if "error" in r or not r:
                cells.append([mode, impl, f"error: {r.get('error', 'missing')}", "", ""])
                continue
            speedup = f"{r['images_per_second'] / ref['images_per_second']:.2f}x" if "images_per_second" in ref else "n/a"
            cells.append([mode, impl, f"{r['images_per_second']:.1f}", f"{r['peak_memory_mib']:.0f}", speedup])
    headers = ["mode", "implementation", "images/s", "peak memory (MiB)", "speed-up"]
    return title + "\n\n" + markdown_table(cells, headers, align="llrrr")


def main(cfg: BenchConfig, json_out: str | None = None) -> str:
    rows = run_bench(cfg)
    table = format_table(rows, cfg)
    if json_out:
        from ..train.checkpoint import write_json

        write_json(json_out, {"config": asdict(cfg), "rows": rows})
    return table
