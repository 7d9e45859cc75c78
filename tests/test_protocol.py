"""The main experiment's protocol: run keys that survive new settings, the validation split, per-image
predictions and the results files, the paired test and the seeds table, the plan and its runner.

Every training here is one epoch of cvt-tiny on at most 96 images; the runner's test trains one such run
in a subprocess on a synthetic image folder.
"""

import json
import math
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cvt_edu.train.loop as loop
from cvt_edu.cli import _train_config, parse_args
from cvt_edu.lab.compare import train_model
from cvt_edu.lab.experiment import run_experiment
from cvt_edu.lab.plan import PlannedRun, main_plan, steps_per_epoch
from cvt_edu.lab.results import ResultsError, export_run, load_results
from cvt_edu.lab.stats import mcnemar, mean_sd, seeds_table
from cvt_edu.models import build_model
from cvt_edu.train.checkpoint import load_trainer_state
from cvt_edu.train.config import TrainConfig
from cvt_edu.train.data import ImageTensors, stratified_split
from cvt_edu.train.env import seed_everything
from cvt_edu.train.loop import fit, prepare, resume_progress
from cvt_edu.train.run import RunFolderError, claim_run_folder, key_differences, lock_run_folder, run_key, same_run_key

# Runs of an older cvt_edu, read only; opt-in (CVT_EDU_HEADLINE_RUNS=/work/runs19/headline), because a copy taken while
# those runs still train can catch trainer_state.pt and model.safetensors of two different epochs.
HEADLINE = Path(os.environ.get("CVT_EDU_HEADLINE_RUNS", "/nonexistent"))
CFG = TrainConfig(epochs=1, batch_size=32, warmup_epochs=0.2, progress=False, device="cpu")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(cifar_mini):
    train, test = cifar_mini
    return ImageTensors(train.images[:96], train.labels[:96], train.classes), test.subset(40)


