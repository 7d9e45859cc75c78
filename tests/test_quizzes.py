"""The chapters' quizzes: shipped in the package, checked, fit for grading, and safe to put in a page.

Every quiz file of both languages loads through ``load_quiz``; pt and es ask the same questions; the
correct answers are spread over the positions; numeric questions check their answers exactly; the
text reaches jupyterquiz only through the sanitiser; ``show_quiz`` shuffles and never uses the network.
"""

import fnmatch
import json
import re
import shutil
import socket
import urllib.request
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

from cvt_edu.course import quiz
from cvt_edu.course.i18n import LANG_ENV
from cvt_edu.course.quiz import chapters, load_quiz, precision_needed, sanitize, show_quiz, validate_quiz

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks" / "pt").glob("[0-9][0-9]_*.ipynb"))  # chapters, not the TPs
QUIZZES = [(lang, chapter) for lang in ("pt", "es") for chapter in NOTEBOOKS]

ATTACKS = {
    "script": "</script><script>alert(1)</script>",
    "img": '<img src=x onerror="alert(1)">',
    "svg": "<svg onload=alert(1)>",
    "link": '<a href="javascript:alert(1)">ver</a>',
    "markdown_link": "[ver](javascript:alert(1))",
    "attribute": '<code onclick="alert(1)">x</code>',
}
SAFE_TAG = re.compile(r"</?(code|em|strong|b|i|sub|sup)>|<br>")


def live_markup(html: str) -> list[str]:
    """What a browser (or jupyterquiz's link syntax) would still read as markup beyond the safe bare tags."""
    tags = [tag for tag in re.findall(r"<[^<>]*>?", html) if not SAFE_TAG.fullmatch(tag)]
    return tags + re.findall(r"\]\(|<http", html)


def correct_position(q: dict) -> int:
    return [a.get("correct", False) for a in q["answers"]].index(True)


def rounded(value: float, digits: int) -> float:
    """JavaScript's ``Number(value.toPrecision(digits))``, as jupyterquiz compares numbers."""
    return float(f"{value:.{digits}g}")


def shown(chapter: str, lang: str) -> str:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    InteractiveShell.instance()
    with capture_output() as captured:
        show_quiz(chapter, lang)
    return " ".join(text for o in captured.outputs for text in o.data.values())


def shown_script(text: str) -> str:
    """The question list jupyterquiz wrote into its script, as JSON text."""
    match = re.search(r"var questions\w+=(\[.*?\]);\n\nif \(typeof Question", text, re.DOTALL)
    assert match, "jupyterquiz embeds the questions in its script"
    return match[1]


def shown_questions(text: str) -> list[dict]:
    return json.loads(shown_script(text))


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the quiz tried to use the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_every_chapter_has_a_quiz_in_each_language_inside_the_package():
    for lang in ("pt", "es"):
        assert chapters(lang) == tuple(NOTEBOOKS)
    assert not (ROOT / "notebooks" / "pt" / "quizzes").exists(), "the quizzes live in the package only"


def test_the_wheel_ships_the_quiz_files():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")  # (tomllib is Python 3.11+)
    globs = json.loads(re.search(r'^"cvt_edu.course" = (\[.*\])$', pyproject, re.MULTILINE)[1])
    folder = resources.files("cvt_edu.course") / "quizzes"
    for lang, chapter in QUIZZES:
        assert any(fnmatch.fnmatch(f"quizzes/{lang}/{chapter}.json", g) for g in globs), (lang, chapter)
        assert (folder / lang / f"{chapter}.json").is_file()


@pytest.mark.parametrize(("lang", "chapter"), QUIZZES, ids=lambda x: x)
def test_every_quiz_loads_with_six_or_more_questions_and_feedback_on_every_answer(lang, chapter):
    questions = load_quiz(chapter, lang)
    assert len(questions) >= 6
    assert sum(q["type"] == "multiple_choice" for q in questions) >= 2
    for q in questions:
        assert all(a["feedback"].strip() for a in q["answers"])


