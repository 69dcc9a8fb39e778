"""Plain-text and Markdown tables for the terminal and report.md."""

from __future__ import annotations


def _cells(headers, rows):
    return [list(map(str, headers))] + [[("" if c is None else str(c)) for c in row] for row in rows]


def render(headers, rows, markdown: bool = False) -> str:
    """Columns padded to width; numbers right-aligned. Markdown gives a GitHub pipe table."""
    cells = _cells(headers, rows)
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def numeric(text):
        return text.replace(",", "").replace(".", "", 1).replace("%", "").replace("×", "").lstrip("+-").isdigit()

    def line(row):
        parts = [c.rjust(w) if numeric(c) else c.ljust(w) for c, w in zip(row, widths)]
        return ("| " + " | ".join(parts) + " |") if markdown else "  ".join(parts).rstrip()

    sep = ("|" + "|".join("-" * (w + 2) for w in widths) + "|") if markdown else "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])
