"""The package's own table of contents: every module of ``cvt_edu`` with the first sentence of its docstring.

Read from the source files (``ast``), so drawing the map imports nothing: chapter 0 prints it, and it never drifts
from the code.
"""

from __future__ import annotations

import ast
import re
from importlib import resources

__all__ = ["module_map", "print_module_map"]


def module_map(package: str = "cvt_edu") -> list[tuple[str, str]]:
    """(dotted module name, summary) for every module of ``package``, concept modules first, then each subpackage.

    The summary is the docstring's first paragraph on one line, Sphinx roles and double backquotes removed;
    ``__main__`` is left out. Modules come in alphabetical order, each package's own modules before its subpackages.

    Raises:
        ModuleNotFoundError: if ``package`` is not installed.
    """
    root = resources.files(package)
    rows: list[tuple[str, str]] = []

    def walk(folder, prefix: str) -> None:
        files = sorted((f for f in folder.iterdir() if f.name.endswith(".py")), key=lambda f: (f.name != "__init__.py", f.name))
        for f in files:
            if f.name == "__main__.py":
                continue
            doc = ast.get_docstring(ast.parse(f.read_text(encoding="utf-8"))) or ""
            name = prefix if f.name == "__init__.py" else f"{prefix}.{f.name[:-3]}"
            summary = " ".join(doc.split("\n\n")[0].split())
            rows.append((name, re.sub(r":\w+:`~?\.?([^`]+)`", r"\1", summary).replace("``", "")))
        for sub in sorted(d for d in folder.iterdir() if d.is_dir() and (d / "__init__.py").is_file()):
            walk(sub, f"{prefix}.{sub.name}")

    walk(root, package)
    return rows


def print_module_map(package: str = "cvt_edu", width: int = 88) -> None:
    """Print :func:`module_map` as an indented tree, each summary cut to fit ``width`` characters."""
    for name, summary in module_map(package):
        depth = name.count(".")
        label = "  " * depth + name.rsplit(".", 1)[-1] + ("/" if _is_package(name) else "")
        room = width - 24
        text = summary if len(summary) <= room else summary[: room - 1].rstrip() + "…"
        print(f"{label:<22}  {text}")


def _is_package(name: str) -> bool:
    parts = name.split(".")
    return resources.files(parts[0]).joinpath(*parts[1:], "__init__.py").is_file()
