"""Settings for every test, nbval's notebook kernels included: quick mode, the local data folder, and how
``make test`` shares the tests between processes (pytest-xdist, ``-n auto --dist loadfile``: a file's tests,
a notebook's cells among them, stay in one process and in order)."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cifar10-mini"

# A worker of ``pytest -n N`` shares the machine's cores with the other workers: one thread each, since
# threads that wait for each other's cores make PyTorch slower than one thread (notebook kernels inherit it).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):
    # Kernels started by nbval inherit this environment: notebooks run in quick mode on
    # the local CIFAR-10 subset instead of downloading the full data set.
    os.environ.setdefault("CVT_EDU_QUICK", "1")
    os.environ.setdefault("CVT_EDU_DATA", str(DEFAULT_DATA))
    os.environ.setdefault("MPLBACKEND", "Agg")
