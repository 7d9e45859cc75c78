"""Run folders are never lost or overwritten by surprise: one training at a time holds a folder, a run of another
key is refused unless told to overwrite, a folder that cannot be written is refused up front, writes are durable.

Every test trains at most a few epochs of a tiny model on 64 images; most copy one finished run and train nothing.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import cvt_edu.train.data as data_module
import cvt_edu.train.loop as train_loop
import cvt_edu.train.run as run_module
from cvt_edu.cli import main
from cvt_edu.lab.compare import train_model
from cvt_edu.models import build_model
from cvt_edu.train.checkpoint import atomic_path, load_checkpoint, load_trainer_state, write_json
from cvt_edu.train.config import TrainConfig
from cvt_edu.train.data import ImageTensors
from cvt_edu.train.run import RunFolderError, check_run_folder, key_differences, lock_run_folder

CFG = TrainConfig(epochs=1, batch_size=32, progress=False)
# A child that holds a folder's lock as a training does (flock on the folder itself), then sleeps until killed.
HOLD_LOCK = textwrap.dedent("""
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("locked", flush=True)
    time.sleep(120)
""")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(cifar_mini):
    train, test = cifar_mini
    return ImageTensors(train.images[:64], train.labels[:64], train.classes), test.subset(32)


@pytest.fixture(scope="module")
def finished(tiny, tmp_path_factory):
    """A finished 1-epoch vit-tiny run, as train_model leaves it; tests work on copies."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    torch.set_num_threads(1)
    train_model("vit-tiny", tiny, CFG, folder, quick=False)
    return folder


def copy_of(run: Path, where: Path) -> Path:
    shutil.copytree(run, where)
    return where


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_locked_folder_is_refused_at_once_and_a_killed_holder_frees_it(finished, tiny, tmp_path, capsys, monkeypatch):
    pytest.importorskip("fcntl")  # no flock on Windows: runs are not locked there
    folder = copy_of(finished, tmp_path / "run")
    before = contents(folder)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        in_use = f"{folder} is in use: another training holds its lock"
        with pytest.raises(RunFolderError, match=in_use):
            train_model("vit-tiny", tiny, CFG, folder, quick=False)
        # the command line stops before it loads any data
        monkeypatch.setattr(data_module, "load_data", lambda *a, **k: pytest.fail("data loaded for a locked folder"))
        code, _, err = cli(capsys, "train", "--model", "vit-tiny", "--out", folder)
        assert code == 2 and err.strip() == f"cvt-edu train: error: {in_use}; wait for it to end, or use another folder (--out)"
        assert contents(folder) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert holder.returncode == -signal.SIGKILL
    check_run_folder(folder)  # free again: the OS released the killed holder's lock
    assert train_model("vit-tiny", tiny, CFG, folder, quick=False)["reused"]
    assert contents(folder) == before


@pytest.mark.parametrize("state", ["finished", "interrupted"])
@pytest.mark.parametrize("name,changes,differs", [
    ("vit-tiny", {"epochs": 2}, "epochs 1 -> 2"),
    ("vit-tiny", {"augment": "trivial"}, "augment crop-flip -> trivial"),
    ("cvt-tiny", {}, "arch vit -> cvt"),
])
def test_a_run_of_another_key_is_refused_naming_what_differs(finished, tiny, tmp_path, monkeypatch, state, name, changes, differs):
    folder = copy_of(finished, tmp_path / "run")
    if state == "interrupted":  # killed after its last epoch's save, before metrics.json
        (folder / "metrics.json").unlink()
    before = contents(folder)
    monkeypatch.setattr(run_module, "fit", lambda *a, **k: pytest.fail("trained over another run"))
    cfg = replace(CFG, **changes)
    with pytest.raises(RunFolderError) as refused:
        train_model(name, tiny, cfg, folder, quick=False)
    message = str(refused.value)
    assert message.startswith(f"{folder} holds a{'n' if state == 'interrupted' else ''} {state} run of another model or recipe")
    assert f"({differs})" in message and "overwrite=True (--overwrite" in message and "another folder (--out)" in message
    assert contents(folder) == before


def test_run_files_whose_run_cannot_be_told_are_refused(finished, tiny, tmp_path):
    folder = copy_of(finished, tmp_path / "run")
    (folder / "metrics.json").unlink()
    (folder / "trainer_state.pt").unlink()
    before = contents(folder)
    with pytest.raises(RunFolderError, match="holds model.safetensors, config.json, curves.png but no metrics.json or trainer_state.pt"):
        train_model("vit-tiny", tiny, CFG, folder, quick=False)
    assert contents(folder) == before


