"""How much memory attention needs as N grows: the tiled attention of :mod:`cvt_edu.flash` against the naive one.

Two measurements of one call, each in a fresh child process (:func:`~cvt_edu.cost.measure.isolated`):

- **live tensors** (:class:`LiveTensors`): a ``TorchDispatchMode`` sees every aten operator the call runs and
  every tensor it creates; the peak of the bytes of the created tensors alive at the same time (the inputs
  excluded) is what the call adds. This counts tensors, not the allocator: exact and machine-independent.
- **process** (:class:`~cvt_edu.cost.measure.PeakMemory`): the growth of the process's peak resident set size
  on the CPU (``torch.cuda.max_memory_allocated`` on CUDA), the allocator and small blocks included.

``python -m cvt_edu.cost.attention_memory --out FILE.json`` writes the curve the attention-cost chapter plots
(:data:`CURVE`, committed, was measured this way on a shared 2-core CPU).
"""

from __future__ import annotations

import argparse
import json
import weakref
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from ..flash import flash_attention, naive_attention
from .measure import PeakMemory, device_name, isolated, return_freed_memory, seconds_once

__all__ = ["LiveTensors", "measure_attention_memory", "attention_memory_curve", "load_curve", "CURVE"]

CURVE = "flash_memory.json"  # in cvt_edu/cost/measured/: the committed curve, read by load_curve


class LiveTensors(TorchDispatchMode):
    """Record every tensor created inside the mode: the largest one and the peak of their bytes alive at once.

    A tensor's memory is its storage; views share their base's storage and count once. Storages that existed
    before the mode was entered (the inputs, the weights) are never counted. A storage is freed when the last
    tensor created on it inside the mode is garbage-collected (PyTorch keeps a tensor's Python object alive
    while C++ still holds it, so tensors an operator keeps, such as autograd's saved ones, stay counted).

    Attributes:
        peak_bytes: the most bytes of created tensors alive at the same time.
        largest: the shape of the created tensor with the most elements (``()`` if none).
        shapes: the shape of every tensor created, in order.
        ops: the aten operators run, each once, in the order of their first call (for example
            ``"aten::_scaled_dot_product_flash_attention_for_cpu"``: which kernel ``scaled_dot_product_attention`` chose).
    """

    def __init__(self, *existing: torch.Tensor) -> None:
        super().__init__()
        self._old = {t.untyped_storage().data_ptr() for t in existing}
        self._live: dict[int, list[int]] = {}  # storage pointer -> [bytes, tensors alive on it]
        self.current = self.peak_bytes = 0
        self.largest: tuple[int, ...] = ()
        self.shapes: list[tuple[int, ...]] = []
        self.ops: list[str] = []

    def _release(self, ptr: int) -> None:
        entry = self._live.get(ptr)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                self.current -= entry[0]
                del self._live[ptr]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._schema.name not in self.ops:
            self.ops.append(func._schema.name)
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            self.shapes.append(tuple(t.shape))
            if t.numel() > (torch.Size(self.largest).numel() if self.largest else 0):
                self.largest = tuple(t.shape)
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr == 0 or ptr in self._old:
                continue
            if ptr not in self._live:
                self._live[ptr] = [storage.nbytes(), 0]
                self.current += storage.nbytes()
                self.peak_bytes = max(self.peak_bytes, self.current)
            self._live[ptr][1] += 1
            weakref.finalize(t, self._release, ptr)
        return out


def _inputs(n: int, d: int, heads: int, dtype: torch.dtype, device: str) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(1, heads, n, d, generator=g, dtype=dtype).to(device) for _ in range(3))


