"""Chapter 0's module map comes from the package itself: every module, each with its docstring."""

from pathlib import Path

import cvt_edu
from cvt_edu.course.contents import module_map, print_module_map

PACKAGE = Path(cvt_edu.__file__).parent


def test_the_map_lists_every_module_of_the_package_once_with_its_summary():
    rows = module_map()
    names = [name for name, _ in rows]
    on_disk = {
        ".".join(("cvt_edu", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        for p in PACKAGE.rglob("*.py")
        if p.name != "__main__.py"
    }
    assert len(names) == len(set(names)) and set(names) == on_disk
    assert all(summary for _, summary in rows), [name for name, summary in rows if not summary]
    assert names.index("cvt_edu.windows") < names.index("cvt_edu.train")  # concept modules first, then subpackages


def test_the_printed_map_indents_subpackages_and_strips_markup(capsys):
    print_module_map(width=100)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("cvt_edu/") and any(line.startswith("  train/") for line in lines)
    assert any(line.startswith("    loop ") for line in lines)
    assert all(len(line) <= 100 for line in lines) and not any(":mod:" in line or "``" in line for line in lines)


def test_the_package_version_is_the_one_pyproject_declares():
    import tomllib

    declared = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert cvt_edu.__version__ == declared
