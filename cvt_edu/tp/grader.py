"""The grader: ``python -m cvt_edu grade --tp N SUBMISSIONS... --out grades.csv``.

Every submitted notebook (or every ``.ipynb`` under a submitted folder) is read with ``nbformat``; its code
cells tagged ``"answer"`` run in a fresh Python process of its own (:mod:`cvt_edu.tp.child`, in an empty
temporary folder, never in the grader's process), on hidden cases drawn at grading time from ``seed``
(other shapes than the check cells'), after the ready-made implementations are disabled
(:mod:`cvt_edu.tp.stubs`). The time limit counts the student's code only: it starts once the child has
computed the expected outputs. Syntax errors are found here, before any child starts; the cells that
compile still run. A file that is not a notebook, a notebook without answer cells, a syntax
error, an answer cell that raises, a child that crashes or runs out of time: that submission's row says
so, and the batch goes on.

Writes, atomically: ``grades.csv``, one row per submission (file, the points of each question, total, max,
short feedback), and a feedback file per submission, ``<out folder>/<out stem>/<submission stem>.md``, in
the TP's language: the notebook's metadata ``cvt_edu.lang``, else its folder (``pt``/``es``), else ``lang``.
A question's points are its points times the fraction of hidden cases passed (0 for a ready-made
implementation).
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..train.checkpoint import atomic_path
from .assignments import TPS, Assignment
from .text import LANGUAGES, t

__all__ = ["grade", "find_submissions", "SETUP_LIMIT_S"]

SETUP_LIMIT_S = 300.0  # for the child's own start (importing torch, computing the expected outputs)
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


def find_submissions(paths: list[str | os.PathLike]) -> list[Path]:
    """The notebooks to grade: each file as given, each folder's ``.ipynb`` files (recursively, sorted,
    Jupyter's checkpoints left out).

    Raises:
        FileNotFoundError: for a path that does not exist, naming it.
        ValueError: for a folder without notebooks, or no path at all.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in f.parts)
            if not found:
                raise ValueError(f"no .ipynb file in the folder {p}")
            files += found
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"no submission {p}")
    if not files:
        raise ValueError("expected at least one submission (a .ipynb file or a folder of them)")
    return files


def _language(nb, path: Path, default: str) -> str:
    lang = (nb.metadata.get("cvt_edu") or {}).get("lang") if nb is not None else None
    if lang in LANGUAGES:
        return lang
    return path.parent.name if path.parent.name in ("pt", "es") else default


def _run_child(job: dict, time_limit: float) -> tuple[dict | None, str | None]:
    """Run the child on ``job``; (result, None), or (None, why not) in the job's language."""
    lang = job["lang"]
    with tempfile.TemporaryDirectory(prefix="cvt-edu-grade-") as tmp:
        tmp = Path(tmp)
        work = tmp / "work"
        work.mkdir()
        (tmp / "job.json").write_text(json.dumps(job), encoding="utf-8")
        result, ready = tmp / "result.json", tmp / "ready"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([_PACKAGE_PARENT, os.environ.get("PYTHONPATH", "")])}
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        with open(tmp / "stdout.txt", "wb") as out, open(tmp / "stderr.txt", "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cvt_edu.tp.child", str(tmp / "job.json"), str(result), str(ready)],
                cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
            )
            start, started = time.monotonic(), None
            try:
                while proc.poll() is None:
                    now = time.monotonic()
                    if started is None and ready.exists():
                        started = now
                    if (started is not None and now - started > time_limit) or now - start > SETUP_LIMIT_S + time_limit:
                        return None, t("timed_out", lang, seconds=f"{time_limit:g}")
                    time.sleep(0.05)
            finally:
                if proc.poll() is None:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except (OSError, AttributeError):
                        proc.kill()
                    proc.wait()
        if proc.returncode == 0 and result.exists():
            return json.loads(result.read_text(encoding="utf-8")), None
        lines = (tmp / "stderr.txt").read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return None, t("crashed", lang, code=proc.returncode, detail=(lines[-1] if lines else "-")[:300])


