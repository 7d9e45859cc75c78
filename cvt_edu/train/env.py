"""Where a run happens: the device, quick mode, seeds and random states, run folders.

Environment variables: ``CVT_EDU_QUICK`` (quick mode) and ``CVT_EDU_RUNS`` (where runs are
kept, default ``runs``). PyTorch and NumPy are imported only by the functions that need them,
so that reading quick mode or a run folder costs nothing (the command line's ``--help``).
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["QUICK_ENV", "RUNS_ENV", "quick_mode", "run_folder", "pick_device", "seed_everything", "rng_state", "restore_rng"]

QUICK_ENV = "CVT_EDU_QUICK"
RUNS_ENV = "CVT_EDU_RUNS"


def quick_mode(flag: bool | None = None) -> bool:
    """Whether quick mode is on: ``flag`` if given, else ``$CVT_EDU_QUICK`` in (1, true, yes, on)."""
    if flag is not None:
        return flag
    return os.environ.get(QUICK_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def run_folder(*parts: str, quick: bool | None = None) -> Path:
    """The folder a chapter's run is kept in: ``$CVT_EDU_RUNS/<parts...>`` (default ``runs/<parts...>``).

    In quick mode it is a fresh temporary folder instead (created here), so that a smoke run
    never reuses, resumes or overwrites a real one.

    Args:
        *parts: the path below the runs folder, e.g. ``"ch05", "cvt-tiny"``.
        quick: quick mode; ``None`` reads ``$CVT_EDU_QUICK`` (see :func:`quick_mode`).

    Returns:
        The path; outside quick mode it is not created (whatever writes into it does that).
    """
    if quick_mode(quick):
        return Path(tempfile.mkdtemp(prefix="cvt-edu-"))
    return Path(os.environ.get(RUNS_ENV) or "runs", *parts)


def pick_device(name: str | None = None) -> torch.device:
    """``name`` if given, else the best available device: cuda, then mps, then cpu."""
    import torch

    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every random state a run draws from (PyTorch's CPU and CUDA generators, NumPy's, Python's), for :func:`restore_rng`."""
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        # plain tensors, ints and floats only, so that the trainer state loads with torch.load(weights_only=True)
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),  # (version, tuple of ints, None or a float)
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Put back the random states saved by :func:`rng_state` (the CUDA ones only where there is CUDA)."""
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
