"""Data that would train or evaluate silently wrong is refused before anything runs, in one line naming the file.

Each fault is fed through the command line (``cvt_edu.cli.main``, in-process): exit status 2, one line on stderr,
no traceback, and no run folder written. The data folders are tiny fakes built in ``tmp_path``.
"""

import hashlib
import json
import pickle
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets

from cvt_edu.cli import main
from cvt_edu.lab.compare import train_model
from cvt_edu.models import build_model
from cvt_edu.train.checkpoint import save_pretrained
from cvt_edu.train.config import TrainConfig
from cvt_edu.train.data import CIFAR10_CLASSES, DataError, load_data, load_split


def run(capsys, *args):
    """``cvt-edu ARGS`` in-process: (exit status, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def image_folder(root, train_classes, test_classes, n=2):
    """``root/train/<class>/*.png`` and ``root/test/<class>/*.png``: ``n`` random 32x32 RGB images per class."""
    rng = np.random.default_rng(0)
    for split, classes in (("train", train_classes), ("test", test_classes)):
        for name in classes:
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / split / name / f"{i}.png")
    return root


def test_equal_class_folders_load(tmp_path):
    train, test = load_data(image_folder(tmp_path, "abc", "abc"))
    assert train.classes == test.classes == ("a", "b", "c") and (len(train), len(test)) == (6, 6)


@pytest.mark.parametrize(
    "test_classes,difference",
    [("ab", "only in train: c"), ("abd", "only in train: c; only in test: d"), ("abcd", "only in test: d")],
    ids=["missing", "renamed", "extra"],
)
@pytest.mark.parametrize("command", ["train", "compare"])
def test_train_and_test_classes_must_match(command, test_classes, difference, tmp_path, capsys):
    data = image_folder(tmp_path / "data", "abc", test_classes)
    out = tmp_path / "out"
    model = ["--model", "vit-tiny"] if command == "train" else ["--models", "vit-tiny"]
    code, stdout, err = run(capsys, command, *model, "--data", data, "--out", out, "--epochs", "1", "--no-progress")
    line = one_line_error(err)
    assert code == 2 and stdout == ""
    assert f"the train and test splits of {data} have different classes ({difference})" in line
    assert not out.exists()


def checkpoint(folder, num_classes, **extra):
    save_pretrained(build_model("vit-tiny", num_classes=num_classes), folder, **extra)
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_evaluate_refuses_a_test_split_without_the_checkpoints_classes(tmp_path, capsys):
    files = checkpoint(tmp_path / "ckpt", 3, classes=["a", "b", "c"])
    data = image_folder(tmp_path / "data", "abd", "abd")
    code, stdout, err = run(capsys, "evaluate", "--checkpoint", tmp_path / "ckpt", "--data", data, "--device", "cpu")
    line = one_line_error(err)
    assert code == 2 and stdout == ""
    assert f"the test split of {data} does not have the classes of the checkpoint {tmp_path / 'ckpt'}" in line
    assert "(only in the checkpoint: c; only in the test split: d)" in line
    assert {p.name: p.read_bytes() for p in (tmp_path / "ckpt").iterdir()} == files  # nothing written, nothing lost


def test_evaluate_accepts_the_checkpoints_classes(tmp_path, capsys):
    checkpoint(tmp_path / "ckpt", 3, classes=["a", "b", "c"])
    data = image_folder(tmp_path / "data", "abc", "abc")
    code, stdout, err = run(capsys, "evaluate", "--checkpoint", tmp_path / "ckpt", "--data", data, "--device", "cpu")
    assert code == 0, err
    assert json.loads(stdout)["n"] == 6


def test_evaluate_compares_the_count_for_a_checkpoint_without_class_names(tmp_path, capsys):
    files = checkpoint(tmp_path / "ckpt", 10)  # as written before config.json held the class names
    assert "classes" not in json.loads(files["config.json"])
    data = image_folder(tmp_path / "data", "abc", "abc")
    code, _, err = run(capsys, "evaluate", "--checkpoint", tmp_path / "ckpt", "--data", data, "--device", "cpu")
    line = one_line_error(err)
    assert code == 2 and f"the test split of {data} has 3 classes, but the model in {tmp_path / 'ckpt'} has 10 outputs" in line
    assert {p.name: p.read_bytes() for p in (tmp_path / "ckpt").iterdir()} == files


def test_a_deliberate_class_subset_trains_and_its_checkpoint_keeps_its_classes(cifar_mini, data_dir, tmp_path, capsys):
    train, test = (split.select_classes(["dog", "cat"]) for split in cifar_mini)
    assert train.classes == ("dog", "cat") and set(train.labels.tolist()) == {0, 1}
    cat = CIFAR10_CLASSES.index("cat")
    assert torch.equal(train.images[train.labels == 1], cifar_mini[0].images[cifar_mini[0].labels == cat])
    cfg = TrainConfig(epochs=1, batch_size=16, train_subset=32, test_subset=16, device="cpu", progress=False)
    metrics = train_model("vit-tiny", (train, test), cfg, tmp_path / "run", quick=False)
    assert metrics["n_test"] == 16 and len(metrics["confusion"]) == 2 and metrics["classes"] == ["dog", "cat"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["classes"] == ["dog", "cat"]
    # its checkpoint is then refused on all ten classes, with the difference named
    code, _, err = run(capsys, "evaluate", "--checkpoint", tmp_path / "run", "--data", data_dir, "--device", "cpu")
    assert code == 2 and "only in the test split: airplane, automobile, bird, deer, frog, horse, ship, truck" in one_line_error(err)
    with pytest.raises(ValueError, match="expected distinct names among airplane"):
        cifar_mini[0].select_classes(["dog", "wolf"])


def test_a_failed_download_names_the_url_the_cache_and_the_variable(tmp_path, monkeypatch, capsys):
    class Offline(datasets.CIFAR10):
        def __init__(self, *args, **kwargs):
            raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.delenv("CVT_EDU_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(datasets, "CIFAR10", Offline)
    code, _, err = run(capsys, "train", "--model", "vit-tiny", "--out", tmp_path / "out", "--no-progress")
    line = one_line_error(err)
    assert code == 2
    assert f"could not download CIFAR-10 from {datasets.CIFAR10.url} into {tmp_path / '.cache' / 'cvt_edu'}" in line
    assert "Temporary failure in name resolution" in line and "export CVT_EDU_DATA=" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fault", ["truncated", "text"])
def test_an_unreadable_image_is_named(fault, tmp_path, capsys):
    data = image_folder(tmp_path / "data", "abc", "abc")
    bad = data / "train" / "b" / "1.png"
    if fault == "truncated":
        bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    else:
        (data / "train" / "b" / "x.png").write_text("not an image")
        bad = data / "train" / "b" / "x.png"
    code, _, err = run(capsys, "train", "--model", "vit-tiny", "--data", data, "--out", tmp_path / "out", "--no-progress")
    line = one_line_error(err)
    assert code == 2 and line.startswith(f"cvt-edu train: error: {bad}: cannot be read as an image")
    assert not (tmp_path / "out").exists()


def official_folder(root, monkeypatch):
    """A tiny ``root/cifar-10-batches-py`` in the official layout (plain dicts of numpy arrays), and torchvision's
    MD5 list pointed at these files, so that its own integrity check runs on them."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    md5 = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8), "labels": np.arange(10, dtype=np.int64)}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list(CIFAR10_CLASSES)}))
    for path in folder.iterdir():
        md5[path.name] = hashlib.md5(path.read_bytes()).hexdigest()
    monkeypatch.setattr(datasets.CIFAR10, "train_list", [[n, md5[n]] for n in names[:5]])
    monkeypatch.setattr(datasets.CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(datasets.CIFAR10, "meta", {**datasets.CIFAR10.meta, "md5": md5["batches.meta"]})
    return folder


def test_a_truncated_official_batch_is_named(tmp_path, monkeypatch, capsys):
    folder = official_folder(tmp_path / "data", monkeypatch)
    assert len(load_split("train", tmp_path / "data")) == 50  # intact, it reads
    batch = folder / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:1000])
    code, _, err = run(capsys, "train", "--model", "vit-tiny", "--data", tmp_path / "data", "--out", tmp_path / "out")
    line = one_line_error(err)
    assert code == 2 and "download=True" not in line
    assert f"incomplete or corrupt CIFAR-10 batches in {folder}: {batch} does not match the official checksum" in line
    assert "point --data" in line
    assert not (tmp_path / "out").exists()


def test_an_unreadable_official_batch_that_passes_the_checksum_names_the_folder(tmp_path, monkeypatch, capsys):
    folder = official_folder(tmp_path / "data", monkeypatch)
    (folder / "test_batch").write_bytes(b"\x80\x04not a whole pickle")
    monkeypatch.setattr(datasets.cifar, "check_integrity", lambda *args, **kwargs: True)
    with pytest.raises(DataError, match=f"incomplete or corrupt CIFAR-10 batches in {folder}: a batch could not be read"):
        load_split("test", tmp_path / "data")
    code, _, err = run(capsys, "train", "--model", "vit-tiny", "--data", tmp_path / "data", "--out", tmp_path / "out")
    assert code == 2 and "a batch could not be read" in one_line_error(err)
    assert not (tmp_path / "out").exists()


def test_a_class_folder_without_images_names_the_split_folder(tmp_path, capsys):
    data = image_folder(tmp_path / "data", "abc", "abc")
    for image in (data / "test" / "c").iterdir():
        image.unlink()
    code, _, err = run(capsys, "train", "--model", "vit-tiny", "--data", data, "--out", tmp_path / "out", "--no-progress")
    line = one_line_error(err)
    assert code == 2 and f"{data / 'test'}: Found no valid file for the classes c" in line
    assert not (tmp_path / "out").exists()