def _grade_one(path: Path, a: Assignment, *, time_limit: float, quick: bool, seed: int, lang: str) -> dict:
    import nbformat

    row: dict = {"file": str(path), "lang": lang, "points": dict.fromkeys(a.questions, 0.0), "messages": {}, "problems": []}
    try:
        nb = nbformat.read(path, as_version=4)
        cells = [c.source for c in nb.cells if c.cell_type == "code" and "answer" in (c.metadata.get("tags") or [])]
        lang = _language(nb, path, lang)
    except Exception as e:  # noqa: BLE001 - whatever nbformat says about a malformed file goes in the row
        row["problems"].append(t("not_notebook", lang, error=str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__))
        return row
    row["lang"] = lang
    if not cells:
        row["problems"].append(t("no_answers", lang))
        return row
    good = []
    for i, source in enumerate(cells, 1):  # syntax errors found here; a child runs only for cells that compile
        try:
            compile(source, f"<answer cell {i}>", "exec")
            good.append((i, source))
        except SyntaxError as e:
            row["problems"].append(t("syntax_error", lang, line=e.lineno, cell=i, message=e.msg))
    if not good:
        return row
    result, failure = _run_child({"tp": a.number, "seed": seed, "quick": quick, "lang": lang, "cells": good}, time_limit)
    if failure is not None:
        row["problems"].append(failure)
        return row
    row["problems"] += result["problems"]
    for (name, r), points in zip(result["questions"].items(), a.points):
        row["points"][name] = round(points * r["passed"] / r["n"], 2) if r["n"] else 0.0
        row["messages"][name] = r["message"] or t("all_passed", lang, n=r["n"])
        if r["message"] and r["passed"]:
            row["messages"][name] = f"{t('some_passed', lang, passed=r['passed'], n=r['n'])}; {r['message']}"
    return row


def _short(row: dict, a: Assignment) -> str:
    parts = list(row["problems"])
    parts += [f"{row['messages'][q]}" for q, p in zip(a.questions, a.points) if row["points"][q] < p and q in row["messages"]]
    text = " | ".join(parts)
    return text if len(text) <= 400 else text[:397] + "..."


def _feedback(row: dict, a: Assignment, seed: int) -> str:
    lang, total = row["lang"], sum(row["points"].values())
    lines = [f"# {t('feedback_title', lang, tp=a.name, file=Path(row['file']).name)}", "",
             t("feedback_total", lang, total=f"{total:g}", max=f"{a.max_points:g}"), "",
             t("feedback_seed", lang, seed=seed), ""]
    for q, p in zip(a.questions, a.points):
        message = row["messages"].get(q, "-")
        lines.append(f"- **{q}**: {row['points'][q]:g} / {p:g}. {message}")
    if row["problems"]:
        lines += ["", f"## {t('feedback_problems', lang)}", ""] + [f"- {p}" for p in row["problems"]]
    return "\n".join(lines) + "\n"


def grade(tp: int, submissions: list[str | os.PathLike], out: str | os.PathLike, *, time_limit: float = 120.0,
          quick: bool = False, seed: int | None = None, lang: str = "pt") -> list[dict]:
    """Grade every submission of TP ``tp``; write ``out`` (CSV) and the feedback files.

    Args:
        tp: the TP's number, a key of :data:`cvt_edu.tp.TPS`.
        submissions: notebooks, or folders of them (see :func:`find_submissions`).
        out: the CSV file; the feedback files go to the folder beside it named after its stem.
        time_limit: seconds the student's code (the answer cells and the hidden cases) may run, per submission.
        quick: two hidden cases per question instead of all.
        seed: of the hidden cases; ``None``: drawn now.
        lang: the feedback's language where the notebook does not say (metadata, folder).

    Returns:
        One row per submission: ``{"file", "lang", "points": {question: points}, "messages": {question: text},
        "problems": [text]}``.

    Raises:
        ValueError: for an unknown TP or language, a time limit that is not positive, an ``out`` that is not a
            ``.csv`` file, or no submissions.
        FileNotFoundError: for a submission that does not exist (nothing is run or written).
    """
    if tp not in TPS:
        raise ValueError(f"unknown TP {tp}; expected one of {sorted(TPS)}")
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; expected one of {list(LANGUAGES)}")
    if not time_limit > 0:
        raise ValueError(f"expected a time limit > 0 seconds, got {time_limit}")
    if Path(out).suffix.lower() != ".csv":
        raise ValueError(f"expected --out to name a .csv file (the feedback goes to the folder of its stem), got {out}")
    files = find_submissions(submissions)
    a, out = TPS[tp], Path(out)
    seed = secrets.randbelow(2**31) if seed is None else seed
    rows = [_grade_one(f, a, time_limit=time_limit, quick=quick, seed=seed, lang=lang) for f in files]

    with atomic_path(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file", *a.questions, "total", "max", "feedback"])
        for row in rows:
            points = [row["points"][q] for q in a.questions]
            writer.writerow([row["file"], *(f"{p:g}" for p in points), f"{sum(points):g}", f"{a.max_points:g}", _short(row, a)])
    folder, used = out.parent / out.stem, set()
    for row in rows:
        stem, n = Path(row["file"]).stem, 1
        while (name := stem if n == 1 else f"{stem}-{n}") in used:
            n += 1
        used.add(name)
        with atomic_path(folder / f"{name}.md") as tmp:
            tmp.write_text(_feedback(row, a, seed), encoding="utf-8")
        row["feedback"] = str(folder / f"{name}.md")
    return rows
