"""Training: every model learns on real images, runs resume exactly, files are written atomically, run folders."""

import itertools
import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import cvt_edu.train.loop as train_module
from cvt_edu.models import build_model
from cvt_edu.train.checkpoint import TRAINER_STATE, atomic_path, load_checkpoint, load_trainer_state
from cvt_edu.train.config import TrainConfig
from cvt_edu.train.env import pick_device, run_folder, seed_everything
from cvt_edu.train.loop import Progress, evaluate, fit, make_scheduler, prepare, record_epoch, resume_progress

MODELS = ["vit-tiny", "cvt-tiny", "swin-tiny", "pvt-tiny"]


@pytest.fixture(autouse=True)
def one_thread():
    """On a small shared machine, threads that wait for each other's cores make training much slower than one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Sized to take 15-40 s per model on one CPU thread: half of the 4,068 training images, seen twice, on the
# fast path (batched augmentation), scored on 512 test images. Seed 0 gives 28.3 % (vit-tiny) to 34.8 % (cvt-tiny).
LEARN = TrainConfig(epochs=2, batch_size=32, lr=1e-3, warmup_epochs=0.3, train_subset=2048, test_subset=512, fast_path=True,
                    progress=False)


@pytest.mark.parametrize("name", MODELS)
def test_every_model_learns_on_real_cifar10(name, cifar_mini, tmp_path):
    train, test = cifar_mini
    seed_everything(LEARN.seed)  # the initial weights, whatever ran before
    metrics = fit(build_model(name), train, test, LEARN, out_dir=tmp_path, name=name)
    print(f"{name}: test accuracy {metrics['test_accuracy']:.3f} after {metrics['seconds']:.1f} s of training")
    assert metrics["test_accuracy"] >= 0.25, metrics["history"]  # chance is 0.10
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    assert len(metrics["history"]) == LEARN.epochs and metrics["device"] == "cpu" and metrics["params"] > 0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test_accuracy"] == metrics["test_accuracy"] and sum(map(sum, saved["confusion"])) == 512
    # the saved model is the trained one
    model, config = load_checkpoint(tmp_path)
    _, test_images = LEARN.splits(train, test)
    assert evaluate(model, test_images)["accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert config["name"] == name and config["classes"][0] == "airplane"


def test_an_interrupted_run_resumes_where_it_stopped_bit_for_bit(cifar_mini, tmp_path, monkeypatch):
    """The reference path (the default on the CPU), killed after its first epoch's save, then resumed."""
    train, test = cifar_mini
    cfg = TrainConfig(epochs=2, batch_size=32, train_subset=96, test_subset=64, progress=False)
    torch.manual_seed(0)
    straight = fit(build_model("cvt-tiny"), train, test, cfg, out_dir=tmp_path / "straight")

    saves = []
    real_save = train_module.save_trainer_state

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        saves.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "save_trainer_state", save_then_die)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        fit(build_model("cvt-tiny"), train, test, cfg, out_dir=tmp_path / "resumed")
    monkeypatch.setattr(train_module, "save_trainer_state", real_save)
    assert load_trainer_state(tmp_path / "resumed")["state"]["epoch"] == 1
    torch.manual_seed(123)  # the resumed run must not depend on the global state it finds
    resumed = fit(build_model("cvt-tiny"), train, test, cfg, out_dir=tmp_path / "resumed")
    assert saves == [1]
    for a, b in zip(straight["history"], resumed["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["test_accuracy"] == b["test_accuracy"]
    # the same final weights, to the bit
    weights = load_file(tmp_path / "straight" / "model.safetensors"), load_file(tmp_path / "resumed" / "model.safetensors")
    assert weights[0].keys() == weights[1].keys() and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_run_under_another_recipe_starts_from_scratch(cifar_mini, tmp_path, capsys):
    train, test = cifar_mini
    cfg = TrainConfig(epochs=1, batch_size=32, train_subset=64, test_subset=32)
    fit(build_model("cvt-tiny"), train, test, cfg, out_dir=tmp_path)
    capsys.readouterr()
    again = fit(build_model("cvt-tiny"), train, test, cfg, out_dir=tmp_path)
    assert "resuming the finished run" in capsys.readouterr().out and again["history"][0]["epoch"] == 1
    other = TrainConfig(epochs=1, batch_size=32, train_subset=64, test_subset=32, augment="trivial")
    fit(build_model("cvt-tiny"), train, test, other, out_dir=tmp_path)
    out = capsys.readouterr().out
    assert "written by another run (another recipe or model); training from scratch" in out and "resuming" not in out
    assert load_trainer_state(tmp_path)["key"] == {"recipe": other.recipe()}


def test_resuming_ignores_a_state_of_another_key_or_a_longer_run(tmp_path, capsys):
    cfg = TrainConfig(epochs=2, batch_size=8, progress=False)
    from cvt_edu.train.data import ImageTensors

    data = ImageTensors(torch.zeros(16, 3, 32, 32, dtype=torch.uint8), torch.arange(16) % 10, ("c",) * 10)
    run = prepare(build_model("cvt-tiny"), data, cfg, torch.device("cpu"))
    assert resume_progress(run, tmp_path, {"recipe": cfg.recipe()}, epochs=2, label="x", verbose=True) == Progress()  # no state
    progress = Progress()
    record_epoch(progress, {"train_loss": 2.0, "train_accuracy": 0.1, "seconds": 1.5}, {"loss": 2.1, "accuracy": 0.2}, lr=1e-3)
    assert progress.epoch == 1 and progress.train_seconds == 1.5 and progress.history[0]["test_accuracy"] == 0.2
    progress.epoch = 3  # beyond a 2-epoch run
    train_module.save_run(run, tmp_path, progress, {"recipe": cfg.recipe()}, course_model=run.model)
    assert (tmp_path / TRAINER_STATE).is_file() and (tmp_path / "model.safetensors").is_file()
    assert resume_progress(run, tmp_path, {"recipe": cfg.recipe()}, epochs=2, label="x", verbose=True) == Progress()
    assert resume_progress(run, tmp_path, {"recipe": cfg.recipe()}, epochs=3, label="x", verbose=True).history == progress.history
    assert "resuming the finished run" in capsys.readouterr().out
    assert resume_progress(run, tmp_path, {"recipe": {}}, epochs=3, label="x", verbose=True) == Progress()
    assert "written by another run" in capsys.readouterr().out


def test_atomic_path_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_learning_rate_warms_up_linearly_then_decays_by_cosine():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=1.0)
    sched = make_scheduler(opt, TrainConfig(epochs=10, lr=1.0, min_lr=0.0, warmup_epochs=2), steps_per_epoch=10)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.01)
    assert lrs[10] == pytest.approx(0.01 + 0.99 * 10 / 20)
    assert lrs[20] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.5, abs=1e-6)  # halfway through the cosine
    assert lrs[99] < 0.001 and all(a >= b for a, b in itertools.pairwise(lrs[20:]))


