import os
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from cvt_edu.train.data import load_data

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ["CVT_EDU_DATA"])
    if not path.is_dir():
        pytest.fail(f"the CIFAR-10 subset is not at {path}; set CVT_EDU_DATA to a folder with train/ and test/")
    return path


@pytest.fixture(scope="session")
def cifar_mini(data_dir):
    return load_data(data_dir)


@pytest.fixture(autouse=True)
def _close_figures():
    """Close every figure a test opened, as a notebook's cell output would (pyplot keeps them all otherwise)."""
    yield
    plt.close("all")
