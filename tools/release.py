"""Point every notebook at the release the package version names, and measure the chapters' times.

    python tools/release.py            # rewrites the setup cells and Colab badges from pyproject.toml's version
    python tools/release.py --check    # writes nothing; exits 1 naming every notebook out of date
    python tools/release.py --times    # rewrites cvt_edu/course/chapter_times.json from the committed outputs

The version is pyproject.toml's ``project.version`` (X.Y.Z), its tag ``vX.Y.Z``; the repository is
_config.yml's ``repository.url``. What it writes:

- cell 0 of every chapter (``notebooks/{pt,es}/NN_*.ipynb``) and of every instructor TP
  (``instructor/{pt,es}/tp*.ipynb``): the setup cell, which installs ``git+<url>@vX.Y.Z`` and sets the
  chapter's language (the one line that differs between pt and es); its outputs and metadata are kept;
- cell 1 of every chapter: the "Open in Colab" badge of that notebook at that tag (added, or updated);
- the student TPs (``notebooks/{pt,es}/tp*.ipynb``), by instructor/make_student_versions.py, which gives
  them the badge too; instructor versions get none.

Every other cell, outputs included, is left as it is; a notebook whose text does not change is not
rewritten, so running it twice changes nothing. Files are written atomically.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import sys
from pathlib import Path

import nbformat
import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
LANGUAGES = ("pt", "es")
CHAPTERS = "[0-9][0-9]_*.ipynb"
BADGE_ID = "colab-badge"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
BADGE_ALT = {"pt": "Abrir no Colab", "es": "Abrir en Colab"}
TIMES = Path("cvt_edu") / "course" / "chapter_times.json"

SETUP = '''\
# Setup (the same in every chapter): install the cvt_edu release this chapter was written for when it is
# missing (Colab), set the chapter's language, pick the GPU when there is one, read quick mode
# (CVT_EDU_QUICK=1), and on a CPU say how long the chapter takes. Written by tools/release.py.
import importlib.util, os, subprocess, sys

LANG = "{lang}"  # the chapter's language: the one line that differs between notebooks/pt and notebooks/es
os.environ["CVT_EDU_LANG"] = LANG
REPO_URL = "{url}"
VERSION = "{version}"  # the package version; its release is the git tag v{version}
if importlib.util.find_spec("cvt_edu") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"git+{{REPO_URL}}@v{{VERSION}}"], check=True)

from cvt_edu import pick_device, quick_mode
from cvt_edu.course.colab import setup_notice

DEVICE = pick_device()
QUICK = quick_mode()
print(f"device: {{DEVICE}} | quick mode: {{QUICK}}")
setup_notice(LANG, DEVICE, QUICK)'''


def config(root: Path = ROOT) -> tuple[str, str]:
    """The repository URL (_config.yml) and the package version (pyproject.toml).

    Raises:
        ValueError: for a missing field or a version that is not X.Y.Z, naming the file.
    """
    sys.path.insert(0, str(root))
    from cvt_edu.course.colab import release_tag

    try:
        url = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))["repository"]["url"]
        version = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    except (KeyError, TypeError) as error:
        raise ValueError(f"_config.yml needs repository.url and pyproject.toml project.version; missing {error}")
    release_tag(version)  # refuses a version that is not X.Y.Z
    return url, version


def setup_source(lang: str, url: str, version: str) -> str:
    """The setup cell's code for a notebook in ``lang``."""
    return SETUP.format(lang=lang, url=url, version=version)


def badge_source(lang: str, filename: str, url: str, version: str) -> str:
    """The badge cell's Markdown: the Colab badge linking ``notebooks/<lang>/<filename>`` at tag ``v<version>``."""
    from cvt_edu.course.colab import colab_url, release_tag

    return f"[![{BADGE_ALT[lang]}]({BADGE_IMAGE})]({colab_url(url, release_tag(version), lang, filename)})"


def add_badge(nb: nbformat.NotebookNode, lang: str, filename: str, url: str, version: str) -> None:
    """Put the badge cell right after the setup cell (cell 1), or update the one there."""
    source = badge_source(lang, filename, url, version)
    for cell in nb.cells:
        if cell.get("id") == BADGE_ID:
            cell.source = source
            return
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(source, id=BADGE_ID))


def _set_setup(nb: nbformat.NotebookNode, lang: str, name: str, url: str, version: str, where: str) -> None:
    first = nb.cells[0] if nb.cells else None
    if first is None or first.cell_type != "code" or "remove-cell" not in first.get("metadata", {}).get("tags", []):
        raise ValueError(f"{where}: cell 0 is not the setup cell (a code cell tagged remove-cell)")
    first.source = setup_source(lang, url, version)
    nb.metadata.setdefault("cvt_edu", {}).update(lang=lang, chapter=name)  # what Colab's front end can tell


