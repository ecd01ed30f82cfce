import pytest

from mmbcn.utils.tables import markdown_table


def test_a_table_pads_short_rows_and_aligns_numbers_right():
    table = markdown_table(['name', 'count', 'note'], [('a', '1', 'x'), ('b', 'not run')],
                           right_aligned=[1])
    assert table.splitlines() == ['| name | count | note |', '|---|---:|---|',
                                  '| a | 1 | x |', '| b | not run |  |']


def test_a_row_longer_than_the_header_is_refused():
    with pytest.raises(ValueError, match='a row of 3 cells in a table of 2 columns'):
        markdown_table(['a', 'b'], [('1', '2', '3')])
