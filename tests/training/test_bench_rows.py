"""bench/train.py appends its rows to the recipe table of docs/BENCHMARKS.md, and only there."""

from bench.train import ROW_HEADER, TABLE_MARK, _insert_row

BEFORE = "# Benchmarks\n\nintro\n\n"
AFTER = "\n## Next section\n\ntext\n"


def test_first_row_goes_into_an_empty_table():
    text = BEFORE + TABLE_MARK + "\n" + ROW_HEADER + AFTER
    out = _insert_row(text, "| row 1 |\n")
    assert out == BEFORE + TABLE_MARK + "\n" + ROW_HEADER + "| row 1 |\n" + AFTER


def test_later_rows_follow_the_last_one():
    text = BEFORE + TABLE_MARK + "\n" + ROW_HEADER + "| row 1 |\n" + AFTER
    out = _insert_row(text, "| row 2 |\n")
    assert out == BEFORE + TABLE_MARK + "\n" + ROW_HEADER + "| row 1 |\n| row 2 |\n" + AFTER


def test_a_table_at_the_end_of_the_file():
    text = BEFORE + TABLE_MARK + "\n" + ROW_HEADER
    assert _insert_row(text, "| row 1 |\n").endswith(ROW_HEADER + "| row 1 |\n")
