"""The one Markdown-table helper: cells written as given, alignment per column, bad rows refused."""

import pytest

from cvt_edu.lab.compare import comparison_table
from cvt_edu.viz.tables import markdown_table


def cells(table: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in table.splitlines()]


def test_cells_are_written_as_given_and_numbers_right_aligned():
    table = markdown_table([["vit", "1.50", "007", None], ["cvt", 2, "3.2x", "ok"]], ["model", "a", "b", "status"], align="lrrl")
    rows = cells(table)
    assert rows[0] == ["model", "a", "b", "status"]
    assert rows[1][1].startswith("-") and rows[1][1].endswith(":") and not rows[1][0].endswith(":")  # |:---|---:|
    assert rows[2:] == [["vit", "1.50", "007", ""], ["cvt", "2", "3.2x", "ok"]]  # no reformatting, None is empty


def test_bad_rows_and_alignments_are_refused():
    with pytest.raises(ValueError, match="row 1 has 1 cells, expected 2"):
        markdown_table([["a", "b"], ["c"]], ["x", "y"])
    with pytest.raises(ValueError, match="one of l, r, c per column"):
        markdown_table([["a", "b"]], ["x", "y"], align="l")
    with pytest.raises(ValueError, match="one of l, r, c per column"):
        markdown_table([["a", "b"]], ["x", "y"], align="lx")


def test_a_package_table_keeps_its_columns_and_number_formats():
    m = {"params": 1234567, "flops": 2.5e8, "test_accuracy": 0.61234, "seconds": 12.34, "images_per_second": None, "epochs": 3}
    rows = cells(comparison_table({"cvt-tiny": m}))
    assert rows[0][0] == "model" and len(rows[0]) == 7
    assert rows[2] == ["cvt-tiny", "1.23", "250.0", "61.2", "12.3", "0", "3"]
