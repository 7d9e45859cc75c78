"""Chapter quizzes, shown with ``jupyterquiz`` in the chapter's language.

The questions live as JSON beside the notebooks (``notebooks/<lang>/quizzes/<chapter>.json``,
jupyterquiz's format, with feedback on every answer). ``jupyterquiz`` writes a few fixed
English strings into its JavaScript; :func:`show_quiz` displays the same quiz with those
strings replaced, so everything the student sees is in the chapter's language. It works
in Jupyter, in Colab and on the rendered book page.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .i18n import notebook_language

__all__ = ["REPO_URL", "UI_STRINGS", "load_quiz", "quiz_path", "show_quiz"]

# Where Colab, which opens a notebook without its folder, fetches the quiz files; the same
# URL as ``repository.url`` in _config.yml and the notebooks' setup cell (a test checks it).
REPO_URL = "https://github.com/cvt-edu/cvt-edu"

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


def quiz_path(chapter: str, lang: str) -> str:
    """The quiz file of ``chapter`` (its notebook's name without ``.ipynb``): beside the notebook
    if it is there, else its address in the repository (Colab)."""
    local = Path("quizzes") / f"{chapter}.json"
    if Path.cwd().name == lang and local.is_file():
        return str(local)
    raw = REPO_URL.replace("https://github.com/", "https://raw.githubusercontent.com/")
    return f"{raw}/main/notebooks/{lang}/quizzes/{chapter}.json"


def load_quiz(path: str | os.PathLike) -> list[dict]:
    """Read a quiz file and check it: a list of questions, each answer with its own feedback.

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: naming the question whose answers lack feedback or a correct answer.
    """
    questions = json.loads(Path(path).read_text(encoding="utf-8"))
    for i, q in enumerate(questions, 1):
        answers = q.get("answers", [])
        if not answers or any("feedback" not in a for a in answers):
            raise ValueError(f"{path}: question {i} needs answers, each with its own feedback")
        if not any(a.get("correct") for a in answers):
            raise ValueError(f"{path}: question {i} has no correct answer")
    return questions


def show_quiz(chapter: str, lang: str | None = None) -> None:
    """Display the quiz of ``chapter`` with jupyterquiz's interface in the chapter's language.

    Args:
        chapter: the notebook's name without ``.ipynb``, e.g. ``"05_vit_vs_cvt_cifar10"``.
        lang: "pt" or "es"; ``None`` uses :func:`cvt_edu.course.i18n.notebook_language`.

    Raises:
        ValueError: for another language, or a malformed quiz (see :func:`load_quiz`).
    """
    lang = lang or notebook_language()
    if lang not in UI_STRINGS:
        raise ValueError(f"quiz language must be one of {sorted(UI_STRINGS)}, got {lang!r}")
    from IPython.display import display
    from IPython.utils.capture import capture_output
    from jupyterquiz import display_quiz

    path = quiz_path(chapter, lang)
    if path.startswith("https://"):
        import urllib.request

        with urllib.request.urlopen(path, timeout=30) as response:
            questions = json.loads(response.read().decode("utf-8"))
    else:
        questions = load_quiz(path)
    with capture_output(stdout=False, stderr=False) as captured:
        display_quiz(questions, shuffle_answers=False)
    for output in captured.outputs:
        data = {}
        for mime, text in output.data.items():
            for english, local in UI_STRINGS[lang].items():
                text = text.replace(english, local)
            data[mime] = text
        display(data, raw=True)
