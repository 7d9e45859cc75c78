"""Write the student version of every practical assignment (TP) from its instructor version.

    python instructor/make_student_versions.py           # writes notebooks/{pt,es}/tp*.ipynb
    python instructor/make_student_versions.py --check   # exits 1 naming every student notebook out of date

The instructor notebook ``instructor/LANG/tpN_NAME.ipynb`` is the source. Its student version
``notebooks/LANG/tpN_NAME.ipynb`` is the same notebook with:

- in every answer cell (a code cell tagged ``answer``), each region from a line ``### BEGIN SOLUTION``
  to a line ``### END SOLUTION`` replaced by ``raise NotImplementedError`` at the markers' indentation
  (the signature, the docstring and the hint comments stay);
- the cells tagged ``solution-only`` dropped;
- every output and execution count cleared;
- the "Open in Colab" badge of the student notebook as cell 1, after the setup cell (``tools/release.py``;
  instructor versions have none);
- every other code cell that names a function of the answer cells (the check cells, a model that
  calls the student's functions), or names what such a cell defines (the training cell that uses the
  model), tagged ``raises-exception``: it fails until the student has answered, and nbval and
  Jupyter Book then expect that.

Only notebooks whose content changes are rewritten, each atomically, so running it twice changes
nothing. A malformed instructor notebook (unpaired markers, a file that is not a notebook) stops the
run with one line naming the file and the cell, before anything is written.
"""

from __future__ import annotations

import argparse
import ast
import copy
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
LANGUAGES = ("pt", "es")
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
ANSWER, SOLUTION_ONLY, RAISES = "answer", "solution-only", "raises-exception"

__all__ = ["strip_solutions", "student_version", "planned", "out_of_date", "write_all", "main"]


