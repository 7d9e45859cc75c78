"""The chapters: the same notebooks and code in both languages, a setup cell that works in Colab, committed outputs.

nbval runs every notebook in quick mode (see conftest.py); these tests check what nbval does not.
"""

import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest
import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "[0-9][0-9]_*.ipynb"  # the chapters; the practical assignments tp*.ipynb: tests/test_tp_notebooks.py
PT = sorted((ROOT / "notebooks" / "pt").glob(CHAPTER))
ES = sorted((ROOT / "notebooks" / "es").glob(CHAPTER))
STUDENT_TPS = sorted((ROOT / "notebooks").glob("*/tp*.ipynb"))
INSTRUCTOR_TPS = sorted((ROOT / "instructor").glob("*/tp*.ipynb"))
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
REPO_URL = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]["url"]
BADGE = re.compile(r"^\[!\[[^\]]+\]\(https://colab\.research\.google\.com/assets/colab-badge\.svg\)\]"
                   r"\(https://colab\.research\.google\.com/github/(?P<repo>[^/]+/[^/]+)/blob/(?P<tag>[^/]+)"
                   r"/notebooks/(?P<lang>[^/]+)/(?P<file>[^/)]+)\)$")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def release_tool():
    spec = importlib.util.spec_from_file_location("release", ROOT / "tools" / "release.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LANG_LINE = 'LANG = "{}"'  # the setup cell's one line that differs between pt and es


def code_cells(path: Path) -> list[str]:
    """Code of every code cell, comments and blank lines removed; in the setup cell, the line that sets the
    notebook's own language (``LANG = "pt"`` in notebooks/pt) reads ``LANG = "<lang>"``, so that the code of
    both languages compares equal exactly when that is the one line that differs and it names each
    notebook's folder."""
    cells = []
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] == "code":
            lines = (re.sub(r"\s*#.*$", "", line).rstrip() for line in "".join(cell["source"]).splitlines())
            if not cells:
                own = LANG_LINE.format(path.parent.name)
                lines = (LANG_LINE.format("<lang>") if line == own else line for line in lines)
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


@pytest.mark.parametrize("path", PT + ES + STUDENT_TPS + INSTRUCTOR_TPS, ids=rel)
def test_setup_cell_installs_the_release_of_the_package_version_and_sets_the_notebooks_language(path):
    first = nbformat.read(path, as_version=4).cells[0]
    lang = path.parent.name
    assert re.findall(r'^VERSION = "([^"]*)"', first.source, re.M) == [VERSION], "the version of pyproject.toml"
    assert 'f"git+{REPO_URL}@v{VERSION}"' in first.source, "pip installs the tag v<version>"
    assert re.findall(r'^LANG = "([^"]*)"', first.source, re.M) == [lang], "the notebook's own language"
    assert 'os.environ["CVT_EDU_LANG"] = LANG' in first.source and "setup_notice(LANG, DEVICE, QUICK)" in first.source


def test_the_language_line_is_the_only_difference_the_code_comparison_allows(tmp_path):
    pt, es = (ROOT / "notebooks" / "pt" / PT[0].name), (ROOT / "notebooks" / "es" / PT[0].name)
    assert code_cells(pt) == code_cells(es)
    nb = nbformat.read(es, as_version=4)
    nb.cells[0].source = nb.cells[0].source.replace('LANG = "es"', 'LANG = "pt"')  # a Spanish notebook set to pt
    (tmp_path / "es").mkdir()
    nbformat.write(nb, tmp_path / "es" / es.name)
    assert code_cells(pt) != code_cells(tmp_path / "es" / es.name)


@pytest.mark.parametrize("path", PT + ES + STUDENT_TPS, ids=rel)
def test_colab_badge_opens_this_notebook_at_the_release_of_the_package_version(path):
    cells = nbformat.read(path, as_version=4).cells
    badge = cells[1]
    assert badge.cell_type == "markdown" and "remove-cell" not in badge.metadata.get("tags", [])
    match = BADGE.match(badge.source)
    assert match, f"cell 1 is the Colab badge, got {badge.source[:80]!r}"
    assert match["repo"] == REPO_URL.removeprefix("https://github.com/")
    assert match["tag"] == f"v{VERSION}"
    assert (match["lang"], match["file"]) == (path.parent.name, path.name)
    assert cells[2].source.startswith("# "), "the title follows the badge"
    assert sum("colab-badge.svg" in c.source for c in cells) == 1


@pytest.mark.parametrize("path", INSTRUCTOR_TPS, ids=rel)
def test_instructor_versions_have_no_badge(path):
    assert not any("colab.research.google.com" in c.source for c in nbformat.read(path, as_version=4).cells)


def test_the_release_script_has_nothing_left_to_rewrite():
    assert release_tool().out_of_date(ROOT) == [], "run python tools/release.py"


def test_every_notebook_has_a_measured_cpu_time_and_the_setup_cell_tells_it(capsys):
    from cvt_edu.course.colab import chapter_seconds, setup_notice

    for path in PT + STUDENT_TPS:
        assert chapter_seconds(path.stem) > 0
    assert chapter_seconds("05_vit_vs_cvt_cifar10") > 4 * 3600  # 600 epochs of both models, trained apart
    text = setup_notice("es", "cpu", False, chapter="05_vit_vs_cvt_cifar10")
    assert text == capsys.readouterr().out.strip()
    assert "4,7 h" in text and "Entorno de ejecución > Cambiar tipo de entorno de ejecución > GPU T4" in text
    assert "CVT_EDU_QUICK=1" in text
    pt = setup_notice("pt", "cpu", False, chapter="00_how_to_use")
    assert "6 s" in pt and "Ambiente de execução > Alterar o tipo de ambiente de execução" in pt
    assert setup_notice("pt", "cuda", False, chapter="00_how_to_use") is None
    assert setup_notice("pt", "cpu", True, chapter="00_how_to_use") is None
    assert capsys.readouterr().out.count("GPU T4") == 1  # nothing printed on a GPU or in quick mode
    assert "horas" in setup_notice("pt", "cpu", False, chapter="no_such_chapter")
    with pytest.raises(ValueError, match="expected the chapter's language"):
        setup_notice("fr", "cpu", False)
