"""Loading a broken file is one line that says what was expected, what came, and which file; nothing is changed.

Each case feeds the bad input to the function (load_checkpoint, model_from_config, load_pretrained,
load_trainer_state, a model's forward) and, where the command line reaches it, to ``cvt-edu evaluate``
or ``cvt-edu train``: exit status 2, one line on stderr, the folder's files byte for byte as they were.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from cvt_edu.cli import main
from cvt_edu.models import build_model, model_from_config
from cvt_edu.pretrained.load import load_pretrained
from cvt_edu.train.checkpoint import (
    TRAINER_STATE,
    TRAINER_STATE_KEYS,
    load_checkpoint,
    load_trainer_state,
    save_pretrained,
    save_trainer_state,
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    """A vit-tiny and a cvt-tiny checkpoint, written once; tests copy them before breaking them."""
    root = tmp_path_factory.mktemp("saved")
    torch.manual_seed(0)
    for name in ("vit-tiny", "cvt-tiny"):
        save_pretrained(build_model(name), root / name, name=name)
    return {"vit": root / "vit-tiny", "cvt": root / "cvt-tiny"}


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def edit_config(folder: Path, edit) -> None:
    path = folder / "config.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


def cli_error(capsys, *args) -> str:
    """Run ``cvt-edu ARGS`` in-process; assert it refused with exit status 2 and one line; return that line."""
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


def refused(folder: Path, match: str, capsys) -> str:
    """load_checkpoint and ``cvt-edu evaluate`` both refuse ``folder`` with one line matching ``match``; nothing changes."""
    before = files(folder)
    with pytest.raises(ValueError, match=match) as info:
        load_checkpoint(folder)
    message = str(info.value)
    assert "\n" not in message and len(message) < 700, message
    line = cli_error(capsys, "evaluate", "--checkpoint", str(folder))
    assert line == f"cvt-edu evaluate: error: {message}"
    assert files(folder) == before
    return message


# 1. config.json that is not JSON, or JSON but not an object


@pytest.mark.parametrize(
    "text,match",
    [
        ("{arch: vit,", r"config\.json: expected a JSON object, but it is not valid JSON: .* at line 1 column 2$"),
        ('{"arch": "vit"', r"config\.json: expected a JSON object, but it is not valid JSON: .* at line 1 column 15$"),
        ("[1, 2]", r"config\.json: expected a JSON object \{\.\.\.\}, got a JSON array$"),
        ('"vit"', r"got a JSON string$"),
    ],
    ids=["not-json", "cut-short", "array", "string"],
)
def test_a_malformed_config_names_the_file_and_the_position(text, match, saved, tmp_path, capsys):
    folder = copy(saved["vit"], tmp_path / "ckpt")
    (folder / "config.json").write_text(text)
    message = refused(folder, match, capsys)
    assert message.startswith(str(folder / "config.json"))


def test_a_config_that_is_not_text_is_one_line_too(saved, tmp_path, capsys):
    folder = copy(saved["vit"], tmp_path / "ckpt")
    (folder / "config.json").write_bytes(b"\x80\x04\x95 pickled")
    refused(folder, r"config\.json: expected a JSON object, but the file is not UTF-8 text", capsys)


# 2. a truncated model.safetensors


def test_truncated_weights_are_named_and_called_truncated(saved, tmp_path, capsys):
    folder = copy(saved["vit"], tmp_path / "ckpt")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    message = refused(folder, r"model\.safetensors: expected a safetensors file of weights, but it is truncated or corrupt", capsys)
    assert message.startswith(str(weights))


# 3. weights of another architecture (or another size) than config.json says


def test_weights_of_another_architecture_are_one_line_with_counts(saved, tmp_path, capsys):
    folder = copy(saved["vit"], tmp_path / "ckpt")
    shutil.copy(saved["cvt"] / "config.json", folder / "config.json")  # config says cvt, the weights are vit's
    n_cvt, n_vit = len(build_model("cvt-tiny").state_dict()), len(build_model("vit-tiny").state_dict())
    message = refused(folder, rf"model\.safetensors: expected the {n_cvt} weights of a cvt model as config\.json describes it, "
                              rf"but the file's {n_vit} weights do not match: \d+ missing \(stages\.0\.", capsys)
    assert "unexpected (blocks.0." in message and message.count(", ...") == 2  # the first three names of each, not hundreds


def test_weights_of_another_size_name_the_first_wrong_shape(saved, tmp_path, capsys):
    folder = copy(saved["vit"], tmp_path / "ckpt")
    edit_config(folder, lambda c: {**c, "model_config": {**c["model_config"], "embed_dim": 64}})
    refused(folder, r"model\.safetensors: \d+ of the \d+ weights have another shape than in a vit model as config\.json "
                    r"describes it, for example cls_token: \(1, 1, 128\) in the file, \(1, 1, 64\) in the model", capsys)


# 4. config.json without arch, with an unknown arch, or a model_config with unknown or missing keys


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda c: {k: v for k, v in c.items() if k != "arch"}, r"config\.json: has no 'arch'; expected one of cvt, cvt-linear, pvt, resnet, swin, vit$"),
        (lambda c: {**c, "arch": "deit"}, r"config\.json: has arch 'deit', which is not a cvt_edu architecture; expected one of cvt, cvt-linear, pvt"),
        (lambda c: {**c, "model_config": {**c["model_config"], "emb_dim": 1}},
         r"config\.json: cannot build the vit model it describes: a vit model_config has unknown keys \['emb_dim'\]; "
         r"accepted keys: image_size, patch_size, in_chans, num_classes, embed_dim,"),
        (lambda c: {**c, "model_config": None}, r"config\.json: expected 'model_config', a JSON object of the vit model's settings, got None"),
        (lambda c: {**c, "format_version": "2"}, r"config\.json: expected format_version to be a whole number from 1 to 2, got '2'"),
    ],
    ids=["no-arch", "unknown-arch", "unknown-key", "no-model-config", "version-string"],
)
def test_a_config_the_models_cannot_be_built_from_is_one_line(edit, match, saved, tmp_path, capsys):
    folder = copy(saved["vit"], tmp_path / "ckpt")
    edit_config(folder, edit)
    refused(folder, match, capsys)


def test_a_stage_with_a_misspelt_key_or_a_missing_required_one_is_named(saved, tmp_path, capsys):
    folder = copy(saved["cvt"], tmp_path / "ckpt")
    edit_config(folder, lambda c: {**c, "model_config": {**c["model_config"], "stages": [
        {**s, "stride_kvv": 2} if i == 1 else s for i, s in enumerate(c["model_config"]["stages"])]}})
    refused(folder, r"stage 2 of a cvt model_config has unknown keys \['stride_kvv'\]; accepted keys: embed_dim, depth,", capsys)
    edit_config(folder, lambda c: {**c, "model_config": {"num_classes": 10}})
    refused(folder, r"a cvt model_config lacks the required keys \['stages'\]; accepted keys: stages, in_chans", capsys)


def test_model_from_config_names_unknown_and_missing_keys():
    with pytest.raises(ValueError, match=r"^a vit model_config has unknown keys \['emb_dim', 'depths'\]; accepted keys: image_size"):
        model_from_config("vit", {"emb_dim": 64, "depths": 2})
    with pytest.raises(ValueError, match=r"stage 1 of a pvt model_config has unknown keys \['sr'\] and lacks the required keys "
                                         r"\['embed_dim', 'depth', 'num_heads'\]"):
        model_from_config("pvt", {"stages": [{"sr": 1}]})
    with pytest.raises(ValueError, match=r"unknown architecture 'deit'; expected one of \['cvt', 'cvt-linear', 'pvt', 'resnet', 'swin', 'vit'\]"):
        model_from_config("deit", {})


def test_a_pre_redesign_config_without_its_per_stage_lists_is_one_line(saved, tmp_path, capsys):
    folder = copy(saved["vit"], tmp_path / "ckpt")
    edit_config(folder, lambda c: {"arch": "swin", "model_config": {"embed_dim": 48}})  # no format_version: version 1
    refused(folder, r"config\.json: cannot build the swin model it describes: a swin model_config needs 'stages' "
                    r"\(or, written before cvt_edu 0\.2, 'depths'\); it has neither", capsys)


# 5. the models' forward: float32 (or float16/bfloat16 under autocast) images (B, 3, H, W) only


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {name: build_model(name).eval() for name in ("vit-tiny", "cvt-tiny", "swin-tiny", "pvt-tiny")}


@pytest.mark.parametrize("name", ["vit-tiny", "cvt-tiny", "swin-tiny", "pvt-tiny"])
def test_a_model_refuses_float64_and_uint8_images_with_one_line(name, models):
    model, x = models[name], torch.randn(1, 3, 32, 32)
    with pytest.raises(TypeError, match=r"^expected a torch\.float32 tensor of images \(B, 3, H, W\), the dtype of the model's "
                                        r"weights \(or float16/bfloat16 under torch\.autocast\), got torch\.float64 of shape "
                                        r"\(1, 3, 32, 32\); use images\.to\(torch\.float32\)$"):
        model(x.double())
    with pytest.raises(TypeError, match=r"^expected a float tensor of normalised images \(B, 3, H, W\), got torch\.uint8 of shape "
                                        r"\(1, 3, 32, 32\); .*cvt_edu\.train\.data\.eval_transform\(\)$"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"expected 3 channels, got 1"):
        model(x[:, :1])
    with pytest.raises(ValueError, match=r"expected images of shape \(B, C, H, W\), got a tensor of shape \(3, 32, 32\)"):
        model(x[0])


@pytest.mark.parametrize("name", ["vit-tiny", "pvt-tiny"])
def test_images_of_the_weights_dtype_and_half_images_under_autocast_still_run(name, models):
    model, x = models[name], torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # float32 images in, computed in bfloat16
            torch.testing.assert_close(model(x).float(), reference, atol=0.1, rtol=0.1)
            torch.testing.assert_close(model(x.bfloat16()).float(), reference, atol=0.1, rtol=0.1)
        with pytest.raises(TypeError, match=r"got torch\.bfloat16"):  # without autocast the weights are float32
            model(x.bfloat16())
        double = build_model(name).eval().double()  # a float64 model reads float64 images
        double.load_state_dict(model.state_dict())
        torch.testing.assert_close(double(x.double()).float(), reference, atol=1e-5, rtol=1e-5)


# 6. load_pretrained given a URL


def test_load_pretrained_refuses_a_url_and_gives_the_hub_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"^expected a Hugging Face Hub name such as 'microsoft/cvt-13' or a local folder, got the "
                                         r"URL 'https://huggingface\.co/microsoft/cvt-21/tree/main'; for this model pass its Hub "
                                         r"name 'microsoft/cvt-21'$"):
        load_pretrained("https://huggingface.co/microsoft/cvt-21/tree/main")
    with pytest.raises(ValueError, match=r"got the URL 'http://example\.com/weights/model\.safetensors'$"):
        load_pretrained("http://example.com/weights/model.safetensors")
    assert list(tmp_path.iterdir()) == []  # no folder made from the mangled path


def test_load_pretrained_names_a_malformed_or_truncated_file_of_a_transformers_folder(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "vit",}')
    with pytest.raises(ValueError, match=r"hf/config\.json: expected a JSON object, but it is not valid JSON: .* line 1 column 22"):
        load_pretrained(folder)
    (folder / "config.json").write_text('{"image_size": 32}')
    with pytest.raises(ValueError, match=r"has neither 'arch' \(a cvt_edu checkpoint\) nor 'model_type' \(a transformers model\)"):
        load_pretrained(folder)
    (folder / "config.json").write_text('{"model_type": "vit"}')
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(ValueError, match=r"hf/model\.safetensors: expected a safetensors file of weights, but it is truncated"):
        load_pretrained(folder)


# 7. a truncated trainer_state.pt


def write_trainer_state(folder: Path) -> Path:
    model = nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    save_trainer_state(folder, key={"recipe": {}}, model=model, optimizer=optimizer, scheduler=scheduler, scaler=None,
                       progress={"epoch": 1})
    return folder / TRAINER_STATE


@pytest.mark.parametrize("keep", [0.5, 0.99, 0.0])
def test_a_truncated_trainer_state_is_one_line_naming_the_file(keep, tmp_path):
    path = write_trainer_state(tmp_path)
    assert set(load_trainer_state(tmp_path)) == TRAINER_STATE_KEYS  # the whole file loads
    data = path.read_bytes()[: int(path.stat().st_size * keep)]
    path.write_bytes(data)
    with pytest.raises(ValueError, match=rf"^{str(path)}: expected a trainer state written by cvt_edu, but the file is truncated "
                                         rf"or corrupt \({len(data)} bytes, not a whole zip archive as torch\.save writes\); "
                                         rf"delete it to train from scratch$"):
        load_trainer_state(tmp_path)
    assert path.read_bytes() == data


def test_a_trainer_state_without_its_parts_is_one_line(tmp_path):
    torch.save({"model": {}}, tmp_path / TRAINER_STATE)
    with pytest.raises(ValueError, match=r"trainer_state\.pt: expected a trainer state with key, model, optimizer, rng, scaler, "
                                         r"scheduler, state, but it lacks key, optimizer, rng, scaler, scheduler, state"):
        load_trainer_state(tmp_path)


def test_train_stops_on_a_truncated_trainer_state_before_writing_anything(tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    path = write_trainer_state(out)
    path.write_bytes(path.read_bytes()[:100])
    before = files(out)
    line = cli_error(capsys, "train", "--model", "vit-tiny", "--data", str(data_dir), "--out", str(out), "--quick", "--no-progress")
    assert line.startswith(f"cvt-edu train: error: {path}: expected a trainer state written by cvt_edu, but the file is truncated")
    assert files(out) == before