def test_device_choice_falls_back_to_cpu_here():
    assert pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu").type == "cpu"


def test_a_config_splits_off_the_same_seeded_subsets_that_fit_trains_and_tests_on(cifar_mini):
    train, test = cifar_mini
    assert TrainConfig().splits(train, test) == (train, test)  # no subsets: every image
    sub_train, sub_test = TrainConfig(seed=3).quick().splits(train, test)
    assert (len(sub_train), len(sub_test)) == (512, 256)
    assert torch.equal(sub_train.images, train.subset(512, 3).images) and torch.equal(sub_test.labels, test.subset(256, 3).labels)
    assert not torch.equal(sub_train.images, TrainConfig(seed=4).quick().splits(train, test)[0].images)


def test_a_config_for_quick_mode_is_its_quick_version_and_reads_the_environment_when_not_told(monkeypatch):
    cfg = TrainConfig.small_data()
    assert cfg.for_mode(True) == cfg.quick() and cfg.for_mode(True).epochs == 1
    assert cfg.for_mode(False) is cfg
    monkeypatch.setenv("CVT_EDU_QUICK", "1")
    assert cfg.for_mode() == cfg.quick()
    monkeypatch.setenv("CVT_EDU_QUICK", "0")
    assert cfg.for_mode() is cfg


