"""What the command-line tools share (training, evaluation, export, bench): argparse types,
and how they stop on Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
import threading
from collections.abc import Callable, Iterator


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


@contextlib.contextmanager
def stop_on_ctrl_c(prog: str, outcome: str) -> Iterator[None]:
    """Ctrl-C as one line saying what it left (`outcome`) and the shell's exit code for
    SIGINT, 130, instead of a traceback of wherever TensorFlow was."""
    try:
        yield
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted; {outcome}", file=sys.stderr)
        raise SystemExit(130) from None


class Terminated(KeyboardInterrupt):
    """SIGTERM (`docker stop`, `kill`) outside the training steps, which save a checkpoint
    first: it stops the program where it is, as Ctrl-C does, so train.log can say so; the
    exit code is still the shell's for SIGTERM, 143."""

    exit_code = 128 + signal.SIGTERM


@contextlib.contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """Inside the block SIGTERM raises Terminated instead of ending the process without a
    word. An ignored SIGTERM stays ignored."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    ):
        yield
        return

    def terminated(_signum: int, _frame: object) -> None:
        raise Terminated()

    before = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)
