"""Markdown tables, the one way the package and the chapters build them (with ``tabulate``).

Cells come formatted by the caller (``f"{x:.1f}"``, ``"3.2x"``...), so every table keeps its own
number formats; :func:`markdown_table` only lays them out, numbers right-aligned where ``align``
says so. A notebook shows the result with ``IPython.display.Markdown``; ``cvt-edu`` writes it to files.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from tabulate import tabulate

__all__ = ["markdown_table"]

_ALIGN = {"l": "left", "r": "right", "c": "center"}


def markdown_table(rows: Iterable[Sequence[Any]], headers: Sequence[str], align: str | None = None) -> str:
    """A GitHub-flavoured Markdown (pipe) table.

    Args:
        rows: one sequence of cells per line; a cell is written with ``str`` as it is (no number
            parsing or reformatting), ``None`` as an empty cell.
        headers: one name per column.
        align: one letter per column, ``"l"`` (left), ``"r"`` (right, for numbers) or ``"c"``;
            ``None``: every column left.

    Returns:
        The table, one line per row under the header and its ``|---|---:|`` line, no final newline.

    Raises:
        ValueError: if ``align`` or a row does not have one entry per header, or ``align`` has
            another letter; the message names the row.
    """
    headers = list(headers)
    align = align or "l" * len(headers)
    if len(align) != len(headers) or set(align) - set(_ALIGN):
        raise ValueError(f"align must be one of l, r, c per column ({len(headers)} columns), got {align!r}")
    rows = [list(r) for r in rows]
    for i, row in enumerate(rows):
        if len(row) != len(headers):
            raise ValueError(f"row {i} has {len(row)} cells, expected {len(headers)} (one per header): {row}")
    return tabulate(rows, headers, tablefmt="pipe", colalign=[_ALIGN[a] for a in align], disable_numparse=True, missingval="")