def strip_solutions(source: str, where: str = "cell") -> str:
    """Replace every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region with ``raise NotImplementedError``.

    Args:
        source: the code of an answer cell.
        where: names the cell in error messages, e.g. ``"instructor/pt/tp1_vit.ipynb, cell 4"``.

    Returns:
        The code with each region (markers included) replaced by one line ``raise NotImplementedError``,
        indented like the BEGIN marker.

    Raises:
        ValueError: for a BEGIN without its END, an END without a BEGIN, or markers of different
            indentation, naming ``where`` and the line.
    """
    out, indent, start = [], None, 0
    for number, line in enumerate(source.splitlines(), start=1):
        marker = line.strip()
        if marker == BEGIN:
            if indent is not None:
                raise ValueError(f"{where}: line {number}: '{BEGIN}' inside the region opened at line {start}")
            indent, start = line[: len(line) - len(line.lstrip())], number
        elif marker == END:
            if indent is None:
                raise ValueError(f"{where}: line {number}: '{END}' without a '{BEGIN}' before it")
            if not line.startswith(indent) or line[len(indent)] != "#":
                raise ValueError(f"{where}: line {number}: '{END}' is not indented like its '{BEGIN}' (line {start})")
            out.append(f"{indent}raise NotImplementedError")
            indent = None
        elif indent is None:
            out.append(line)
    if indent is not None:
        raise ValueError(f"{where}: line {start}: '{BEGIN}' without a '{END}' after it")
    return "\n".join(out)


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _answer_functions(nb, where: str) -> set[str]:
    """The names of the functions defined at the top level of the notebook's answer cells."""
    names = set()
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and ANSWER in _tags(cell):
            try:
                tree = ast.parse(cell.source)
            except SyntaxError as error:
                raise ValueError(f"{where}, cell {index}: the answer cell is not valid Python ({error.msg}, line {error.lineno})")
            names |= {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    return names


def _names(source: str) -> tuple[set[str], set[str]]:
    """The names a cell uses, and the names it defines at its top level (functions, classes, assignments)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython syntax such as %magic: compare words instead, define nothing
        return set(source.replace("(", " ").replace(")", " ").replace(",", " ").split()), set()
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    defined = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return used, defined


def student_version(nb: nbformat.NotebookNode, where: str = "notebook") -> nbformat.NotebookNode:
    """The student version of an instructor notebook (see the module docstring); ``nb`` is not changed.

    Raises:
        ValueError: for unpaired solution markers or an answer cell that is not valid Python, naming
            ``where`` and the cell.
    """
    failing = _answer_functions(nb, where)  # names that raise NotImplementedError, or are made from them
    student = copy.deepcopy(nb)
    cells = []
    for index, cell in enumerate(nb.cells):
        tags = _tags(cell)
        if SOLUTION_ONLY in tags:
            continue
        cell = copy.deepcopy(cell)
        cell.get("metadata", {}).pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if ANSWER in tags:
                cell.source = strip_solutions(cell.source, f"{where}, cell {index}")
            else:
                used, defined = _names(cell.source)
                if failing & used:
                    failing |= defined
                    if RAISES not in tags:
                        cell.setdefault("metadata", {})["tags"] = tags + [RAISES]
        cells.append(cell)
    student.cells = cells
    return student


def _render(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def _release():
    """tools/release.py, which writes the setup cells and the Colab badges."""
    spec = importlib.util.spec_from_file_location("release", ROOT / "tools" / "release.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def planned(root: Path = ROOT) -> dict[Path, str]:
    """Every student notebook as it should be: path -> its text, from ``root/instructor/LANG/tp*.ipynb``.

    Raises:
        ValueError: for an instructor file that is not a readable notebook or has malformed answer
            cells, naming the file (and the cell).
    """
    release, url, version = _release(), None, None
    texts = {}
    for lang in LANGUAGES:
        for source in sorted((root / "instructor" / lang).glob("tp*.ipynb")):
            where = str(source.relative_to(root))
            try:
                nb = nbformat.read(source, as_version=4)
            except Exception as error:  # nbformat raises several kinds (JSON, validation, encoding)
                raise ValueError(f"{where}: not a readable notebook ({type(error).__name__}: {str(error).splitlines()[0]})")
            student = student_version(nb, where)
            first = student.cells[0] if student.cells else {}
            if "remove-cell" in first.get("metadata", {}).get("tags", []):  # the setup cell: the badge goes after it
                url, version = (url, version) if url else release.config(root)
                release.add_badge(student, lang, source.name, url, version)
            texts[root / "notebooks" / lang / source.name] = _render(student)
    return texts


def out_of_date(root: Path = ROOT) -> list[str]:
    """The student notebooks that differ from what :func:`planned` makes, or are missing, or have no
    instructor version any more, as paths relative to ``root``; empty when all are up to date."""
    texts = planned(root)
    stale = [p for p, text in texts.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
    orphans = [p for lang in LANGUAGES for p in sorted((root / "notebooks" / lang).glob("tp*.ipynb")) if p not in texts]
    return [str(p.relative_to(root)) for p in stale + orphans]


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_all(root: Path = ROOT) -> list[str]:
    """Write every student notebook that is out of date; returns the paths written (relative to ``root``).

    Every instructor notebook is converted before the first file is written, so a malformed one
    leaves all student notebooks as they were.

    Raises:
        ValueError: as :func:`planned`.
    """
    written = []
    for path, text in planned(root).items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            _write_atomic(path, text)
            written.append(str(path.relative_to(root)))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make_student_versions", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 naming every student notebook out of date")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository root (default: this script's repository)")
    args = parser.parse_args(argv)
    try:
        if args.check:
            stale = out_of_date(args.root)
            for path in stale:
                print(f"out of date: {path} (run python instructor/make_student_versions.py)")
            return 1 if stale else 0
        written = write_all(args.root)
    except (ValueError, OSError) as error:
        print(f"make_student_versions: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} student notebook(s)" + "".join(f"\n  {p}" for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
