"""The course's trained models, shipped: a quick-mode run of cvt-tiny is shipped into a temporary folder of shipped
models ($CVT_EDU_TRAINED), loaded back offline with cvt_edu.load_trained, evaluated with --trained as with
--checkpoint; the shipping step refuses a float16 copy that loses accuracy and a package that would pass 25 MB.

The data is a slice of the real cifar10-mini (60 training and 20 test images per class, linked, not copied), so
that the whole file runs in seconds: quick mode trains on 512 images, and every evaluation reads 200.
"""

import dataclasses
import importlib.util
import json
import shutil
from fnmatch import fnmatch
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import cvt_edu
from cvt_edu.cli import main
from cvt_edu.train.augment import normalize
from cvt_edu.train.checkpoint import load_checkpoint
from cvt_edu.train.data import CIFAR10_MEAN, CIFAR10_STD, load_split
from cvt_edu.train.loop import evaluate
from cvt_edu.trained.load import SHIPPED_FILES, list_trained
from cvt_edu.trained.record import TRAINED_ENV
from cvt_edu.trained.ship import MAX_BYTES, ShipError, ship_run, shipped_bytes

ROOT = Path(__file__).resolve().parents[1]
PER_CLASS = {"train": 60, "test": 20}


def ship_main(argv):
    """``python tools/ship_trained.py ARGV`` in-process (the script is not part of the installed package)."""
    spec = importlib.util.spec_from_file_location("ship_trained", ROOT / "tools" / "ship_trained.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def run(capsys, *args):
    """``cvt-edu ARGS`` in-process: (exit status, stdout, stderr)."""
    try:
        code = main(list(args))
    except SystemExit as e:  # argparse
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def mini(tmp_path_factory, data_dir):
    """A slice of cifar10-mini in the same layout, under the same folder name (the record names its data by it)."""
    root = tmp_path_factory.mktemp("data") / "cifar10-mini"
    for split, n in PER_CLASS.items():
        for class_dir in sorted((data_dir / split).iterdir()):
            (root / split / class_dir.name).mkdir(parents=True)
            for image in sorted(class_dir.iterdir())[:n]:
                (root / split / class_dir.name / image.name).symlink_to(image)
    return root


@pytest.fixture(scope="module")
def shipped(tmp_path_factory, mini):
    """(run folder, folder of shipped models, record): cvt-tiny trained in quick mode, then shipped."""
    base = tmp_path_factory.mktemp("trained")
    out, dest = base / "run", base / "shipped"
    assert main(["train", "--model", "cvt-tiny", "--quick", "--data", str(mini), "--out", str(out), "--no-progress"]) == 0
    record = ship_run(out, mini, dest=dest)
    return out, dest, record


@pytest.fixture()
def use_shipped(shipped, monkeypatch):
    monkeypatch.setenv(TRAINED_ENV, str(shipped[1]))
    return shipped


def test_load_trained_gives_the_runs_model_in_float32_from_float16_files(use_shipped, mini):
    out, dest, record = use_shipped
    assert sorted(p.name for p in dest.iterdir()) == ["cvt-tiny"]  # no temporary left beside it
    assert sorted(p.name for p in (dest / "cvt-tiny").iterdir()) == sorted(SHIPPED_FILES)  # safetensors and JSON only
    with safe_open(str(dest / "cvt-tiny" / "model.safetensors"), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
    assert dtypes == {torch.float16, torch.int64}  # weights in float16; BatchNorm's batch counters stay integers

    model, rec = cvt_edu.load_trained("cvt-tiny")
    assert rec == record and not model.training
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    reference, _ = load_checkpoint(out)
    test = load_split("test", mini)
    x = normalize(test.images, CIFAR10_MEAN, CIFAR10_STD)
    with torch.no_grad():
        got, want = model(x), reference(x)
    assert not torch.equal(got, want)  # float16 rounding happened...
    torch.testing.assert_close(got, want, atol=1e-2, rtol=1e-2)  # ...and moved the logits by float16's precision only
    assert (got.argmax(1) == want.argmax(1)).float().mean() >= 0.99


def test_the_record_says_what_the_model_learnt_from_and_how_accurate_it_is(use_shipped, mini):
    out, dest, record = use_shipped
    metrics = json.loads((out / "metrics.json").read_text())
    test = load_split("test", mini)
    assert record.name == record.model == "cvt-tiny" and record.arch == "cvt"
    assert record.labels == test.classes and record.data == "cifar10-mini"
    assert (record.n_train, record.n_test, record.epochs, record.seed, record.quick) == (512, 200, 1, 0, True)
    assert record.recipe == metrics["key"]["recipe"] and record.device == metrics["device"] == "cpu"
    assert record.source == str(out) and record.dtype == "float16" and record.params == metrics["params"]
    assert record.eval_device == "cpu"
    assert record.test_accuracy == evaluate(load_checkpoint(out)[0], test)["accuracy"]  # the float32 run, on these images
    assert abs(record.test_accuracy - record.test_accuracy_float16) <= 0.001
    assert json.loads((dest / "cvt-tiny" / "record.json").read_text()) == record.to_json()
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.test_accuracy = 1.0


def test_evaluate_trained_prints_what_evaluate_checkpoint_prints(use_shipped, mini, capsys):
    out, _, record = use_shipped
    code, stdout, err = run(capsys, "evaluate", "--trained", "cvt-tiny", "--data", str(mini))
    assert code == 0, err
    trained = json.loads(stdout)
    code, stdout, err = run(capsys, "evaluate", "--checkpoint", str(out), "--data", str(mini))
    assert code == 0, err
    checkpoint = json.loads(stdout)
    assert list(trained) == list(checkpoint) == ["accuracy", "n"] and trained["n"] == checkpoint["n"] == 200
    assert abs(trained["accuracy"] - checkpoint["accuracy"]) <= 0.001
    assert trained["accuracy"] == record.test_accuracy_float16


def test_evaluate_takes_trained_or_checkpoint_never_both(capsys):
    code, _, err = run(capsys, "evaluate", "--trained", "cvt-tiny", "--checkpoint", "runs/x")
    assert code == 2 and "not allowed with argument" in err
    code, _, err = run(capsys, "evaluate")
    assert code == 2 and "one of the arguments --checkpoint --trained is required" in err


def test_evaluate_trained_checks_the_datas_classes(use_shipped, mini, tmp_path, capsys):
    other = tmp_path / "other"
    for split in ("train", "test"):
        for class_dir in sorted((mini / split).iterdir())[:9]:  # one class fewer
            (other / split).mkdir(parents=True, exist_ok=True)
            (other / split / class_dir.name).symlink_to(class_dir)
    code, _, err = run(capsys, "evaluate", "--trained", "cvt-tiny", "--data", str(other))
    assert code == 2 and "only in the checkpoint: truck" in err and len(err.strip().splitlines()) == 1


def test_an_unknown_name_is_one_line_listing_the_shipped_ones(use_shipped, tmp_path, capsys, mini):
    with pytest.raises(ValueError, match=r"no trained model named 'vit-huge' .*; available: cvt-tiny$"):
        cvt_edu.load_trained("vit-huge")
    code, _, err = run(capsys, "evaluate", "--trained", "../shipped", "--data", str(mini))
    assert code == 2 and "available: cvt-tiny" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    with pytest.raises(ValueError, match="none is shipped"):
        cvt_edu.load_trained("cvt-tiny", folder=tmp_path)
    assert list_trained(tmp_path / "absent") == []


@pytest.mark.parametrize("damage", ["missing config.json", "truncated weights", "one byte changed", "record not JSON"])
def test_a_missing_or_corrupt_shipped_file_is_one_line_naming_it(use_shipped, tmp_path, damage, capsys, mini, monkeypatch):
    dest = tmp_path / "shipped"
    shutil.copytree(use_shipped[1], dest)
    folder = dest / "cvt-tiny"
    weights = folder / "model.safetensors"
    if damage == "missing config.json":
        (folder / "config.json").unlink()
        named, error = folder / "config.json", FileNotFoundError
    elif damage == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:1000])
        named, error = weights, ValueError
    elif damage == "one byte changed":  # still a whole safetensors file: only the recorded SHA-256 tells
        data = bytearray(weights.read_bytes())
        data[-1] ^= 1
        weights.write_bytes(bytes(data))
        named, error = weights, ValueError
    else:
        (folder / "record.json").write_text("{not json")
        named, error = folder / "record.json", ValueError
    with pytest.raises(error, match=str(named)):
        cvt_edu.load_trained("cvt-tiny", folder=dest)
    monkeypatch.setenv(TRAINED_ENV, str(dest))
    code, _, err = run(capsys, "evaluate", "--trained", "cvt-tiny", "--data", str(mini))
    assert code == 2 and str(named) in err and len(err.strip().splitlines()) == 1


