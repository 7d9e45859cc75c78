"""The figure texts: one JSON file per language with the same keys and placeholders, every key the code asks for
exists, and t / class_names / notebook_language behave.

nbval runs the chapters in Portuguese only; these tests are what make the Spanish figures safe: every key
a chapter or the package asks for is in both files, with the same placeholders."""

import json
import re
from pathlib import Path

import pytest

from cvt_edu.course import i18n
from cvt_edu.course.i18n import class_names, languages, notebook_language, parse_strings, placeholders, strings, t
from cvt_edu.lab.shift import SHIFT_MODES

ROOT = Path(__file__).resolve().parents[1]
T_CALL = re.compile(r"""\bt\(\s*(["'])(\w+)\1""")  # t("key" ...) with a literal key


def code_texts() -> dict[str, str]:
    """Source of every package module and of every notebook code cell (both languages), by name; cvt_edu/tp has
    its own catalogue (cvt_edu/tp/strings), checked by test_the_tp_checks_ask_only_for_their_own_keys."""
    texts = {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in sorted((ROOT / "cvt_edu").rglob("*.py"))
             if "tp" not in p.relative_to(ROOT / "cvt_edu").parts[:1]}
    for path in sorted((ROOT / "notebooks").glob("*/*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        texts[str(path.relative_to(ROOT))] = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return texts


def test_every_language_has_the_same_keys_and_placeholders():
    assert set(languages()) == {"en", "es", "pt"}
    pt = strings("pt")
    for lang in ("es", "en"):
        other = strings(lang)
        assert set(other) == set(pt), f"{lang}: missing {sorted(set(pt) - set(other))}, extra {sorted(set(other) - set(pt))}"
        for key, text in pt.items():
            assert placeholders(other[key]) == placeholders(text), f"{lang}: {key!r}"
            assert other[key].strip(), f"{lang}: {key!r} is empty"


def test_every_key_the_package_and_the_chapters_ask_for_exists():
    keys = set(strings("pt"))
    asked = {f"{name}: {m.group(2)}" for name, text in code_texts().items() for m in T_CALL.finditer(text)}
    assert len(asked) > 100  # the scan finds the calls
    assert sorted(a for a in asked if a.split(": ")[1] not in keys) == []
    assert set(SHIFT_MODES) <= keys  # the shift figures name the modes with t(mode)


def test_the_tp_checks_ask_only_for_their_own_keys():
    keys = set(json.loads((ROOT / "cvt_edu" / "tp" / "strings" / "pt.json").read_text(encoding="utf-8")))
    asked = {f"{p.name}: {m.group(2)}" for p in sorted((ROOT / "cvt_edu" / "tp").glob("*.py"))
             for m in T_CALL.finditer(p.read_text(encoding="utf-8"))}
    assert len(asked) > 10
    assert sorted(a for a in asked if a.split(": ")[1] not in keys) == []


def test_every_key_is_asked_for_somewhere():
    asked = {m.group(2) for text in code_texts().values() for m in T_CALL.finditer(text)} | set(SHIFT_MODES)
    assert [k for k in strings("pt") if k not in asked and not k.startswith("class_")] == []  # class_names asks for class_*


def test_t_fills_placeholders_and_names_what_is_missing():
    assert t("maps_stage", "pt", i=1, h=16, w=16, c=48) == "estágio 1: 16×16 tokens, C = 48"
    assert t("maps_stage", "es") == strings("es")["maps_stage"] and "{i}" in t("maps_stage", "es")  # no fields: the template
    assert t("epoch", "en", unused=1) == "epoch"
    with pytest.raises(KeyError, match=r"needs the placeholders \['w'\]"):
        t("maps_image", "pt", h=3)
    with pytest.raises(KeyError, match="no text 'nothing' in language 'es'"):
        t("nothing", "es")
    with pytest.raises(ValueError, match="no strings for language 'fr'"):
        t("epoch", "fr")


def test_strings_are_read_only():
    with pytest.raises(TypeError):
        strings("pt")["epoch"] = "x"


def test_a_string_file_with_a_key_twice_or_a_non_text_is_refused():
    with pytest.raises(ValueError, match=r"pt\.json: key 'epoch' is defined twice"):
        parse_strings('{"epoch": "época", "loss": "perda", "epoch": "epoca"}', "pt.json")
    with pytest.raises(ValueError, match="es.json: expected a JSON object"):
        parse_strings('{"epoch": 3}', "es.json")


def test_class_names_in_each_language():
    assert class_names(["cat", "dog", "unknown"], "pt") == ["gato", "cachorro", "unknown"]
    assert class_names(["airplane", "truck"], "es") == ["avión", "camión"]
    assert class_names(["airplane"], "en") == ["airplane"]


def test_notebook_language_from_the_environment_then_the_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(i18n.LANG_ENV, "es")
    assert notebook_language() == "es" and t("epoch") == strings("es")["epoch"]
    monkeypatch.delenv(i18n.LANG_ENV)
    (tmp_path / "es").mkdir()
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "es")
    assert notebook_language() == "es"
    monkeypatch.chdir(tmp_path / "other")
    assert notebook_language() == "pt"  # neither: outside Colab, the default
