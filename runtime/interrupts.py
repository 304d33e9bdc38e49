"""How the command-line tools stop on Ctrl-C or SIGTERM: one line saying what was left and the
shell's exit code, never a traceback of wherever TensorFlow was."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

# What stops a long job cleanly (a training with a checkpoint first, `make serve` with both
# servers): Ctrl-C, `kill`, and the hang-up of a closed terminal or dropped SSH session (a
# SIGHUP already ignored, as under nohup, stays ignored).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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
