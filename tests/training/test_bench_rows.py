"""bench/train.py appends its rows to the recipe table of docs/BENCHMARKS.md, and only there."""

import json

import pytest

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


# A run's meta.json, as much of it as summarize reads: 300 GFLOP/s achieved (3 x 1e8 x 1000 in 1 s).
RUN_META = {
    "forward_flops_per_image": 1e8,
    "images_seen": 1000,
    "test_images": 100,
    "train_seconds": 1.0,
    "test_accuracy": 0.9,
    "test_accuracy_tta": 0.91,
    "images_per_second": 1000.0,
}


def test_mfu_is_taken_against_the_fastest_ceiling_of_any_sitting(tmp_path):
    from bench.train import add_ceiling, mfu_cell, summarize

    add_ceiling(tmp_path, {"matmul": 300.0, "conv": 500.0})
    sittings = add_ceiling(tmp_path, {"matmul": 310.0, "conv": 400.0})  # a slow resume
    s = summarize(RUN_META, sittings)
    assert s["sittings"] == 2 and s["ceiling_gflops"] == 500.0
    assert s["achieved_gflops"] == pytest.approx(300.0)  # 3 x 1e8 x 1000 in 1 s
    assert s["mfu"] == pytest.approx(0.6)
    assert mfu_cell(s) == "60%"  # no fifth kernel: one figure
    assert s["work_pflop"] == pytest.approx((3e11 + 6e10) / 1e15)  # + 6 TTA passes x 100


def test_the_mfu_is_also_given_against_the_issues_four_kernels():
    """The project's own conv form (nine-matmul filter gradient) is the fastest kernel: the row
    shows the MFU against it, and against issue 10's four kernels beside it."""
    from bench.train import NINE_MATMUL_CONV_KERNEL, mfu_cell, summarize

    sittings = [
        {"matmul": 400.0, "conv": 450.0, NINE_MATMUL_CONV_KERNEL: 600.0},
        {"matmul": 500.0, "conv": 420.0, NINE_MATMUL_CONV_KERNEL: 580.0},
    ]
    s = summarize(RUN_META, sittings)
    assert s["ceiling_kernel"] == NINE_MATMUL_CONV_KERNEL and s["mfu"] == pytest.approx(0.5)
    assert s["mfu_issue_kernels"] == pytest.approx(0.6)  # 300 of the best other kernel, 500
    assert mfu_cell(s) == "50% (of issue 10's four kernels: 60%)"


def test_the_ceiling_includes_the_conv_as_training_can_run_it(monkeypatch):
    """Issue 10's four kernels, and the bfloat16 conv with the nine-matmul filter gradient
    (training.layers.Conv2D): a ceiling without it could be beaten by the training's convs."""
    from bench import train

    monkeypatch.setattr(train, "CEILING_SECONDS", 0.0)
    monkeypatch.setattr(train, "CEILING_CONV", (4, 8, 32))  # small: the kinds, not the speeds
    monkeypatch.setattr(train, "CEILING_MATMUL", 64)
    kernels = train.measure_ceiling()
    assert set(kernels) == {
        "matmul_float32",
        "matmul_bfloat16",
        "conv3x3_fwd_bwd_float32",
        "conv3x3_fwd_bwd_bfloat16",
        train.NINE_MATMUL_CONV_KERNEL,
    }
    assert all(v > 0 for v in kernels.values())


def test_a_row_says_when_the_filter_gradients_were_nine_matmuls():
    from bench.train import precision_cell

    assert precision_cell({"precision": "float32"}) == "float32"  # runs from before the choice
    assert precision_cell({"precision": "mixed_bfloat16", "filter_grad": "kernel"}) == (
        "mixed_bfloat16"
    )
    assert precision_cell({"precision": "mixed_bfloat16", "filter_grad": "matmuls"}) == (
        "mixed_bfloat16, filter gradients as nine matmuls"
    )


def test_a_finished_run_folder_is_refused_before_any_measuring(tmp_path, monkeypatch):
    from bench.train import main

    monkeypatch.setattr("bench.train.measure_ceiling", lambda: pytest.fail("measured"))
    (tmp_path / "meta.json").write_text("{}")
    (tmp_path / "final.weights.h5").write_bytes(b"")
    with pytest.raises(SystemExit, match="finished run"):
        main(["--run-dir", str(tmp_path), "--no-record"])


def test_other_options_on_an_interrupted_run_are_refused_before_any_measuring(
    tmp_path, monkeypatch
):
    from bench.train import main

    monkeypatch.setattr("bench.train.measure_ceiling", lambda: pytest.fail("measured"))
    (tmp_path / "run.json").write_text('{"seed": 0, "recipe": "fast"}')  # an interrupted run:
    (tmp_path / "checkpoint.npz").write_bytes(b"")  # it trained, so its options are pinned
    with pytest.raises(SystemExit, match="other options"):
        main(["--run-dir", str(tmp_path), "--seed", "1", "--no-record"])


def test_a_run_that_kept_older_recipe_settings_is_marked_in_its_row():
    """A run resumed after the code's recipe changed finishes with its first settings; its
    row must not pass for the code's recipe."""
    from bench.train import _ran_as_coded, recipe_label
    from training.config import RunOptions

    opts = RunOptions("x", "runs/r", recipe="fast")
    meta = {"recipe": json.loads(json.dumps(opts.resolve_recipe().to_dict()))}
    assert _ran_as_coded(meta, opts)
    assert recipe_label("fast", None, _ran_as_coded(meta, opts)) == "fast"
    meta["recipe"]["muon_lr"] = 0.5
    assert not _ran_as_coded(meta, opts)
    assert recipe_label("fast", 5.0, False) == "fast 5 ep, settings as started (meta.json)"


def test_a_note_goes_into_the_recipe_cell_so_no_row_is_edited_by_hand():
    from bench.train import recipe_label

    assert recipe_label("fast", None, True, "wd x0.5") == "fast (note: wd x0.5)"
    assert recipe_label("fast", 15.0, True, "a|b") == "fast 15 ep (note: a/b)"  # no stray column


def test_a_noted_row_is_a_marker_off_the_curves_line():
    """A note says what differs: its run is not one more sample of the recipe's point."""
    from bench.train import recipe_label
    from bench.work_curve import off_line

    assert off_line(recipe_label("fast", None, True, "wd x0.5"))
    assert not off_line(recipe_label("fast", 15.0))