@pytest.mark.parametrize("chapter", NOTEBOOKS)
def test_pt_and_es_ask_the_same_questions(chapter):
    pt, es = load_quiz(chapter, "pt"), load_quiz(chapter, "es")
    assert [q["type"] for q in pt] == [q["type"] for q in es]
    for p, e in zip(pt, es, strict=True):
        assert len(p["answers"]) == len(e["answers"])
        assert [a.get("correct", False) for a in p["answers"]] == [a.get("correct", False) for a in e["answers"]]
        if p["type"] == "numeric":
            numbers = [[(a["type"], a.get("value"), a.get("range")) for a in q["answers"]] for q in (p, e)]
            assert numbers[0] == numbers[1] and p["precision"] == e["precision"]


def test_correct_answers_are_spread_over_the_positions():
    course = Counter()
    for lang, chapter in QUIZZES:
        positions = Counter(correct_position(q) for q in load_quiz(chapter, lang) if q["type"] == "multiple_choice")
        assert max(positions.values()) <= sum(positions.values()) / 2, (lang, chapter, positions)
        course += positions
    assert max(course.values()) <= sum(course.values()) / 2, course
    assert len(course) >= 3


@pytest.mark.parametrize(("lang", "chapter"), QUIZZES, ids=lambda x: x)
def test_numeric_questions_check_the_correct_value_exactly_and_have_a_default(lang, chapter):
    numeric = [q for q in load_quiz(chapter, lang) if q["type"] == "numeric"]
    if chapter != "00_how_to_use":
        assert numeric, "every chapter teaches a number and asks for one"
    for q in numeric:
        p = q["precision"]
        assert isinstance(p, int) and p >= 1
        assert any(a["type"] == "default" and a["feedback"] for a in q["answers"])
        values = [a["value"] for a in q["answers"] if a["type"] == "value"]
        assert len({rounded(v, p) for v in values}) == len(values), "two answers jupyterquiz cannot tell apart"
        for a in q["answers"]:
            if a["type"] == "value" and a.get("correct"):
                assert rounded(a["value"], p) == a["value"]
                assert p == precision_needed(a["value"]), "precision: the digits the answer needs"


def test_precision_needed_counts_the_digits_jupyterquiz_compares():
    assert [precision_needed(v) for v in (2401, 4225, 100, 0, 0.5, 1.25, 13.8)] == [4, 4, 3, 1, 1, 3, 3]


def numeric_question(precision, value=2401):
    return {"question": "Quantos?", "type": "numeric", "precision": precision, "answers": [
        {"type": "value", "value": value, "correct": True, "feedback": "Isso."},
        {"type": "default", "feedback": "Não."}]}


def choice_question(**change):
    q = {"question": "Qual?", "type": "multiple_choice", "answers": [
        {"answer": "A", "correct": True, "feedback": "Isso."}, {"answer": "B", "correct": False, "feedback": "Não."}]}
    q.update(change)
    return q


@pytest.mark.parametrize(("questions", "message"), [
    ({"question": "Qual?"}, "expected a non-empty list"),
    ([{"type": "multiple_choice", "answers": [{"answer": "A", "correct": True, "feedback": "x"}]}], "'question'"),
    ([choice_question(type=None)], "'type' must be one of"),
    ([choice_question(answers=[])], "'answers'"),
    ([choice_question(answers=[{"answer": "A", "correct": True}])], "its own 'feedback'"),
    ([choice_question(answers=[{"answer": "A", "feedback": "x"}, {"answer": "B", "feedback": "y"}])],
     "exactly one correct answer"),
    ([numeric_question(0)], "'precision' >= 1"),
    ([numeric_question(1)], "needs 4"),
    ([choice_question(question="Qual? <img src=x onerror=alert(1)>")], "not allowed"),
    ([choice_question(extra="</script>")], "unknown fields"),
], ids=["not_a_list", "no_question", "no_type", "no_answers", "no_feedback", "no_correct", "precision_0",
        "precision_too_low", "unsafe_markup", "unknown_field"])