def measure_attention_memory(kind: str, n: int, *, d: int = 64, heads: int = 1, block_size: int = 128,
                             dtype: torch.dtype = torch.float32, device: str = "cpu",
                             num_threads: int | None = 1) -> dict[str, Any]:
    """Peak memory of one forward call (no gradients) of ``"naive"`` or ``"flash"`` attention, in this process.

    Args:
        kind: ``"naive"`` (:func:`cvt_edu.flash.naive_attention`) or ``"flash"`` (:func:`cvt_edu.flash.flash_attention`).
        n: N = N_q = N_k tokens; q, k, v have shape (1, heads, N, d).
        d, heads, dtype, device: the rest of the inputs' shape and kind.
        block_size: the tiles of ``"flash"``.
        num_threads: CPU threads (``torch.set_num_threads``), 1 by default for steadier times; ``None``: unchanged.

    Returns:
        ``{"kind", "n", "d", "heads", "block_size", "live_mib", "largest", "process_mib", "seconds", "nxn_mib"}``:
        the peak of live created tensors (MiB), the largest created tensor's shape, the process's peak growth
        (MiB), the wall time of the measured call and, for reference, the size of one (heads, N, N) matrix.

    Raises:
        ValueError: for an unknown ``kind``.
    """
    fns: dict[str, Callable[..., torch.Tensor]] = {
        "naive": naive_attention, "flash": lambda q, k, v: flash_attention(q, k, v, block_size=block_size)}
    if kind not in fns:
        raise ValueError(f"kind must be 'naive' or 'flash', got {kind!r}")
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    q, k, v = _inputs(n, d, heads, dtype, device)
    with torch.no_grad():
        with LiveTensors(q, k, v) as live:
            fns[kind](q, k, v)
        if device == "cpu":
            return_freed_memory()
        peak = PeakMemory(device)
        peak.start()
        seconds = seconds_once(lambda: fns[kind](q, k, v))
        process = peak.mib()
    return {"kind": kind, "n": n, "d": d, "heads": heads, "block_size": block_size if kind == "flash" else None,
            "live_mib": live.peak_bytes / 2**20, "largest": list(live.largest), "process_mib": process,
            "seconds": seconds, "nxn_mib": heads * n * n * torch.finfo(dtype).bits / 8 / 2**20}


def attention_memory_curve(ns: Sequence[int] = (256, 512, 1024, 2048, 4096, 8192, 16384), *, d: int = 64,
                           block_size: int = 128, device: str = "cpu") -> list[dict[str, Any]]:
    """:func:`measure_attention_memory` of naive and tiled attention for each N, each point in a fresh child process.

    Returns:
        The rows, naive then flash for each N in increasing order.
    """
    rows = []
    for n in sorted(ns):
        for kind in ("naive", "flash"):
            rows.append(isolated(measure_attention_memory, kind, n, d=d, block_size=block_size, device=device))
    return rows


def load_curve(path: str | Path | None = None) -> dict[str, Any]:
    """The curve written by ``python -m cvt_edu.cost.attention_memory`` (default: the committed :data:`CURVE`)."""
    if path is None:
        return json.loads(resources.files("cvt_edu.cost").joinpath("measured", CURVE).read_text(encoding="utf-8"))
    return json.loads(Path(path).read_text(encoding="utf-8"))


def main(argv: Sequence[str] | None = None) -> None:
    """Measure the curve and write it atomically as JSON (``--out``), with the machine it ran on."""
    from ..train.checkpoint import write_json

    p = argparse.ArgumentParser(prog="python -m cvt_edu.cost.attention_memory", description=main.__doc__)
    p.add_argument("--n", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096, 8192, 16384], help="token counts N")
    p.add_argument("--d", type=int, default=64, help="head width d (default 64)")
    p.add_argument("--block-size", type=int, default=128, help="tile side of the tiled attention (default 128)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--out", required=True, help="the JSON file to write")
    args = p.parse_args(argv)
    rows = attention_memory_curve(args.n, d=args.d, block_size=args.block_size, device=args.device)
    write_json(Path(args.out), {"machine": device_name(args.device), "torch": torch.__version__,
                                "method": "live tensors: TorchDispatchMode accounting of created tensors; "
                                          "process: peak resident set growth (PeakMemory)",
                                "rows": rows})


if __name__ == "__main__":
    main()
