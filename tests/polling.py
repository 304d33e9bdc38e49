"""How a test waits for what another process or thread does: poll, then fail with what it saw."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    read: Callable[[], T],
    done: Callable[[T], bool] = bool,
    timeout: float = 60,
    what: str = "the condition",
) -> T:
    """`read()` until `done` of its value (by default: the value is true); that value. An
    AssertionError names `what` and the last value read."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout:g} s; last read: {value!r}")
        time.sleep(0.05)