def test_validation_names_the_file_and_the_question(questions, message):
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        validate_quiz(questions, "quizzes/pt/99_x.json")
    assert str(error.value).startswith("quizzes/pt/99_x.json")
    assert "\n" not in str(error.value)
    if isinstance(questions, list):
        assert "question 1" in str(error.value)


@pytest.mark.parametrize("attack", ATTACKS.values(), ids=ATTACKS.keys())
def test_validation_refuses_and_the_sanitiser_neutralises_the_attacks(attack):
    for field in ("question", "answer", "feedback"):
        q = choice_question()
        target = q if field == "question" else q["answers"][0]
        target[field] = f"texto {attack}"
        with pytest.raises(ValueError, match="not allowed"):
            validate_quiz([q])
    safe = sanitize(attack)
    assert live_markup(safe) == [], safe
    assert "<" not in safe.replace("</code>", ""), "nothing of the attack is markup any more"


def test_the_sanitiser_keeps_the_safe_subset_and_math():
    text = "Use <code>x</code>, <em>e</em>, <strong>s</strong>, <b>b</b>, <i>i</i>, H<sub>1</sub>, N<sup>2</sup><br>"
    assert sanitize(text) == text
    assert sanitize("<br/>") == "<br>"
    assert sanitize("$N < 2C$ & $[0, 1]$") == "$N &lt; 2C$ &amp; $&#91;0, 1&#93;$"
    assert sanitize('<em class="x">') == "&lt;em class=&quot;x&quot;&gt;"


def test_show_quiz_shuffles_the_answers_and_uses_no_network(no_network):
    text = shown("05_vit_vs_cvt_cifar10", "es")
    assert 'data-shuffleanswers="True"' in text
    first = load_quiz("05_vit_vs_cvt_cifar10", "es")[0]["question"]
    assert shown_questions(text)[0]["question"] == sanitize(first)


def test_show_quiz_sanitises_whatever_reaches_the_page(monkeypatch, no_network):
    q = choice_question(question=ATTACKS["script"] + ATTACKS["svg"], code="</script><script>alert(1)</script>")
    q["answers"][0]["answer"] = ATTACKS["img"] + ATTACKS["link"]
    q["answers"][1]["feedback"] = ATTACKS["markdown_link"]
    monkeypatch.setattr(quiz, "load_quiz", lambda chapter, lang: [q])  # as if a bad file had slipped through
    text = shown("00_how_to_use", "pt")
    assert not re.search(r"</?script|<img|<svg|<a ", shown_script(text), re.IGNORECASE)
    embedded = shown_questions(text)[0]
    assert embedded["question"] == sanitize(q["question"])
    texts = [embedded["question"], embedded["code"]] + [a[f] for a in embedded["answers"] for f in ("answer", "feedback")]
    assert all(live_markup(t) == [] for t in texts), texts


def test_unknown_chapters_and_paths_are_refused():
    with pytest.raises(ValueError, match="no quiz for chapter '99_nothing' in 'pt'"):
        load_quiz("99_nothing", "pt")
    with pytest.raises(ValueError, match="no quiz for chapter"):
        load_quiz("../pt/00_how_to_use", "es")
    with pytest.raises(ValueError, match="quiz language must be one of"):
        load_quiz("00_how_to_use", "en")


@pytest.mark.parametrize("lang", ["pt", "es"])
def test_a_notebook_copied_alone_into_an_empty_folder_shows_its_quiz(lang, tmp_path, monkeypatch, no_network):
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    notebook = ROOT / "notebooks" / lang / "01_images_as_sequences.ipynb"
    shutil.copy(notebook, tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(LANG_ENV, lang)  # what Colab reads from the notebook's metadata
    cells = [c for c in json.loads(notebook.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
    InteractiveShell.instance()
    with capture_output() as captured:
        exec("".join(cells[-1]["source"]), {})  # the chapter's quiz cell
    text = " ".join(text for o in captured.outputs for text in o.data.values())
    expected = load_quiz(notebook.stem, lang)
    assert [q["question"] for q in shown_questions(text)] == [sanitize(q["question"]) for q in expected]
    assert ("Correto!" if lang == "pt" else "¡Correcto!") in text
