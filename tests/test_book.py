"""The rendered site: one build per language (book/build_site.py) that speaks its language, without warnings,
showing the chapters, their outputs and the Colab buttons; a bilingual landing page; links that resolve."""

import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
OTHER = {"pt": "es", "es": "pt"}


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, str(ROOT / "book" / "build_site.py"), "--output", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]  # warnings are errors
    yield out / "html"
    shutil.rmtree(out, ignore_errors=True)


def chapter(html: Path, lang: str, name: str = "05_vit_vs_cvt_cifar10") -> str:
    return (html / lang / "notebooks" / lang / f"{name}.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("lang", ["pt", "es"])
def test_chapter_pages_show_their_outputs_and_a_colab_button(html, lang):
    page = chapter(html, lang)
    assert page.count("<img") >= 5, "figures of the committed run"
    assert "colab.research.google.com/github/cvt-edu/cvt-edu/blob/main/notebooks/" + lang in page
    assert "test accuracy (%)" in page and page.count("<table") >= 2  # cost and comparison tables, rendered
    other = OTHER[lang]
    # the same chapter in the other language: that build's page
    assert f'href="../../../{other}/notebooks/{other}/05_vit_vs_cvt_cifar10.html"' in page
    assert "REPO_URL" not in page  # the Colab setup cell is left out of the book


# What Sphinx and the themes print in each language (their own catalogues): the page's language, the
# previous/next links, the table of contents, the download button, the search page's title; "Voltar ao topo"
# comes from book/locales/pt_BR (pydata-sphinx-theme has no pt catalogue).
INTERFACE = {
    "pt": ['<html lang="pt-BR"', ">anterior<", ">próximo<", "Conteúdo", "Baixar arquivo fonte", "Voltar ao topo"],
    "es": ['<html lang="es"', ">anterior<", ">siguiente<", "Contenido", "Descargar archivo fuente", "Volver arriba"],
}
ENGLISH = [">previous<", ">next<", ">Contents<", "Download source file", "Back to top", "Skip to main content"]
SEARCH_TITLE = {"pt": "<h1>Buscar", "es": "<h1>Búsqueda"}


@pytest.mark.parametrize("lang", ["pt", "es"])
def test_each_build_speaks_its_language(html, lang):
    page = chapter(html, lang, "02_self_attention")
    for text in INTERFACE[lang]:
        assert text in page, f"{lang}: {text!r} missing from the chapter page"
    for text in INTERFACE[OTHER[lang]][:1] + ENGLISH:
        assert text not in page, f"{lang}: {text!r} on the chapter page"
    assert SEARCH_TITLE[lang] in (html / lang / "search.html").read_text(encoding="utf-8")


def test_every_chapter_and_the_reference_pages_are_rendered_in_their_own_build(html):
    for lang in ("pt", "es"):
        pages = sorted(p.name for p in (html / lang / "notebooks" / lang).glob("*.html"))
        assert len(pages) == 14, pages  # chapters 00-09 and the student versions of TP 1-4
        assert not (html / lang / "notebooks" / OTHER[lang]).exists(), "each build renders its language only"
    assert "Dosovitskiy" in (html / "pt" / "book" / "pt" / "referencias.html").read_text(encoding="utf-8")
    assert "Glosario" in (html / "es" / "book" / "es" / "glosario.html").read_text(encoding="utf-8")
    assert "Guia do professor" in (html / "pt" / "book" / "pt" / "guia_do_professor.html").read_text(encoding="utf-8")
    assert "Guía del docente" in (html / "es" / "book" / "es" / "guia_del_docente.html").read_text(encoding="utf-8")
    tp = (html / "es" / "notebooks" / "es" / "tp2_cvt.html").read_text(encoding="utf-8")
    assert "TP 2" in tp and "BEGIN SOLUTION" not in tp  # the student version, rendered
    assert not (html / "jupyter_execute").exists(), "myst-nb's working files stay outside the site"


def test_landing_pages_link_to_each_other_and_the_site_landing_links_both(html):
    pt = (html / "pt" / "book" / "pt" / "index.html").read_text(encoding="utf-8")
    es = (html / "es" / "book" / "es" / "index.html").read_text(encoding="utf-8")
    assert 'href="../../../es/book/es/index.html"' in pt and 'href="../../../pt/book/pt/index.html"' in es
    landing = (html / "index.html").read_text(encoding="utf-8")
    assert 'href="pt/book/pt/index.html"' in landing and 'href="es/book/es/index.html"' in landing
    assert "Every chapter" not in landing and "Every chapter" not in pt + es  # no English left at the end
    for lang in ("pt", "es"):  # each build's own root opens its landing page
        assert f"book/{lang}/index.html" in (html / lang / "index.html").read_text(encoding="utf-8")


def test_every_link_between_pages_of_the_site_resolves(html):
    pages = sorted(html.rglob("*.html"))
    assert len(pages) > 2 * 13
    checked = 0
    for page in pages:
        for href in re.findall(r'href="([^"]+)"', page.read_text(encoding="utf-8")):
            url = urlsplit(href)
            if url.scheme or url.netloc or not url.path.endswith(".html"):
                continue
            target = (page.parent / unquote(url.path)).resolve()
            assert target.is_file(), f"{page.relative_to(html)} links {href}, which is not in the site"
            assert html in target.parents, f"{page.relative_to(html)} links {href}, outside the site"
            checked += 1
    assert checked > 100


def test_both_tables_of_contents_list_the_same_chapters_in_the_same_order():
    def chapters(lang):
        toc = yaml.safe_load((ROOT / f"_toc.{lang}.yml").read_text(encoding="utf-8"))
        return [entry["file"] for entry in toc["chapters"]]

    pt, es = chapters("pt"), chapters("es")
    notebooks = [Path(f).name for f in pt if f.startswith("notebooks/pt/")]
    assert notebooks == [Path(f).name for f in es if f.startswith("notebooks/es/")]
    assert notebooks == sorted(p.stem for p in (ROOT / "notebooks" / "pt").glob("*.ipynb"))
    assert all(f.startswith(("notebooks/pt/", "book/pt/")) for f in pt)
    assert all(f.startswith(("notebooks/es/", "book/es/")) for f in es)