def test_a_metrics_file_that_is_not_json_is_refused_and_replaced_with_overwrite(finished, tiny, tmp_path):
    folder = copy_of(finished, tmp_path / "run")
    (folder / "metrics.json").write_text('{"test_accuracy": 0.3')  # cut short by another program
    before = contents(folder)
    with pytest.raises(RunFolderError, match=r"holds a metrics.json that is not a JSON object, .*; pass overwrite=True"):
        train_model("vit-tiny", tiny, CFG, folder, quick=False)
    assert contents(folder) == before
    metrics = train_model("vit-tiny", tiny, CFG, folder, quick=False, overwrite=True)
    assert not metrics["reused"] and json.loads((folder / "metrics.json").read_text())["epochs"] == 1


def test_overwrite_removes_metrics_first_and_a_kill_never_leaves_old_metrics_beside_a_new_model(finished, tiny, tmp_path,
                                                                                                  monkeypatch, capsys):
    folder = copy_of(finished, tmp_path / "run")
    (folder / "notes.txt").write_text("mine")  # not a run file: kept
    removed = []
    real_unlink = Path.unlink

    def unlink(self, missing_ok=False):
        removed.append(self.name)
        real_unlink(self, missing_ok=missing_ok)

    real_save = train_loop.save_trainer_state

    def save_then_die(*args, **kwargs):
        assert not (folder / "metrics.json").exists()  # gone before the new model was written
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "unlink", unlink)
    monkeypatch.setattr(train_loop, "save_trainer_state", save_then_die)
    longer = TrainConfig(epochs=2, batch_size=32)
    with pytest.raises(KeyboardInterrupt):  # killed after the new run's first epoch
        train_model("vit-tiny", tiny, longer, folder, quick=False, overwrite=True)
    monkeypatch.undo()
    assert removed[0] == "metrics.json"
    assert "vit-tiny: replacing a finished run of another model or recipe (epochs 1 -> 2)" in capsys.readouterr().out
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "notes.txt", "trainer_state.pt"]
    state = load_trainer_state(folder)
    assert state["state"]["epoch"] == 1 and state["key"]["recipe"]["epochs"] == 2
    # the folder now holds the new run: it resumes without overwrite, and finishes
    resumed = train_model("vit-tiny", tiny, longer, folder, quick=False)
    assert "resuming the interrupted run" in capsys.readouterr().out
    assert resumed["epochs"] == 2 and json.loads((folder / "metrics.json").read_text())["key"]["recipe"]["epochs"] == 2
    assert (folder / "curves.png").is_file() and (folder / "notes.txt").read_text() == "mine"
    load_checkpoint(folder)


def test_fit_over_another_run_removes_its_metrics_before_the_first_new_checkpoint(finished, tiny, tmp_path, monkeypatch):
    """fit itself (no run rule) trains over a run of another recipe; killed after one epoch, no old metrics.json remains."""
    folder = copy_of(finished, tmp_path / "run")
    old_model = (folder / "model.safetensors").read_bytes()
    real_save = train_loop.save_trainer_state

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_loop, "save_trainer_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_loop.fit(build_model("vit-tiny"), *tiny, TrainConfig(epochs=2, batch_size=32, progress=False), out_dir=folder)
    assert not (folder / "metrics.json").exists() and (folder / "model.safetensors").read_bytes() != old_model


@pytest.mark.parametrize("command", ["train", "compare"])
def test_the_command_line_refuses_another_run_and_replaces_it_with_overwrite(finished, tiny, tmp_path, capsys, monkeypatch, command):
    out = tmp_path / "out"
    folder = copy_of(finished, out if command == "train" else out / "vit-tiny")
    before = contents(folder)
    monkeypatch.setenv("CVT_EDU_QUICK", "0")
    monkeypatch.setattr(data_module, "load_data", lambda *a, **k: tiny)
    which = ["--model", "vit-tiny"] if command == "train" else ["--models", "vit-tiny"]
    args = [command, *which, "--out", out, "--epochs", "2", "--batch-size", "32", "--no-progress"]
    code, _, err = cli(capsys, *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"cvt-edu {command}: error: {folder} holds a finished run") and "epochs 1 -> 2" in err
    assert "--overwrite" in err and contents(folder) == before
    code, _, err = cli(capsys, *args, "--overwrite")
    assert code == 0, err
    assert json.loads((folder / "metrics.json").read_text())["epochs"] == 2
    assert command == "train" or (out / "comparison.md").is_file()


