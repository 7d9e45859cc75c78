import os
from pathlib import Path

import pytest

from cvt_edu.experiment import load_data

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