@pytest.fixture(scope="module")
def finished(tiny, tmp_path_factory):
    """A finished 1-epoch cvt-tiny run; tests work on copies."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    torch.set_num_threads(1)
    train_model("cvt-tiny", tiny, CFG, folder, quick=False)
    return folder


class Untouchable:
    """A test split that fails the test the moment anything reads it."""

    def __getattr__(self, name):
        pytest.fail(f"the test split was read ({name}) in a validation run")

    def __len__(self):
        pytest.fail("the test split was read (len) in a validation run")


def drop(key, *path):
    """A deep copy of ``key`` without the field at ``path``: a key as an older cvt_edu saved it."""
    key = json.loads(json.dumps(key))
    node = key
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return key


# --- run keys: a field added later with its default is the same run --------------------------------------------------

def test_a_saved_key_lacking_fields_at_their_defaults_is_the_same_run_and_any_other_difference_is_not():
    cvt = run_key(TrainConfig.small_data(epochs=300), build_model("cvt-tiny"))
    vit = run_key(TrainConfig.small_data(epochs=300), build_model("vit-tiny"))
    assert "validation" in cvt["recipe"] and same_run_key(cvt, cvt)
    # lacking a recipe field (TrainConfig's default), a model-config field, a stage field at their defaults: the same run
    assert same_run_key(drop(cvt, "recipe", "validation"), cvt)
    assert same_run_key(drop(vit, "model_config", "qkv_bias"), vit)
    assert same_run_key(drop(drop(cvt, "model_config", "stages", 1, "projection"), "recipe", "validation"), cvt)
    assert key_differences(drop(cvt, "recipe", "validation"), cvt) == "no difference"
    # lacking a field whose value is not its default (vit-tiny's embed_dim 128, the default 768): another run
    assert not same_run_key(drop(vit, "model_config", "embed_dim"), vit)
    assert key_differences(drop(vit, "model_config", "embed_dim"), vit) == "model_config.embed_dim (none) -> 128"
    # a new field at another value than its default, a changed value, a field today's key lacks: another run
    assert not same_run_key(drop(cvt, "recipe", "validation"), run_key(TrainConfig.small_data(epochs=300, validation=0.2),
                                                                         build_model("cvt-tiny")))
    assert not same_run_key(cvt, run_key(TrainConfig.small_data(epochs=100), build_model("cvt-tiny")))
    assert not same_run_key({**cvt, "recipe": {**cvt["recipe"], "pool": "gap"}}, cvt)
    assert not same_run_key(drop(cvt, "recipe", "validation"), vit) and not same_run_key(None, cvt)


def test_runs_saved_without_a_new_field_are_reused_and_resumed_and_a_recipe_change_is_refused(finished, tiny, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(finished, old)
    metrics = json.loads((old / "metrics.json").read_text())
    metrics["key"] = drop(metrics["key"], "recipe", "validation")  # as main's code wrote it
    (old / "metrics.json").write_text(json.dumps(metrics))
    again = train_model("cvt-tiny", tiny, CFG, old, quick=False)
    assert again["reused"] and again["history"] == metrics["history"]

    (old / "metrics.json").unlink()  # an interrupted run, its trainer state saved without the field
    saved = load_trainer_state(old)
    saved["key"] = drop(saved["key"], "recipe", "validation")
    torch.save(saved, old / "trainer_state.pt")
    seed_everything(0)
    model = build_model("cvt-tiny", num_classes=10)
    key = run_key(replace(CFG, epochs=2), model)
    with lock_run_folder(old):
        with pytest.raises(RunFolderError, match=r"epochs 1 -> 2"):  # only the epochs differ, and they count
            claim_run_folder(old, key)
        key = run_key(CFG, model)
        claim_run_folder(old, key)
        progress = resume_progress(prepare(model, tiny[0], CFG, torch.device("cpu")), old, key, epochs=1, label="cvt-tiny",
                                   verbose=True)
    assert progress.epoch == 1 and "cvt-tiny: resuming the finished run" in capsys.readouterr().out
    with lock_run_folder(old), pytest.raises(RunFolderError, match=r"validation \(none\) -> 0.2"):
        claim_run_folder(old, run_key(replace(CFG, validation=0.2), model))


@pytest.mark.skipif(not (HEADLINE / "cvt-tiny" / "seed0" / "trainer_state.pt").is_file(), reason="no headline runs here")
@pytest.mark.parametrize("name", ["cvt-tiny", "vit-tiny"])
def test_the_headline_runs_of_mains_code_resume_under_this_code(name, cifar_mini, tmp_path, capsys):
    copy = tmp_path / name
    copy.mkdir()
    for file in ("trainer_state.pt", "model.safetensors", "config.json"):  # a copy: the real folder is never written
        shutil.copy2(HEADLINE / name / "seed0" / file, copy / file)
    cfg = replace(next(r for r in main_plan() if r.name == f"headline/{name}/seed0").config(), device="cpu")  # the plan's run
    seed_everything(0)
    model = build_model(name, num_classes=10)
    key = run_key(cfg, model)
    with lock_run_folder(copy):
        claim_run_folder(copy, key)
        progress = resume_progress(prepare(model, cifar_mini[0], cfg, torch.device("cpu")), copy, key, epochs=300, label=name,
                                   verbose=True)
        assert progress.epoch >= 1 and f"{name}: resuming the interrupted run in {copy} at epoch {progress.epoch}/300" in capsys.readouterr().out
        with pytest.raises(RunFolderError, match=r"\(lr 0.001 -> 0.002\)"):
            claim_run_folder(copy, run_key(replace(cfg, lr=2e-3), model))


# --- the validation split ------------------------------------------------------------------------------------------------

def test_the_validation_split_is_stratified_exactly_disjoint_and_the_same_for_every_seed(cifar_mini):
    train = cifar_mini[0]
    tagged = ImageTensors(torch.arange(len(train)).view(-1, 1, 1, 1), train.labels, train.classes)  # each image is its index
    kept, held = stratified_split(tagged, 0.2)
    counts, held_counts = torch.bincount(train.labels), torch.bincount(held.labels, minlength=10)
    assert held_counts.tolist() == [round(0.2 * int(n)) for n in counts] and len(held) == 814 and len(kept) == len(train) - 814
    ids_kept, ids_held = set(kept.images.flatten().tolist()), set(held.images.flatten().tolist())
    assert not ids_kept & ids_held and len(ids_kept | ids_held) == len(train)
    assert (held.labels == train.labels[held.images.flatten()]).all()
    a = TrainConfig(validation=0.2, seed=0).splits(tagged, None)
    b = TrainConfig(validation=0.2, seed=7).splits(tagged, None)
    assert torch.equal(a[1].images, b[1].images) and torch.equal(a[0].images, b[0].images)
    assert torch.equal(a[1].images, held.images)
    for bad in (-0.1, 1.0, "0.2"):
        with pytest.raises(ValueError, match="validation must be a fraction in"):
            TrainConfig(validation=bad)


def test_a_validation_run_trains_on_the_rest_evaluates_the_held_out_images_and_never_reads_the_test_split(tiny, monkeypatch):
    seen = []
    real = loop.evaluate

    def spy(model, data, **kw):
        seen.append(len(data))
        return real(model, data, **kw)

    monkeypatch.setattr(loop, "evaluate", spy)
    seed_everything(0)
    m = fit(build_model("cvt-tiny", num_classes=10), tiny[0], Untouchable(), replace(CFG, validation=0.2))
    n_val = sum(round(0.2 * int(n)) for n in torch.bincount(tiny[0].labels))
    assert seen == [n_val] and m["n_val"] == n_val and m["n_train"] == 96 - n_val
    assert not [k for k in json.dumps(m["history"]).split('"') + list(m) if k.startswith(("test", "n_test"))]
    assert len(m["val_predictions"]) == n_val and 0 <= m["val_accuracy"] <= 1


def test_a_finished_run_records_every_test_prediction_in_the_test_order(finished, tiny):
    m = json.loads((finished / "metrics.json").read_text())
    preds = m["test_predictions"]
    assert len(preds) == len(tiny[1]) and all(type(p) is int for p in preds)
    assert math.isclose(np.mean(np.array(preds) == tiny[1].labels.numpy()), m["test_accuracy"], rel_tol=1e-6)


# --- the results files ---------------------------------------------------------------------------------------------------

def test_export_writes_one_results_file_recomputing_predictions_a_run_lacks_and_the_loader_refuses_bad_files(finished, tiny, tmp_path):
    results = tmp_path / "results"
    rec = export_run(finished, results / "wide" / "cvt-tiny" / "seed0.json", data=tiny, name="wide/cvt-tiny/seed0")
    assert rec["predictions_source"] == "recorded" and rec["n_test"] == 40 and rec["n_val"] == 0 and rec["n_train"] == 96
    assert rec["labels"] == tiny[1].labels.tolist() and rec["config"]["recipe"]["epochs"] == 1 and rec["torch_at"] == "training"

    old = tmp_path / "old"  # a run of main's code: no predictions, no torch version
    shutil.copytree(finished, old)
    metrics = json.loads((old / "metrics.json").read_text())
    del metrics["test_predictions"], metrics["torch"]
    (old / "metrics.json").write_text(json.dumps(metrics))
    again = export_run(old, results / "wide" / "cvt-tiny" / "seed1.json", data=tiny)
    assert again["predictions_source"] == "recomputed" and again["predictions"] == rec["predictions"]
    assert again["torch"] == torch.__version__ and again["torch_at"] == "export"

    loaded = load_results(results)
    assert list(loaded) == ["wide/cvt-tiny/seed0", "wide/cvt-tiny/seed1"] and loaded["wide/cvt-tiny/seed0"] == rec
    with pytest.raises(ResultsError, match="the data given is not the run's"):
        export_run(finished, tmp_path / "x.json", data=(tiny[0], tiny[1].subset(20)))
    assert not (tmp_path / "x.json").exists()

    bad = tmp_path / "bad"
    for name, change in {"acc": lambda r: r["metrics"].update(test_accuracy=(r["metrics"]["test_accuracy"] + 0.5) % 1.0),
                         "short": lambda r: r["predictions"].pop(),
                         "missing": lambda r: r.pop("history")}.items():
        shutil.rmtree(bad, ignore_errors=True)
        bad.mkdir()
        r = json.loads(json.dumps(rec))
        change(r)
        (bad / "run.json").write_text(json.dumps(r))
        with pytest.raises(ResultsError) as e:
            load_results(bad)
        assert str(bad / "run.json") in str(e.value) and "\n" not in str(e.value)
    (bad / "run.json").write_text("{not json")
    with pytest.raises(ResultsError, match="not JSON"):
        load_results(bad)


# --- statistics ----------------------------------------------------------------------------------------------------------

def test_mcnemar_counts_the_discordant_images_and_gives_the_exact_binomial_p_value():
    labels = [0] * 10
    a = [0, 0, 0, 0, 0, 0, 1, 1, 1, 0]  # right on 0-5 and 9
    b = [1, 1, 1, 1, 1, 0, 1, 1, 0, 0]  # right on 5, 8, 9
    r = mcnemar(a, b, labels)
    assert (r.b, r.c, r.n) == (5, 1, 10)  # A alone right on 0-4, B alone right on 8
    assert math.isclose(r.p_value, 2 * (1 + 6) / 2**6)  # 2 P(X <= 1), X ~ Binomial(6, 1/2): 0.21875
    s = mcnemar(b, a, labels)
    assert (s.b, s.c) == (1, 5) and math.isclose(s.p_value, r.p_value)
    assert mcnemar(a, a, labels).p_value == 1.0 and mcnemar(a, a, labels)[:2] == (0, 0)
    assert math.isclose(mcnemar([0] * 10, [1] * 10, labels).p_value, 2 / 2**10)
    assert mcnemar([0, 0], [1, 1], [0, 1])[:2] == (1, 1) and mcnemar([0, 0], [1, 1], [0, 1]).p_value == 1.0  # b == c
    with pytest.raises(ValueError, match="same images"):
        mcnemar([0, 1], [0], [0, 1])


def test_mean_sd_and_the_seeds_table():
    mean, sd = mean_sd([0.80, 0.82, 0.78])
    assert math.isclose(mean, 0.80) and math.isclose(sd, 0.02)  # ddof = 1
    assert math.isnan(mean_sd([0.5])[1])
    with pytest.raises(ValueError):
        mean_sd([])
    records = [{"model": m, "seed": s, "params": p, "metrics": {"test_accuracy": a}}
               for m, p, accs in (("cvt-tiny", 1_200_000, (0.80, 0.82, 0.78)), ("vit-tiny", 1_100_000, (0.70,)))
               for s, a in enumerate(accs)]
    table = seeds_table(records)
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    assert rows == [["cvt-tiny", "80.0 ± 2.0", "3", "1.20"], ["vit-tiny", "70.0", "1", "1.10"]]
    assert "test accuracy (%), mean ± sd" in table
    with pytest.raises(ValueError, match="more than once"):
        seeds_table(records + records[:1])


# --- the plan and its runner ---------------------------------------------------------------------------------------------

def test_the_plan_lists_every_run_with_equal_steps_for_the_fractions_and_the_headline_recipe_of_the_runs_going():
    plan = main_plan()
    names = [r.name for r in plan]
    assert len(names) == len(set(names)) == 4 + 18 + 12 + 6
    full = 100 * steps_per_epoch(4068, 128)
    for r in (r for r in plan if r.study == "fraction"):
        cfg = r.config()
        steps = cfg.epochs * steps_per_epoch(cfg.train_subset, 128)
        assert abs(steps - full) <= steps_per_epoch(cfg.train_subset, 128) / 2 + 1
        assert math.isclose(cfg.warmup_epochs * steps_per_epoch(cfg.train_subset, 128), 10 * 31, rel_tol=0.02)
    head = next(r for r in plan if r.name == "headline/cvt-tiny/seed0")
    parsed = _train_config(parse_args(["train", *head.train_args(), "--out", "x"]))
    assert parsed.recipe() == TrainConfig.small_data(epochs=300).recipe() == head.config().recipe()
    val = next(r for r in plan if r.study == "validation")
    assert _train_config(parse_args(["train", *val.train_args(), "--out", "x"])).validation == 0.2


def image_folder(root: Path, n_train: int, n_test: int) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for c in range(10):
            (root / split / f"c{c}").mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / split / f"c{c}" / f"{i}.png")
    return root


def test_the_runner_trains_what_is_missing_skips_unknown_models_exports_and_skips_what_is_exported(tmp_path):
    data = image_folder(tmp_path / "data", 8, 3)
    plan = [PlannedRun("v/cvt-tiny/seed0", "validation", "cvt-tiny", 0,
                       {"epochs": 1, "batch_size": 16, "warmup_epochs": 0.2, "validation": 0.25}),
            PlannedRun("w/resnet-20/seed0", "wide", "resnet-20", 0, {"epochs": 1})]
    lines = []
    out = run_experiment(plan, tmp_path / "runs", tmp_path / "results", data, jobs=2, echo=lines.append)
    assert out["v/cvt-tiny/seed0"] == "exported", "\n".join(lines)
    if "resnet-20" not in __import__("cvt_edu.models", fromlist=["MODELS"]).MODELS:
        assert "not in the model registry yet" in out["w/resnet-20/seed0"]
    rec = load_results(tmp_path / "results")["v/cvt-tiny/seed0"]
    assert rec["eval_split"] == "validation" and rec["n_val"] == 20 and rec["n_train"] == 60 and rec["n_test"] == 0
    assert (tmp_path / "runs" / "v" / "cvt-tiny" / "seed0.log").is_file()
    again = run_experiment(plan[:1], tmp_path / "runs", tmp_path / "results", data, echo=lines.append)
    assert again == {"v/cvt-tiny/seed0": "skipped: exported already"}
    run_experiment(plan, tmp_path / "runs", tmp_path / "results", data, dry_run=True, echo=lines.append)
    assert "exported" in lines[-2] and "core-hours" in lines[-1]


def test_the_command_line_refuses_a_bad_validation_fraction_and_an_empty_selection_in_one_line(tmp_path, capsys):
    from cvt_edu.cli import main

    code = main(["train", "--model", "cvt-tiny", "--out", str(tmp_path / "o"), "--validation", "1.5"])
    err = capsys.readouterr().err
    assert code == 2 and "validation must be a fraction in [0, 1)" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    code = main(["experiment", "--runs", str(tmp_path / "r"), "--results", str(tmp_path / "x"), "--data", str(tmp_path),
                 "--only", "nothing/*", "--dry-run"])
    captured = capsys.readouterr()
    assert code == 2 and "no run of the plan matches --only 'nothing/*'" in captured.err
    code = main(["experiment", "--runs", str(tmp_path / "r"), "--results", str(tmp_path / "x"), "--data", str(tmp_path / "none")])
    assert code == 2 and "not one" in capsys.readouterr().err