def test_the_recipe_leaves_out_the_runtime_settings_only():
    cfg = TrainConfig.small_data()
    recipe = cfg.recipe()
    assert recipe["epochs"] == 600 and recipe["mixup_alpha"] == 0.8 and "device" not in recipe and "progress" not in recipe
    assert TrainConfig.small_data(device="cuda", fast_path=True, compile=True, num_workers=4, progress=False).recipe() == recipe
    assert TrainConfig.small_data(seed=1).recipe() != recipe and TrainConfig.small_data(train_subset=100).recipe() != recipe


def test_the_config_module_imports_without_torch():
    code = "import sys, cvt_edu.train.config as c; c.TrainConfig.small_data().for_mode(); print(sorted({'torch', 'numpy'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_run_folders_come_from_the_environment_or_are_fresh_in_quick_mode(monkeypatch, tmp_path):
    monkeypatch.delenv("CVT_EDU_RUNS", raising=False)
    assert run_folder("ch05", "cvt-tiny", quick=False).as_posix() == "runs/ch05/cvt-tiny"
    monkeypatch.setenv("CVT_EDU_RUNS", str(tmp_path))
    assert run_folder("ch05", quick=False) == tmp_path / "ch05" and not (tmp_path / "ch05").exists()
    monkeypatch.setenv("CVT_EDU_QUICK", "1")
    first, second = run_folder("ch05"), run_folder("ch05")
    assert first != second and first.is_dir() and not any(first.iterdir()) and tmp_path not in first.parents
    monkeypatch.setenv("CVT_EDU_QUICK", "0")
    assert run_folder("ch05") == tmp_path / "ch05"


class _Payload:
    """What an attacker would plant in a run folder: unpickling it runs code."""

    ran = False

    def __reduce__(self):
        return (_Payload._run, ())

    @staticmethod
    def _run():
        _Payload.ran = True
        return {}


def test_a_planted_trainer_state_is_refused_and_never_runs(tmp_path):
    torch.save({"state": _Payload()}, tmp_path / TRAINER_STATE)
    with pytest.raises(ValueError, match=r"trainer_state\.pt: expected a trainer state of tensors and numbers"):
        load_trainer_state(tmp_path)
    assert not _Payload.ran


def test_the_random_states_survive_a_weights_only_round_trip(tmp_path):
    import random

    import numpy as np

    from cvt_edu.train.env import restore_rng, rng_state

    np.random.normal()  # NumPy caches a Gaussian: its state has has_gauss = 1
    torch.save(rng_state(), tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.normal(size=3), random.random())
    restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.normal(size=3), expected[1]) and random.random() == expected[2]


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("epochs", 0, "epochs must be an integer >= 1, got 0"),
        ("epochs", -3, "epochs must be an integer >= 1, got -3"),
        ("batch_size", 0, "batch_size must be an integer >= 1, got 0"),
        ("lr", 0.0, "lr must be a finite number > 0, got 0.0"),
        ("lr", float("nan"), "lr must be a finite number > 0, got nan"),
        ("lr", float("inf"), "lr must be a finite number > 0, got inf"),
    ],
)
def test_a_budget_or_step_size_that_cannot_train_is_refused_up_front(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


def test_a_loss_that_becomes_nan_stops_the_run_and_keeps_the_folder_as_it_was(cifar_mini, tmp_path):
    train, test = cifar_mini
    good = TrainConfig(epochs=1, batch_size=32, train_subset=64, test_subset=32, progress=False)
    fit(build_model("vit-tiny"), train, test, good, out_dir=tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    diverging = TrainConfig(epochs=2, batch_size=32, lr=1e6, warmup_epochs=0, train_subset=128, test_subset=32, progress=False)
    with pytest.raises(train_module.NonFiniteLossError, match=r"training loss became nan in epoch 1 .* kept as it was"):
        fit(build_model("vit-tiny"), train, test, diverging, out_dir=tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_metrics_with_a_nan_are_refused_not_written_as_invalid_json(tmp_path):
    from cvt_edu.train.checkpoint import write_json

    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        write_json(tmp_path / "metrics.json", {"test_accuracy": float("nan")})
    assert not (tmp_path / "metrics.json").exists()