def test_a_folder_that_cannot_be_written_is_refused_before_anything_runs(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(data_module, "load_data", lambda *a, **k: pytest.fail("data loaded for an unusable folder"))
    monkeypatch.setattr(run_module, "fit", lambda *a, **k: pytest.fail("trained into an unusable folder"))
    mine = tmp_path / "notes.txt"
    mine.write_text("mine")
    code, _, err = cli(capsys, "train", "--model", "vit-tiny", "--out", mine)
    assert code == 2 and err.strip() == f"cvt-edu train: error: cannot use {mine} as a run folder: it is a file, not a folder"
    code, _, err = cli(capsys, "compare", "--out", mine / "sub")
    assert code == 2 and f"it lies below {mine}, which is a file" in err
    with pytest.raises(RunFolderError, match="is a file, not a folder"):
        train_model("vit-tiny", tiny, CFG, mine, quick=False)
    assert mine.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes in read-only folders")
def test_a_run_folder_in_a_read_only_parent_is_refused_before_the_data_loads(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(data_module, "load_data", lambda *a, **k: pytest.fail("data loaded for an unusable folder"))
    parent = tmp_path / "read-only"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        code, _, err = cli(capsys, "train", "--model", "vit-tiny", "--out", parent / "run")
        assert code == 2 and err.strip() == (f"cvt-edu train: error: cannot create the run folder {parent / 'run'}: "
                                             f"no permission to write in {parent}")
        code, _, err = cli(capsys, "train", "--model", "vit-tiny", "--out", parent)
        assert code == 2 and f"cannot write in the run folder {parent}: no permission" in err
        assert list(parent.iterdir()) == []
    finally:
        parent.chmod(0o755)


def test_atomic_writes_are_flushed_before_and_after_the_move_and_get_normal_modes(tmp_path, monkeypatch):
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name the flushed files")
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))), real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", str(a), str(b))), real_replace(a, b)))
    target = tmp_path / "metrics.json"
    old_mask = os.umask(0o027)
    try:
        write_json(target, {"a": 1})
    finally:
        os.umask(old_mask)
    tmp = events[1][1]
    assert Path(tmp).parent == tmp_path and Path(tmp).name.startswith(".metrics.json.") and tmp.endswith(".tmp")
    assert events == [("fsync", tmp), ("replace", tmp, str(target)), ("fsync", str(tmp_path))]
    assert target.stat().st_mode & 0o777 == 0o640  # what open() gives under that umask, not mkstemp's 0o600
    monkeypatch.undo()
    write_json(tmp_path / "b.json", {})
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o666 & ~old_mask


def test_temporaries_a_killed_write_left_are_removed_when_the_folder_is_locked(tmp_path):
    folder = tmp_path / "run"
    writing = atomic_path(folder / "model.safetensors")
    half = writing.__enter__()  # a write that never finishes, as when the process is killed
    half.write_bytes(b"half")
    (folder / ".config.json.x1y2.tmp").write_text("{")
    keep = ["notes.tmp", ".hidden", "metrics.json"]
    for name in keep:
        (folder / name).write_text("mine")
    (folder / ".dir.x.tmp").mkdir()
    with lock_run_folder(folder):
        assert sorted(p.name for p in folder.iterdir()) == sorted([*keep, ".dir.x.tmp"])
    assert all((folder / name).read_text() == "mine" for name in keep)
    del writing


def test_key_differences_name_recipe_settings_alone_and_skip_the_config_of_another_architecture():
    old = {"recipe": {"epochs": 20, "lr": 0.001}, "arch": "cvt", "model_config": {"stages": [{"stride_kv": 2}]}}
    assert key_differences(old, {**old, "recipe": {"epochs": 30, "lr": 0.002}}) == "epochs 20 -> 30, lr 0.001 -> 0.002"
    assert key_differences(old, {**old, "model_config": {"stages": [{"stride_kv": 1}]}}) == "model_config.stages[0].stride_kv 2 -> 1"
    assert key_differences(old, {**old, "arch": "vit", "model_config": {"embed_dim": 192}}) == "arch cvt -> vit"
    assert key_differences(old, {**old, "image_size": 224}) == "image_size (none) -> 224"
    many = {"recipe": {f"s{i}": i for i in range(6)}}
    assert key_differences({"recipe": {}}, many, limit=2) == "s0 (none) -> 0, s1 (none) -> 1 and 4 more"
