"""Fixed-width text for people: the tables the audit commands print, and yuan.

One layout for every table (`text_table`): columns as wide as their widest cell,
two spaces apart, the columns given as `right` (the numbers) right-aligned, no
trailing blanks.  Amounts are stored and computed in fen; `yuan` turns them into
text for the reader.
"""

from __future__ import annotations

from collections.abc import Sequence


def text_table(header: Sequence[str], body: Sequence[Sequence[str]], right: tuple[int, ...]) -> str:
    """`header` and `body` as aligned text lines; the columns numbered in `right` right-aligned."""
    rows = [header, *body]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    out = []
    for r in rows:
        cells = [
            r[i].rjust(widths[i]) if i in right else r[i].ljust(widths[i]) for i in range(len(r))
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out) + "\n"
