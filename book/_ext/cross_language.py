"""Sphinx extension: links from one language's build to a page of another language's build.

The site is one Sphinx build per language (book/build_site.py), each listing only its own language's
pages, so that Sphinx and the theme speak that language. A chapter still links the same chapter in
the other language with a relative link to its source, e.g. ``[Lee este capítulo en español](../es/05_x.ipynb)``
in ``notebooks/pt/05_x.ipynb``. MyST would report that document as unknown to this build; this extension
turns such a link into a link to the page the other build renders, ``../../../es/notebooks/es/05_x.html``
from ``pt/notebooks/pt/05_x.html``, when (and only when) the other build's table of contents lists it.
Any other unknown document is left to MyST, which warns (an error under ``--warningiserror``).

Configuration (set by book/build_site.py; without it the extension does nothing):
    site_build: this build's folder under the site root, e.g. ``"pt"``.
    site_docs: for every other build, its folder and the documents it renders,
        e.g. ``{"es": ["book/es/index", "notebooks/es/05_vit_vs_cvt_cifar10", ...]}``.
"""

import posixpath

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.transforms.post_transforms import SphinxPostTransform


class CrossLanguageLinks(SphinxPostTransform):
    """Resolve MyST links to documents of another language's build before MyST reports them missing."""

    default_priority = 8  # before MyST's MystReferenceResolver (9), which warns about unknown documents
    formats = ("html",)

    def run(self, **kwargs) -> None:
        here = self.config.site_build
        other_docs = {doc: build for build, docs in self.config.site_docs.items() for doc in docs}
        if not here or not other_docs:
            return
        builder = self.app.builder
        for node in list(self.document.findall(pending_xref)):
            target = node.get("reftarget")
            if node.get("reftype") != "myst" or node.get("refdomain") != "doc" or target in self.env.all_docs:
                continue
            build = other_docs.get(target)
            if build is None:
                continue  # unknown to every build: MyST warns
            from_page = posixpath.join(here, builder.get_target_uri(node.get("refdoc", self.env.docname)))
            to_page = posixpath.join(build, builder.get_target_uri(target))
            uri = posixpath.relpath(to_page, posixpath.dirname(from_page))
            if node.get("reftargetid"):
                uri += "#" + node["reftargetid"]
            link = nodes.reference("", "", internal=True, refuri=uri)
            if node.get("refexplicit"):
                link.extend(child.deepcopy() for child in node[0].children)
            else:
                link += nodes.literal(target, target)
            node.replace_self(link)


def setup(app):
    app.add_config_value("site_build", "", "env", [str])
    app.add_config_value("site_docs", {}, "env", [dict])
    app.add_post_transform(CrossLanguageLinks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