def test_a_float16_copy_that_loses_accuracy_is_refused(shipped, mini, tmp_path):
    """Scaling the head by 1e-7 keeps every float32 prediction (the argmax of a positive multiple) but flushes the
    head's float16 weights to zero or a few subnormals, so the float16 copy predicts other classes."""
    out, _, record = shipped
    bad = tmp_path / "run"
    shutil.copytree(out, bad)
    state = load_file(str(bad / "model.safetensors"))
    state["head.weight"] *= 1e-7
    state["head.bias"] *= 1e-7
    save_file(state, str(bad / "model.safetensors"))
    dest = tmp_path / "shipped"
    with pytest.raises(ShipError, match=r"points apart, more than 0\.1; nothing was shipped") as refused:
        ship_run(bad, mini, dest=dest)
    assert f"the float32 run {record.test_accuracy:.2%}:" in str(refused.value)  # float32: the same accuracy as before
    assert not dest.exists() or list(dest.iterdir()) == []  # no model, no temporary


def test_shipping_past_25_mb_or_over_a_shipped_name_is_refused(shipped, mini, tmp_path, capsys):
    out, dest, _ = shipped
    size = shipped_bytes(dest / "cvt-tiny")
    full = tmp_path / "shipped"
    (full / "vit-tiny").mkdir(parents=True)
    with open(full / "vit-tiny" / "model.safetensors", "wb") as f:  # a sparse file: its size without the disk it would take
        f.truncate(MAX_BYTES - size + 1)
    code = ship_main([str(out), "--data", str(mini), "--dest", str(full)])
    err = capsys.readouterr().err
    assert code == 2 and "more than the 25 MB the package may hold; nothing was shipped" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in full.iterdir()) == ["vit-tiny"]
    with pytest.raises(ShipError, match="already ships a model named 'cvt-tiny'"):
        ship_run(out, mini, dest=dest)


def test_the_shipping_script_refuses_what_is_not_a_finished_run_in_one_line(shipped, mini, tmp_path, capsys):
    out, dest, _ = shipped
    (tmp_path / "unfinished").mkdir()
    shutil.copy(out / "model.safetensors", tmp_path / "unfinished")
    assert ship_main([str(tmp_path / "unfinished"), "--data", str(mini), "--dest", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ship_trained: error: ") and "not a finished run: missing config.json, metrics.json" in err
    assert ship_main([str(out), "--data", str(mini), "--dest", str(tmp_path / "d"), "--name", "../cvt"]) == 2
    err = capsys.readouterr().err
    assert "expected a shipped name of lower-case letters" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "d").exists()


def test_the_package_data_holds_every_shipped_file_and_load_trained_is_exported():
    import tomllib  # Python 3.11+, as in tests/test_contents.py

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["cvt_edu.trained"]
    assert all(any(fnmatch(f"cvt-tiny/{name}", p) for p in patterns) for name in SHIPPED_FILES)
    from cvt_edu.trained.load import load_trained

    assert {"load_trained", "list_trained"} <= set(cvt_edu.__all__) and cvt_edu.load_trained is load_trained
