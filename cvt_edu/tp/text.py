"""The TP messages in the student's language: ``strings/{pt,es,en}.json`` (key -> text with ``{fields}``).

Kept apart from :mod:`cvt_edu.course.i18n`'s figure texts so the TP messages live with the TPs; the
tables are read once and cached, so the grader's child process has them before it disables helpers.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

__all__ = ["LANGUAGES", "table", "t"]

LANGUAGES = ("pt", "es", "en")


@functools.cache
def table(lang: str) -> dict[str, str]:
    """All messages of ``lang``.

    Raises:
        ValueError: for a language without a message file, naming the ones there are.
    """
    if lang not in LANGUAGES:
        raise ValueError(f"no TP messages in language {lang!r}; expected one of {list(LANGUAGES)}")
    return json.loads((resources.files(__package__) / "strings" / f"{lang}.json").read_text(encoding="utf-8"))


def t(key: str, lang: str, **fields: object) -> str:
    """The message ``key`` in ``lang`` with its ``{fields}`` filled in.

    Raises:
        KeyError: for an unknown key or a missing field.
    """
    return table(lang)[key].format(**fields)
