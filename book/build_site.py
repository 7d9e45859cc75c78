"""Build the course site: one Jupyter Book build per language and a bilingual landing page.

    python book/build_site.py [--output _build]      (what `make book` runs)

writes, under the output folder:
    html/index.html  the landing page (book/index.html), linking both languages;
    html/pt/         the Portuguese build, Sphinx language pt_BR; pages keep their source paths,
                     e.g. html/pt/notebooks/pt/05_vit_vs_cvt_cifar10.html (html/pt/index.html opens the course);
    html/es/         the Spanish build, Sphinx language es, e.g. html/es/notebooks/es/05_vit_vs_cvt_cifar10.html;
    .doctrees/<lang>/, .jupyter_execute/<lang>/, .jupyter_cache/: Sphinx's and myst-nb's working files
                     (the next build reuses them).

Every build reads what the languages share from _config.yml (the one place for the repository URL, the theme,
the extensions) and adds only its own: its table of contents (_toc.<lang>.yml, that language's pages only),
Sphinx's `language` (which translates the interface strings of Sphinx and the theme) and its title. A chapter's
link to the same chapter in the other language is resolved to the other build's page by book/_ext/cross_language.py.
Warnings are errors, as in tests/test_book.py.

Each build runs in a process of its own, the two at once: Sphinx keeps its translations in module globals,
so a second build in the same process would speak the first one's language.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LANDING = ROOT / "book" / "index.html"

# What each build adds to _config.yml: Sphinx's language (interface strings) and the title in that language.
BUILDS = {
    "pt": {"language": "pt_BR", "html_title": "CvT-edu: Vision Transformers, CvT, Swin e PVT"},
    "es": {"language": "es", "html_title": "CvT-edu: Vision Transformers, CvT, Swin y PVT"},
}


def toc_path(lang: str) -> Path:
    """The table of contents of one language's build: _toc.<lang>.yml at the repository root."""
    return ROOT / f"_toc.{lang}.yml"


def documents(lang: str) -> list[str]:
    """The documents one language's build renders (docnames, e.g. "notebooks/es/00_how_to_use"), from its toc."""
    from sphinx_external_toc.parsing import parse_toc_yaml

    return list(parse_toc_yaml(toc_path(lang)))


def build_language(lang: str, output: Path) -> int:
    """Build one language's pages into output/html/<lang> in this process; returns Sphinx's exit status."""
    import myst_nb.sphinx_ext
    from jupyter_book.sphinx import build_sphinx

    # myst-nb writes the notebooks' images to <Sphinx output>/../jupyter_execute, here html/jupyter_execute:
    # inside the published site, and one folder for two builds that run at once. Each build gets its own.
    myst_nb.sphinx_ext.OUTPUT_FOLDER = str(output / ".jupyter_execute" / lang)
    overrides = {
        **BUILDS[lang],
        "external_toc_path": toc_path(lang).as_posix(),
        "latex_individualpages": False,  # read by jupyter-book, as `jupyter-book build` passes it
        "nb_execution_cache_path": str(output / ".jupyter_cache"),
        "site_build": lang,
        "site_docs": {other: documents(other) for other in BUILDS if other != lang},
    }
    result = build_sphinx(
        ROOT,
        output / "html" / lang,
        doctreedir=output / ".doctrees" / lang,
        noconfig=True,
        path_config=str(ROOT / "_config.yml"),
        confoverrides=overrides,
        warningiserror=True,
        keep_going=True,
    )
    return result if isinstance(result, int) else 1  # an exception has been reported already


def write_landing(output: Path) -> Path:
    """Copy the bilingual landing page to output/html/index.html (atomically); returns that path."""
    target = output / "html" / "index.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".index.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(LANDING.read_bytes())
    os.replace(tmp, target)
    return target


def build_site(output: Path) -> int:
    """Build every language (one child process each, at once), then the landing page; returns 0 or 1."""

    def child(lang: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(Path(__file__).resolve()), "--output", str(output), "--lang", lang]
        return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)

    with ThreadPoolExecutor(len(BUILDS)) as pool:
        results = dict(zip(BUILDS, pool.map(child, BUILDS)))
    failed = []
    for lang, result in results.items():
        print(f"===== {lang}: {output / 'html' / lang} =====\n{result.stdout}", flush=True)
        if result.returncode != 0:
            failed.append(f"{lang} (exit status {result.returncode})")
    if failed:
        print(f"build_site: error: the {', '.join(failed)} build failed; its messages are above", file=sys.stderr)
        return 1
    print(f"The site is built: open {write_landing(output)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the course site, one Jupyter Book build per language.")
    parser.add_argument("--output", type=Path, default=ROOT / "_build", help="output folder (default: _build)")
    parser.add_argument("--lang", choices=sorted(BUILDS), help="build this language only, in this process")
    args = parser.parse_args(argv)
    output = args.output.resolve()
    if args.lang:
        return build_language(args.lang, output)
    return build_site(output)


if __name__ == "__main__":
    sys.exit(main())
