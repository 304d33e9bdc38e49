"""The argparse parser and types the command-line tools share (training, evaluation, export,
bench); how they stop on Ctrl-C or SIGTERM is runtime.interrupts."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import NoReturn, TypeVar

T = TypeVar("T")


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with a mistake said in one line: its usage block (eleven lines for
    training.train) came first and buried the one line that says what was wrong."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (--help lists the options)\n")


def positive(
    kind: type, zero: bool = False, below: int | None = None
) -> Callable[[str], int | float]:
    """An argparse type for a finite number above zero (or from zero, and under `below`): 0 or
    -3 epochs would "finish" untrained, and nan or inf ones failed deep in TensorFlow with a
    traceback."""

    def parse(text: str):
        value = kind(text)
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(
                f"must be {'0 or more' if zero else 'above 0'}, got {text}"
            )
        if below is not None and value >= below:
            raise argparse.ArgumentTypeError(f"must be below {below}, got {text}")
        return value

    parse.__name__ = f"{'non-negative' if zero else 'positive'} {kind.__name__}"
    return parse


def non_empty(kind: Callable[[str], T] = str) -> Callable[[str], T]:
    """An argparse type for a path or a name that may not be empty: `--run-dir "$RUN"` with RUN
    unset trained into the current folder (and export then published that), and `--data ""`
    looked for images in it."""

    def parse(text: str) -> T:
        if not text.strip():
            raise argparse.ArgumentTypeError("is empty (an unset shell variable?)")
        return kind(text)

    parse.__name__ = "non-empty value"
    return parse
