"""Markdown tables, as the tools print them and the docs show them."""

from typing import Iterable, Sequence

__all__ = ['markdown_table']


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]],
                   right_aligned: Sequence[int] = ()) -> str:
    """A Markdown table: ``header``'s cells, then one line per row (a row with fewer cells than
    the header is padded with empty ones); the columns at ``right_aligned`` (numbers) are
    aligned right."""
    width = len(header)
    lines = ['| ' + ' | '.join(header) + ' |',
             '|' + '|'.join('---:' if i in right_aligned else '---' for i in range(width)) + '|']
    for row in rows:
        if len(row) > width:
            raise ValueError(f'a row of {len(row)} cells in a table of {width} columns: {row}')
        cells = list(row) + [''] * (width - len(row))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)
