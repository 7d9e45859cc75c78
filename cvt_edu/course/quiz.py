"""Chapter quizzes, shown with ``jupyterquiz`` in the chapter's language.

The questions ship inside the package, one JSON file per language and chapter
(``cvt_edu/course/quizzes/<lang>/<chapter>.json``, jupyterquiz's format, with feedback on every
answer), and are read with :mod:`importlib.resources`: a quiz works wherever ``cvt_edu`` is
installed (Jupyter, Colab, a notebook copied alone into any folder) and never touches the
network. :func:`load_quiz` checks every file the same way (:func:`validate_quiz`).

jupyterquiz writes the quiz text into the page as HTML, so :func:`show_quiz` hands it only
sanitised text (:func:`sanitize`): everything is escaped, then only ``<code>``, ``<em>``,
``<strong>``, ``<b>``, ``<i>``, ``<br>``, ``<sub>`` and ``<sup>`` without attributes come back;
math (``$...$``) stays text, for MathJax. jupyterquiz also writes a few fixed English strings
into its JavaScript; :func:`show_quiz` replaces them, so everything the student sees is in the
chapter's language, and it shuffles the answers (the files also vary where the correct one is).
"""

from __future__ import annotations

import functools
import html
import json
import math
import re
from importlib import resources

from .i18n import LANGUAGES, notebook_language

__all__ = ["SAFE_TAGS", "UI_STRINGS", "chapters", "load_quiz", "precision_needed", "sanitize", "show_quiz",
           "validate_quiz"]

_FOLDER = "quizzes"
SAFE_TAGS = ("code", "em", "strong", "b", "i", "br", "sub", "sup")  # allowed back, without attributes

# jupyterquiz's fixed interface strings (as JavaScript literals) -> each language's.
UI_STRINGS: dict[str, dict[str, str]] = {
    "pt": {
        '"Correct!"': '"Correto!"',
        'jaxify("Correct")': 'jaxify("Correto!")',
        '"Incorrect -- try again."': '"Incorreto. Tente de novo."',
        '"Incorrect. Try again."': '"Incorreto. Tente de novo."',
        '"Type numeric answer here:"': '"Digite a resposta numérica:"',
        '"Type your answer here:"': '"Digite sua resposta:"',
    },
    "es": {
        '"Correct!"': '"¡Correcto!"',
        'jaxify("Correct")': 'jaxify("¡Correcto!")',
        '"Incorrect -- try again."': '"Incorrecto. Inténtalo de nuevo."',
        '"Incorrect. Try again."': '"Incorrecto. Inténtalo de nuevo."',
        '"Type numeric answer here:"': '"Escribe la respuesta numérica:"',
        '"Type your answer here:"': '"Escribe tu respuesta:"',
    },
}

_TYPES = ("multiple_choice", "numeric")
_QUESTION_KEYS = {"question", "type", "answers", "precision", "code"}
_ANSWER_KEYS = {"answer", "correct", "feedback", "type", "value", "range", "code"}
_NUMERIC_KINDS = ("value", "range", "default")
_TEXT_FIELDS = ("question", "answer", "feedback")  # written into the page as HTML (``code`` is escaped whole)

