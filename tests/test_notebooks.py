"""The chapters: the same notebooks and code in both languages, a setup cell that works in Colab, committed outputs.

nbval runs every notebook in quick mode (see conftest.py); these tests check what nbval does not.
"""

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "[0-9][0-9]_*.ipynb"  # the chapters; the practical assignments tp*.ipynb: tests/test_tp_notebooks.py
PT = sorted((ROOT / "notebooks" / "pt").glob(CHAPTER))
ES = sorted((ROOT / "notebooks" / "es").glob(CHAPTER))


def code_cells(path: Path) -> list[str]:
    """Code of every code cell, comments and blank lines removed."""
    cells = []
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] == "code":
            lines = (re.sub(r"\s*#.*$", "", line).rstrip() for line in "".join(cell["source"]).splitlines())
            cells.append("\n".join(line for line in lines if line))
    return cells


def test_both_languages_have_the_same_chapters():
    assert PT, "no notebooks in notebooks/pt"
    assert [p.name for p in PT] == [p.name for p in ES]


@pytest.mark.parametrize("pt", PT, ids=lambda p: p.name)
def test_both_languages_have_the_same_code(pt):
    assert code_cells(pt) == code_cells(ROOT / "notebooks" / "es" / pt.name)


@pytest.mark.parametrize("path", PT + ES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_setup_cell_installs_cvt_edu_from_the_repository_and_picks_the_device(path):
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    first = json.loads(path.read_text(encoding="utf-8"))["cells"][0]
    assert first["cell_type"] == "code", "the first cell is the setup cell"
    setup = code_cells(path)[0]
    assert f'REPO_URL = "{url}"' in setup, "the setup cell installs from the repository named in _config.yml"
    assert 'find_spec("cvt_edu") is None' in setup and "git+{REPO_URL}" in setup
    assert "DEVICE = pick_device()" in setup and "QUICK = quick_mode()" in setup


@pytest.mark.parametrize("path", PT + ES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebooks_are_committed_with_the_outputs_of_a_full_run(path):
    cells = [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
    assert all(c.get("outputs") for c in cells), "every code cell has outputs"
    text = json.dumps([c["outputs"] for c in cells])
    assert "quick mode: False" in text, "outputs come from a full run, not quick mode"
    assert "image/png" in text


@pytest.mark.parametrize("path", PT + ES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_chapter_has_goals_exercises_with_hidden_solutions_and_a_quiz(path):
    from cvt_edu.course.quiz import load_quiz

    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["metadata"]["cvt_edu"]["lang"] == path.parent.name
    markdown = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert markdown.count("<details>") >= 3, "3 or more exercises with hidden solutions"
    assert code_cells(path)[-1].endswith(f'show_quiz("{path.stem}")'), "the chapter ends with its quiz"
    questions = load_quiz(path.stem, path.parent.name)  # shipped in the package (tests/test_quizzes.py checks them)
    assert len(questions) >= 6


@pytest.mark.parametrize("lang", ["pt", "es"])
def test_quiz_interface_is_in_the_chapters_language(lang, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from cvt_edu.course.quiz import show_quiz

    InteractiveShell.instance()
    monkeypatch.chdir(ROOT / "notebooks" / lang)
    with capture_output() as captured:
        show_quiz(PT[0].stem)
    shown = " ".join(str(o.data) for o in captured.outputs)
    assert "questions" in shown
    for english in ("Correct!", "Incorrect -- try again.", "Type numeric answer here:", "Type your answer here:"):
        assert english not in shown
    assert ("Correto!" if lang == "pt" else "¡Correcto!") in shown
