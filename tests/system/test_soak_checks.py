"""The soak's verdicts can fail: each broken promise, fed in as a record, is reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.soak import Event, ModelSource, Settings, SoakResult, failures, plot, summary, table
from bench.soak_load import Record

EVENTS = [Event(name, at, at + 1) for name, at in (
    ("warm_limit", 1), ("warm", 4), ("roll_out", 5), ("roll_back", 6), ("canary", 7),
    ("kill", 10), ("restart", 10.1), ("warm_restarted", 14), ("fill_limit", 15), ("end", 20),
)]  # fmt: skip
TOP = [{"label": "cat", "probability": 0.6}, {"label": "dog", "probability": 0.3}]


def result(
    *records: Record, samples=((3.5, 200, 700), (13, 200, 700), (17, 200, 700))
) -> SoakResult:
    reference = {("good", 0): TOP}
    return SoakResult(Settings(), list(records), EVENTS, reference, {("good", 0): "cat"},
                      ModelSource(Path("m"), "test", None), "cpu",
                      rss_samples=list(samples))  # fmt: skip


def good(at: float, status: int = 200, elapsed: float = 0.05, label: str = "cat") -> Record:
    top = [{**TOP[0], "label": label}, TOP[1]] if status == 200 else []
    return Record("good", 0, at, elapsed, status, 200, top)


def test_a_clean_run_passes_and_renders(tmp_path) -> None:
    clean = result(good(5), good(11, 503, 0.2), Record("bomb", 0, 6, 0.1, 413, 413))
    assert failures(clean) == []
    assert "| steady" in table(clean) and "down window" in summary(clean)
    plot(clean, tmp_path / "soak.png")
    assert (tmp_path / "soak.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("broken", "words"),
    [
        (result(good(5, 503)), "outside the down window"),
        (result(good(11, 503, elapsed=30)), "503 after"),
        (result(good(11, 500)), "in the down window got 500"),
        (result(Record("bomb", 0, 6, 0.1, 500, 413)), "hostile bomb got 500"),
        (result(good(5, label="dog")), "answered dog"),
        (result(samples=((3.5, 200, 700), (13, 200, 700), (17, 260, 700))), "proxy memory grew"),
        (result(samples=((17, 200, 700),)), "no memory samples"),
    ],
)
def test_each_broken_promise_is_reported(broken: SoakResult, words: str) -> None:
    assert any(words in problem for problem in failures(broken)), failures(broken)


def _proxy_samples(warm: list[float], end: list[float]) -> list[tuple[float, float, float]]:
    """Proxy RSS spread over the after-warm-up stretch (3-5 s) and the end (16-20 s)."""
    times = [*np.linspace(3.1, 4.9, len(warm)), *np.linspace(16.1, 19.9, len(end))]
    proxy = [(t, mb, 700.0) for t, mb in zip(times, [*warm, *end], strict=True)]
    return [*proxy, (13, 0, 700)]  # the restarted model server's warm-up sample (12.55-14 s)


SWINGS = [190, 250, 195, 244, 200, 260, 192, 248]  # median 222


def test_upload_swings_are_not_a_leak() -> None:
    """A high median at the end (more samples caught mid-upload) over the same floor passes."""
    end = [190, 262, 258, 195, 255, 250, 198, 259, 252, 193]
    assert np.median(end) > 1.1 * np.median(SWINGS)
    assert failures(result(samples=_proxy_samples(SWINGS, end))) == []


def test_a_raised_floor_is_a_leak() -> None:
    problems = failures(result(samples=_proxy_samples(SWINGS, [mb + 30 for mb in SWINGS])))
    assert len(problems) == 1 and "proxy memory grew" in problems[0], problems
    assert "min / median / max after warm-up 190 / 222 / 260 MB over 8 samples" in problems[0]


def test_a_sample_taken_while_a_process_was_gone_is_left_out() -> None:
    """A worker exiting mid-sample gives NaN (it gave 0, a false drop in the floor)."""
    gone = _proxy_samples(SWINGS, [*SWINGS[:4], float("nan"), float("nan"), *SWINGS[4:]])
    clean = result(samples=gone)
    assert failures(clean) == []
    assert clean.rss_end["proxy"] == pytest.approx(np.percentile(SWINGS, 25))


def test_the_one_minute_variant_leaves_out_growth_but_not_a_missing_sampler() -> None:
    grown = result(samples=((3.5, 200, 700), (13, 200, 700), (17, 260, 700)))
    assert failures(grown, memory_growth=False) == []
    unsampled = failures(result(samples=((17, 200, 700),)), memory_growth=False)
    assert any("no memory samples" in problem for problem in unsampled), unsampled
