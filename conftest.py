"""Settings for every test, nbval's notebook kernels included: quick mode and the local data folder."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cifar10-mini"


def pytest_configure(config):
    # Kernels started by nbval inherit this environment: notebooks run in quick mode on
    # the local CIFAR-10 subset instead of downloading the full data set.
    os.environ.setdefault("CVT_EDU_QUICK", "1")
    os.environ.setdefault("CVT_EDU_DATA", str(DEFAULT_DATA))
    os.environ.setdefault("MPLBACKEND", "Agg")
