"""The command line, as a user runs it: train, then evaluate; clear errors; a --help that does not load PyTorch.

Every command runs in-process through ``cvt_edu.cli.main`` (as ``python -m cvt_edu`` calls it); one smoke test runs
the installed console script in a fresh process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cvt_edu.cli import COMMANDS, main
from cvt_edu.train.checkpoint import load_checkpoint
from cvt_edu.train.data import load_split
from cvt_edu.train.loop import evaluate


def run(capsys, *args):
    """``cvt-edu ARGS`` in-process: (exit status, stdout, stderr)."""
    try:
        code = main(list(args))
    except SystemExit as e:  # argparse: --help, or a usage error
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_train_then_evaluate_round_trip(tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    code, stdout, err = run(capsys, "train", "--model", "cvt-tiny", "--data", str(data_dir), "--epochs", "1", "--out", str(out),
                            "--quick", "--no-progress")
    assert code == 0, err
    assert json.loads(stdout.strip().splitlines()[-1])["model"] == "cvt-tiny"
    for name in ("metrics.json", "model.safetensors", "config.json", "curves.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert {"history", "params", "device", "seconds", "flops"} <= set(metrics)
    assert len(metrics["history"]) == 1 and metrics["quick"] is True

    code, stdout, err = run(capsys, "evaluate", "--checkpoint", str(out), "--data", str(data_dir))
    assert code == 0, err
    printed = json.loads(stdout.strip().splitlines()[-1])
    assert printed["n"] == 1017
    model, _ = load_checkpoint(out)
    assert printed["accuracy"] == pytest.approx(evaluate(model, load_split("test", data_dir))["accuracy"])


def test_missing_data_folder_is_a_clear_error(tmp_path, capsys):
    code, _, err = run(capsys, "train", "--model", "vit-tiny", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert code == 2
    assert "data folder not found" in err and str(tmp_path / "nope") in err
    assert "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    code, _, err = run(capsys, "evaluate", "--checkpoint", str(tmp_path))
    assert code == 2 and "missing model.safetensors, config.json" in err


@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_command_documents_its_arguments(command, capsys):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0 and f"usage: cvt-edu {command}" in out
    assert {"train": "--epochs", "compare": "--models", "evaluate": "--checkpoint", "bench": "--train", "cost": "--resolutions",
             "grade": "--time-limit", "experiment": "--dry-run"}[
        command
    ] in out


def test_an_unknown_model_is_refused_with_the_known_names(capsys):
    code, _, err = run(capsys, "train", "--model", "resnet-50", "--out", "x")
    assert code == 2 and "invalid choice: 'resnet-50'" in err and "cvt-tiny" in err


def test_installed_console_script_lists_the_commands_without_importing_torch():
    script = Path(sys.executable).with_name("cvt-edu")  # installed beside the interpreter by pip
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}  # every import is reported on stderr
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, env=env)
    assert result.returncode == 0
    assert all(command in result.stdout for command in COMMANDS)
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "cvt_edu.cli" in imported and "torch" not in imported


@pytest.mark.parametrize("flag,value", [("--epochs", "0"), ("--batch-size", "0"), ("--lr", "-1")])
def test_a_budget_that_cannot_train_is_refused_before_anything_is_written(flag, value, tmp_path, data_dir, capsys):
    code, _, err = run(capsys, "train", "--model", "vit-tiny", "--data", str(data_dir), "--out", str(tmp_path / "o"), flag, value)
    assert code == 2 and "Traceback" not in err and "must be" in err
    assert not (tmp_path / "o").exists()
