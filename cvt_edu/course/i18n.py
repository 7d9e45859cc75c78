"""The words the package writes into figures, in the chapter's language.

The texts are data, one JSON file per language in ``cvt_edu/course/strings/`` (``pt.json``,
``es.json``, and ``en.json`` for the figures the command line saves): key -> text, where a text
may hold ``{placeholders}`` filled in by :func:`t`. Every file has the same keys and, per key,
the same placeholders (a test checks it). CIFAR-10's class names are there too, as
``class_<name>`` (see :func:`class_names`).

Code cells are the same in both languages, so a notebook never spells out a label: it passes
``lang=LANG`` (``LANG = notebook_language()``) to the figure functions, which ask :func:`t`.
"""

from __future__ import annotations

import functools
import json
import os
import string
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from types import MappingProxyType

__all__ = ["LANGUAGES", "LANG_ENV", "class_names", "colab_metadata", "languages", "notebook_language", "placeholders", "strings", "t"]

LANGUAGES = ("pt", "es")  # the chapters' languages; English exists for the command line's figures
LANG_ENV = "CVT_EDU_LANG"
_FOLDER = "strings"


def notebook_language() -> str:
    """The chapter's language, "pt" or "es".

    Taken from ``$CVT_EDU_LANG``, which every chapter's setup cell sets to the chapter's language
    (``LANG = "es"``), so no front end needs asking; else the notebook's folder (Jupyter runs a
    notebook in its folder, ``notebooks/pt`` or ``notebooks/es``); else, in Colab, the
    ``cvt_edu.lang`` field of the open notebook's metadata (:func:`colab_metadata`); else "pt".
    """
    lang = os.environ.get(LANG_ENV) or Path.cwd().name
    if lang in LANGUAGES:
        return lang
    return _colab_language()


@functools.cache
def colab_metadata() -> dict:
    """The ``cvt_edu`` field of the open notebook's metadata in Colab (``lang``, ``chapter``), asked of Colab's
    front end once per session; ``{}`` outside Colab or when the front end does not answer within 10 s."""
    try:  # Colab runs notebooks in /content; ask the front end for the notebook's metadata
        from google.colab import _message  # type: ignore[import-not-found]

        notebook = _message.blocking_request("get_ipynb", timeout_sec=10)["ipynb"]
        field = notebook["metadata"]["cvt_edu"]
    except Exception:  # noqa: BLE001 - outside Colab, or no metadata
        return {}
    return dict(field) if isinstance(field, dict) else {}


def _colab_language() -> str:
    lang = colab_metadata().get("lang", "pt")
    return lang if lang in LANGUAGES else "pt"


@functools.cache
def languages() -> tuple[str, ...]:
    """The languages that have a string file, sorted (e.g. ``("en", "es", "pt")``)."""
    folder = resources.files(__package__) / _FOLDER
    return tuple(sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json")))


def _unique_keys(name: str):
    def hook(pairs: list[tuple[str, str]]) -> dict[str, str]:
        table: dict[str, str] = {}
        for key, text in pairs:
            if key in table:
                raise ValueError(f"{name}: key {key!r} is defined twice")
            table[key] = text
        return table

    return hook


def parse_strings(text: str, name: str) -> dict[str, str]:
    """One string file's content -> its table, checked: a JSON object of texts, each key once.

    Raises:
        ValueError: naming the file (``name``) and the duplicate key, or what is not a text.
    """
    table = json.loads(text, object_pairs_hook=_unique_keys(name))
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise ValueError(f"{name}: expected a JSON object of key -> text")
    return table


@functools.cache
def strings(lang: str) -> Mapping[str, str]:
    """The whole table of ``lang``, read once from ``strings/<lang>.json`` (read-only).

    Raises:
        ValueError: for a language without a string file, naming it and the ones there are.
    """
    if lang not in languages():
        raise ValueError(f"no strings for language {lang!r}; expected one of {list(languages())}")
    path = resources.files(__package__) / _FOLDER / f"{lang}.json"
    return MappingProxyType(parse_strings(path.read_text(encoding="utf-8"), f"{_FOLDER}/{lang}.json"))


def placeholders(text: str) -> set[str]:
    """The ``{fields}`` of a text, e.g. ``{"h", "w"}`` for ``"{h}x{w} tokens"``."""
    return {field for _, field, _, _ in string.Formatter().parse(text) if field}


def t(key: str, lang: str | None = None, **fields: object) -> str:
    """The text of ``key`` in ``lang``, its placeholders filled with ``fields`` when any are given.

    ``t("maps_stage", "pt", i=1, h=16, w=16, c=48)`` -> ``"estágio 1: 16×16 tokens, C = 48"``;
    without ``fields`` the text comes back as it is, placeholders included.

    Args:
        key: a key of the string files.
        lang: "pt", "es" or "en"; ``None``: the notebook's language (:func:`notebook_language`).
        **fields: values of the text's placeholders (extra ones are ignored).

    Raises:
        KeyError: for an unknown key, or a placeholder of the text that ``fields`` lacks, naming it.
        ValueError: for a language without strings.
    """
    lang = lang or notebook_language()
    table = strings(lang)
    if key not in table:
        raise KeyError(f"no text {key!r} in language {lang!r} (cvt_edu/course/{_FOLDER}/{lang}.json)")
    text = table[key]
    if not fields:
        return text
    missing = placeholders(text) - set(fields)
    if missing:
        raise KeyError(f"text {key!r} ({lang}) needs the placeholders {sorted(missing)}; got {sorted(fields)}")
    return text.format(**fields)


def class_names(classes: Sequence[str], lang: str | None = None) -> list[str]:
    """The class names in ``lang`` (``None``: the notebook's) where the table has them (CIFAR-10), else unchanged."""
    table = strings(lang or notebook_language())
    return [table.get(f"class_{c}", c) for c in classes]
