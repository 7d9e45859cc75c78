"""What a chapter's setup cell needs besides installing the package: the Colab link of a notebook, the
release tag of a version, and the notice that says how long the chapter takes on a CPU.

The expected times are data, ``chapter_times.json`` next to this module: each chapter's full run (quick mode
off) on the 2-core CPU its committed outputs come from, derived from those outputs by
``python tools/release.py --times`` (see that script for the rule).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from importlib import resources
from typing import Any

from .i18n import LANGUAGES, t

__all__ = ["CHAPTER_ENV", "chapter_seconds", "colab_url", "current_chapter", "format_duration", "release_tag",
           "setup_notice"]

CHAPTER_ENV = "CVT_EDU_CHAPTER"  # the notebook's name without .ipynb, when nothing else says it
_TIMES = "chapter_times.json"
COLAB = "https://colab.research.google.com/github"


def release_tag(version: str) -> str:
    """The git tag of a package version: ``"0.2.0"`` -> ``"v0.2.0"``.

    Raises:
        ValueError: for a version that is not ``X.Y.Z`` (digits), naming it.
    """
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"expected a version X.Y.Z such as 0.2.0; got {version!r}")
    return f"v{version}"


def colab_url(repo_url: str, tag: str, lang: str, filename: str) -> str:
    """The "Open in Colab" link of ``notebooks/<lang>/<filename>`` at ``tag`` of a GitHub repository.

    ``colab_url("https://github.com/cvt-edu/cvt-edu", "v0.2.0", "pt", "00_how_to_use.ipynb")`` ->
    ``"https://colab.research.google.com/github/cvt-edu/cvt-edu/blob/v0.2.0/notebooks/pt/00_how_to_use.ipynb"``.

    Raises:
        ValueError: for a URL that is not ``https://github.com/<owner>/<repo>``, naming it.
    """
    prefix = "https://github.com/"
    path = repo_url.removesuffix("/").removesuffix(".git")
    owner_repo = path.removeprefix(prefix)
    if not path.startswith(prefix) or owner_repo.count("/") != 1 or not all(owner_repo.split("/")):
        raise ValueError(f"expected a repository URL https://github.com/<owner>/<repo>; got {repo_url!r}")
    return f"{COLAB}/{owner_repo}/blob/{tag}/notebooks/{lang}/{filename}"


@functools.cache
def _times() -> Mapping[str, Any]:
    text = (resources.files(__package__) / _TIMES).read_text(encoding="utf-8")
    return json.loads(text)["chapters"]


def chapter_seconds(chapter: str) -> float:
    """The full run's wall time of ``chapter`` (a notebook's name without ``.ipynb``) on a 2-core CPU, in seconds.

    Raises:
        KeyError: for a notebook without a measured time, naming it and the ones there are.
    """
    times = _times()
    if chapter not in times:
        raise KeyError(f"no measured time for {chapter!r} in cvt_edu/course/{_TIMES}; expected one of {sorted(times)}")
    return float(times[chapter]["seconds"])


def format_duration(seconds: float, lang: str) -> str:
    """``seconds`` as a reader would say it: ``"40 s"``, ``"8 min"``, ``"4,7 h"`` (decimal comma in pt and es)."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    hours = f"{seconds / 3600:.1f}"
    return (hours if lang == "en" else hours.replace(".", ",")) + " h"


def current_chapter() -> str | None:
    """The open notebook's name without ``.ipynb``, or ``None`` when nothing says it.

    Asked in turn: ``$CVT_EDU_CHAPTER``; the notebook path Jupyter (``__session__``) or VS Code
    (``__vsc_ipynb_file__``) gives the kernel; in Colab, the ``cvt_edu.chapter`` field of the open
    notebook's metadata (:func:`cvt_edu.course.i18n.colab_metadata`).
    """
    name = os.environ.get(CHAPTER_ENV)
    if not name:
        try:
            from IPython import get_ipython

            ns = getattr(get_ipython(), "user_ns", None) or {}
        except ImportError:
            ns = {}
        path = ns.get("__vsc_ipynb_file__") or ns.get("__session__") or os.environ.get("JPY_SESSION_NAME") or ""
        name = os.path.basename(str(path)).removesuffix(".ipynb") if str(path).endswith(".ipynb") else None
    if not name:
        from .i18n import colab_metadata

        name = colab_metadata().get("chapter")
    return name if isinstance(name, str) and name else None


def setup_notice(lang: str, device: Any, quick: bool, chapter: str | None = None) -> str | None:
    """Print, on a CPU with quick mode off, how long the chapter takes there and how to go faster.

    The setup cell of every chapter calls it (``setup_notice(LANG, DEVICE, QUICK)``). On a GPU, or in
    quick mode, it prints nothing. The time is the chapter's full run on a 2-core CPU
    (:func:`chapter_seconds`); the way out is a GPU (Colab's menu, in ``lang``) or quick mode
    (``CVT_EDU_QUICK=1``).

    Args:
        lang: the chapter's language, "pt" or "es" ("en" also works).
        device: the chosen device (a ``torch.device`` or its name, e.g. ``"cpu"``, ``"cuda"``).
        quick: whether quick mode is on.
        chapter: the notebook's name without ``.ipynb``; ``None``: :func:`current_chapter` (when that
            finds nothing, the notice gives no time).

    Returns:
        The text printed, or ``None`` when nothing was printed.

    Raises:
        ValueError: for a language without strings, naming it.
    """
    if lang not in (*LANGUAGES, "en"):
        raise ValueError(f"expected the chapter's language, one of {[*LANGUAGES, 'en']}; got {lang!r}")
    if quick or str(getattr(device, "type", device)).split(":")[0] != "cpu":
        return None
    chapter = chapter or current_chapter()
    try:
        seconds = chapter_seconds(chapter) if chapter else None
    except KeyError:
        seconds = None
    if seconds is None:
        head = t("setup_cpu_unknown", lang)
    else:
        head = t("setup_cpu_time", lang, time=format_duration(seconds, lang))
    text = "\n".join([head, t("setup_cpu_gpu", lang), t("setup_cpu_quick", lang)])
    print(text)
    return text
