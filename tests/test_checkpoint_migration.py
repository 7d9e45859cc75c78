"""Checkpoints written before the redesign (no format_version) still load: weights renamed, configs rewritten.

The fixtures in tests/fixtures/pre_redesign/<arch>/ were saved by the code before the redesign
(tests/fixtures/pre_redesign/make_fixture.py), with the logits that code computed on a fixed input.
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cvt_edu.models import build_model, config_to_dict
from cvt_edu.pretrained.load import load_pretrained
from cvt_edu.train.checkpoint import FORMAT_VERSION, load_checkpoint, migrate_config, migrate_state_dict, save_pretrained

FIXTURES = Path(__file__).parent / "fixtures" / "pre_redesign"
ARCHS = ["vit", "cvt", "swin", "pvt"]


@pytest.mark.parametrize("arch", ARCHS)
def test_a_pre_redesign_checkpoint_loads_and_gives_the_old_logits(arch):
    folder = FIXTURES / arch
    assert "format_version" not in json.loads((folder / "config.json").read_text())  # written by the old code
    model, config = load_checkpoint(folder)
    io = load_file(str(folder / "io.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(model(io["images"]), io["logits"], rtol=0, atol=1e-6)
    assert config["format_version"] == FORMAT_VERSION and config["arch"] == arch
    assert config["name"] == f"{arch}-pre-redesign-fixture"
    if arch in ("swin", "pvt"):  # the per-stage lists became one dict per stage
        assert len(config["model_config"]["stages"]) == 2 and "depths" not in config["model_config"]


@pytest.mark.parametrize("arch", ARCHS)
def test_the_migration_renames_attention_weights_and_keeps_current_names(arch):
    old = load_file(str(FIXTURES / arch / "model.safetensors"))
    new = migrate_state_dict(old)
    renamed = [k for k in old if k not in new]
    assert bool(renamed) == (arch in ("vit", "cvt"))  # Swin's and PVT's names did not change
    assert not any(".qkv.linear." in k or (".attn.proj." in k) for k in new)
    assert any(k.endswith("attn.qkv.q.weight") for k in new) and any(k.endswith("attn.mha.proj.weight") for k in new)
    assert migrate_state_dict(new) == new  # current names are left alone


def test_the_registry_configs_are_already_current():
    for name in ("swin-tiny", "pvt-tiny", "cvt-tiny", "vit-tiny"):
        model = build_model(name)
        config = json.loads(json.dumps(config_to_dict(model.config)))  # as config.json holds it
        assert migrate_config(name.split("-")[0], config) == config


def test_a_saved_config_carries_the_format_version_and_a_newer_one_is_refused(tmp_path):
    model = build_model("swin-tiny").eval()
    save_pretrained(model, tmp_path, name="swin-tiny")
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["format_version"] == FORMAT_VERSION and config["model_config"]["stages"][1]["embed_dim"] == 96
    loaded, labels = load_pretrained(tmp_path)  # the cvt_edu branch of load_pretrained reads it too
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images)) and len(labels) == 10
    (tmp_path / "config.json").write_text(json.dumps({**config, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(ValueError, match=rf"format_version {FORMAT_VERSION + 1} is newer than this cvt_edu reads"):
        load_checkpoint(tmp_path)


def test_a_version_1_config_with_uneven_stage_lists_is_a_clear_error():
    with pytest.raises(ValueError, match=r"one entry per stage in every list, got lengths"):
        migrate_config("pvt", {"embed_dims": [8, 16], "depths": [1], "num_heads": [1, 2]})