_SAFE = "|".join(tag for tag in SAFE_TAGS if tag != "br")
_SAFE_TAG = re.compile(rf"</?(?:{_SAFE})>|<br\s*/?>")
_SAFE_TAG_ESCAPED = re.compile(rf"&lt;(/?)({_SAFE})&gt;|&lt;(br)\s*/?&gt;")
_TAG_LIKE = re.compile(r"<(?=[/!?A-Za-z])[^<>]*>?")  # what a browser would read as markup
_MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\(")  # jupyterquiz turns [text](url) into a link


def sanitize(text: str) -> str:
    """``text`` as HTML that can only format: escaped, then the :data:`SAFE_TAGS` back, bare.

    Everything else (``<script>``, ``<img onerror=...>``, ``<svg onload=...>``, attributes on the
    allowed tags, entities) comes out as visible text. ``[`` and ``]`` become entities, so
    jupyterquiz cannot turn ``[text](javascript:...)`` into a link; MathJax still reads the
    ``$...$`` math, since it sees the page's text. (The standard library's :func:`html.escape`
    and a tiny allow-list: the subset is small and fixed, and no installed sanitiser fits.)
    """
    escaped = html.escape(text, quote=True)
    restored = _SAFE_TAG_ESCAPED.sub(lambda m: "<br>" if m[3] else f"<{m[1]}{m[2]}>", escaped)
    return restored.replace("[", "&#91;").replace("]", "&#93;")


def precision_needed(value: float) -> int:
    """The significant digits jupyterquiz's ``precision`` needs so that ``value`` is checked exactly.

    jupyterquiz compares ``Number(submission.toPrecision(p))`` with ``value.toPrecision(p)``, so with
    too few digits it accepts wrong numbers (2401 at ``p = 1`` takes anything from 1500 to 2499).
    An integer needs all its digits (4225 -> 4, 100 -> 3); any other number the fewest that
    round it to itself (0.5 -> 1, 1.25 -> 3).
    """
    if float(value).is_integer():
        return len(str(abs(int(value))))
    return next(p for p in range(1, 18) if _round(value, p) == value)


def _round(value: float, digits: int) -> float:
    """``value`` rounded to ``digits`` significant digits (JavaScript's ``toPrecision``)."""
    return float(f"{value:.{digits}g}")


@functools.cache
def chapters(lang: str) -> tuple[str, ...]:
    """The chapters that have a quiz in ``lang`` (notebook names without ``.ipynb``), sorted."""
    if lang not in LANGUAGES:
        raise ValueError(f"quiz language must be one of {list(LANGUAGES)}, got {lang!r}")
    folder = resources.files(__package__) / _FOLDER / lang
    return tuple(sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json")))


def load_quiz(chapter: str, lang: str | None = None) -> list[dict]:
    """The questions of ``chapter``'s quiz, read from the package and checked (:func:`validate_quiz`).

    Args:
        chapter: the notebook's name without ``.ipynb``, e.g. ``"05_vit_vs_cvt_cifar10"``.
        lang: "pt" or "es"; ``None`` uses :func:`cvt_edu.course.i18n.notebook_language`.

    Returns:
        jupyterquiz's question list, as stored (:func:`show_quiz` sanitises it on the way to HTML).

    Raises:
        ValueError: for another language, a chapter without a quiz, or a malformed quiz file
            (the message names the file and the question).
    """
    lang = lang or notebook_language()
    known = chapters(lang)
    if chapter not in known:
        raise ValueError(f"no quiz for chapter {chapter!r} in {lang!r}: expected one of {list(known)}")
    resource = resources.files(__package__) / _FOLDER / lang / f"{chapter}.json"
    try:
        questions = json.loads(resource.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{resource}: not valid JSON ({error})") from None
    validate_quiz(questions, str(resource))
    return questions


def validate_quiz(questions: object, source: str = "quiz") -> None:
    """Check a quiz in jupyterquiz's format, as every quiz of the course must be.

    A non-empty list of questions, each with its text, a type ("multiple_choice": exactly one
    correct answer; "numeric": an integer ``precision >= 1`` that checks the correct values
    exactly, see :func:`precision_needed`, and a "default" answer), answers that all carry their
    own feedback, no unknown field, and text with no markup beyond the :data:`SAFE_TAGS`.

    Raises:
        ValueError: one line naming ``source`` (the file), the question and what is wrong.
    """
    if not isinstance(questions, list) or not questions:
        raise ValueError(f"{source}: expected a non-empty list of questions, got {type(questions).__name__}")
    for i, q in enumerate(questions, 1):
        if not isinstance(q, dict):
            raise ValueError(f"{source}: question {i}: expected an object, got {type(q).__name__}")
        where = f"{source}: question {i} ({str(q.get('question', ''))[:40]!r})"
        _check_question(q, where)


def _check_question(q: dict, where: str) -> None:
    unknown = set(q) - _QUESTION_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown fields {sorted(unknown)}; expected only {sorted(_QUESTION_KEYS)}")
    if not isinstance(q.get("question"), str) or not q["question"].strip():
        raise ValueError(f"{where}: needs the question's text in 'question'")
    if q.get("type") not in _TYPES:
        raise ValueError(f"{where}: 'type' must be one of {list(_TYPES)}, got {q.get('type')!r}")
    answers = q.get("answers")
    if not isinstance(answers, list) or not answers or not all(isinstance(a, dict) for a in answers):
        raise ValueError(f"{where}: needs a non-empty list of 'answers'")
    _check_markup(q, where)
    for j, a in enumerate(answers, 1):
        unknown = set(a) - _ANSWER_KEYS
        if unknown:
            raise ValueError(f"{where}, answer {j}: unknown fields {sorted(unknown)}")
        if not isinstance(a.get("feedback"), str) or not a["feedback"].strip():
            raise ValueError(f"{where}, answer {j}: every answer needs its own 'feedback'")
        if not isinstance(a.get("correct", False), bool):
            raise ValueError(f"{where}, answer {j}: 'correct' must be true or false, got {a['correct']!r}")
        _check_markup(a, f"{where}, answer {j}")
    if q["type"] == "multiple_choice":
        _check_choices(answers, where)
    else:
        _check_numeric(q, answers, where)


def _check_markup(item: dict, where: str) -> None:
    for field in _TEXT_FIELDS:
        text = item.get(field)
        if text is None:
            continue
        if not isinstance(text, str):
            raise ValueError(f"{where}: '{field}' must be text, got {type(text).__name__}")
        for tag in _TAG_LIKE.findall(text):
            if not _SAFE_TAG.fullmatch(tag):
                raise ValueError(f"{where}: markup {tag!r} in '{field}' is not allowed; "
                                 f"only {', '.join(f'<{t}>' for t in SAFE_TAGS)} without attributes")
        if _MARKDOWN_LINK.search(text):
            raise ValueError(f"{where}: a link [text](address) in '{field}' is not allowed")


def _check_choices(answers: list[dict], where: str) -> None:
    if not all(isinstance(a.get("answer"), str) and a["answer"].strip() for a in answers):
        raise ValueError(f"{where}: every answer of a multiple-choice question needs its text in 'answer'")
    n_correct = sum(a.get("correct") is True for a in answers)
    if n_correct != 1:
        raise ValueError(f"{where}: a multiple-choice question needs exactly one correct answer, got {n_correct}")


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _check_numeric(q: dict, answers: list[dict], where: str) -> None:
    precision = q.get("precision")
    if not isinstance(precision, int) or isinstance(precision, bool) or precision < 1:
        raise ValueError(f"{where}: a numeric question needs an integer 'precision' >= 1 (significant digits; "
                         f"jupyterquiz fails on 0), got {precision!r}")
    kinds = [a.get("type") for a in answers]
    if any(kind not in _NUMERIC_KINDS for kind in kinds):
        raise ValueError(f"{where}: numeric answers have 'type' in {list(_NUMERIC_KINDS)}, got {kinds}")
    if "default" not in kinds:
        raise ValueError(f"{where}: a numeric question needs a 'default' answer, the feedback for any other number")
    if not any(a.get("correct") is True and a["type"] != "default" for a in answers):
        raise ValueError(f"{where}: no correct answer")
    rounded = {}
    for j, a in enumerate(answers, 1):
        if a["type"] == "value":
            if not _is_number(a.get("value")):
                raise ValueError(f"{where}, answer {j}: 'value' must be a number, got {a.get('value')!r}")
            if a.get("correct") and precision < precision_needed(a["value"]):
                raise ValueError(f"{where}: precision {precision} rounds the correct value {a['value']} to "
                                 f"{_round(a['value'], precision):g}; it needs {precision_needed(a['value'])}")
            key = _round(a["value"], precision)
            if key in rounded:
                raise ValueError(f"{where}: answers {rounded[key]} and {j} are the same number at precision "
                                 f"{precision} ({key:g})")
            rounded[key] = j
        elif a["type"] == "range":
            r = a.get("range")
            if not (isinstance(r, list) and len(r) == 2 and all(map(_is_number, r)) and r[0] < r[1]):
                raise ValueError(f"{where}, answer {j}: 'range' must be [low, high] with low < high, got {r!r}")


def _safe_copy(item: dict, keys: set[str]) -> dict:
    """``item`` with only jupyterquiz's fields, its text sanitised and any ``code`` escaped whole."""
    out = {}
    for key in keys & set(item):
        value = item[key]
        if key in _TEXT_FIELDS:
            value = sanitize(value)
        elif key == "code":
            value = html.escape(str(value), quote=True)
        elif key == "answers":
            value = [_safe_copy(a, _ANSWER_KEYS) for a in value]
        out[key] = value
    return out


def show_quiz(chapter: str, lang: str | None = None) -> None:
    """Display the quiz of ``chapter`` with jupyterquiz, answers shuffled, interface in the chapter's language.

    The questions come from :func:`load_quiz` (inside the package, no network) and reach the page
    only through :func:`sanitize`.

    Args:
        chapter: the notebook's name without ``.ipynb``, e.g. ``"05_vit_vs_cvt_cifar10"``.
        lang: "pt" or "es"; ``None`` uses :func:`cvt_edu.course.i18n.notebook_language`.

    Raises:
        ValueError: for another language, an unknown chapter, or a malformed quiz (see :func:`load_quiz`).
    """
    lang = lang or notebook_language()
    if lang not in UI_STRINGS:
        raise ValueError(f"quiz language must be one of {sorted(UI_STRINGS)}, got {lang!r}")
    questions = [_safe_copy(q, _QUESTION_KEYS) for q in load_quiz(chapter, lang)]
    from IPython.display import display
    from IPython.utils.capture import capture_output
    from jupyterquiz import display_quiz

    with capture_output(stdout=False, stderr=False) as captured:
        display_quiz(questions, shuffle_answers=True)
    for output in captured.outputs:
        data = {}
        for mime, text in output.data.items():
            for english, local in UI_STRINGS[lang].items():
                text = text.replace(english, local)
            data[mime] = text
        display(data, raw=True)
