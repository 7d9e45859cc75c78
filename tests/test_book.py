"""The rendered book builds without warnings and shows the chapters, their outputs and the Colab buttons."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("book")
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run(
        [str(jupyter_book), "build", str(ROOT), "--path-output", str(out), "--warningiserror", "--keep-going"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    yield out / "_build" / "html"
    shutil.rmtree(out, ignore_errors=True)


@pytest.mark.parametrize("lang", ["pt", "es"])
def test_chapter_pages_show_their_outputs_and_a_colab_button(html, lang):
    page = (html / "notebooks" / lang / "05_vit_vs_cvt_cifar10.html").read_text(encoding="utf-8")
    assert page.count("<img") >= 5, "figures of the committed run"
    assert "colab.research.google.com/github/cvt-edu/cvt-edu/blob/main/notebooks/" + lang in page
    assert "test accuracy (%)" in page and page.count("<table") >= 2  # cost and comparison tables, rendered
    other = "es" if lang == "pt" else "pt"
    assert f'href="../{other}/05_vit_vs_cvt_cifar10.html"' in page  # the same chapter in the other language
    assert "REPO_URL" not in page  # the Colab setup cell is left out of the book


def test_every_chapter_and_the_reference_pages_are_rendered(html):
    for lang in ("pt", "es"):
        pages = sorted(p.name for p in (html / "notebooks" / lang).glob("*.html"))
        assert len(pages) == 10, pages
    assert "Dosovitskiy" in (html / "book" / "pt" / "referencias.html").read_text(encoding="utf-8")
    assert "Glosario" in (html / "book" / "es" / "glosario.html").read_text(encoding="utf-8")


def test_landing_pages_link_to_each_other(html):
    pt = (html / "book" / "pt" / "index.html").read_text(encoding="utf-8")
    es = (html / "book" / "es" / "index.html").read_text(encoding="utf-8")
    assert 'href="../es/index.html"' in pt and 'href="../pt/index.html"' in es
    assert (html / "index.html").is_file()
