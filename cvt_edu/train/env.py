"""Where a run happens: the device, quick mode and seeds."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["QUICK_ENV", "quick_mode", "pick_device", "seed_everything"]

QUICK_ENV = "CVT_EDU_QUICK"


def quick_mode(flag: bool | None = None) -> bool:
    """Whether quick mode is on: ``flag`` if given, else ``$CVT_EDU_QUICK`` in (1, true, yes, on)."""
    if flag is not None:
        return flag
    return os.environ.get(QUICK_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def pick_device(name: str | None = None) -> torch.device:
    """``name`` if given, else the best available device: cuda, then mps, then cpu."""
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
