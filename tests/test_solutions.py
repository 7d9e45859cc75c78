"""Every exercise solution of every chapter uses only what it imports, what the chapter defines, or Python's builtins,
and the solutions that stand alone run, in quick mode, and print exactly the output the chapter shows beside them.

Where solutions live: an exercise's solution is the ``<details>`` block that follows it in a markdown cell; its code is
the fenced ``python`` blocks inside, and a fenced ``text`` block right after one (under "Saída:" / "Salida:") is the
output that the solution states. Code inside backticks in a sentence is not read: a solution whose code matters is a
fenced block.

Two kinds of solution code:

- **standalone**: every name it reads is one it binds, a builtin, one of the chapter's imports, or the setup cell's
  ``DEVICE``/``QUICK``. It is executed here, in a namespace holding only the chapter's imports and the setup, so a
  solution that calls what it never imported fails; its printed lines must equal its ``text`` block.
- **continuing the chapter**: it reads a variable the chapter's cells made (a trained model, the attention maps),
  which only a run of the whole chapter provides. For these the names are checked statically: each must be bound by
  the solution itself, by some code cell of the chapter (an import, an assignment, a ``def``), or be a builtin.

The Portuguese and Spanish chapters must have the same solution code. Runs in a few seconds: the standalone solutions
are geometry, formulas and small models; nothing is trained here.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import io
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks" / "pt").glob("[0-9][0-9]_*.ipynb"))
DETAILS = re.compile(r"<details>.*?</details>", re.S)
BLOCK = re.compile(r"```python\n(.*?)```(?:\s*\n[^`\n]*\n\s*```text\n(.*?)```)?", re.S)
SETUP_NAMES = {"DEVICE", "QUICK"}


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def solutions(path: Path) -> list[tuple[str, str | None]]:
    """(code, stated output or None) of every fenced python block in the chapter's solutions, in order."""
    found = []
    for cell in cells(path):
        if cell["cell_type"] == "markdown":
            for details in DETAILS.findall("".join(cell["source"])):
                found += [(code, out) if out else (code, None) for code, out in BLOCK.findall(details)]
    return found


def chapter_code(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in cells(path) if c["cell_type"] == "code"]


def bound_names(tree: ast.AST) -> set[str]:
    """Every name a piece of code binds anywhere: assignments, loop and with targets, defs, classes, imports."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return names


def read_names(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def free_names(code: str) -> set[str]:
    tree = ast.parse(code)
    return read_names(tree) - bound_names(tree) - set(dir(builtins))


def chapter_imports(path: Path) -> str:
    """The import statements of all the chapter's code cells, as one piece of code."""
    lines = []
    for source in chapter_code(path):
        for node in ast.parse(source).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                lines.append(ast.unparse(node))
    return "\n".join(lines)


CASES = [(path, i, code, out) for path in CHAPTERS for i, (code, out) in enumerate(solutions(path), start=1)]


def case_id(case) -> str:
    path, i, code, _ = case
    imported = bound_names(ast.parse(chapter_imports(path))) | SETUP_NAMES
    kind = "runs" if free_names(code) <= imported else "names"
    return f"{path.stem}-block{i}-{kind}"


def test_solutions_are_found_and_are_the_same_in_both_languages():
    assert len(CASES) >= 10, "the chapters' solutions have fenced python blocks"
    for path in CHAPTERS:
        es = ROOT / "notebooks" / "es" / path.name
        assert [code for code, _ in solutions(es)] == [code for code, _ in solutions(path)], path.name
        assert [out for _, out in solutions(es)] == [out for _, out in solutions(path)], path.name


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_solution_uses_only_what_it_imports_or_the_chapter_defines(case, monkeypatch, tmp_path):
    path, _, code, stated = case
    imports = chapter_imports(path)
    imported = bound_names(ast.parse(imports)) | SETUP_NAMES
    free = free_names(code)
    if not free <= imported:  # continues the chapter: every name must come from somewhere
        defined = set().union(*(bound_names(ast.parse(source)) for source in chapter_code(path)))
        assert sorted(free - defined) == [], f"{path.name}: the solution reads names nothing binds"
        assert stated is None, f"{path.name}: a stated output needs a solution that runs alone"
        return
    monkeypatch.setenv("CVT_EDU_QUICK", "1")
    monkeypatch.setenv("CVT_EDU_RUNS", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__solution__"}
    exec(compile(imports + "\nfrom cvt_edu import pick_device, quick_mode\nDEVICE = pick_device()\nQUICK = quick_mode()",
                 f"{path.name}: imports", "exec"), namespace)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, f"{path.name}: solution", "exec"), namespace)
    if stated is not None:
        assert printed.getvalue().rstrip() == stated.rstrip(), f"{path.name}: the solution prints another output"


def test_a_solution_that_never_imported_what_it_calls_is_caught():
    code = "model, _ = load_checkpoint(OUT)\nprint(fit)"
    assert free_names(code) == {"load_checkpoint", "OUT", "fit"}
    assert free_names("from cvt_edu.train.loop import fit\nprint(fit, [i for i in range(3)])") == set()