def _student_generator(root: Path):
    spec = importlib.util.spec_from_file_location("make_student_versions", root / "instructor" / "make_student_versions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def planned(root: Path = ROOT) -> dict[Path, str]:
    """Every chapter and instructor TP as it should be: path -> text."""
    url, version = config(root)
    texts = {}
    for lang in LANGUAGES:
        paths = sorted((root / "notebooks" / lang).glob(CHAPTERS)) + sorted((root / "instructor" / lang).glob("tp*.ipynb"))
        for path in paths:
            where = str(path.relative_to(root))
            nb = nbformat.read(path, as_version=4)
            _set_setup(nb, lang, path.stem, url, version, where)
            if path.parent.parent.name == "notebooks":
                add_badge(nb, lang, path.name, url, version)
            texts[path] = nbformat.writes(nb) + "\n"
    return texts


def out_of_date(root: Path = ROOT) -> list[str]:
    """The notebooks (chapters, instructor and student TPs) that this script or make_student_versions would change."""
    stale = [str(p.relative_to(root)) for p, text in planned(root).items() if p.read_text(encoding="utf-8") != text]
    return stale + (_student_generator(root).out_of_date(root) if not stale else [])


def write_all(root: Path = ROOT) -> list[str]:
    """Rewrite what is out of date, then the student TPs; returns the paths written."""
    generator = _student_generator(root)
    written = []
    for path, text in planned(root).items():
        if path.read_text(encoding="utf-8") != text:
            generator._write_atomic(path, text)
            written.append(str(path.relative_to(root)))
    return written + generator.write_all(root)


def _seconds(cell) -> tuple[dt.datetime, dt.datetime] | None:
    ex = cell.get("metadata", {}).get("execution") or {}
    if "iopub.execute_input" not in ex or "shell.execute_reply" not in ex:
        return None
    parse = lambda s: dt.datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return parse(ex["iopub.execute_input"]), parse(ex["shell.execute_reply"])


def _trained_elsewhere(nb) -> float:
    """Training seconds a run table shows for runs the notebook reloaded ("resuming the finished run") instead
    of training in its cells: the sum of its "training time (s)" column."""
    text = json.dumps([c.get("outputs", []) for c in nb.cells if c.cell_type == "code"])
    if "resuming the finished run" not in text:
        return 0.0
    total = 0.0
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            table = out.get("data", {}).get("text/markdown", "")
            rows = [[x.strip() for x in line.strip("|").split("|")] for line in table.splitlines() if line.startswith("|")]
            if rows and "training time (s)" in rows[0]:
                column = rows[0].index("training time (s)")
                total += sum(float(r[column]) for r in rows[2:])
    return total


def notebook_seconds(path: Path) -> dict:
    """One committed notebook's full-run time: the first cell's start to the last cell's reply when the cells
    ran in one go, else (cells re-run on other days) the sum of the cells' own times; plus the training a
    run table shows when the notebook reloaded finished runs."""
    nb = nbformat.read(path, as_version=4)
    spans = [s for s in map(_seconds, (c for c in nb.cells if c.cell_type == "code")) if s]
    cells = sum((b - a).total_seconds() for a, b in spans)
    wall = (spans[-1][1] - spans[0][0]).total_seconds()
    one_go = wall <= 1.5 * cells + 60
    return {"notebook": wall if one_go else cells, "basis": "wall" if one_go else "cells", "trained": _trained_elsewhere(nb)}


def measure_times(root: Path = ROOT) -> dict:
    """``chapter -> {seconds, ...}`` for every chapter and TP, the slower of its two languages' committed runs."""
    chapters = {}
    paths = [p for lang in LANGUAGES for p in sorted((root / "notebooks" / lang).glob(CHAPTERS))]
    paths += [p for lang in LANGUAGES for p in sorted((root / "instructor" / lang).glob("tp*.ipynb"))]
    for path in paths:
        m = notebook_seconds(path)
        seconds = round(m["notebook"] + m["trained"])
        entry = {"seconds": seconds, "notebook_seconds": round(m["notebook"]), "basis": m["basis"],
                 "trained_elsewhere_seconds": round(m["trained"]), "from": str(path.relative_to(root))}
        if path.stem not in chapters or seconds > chapters[path.stem]["seconds"]:
            chapters[path.stem] = entry
    return {
        "about": "Each notebook's full run (quick mode off) on the 2-core CPU of its committed outputs, in seconds, "
                 "written by tools/release.py --times: the slower language; 'wall' = first cell's start to last cell's "
                 "reply, 'cells' = sum of the cells' own times (cells re-run on other days); plus the training time "
                 "of runs the notebook reloaded, from its run table.",
        "chapters": chapters,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="release", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 naming every notebook out of date")
    parser.add_argument("--times", action="store_true", help=f"rewrite {TIMES} from the committed outputs")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository root")
    args = parser.parse_args(argv)
    try:
        if args.times:
            text = json.dumps(measure_times(args.root), indent=1) + "\n"
            _student_generator(args.root)._write_atomic(args.root / TIMES, text)
            print(f"wrote {TIMES}")
            return 0
        if args.check:
            stale = out_of_date(args.root)
            for path in stale:
                print(f"out of date: {path} (run python tools/release.py)")
            return 1 if stale else 0
        written = write_all(args.root)
    except (ValueError, OSError, KeyError) as error:
        print(f"release: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} notebook(s)" + "".join(f"\n  {p}" for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
