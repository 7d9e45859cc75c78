"""The command line, as a user runs it: train, then evaluate; clear errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cvt_edu.train.checkpoint import load_checkpoint
from cvt_edu.train.data import load_split
from cvt_edu.train.loop import evaluate


def cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "cvt_edu", *args], capture_output=True, text=True, **kwargs)


def test_train_then_evaluate_round_trip(tmp_path, data_dir):
    out = tmp_path / "run"
    result = cli("train", "--model", "cvt-tiny", "--data", str(data_dir), "--epochs", "1", "--out", str(out), "--quick", "--no-progress")
    assert result.returncode == 0, result.stderr
    for name in ("metrics.json", "model.safetensors", "config.json", "curves.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert {"history", "params", "device", "seconds", "flops"} <= set(metrics)
    assert len(metrics["history"]) == 1 and metrics["quick"] is True

    result = cli("evaluate", "--checkpoint", str(out), "--data", str(data_dir))
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    assert printed["n"] == 1017
    model, _ = load_checkpoint(out)
    assert printed["accuracy"] == pytest.approx(evaluate(model, load_split("test", data_dir))["accuracy"])


def test_missing_data_folder_is_a_clear_error(tmp_path):
    result = cli("train", "--model", "vit-tiny", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "data folder not found" in result.stderr and str(tmp_path / "nope") in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    result = cli("evaluate", "--checkpoint", str(tmp_path))
    assert result.returncode == 2 and "missing model.safetensors, config.json" in result.stderr


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("cvt-edu")  # installed beside the interpreter by pip
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "train" in result.stdout and "compare" in result.stdout
