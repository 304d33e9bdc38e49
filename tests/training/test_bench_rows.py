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


def _row(recipe: str, seed: int, precision: str, plain: str, tta: str, work: str) -> str:
    cells = ["2026-11-25", recipe, str(seed), precision, plain, tta, work]
    return "| " + " | ".join(cells + ["1"] * 6 + ["cpu"]) + " |\n"


def test_the_work_curve_reads_each_recipe_length_and_skips_defect_rows(tmp_path):
    from bench.train import recipe_label
    from bench.work_curve import main, points, read_rows

    rows = [
        _row("fast", 0, "float32", "89.97%", "90.98%", "0.360"),
        _row("fast", 1, "float32", "90.23%", "91.36%", "0.360"),
        _row("fast", 0, "mixed_bfloat16 (defect)", "88.95%", "90.17%", "0.360"),
        _row(recipe_label("fast", 5.0), 0, "float32", "88.00%", "89.00%", "0.182"),
    ]
    text = BEFORE + TABLE_MARK + "\n" + ROW_HEADER + "".join(rows) + AFTER
    by_recipe = points(read_rows(text))
    assert by_recipe == {
        "fast": [(0.360, 89.97, 90.98), (0.360, 90.23, 91.36)],
        "fast 5 ep": [(0.182, 88.0, 89.0)],
    }
    doc, out = tmp_path / "B.md", tmp_path / "curve.png"
    doc.write_text(text)
    main(["--doc", str(doc), "--out", str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_resumed_run_marks_its_wall_time():
    from bench.train import wall_cell

    assert wall_cell({"bench_wall_seconds": 1307.4, "resumed_at_steps": []}) == "1307"
    assert wall_cell({"bench_wall_seconds": 812.0, "resumed_at_steps": [54]}) == "812 (resumed)"
