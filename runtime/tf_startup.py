"""Import TensorFlow with its start-up chatter sent to a file, not to the person at the terminal.

On a CPU-only machine TensorFlow prints about eight C++ log lines when it loads and first looks
for devices (no CUDA drivers, oneDNN is on, a failed cuInit). TF_CPP_MIN_LOG_LEVEL does not
silence them: absl writes whatever is logged before its initialisation straight to file
descriptor 2. The command-line tools people read (training, evaluation, export, predict) call
`import_tensorflow` first; if the import fails, the captured lines are shown with the error.
Setting TF_CPP_MIN_LOG_LEVEL yourself turns the capture off: you chose TensorFlow's logging.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path


def import_tensorflow(log_path: Path | None = None) -> None:
    """Load TensorFlow and Keras, their start-up log lines going to `log_path` (or nowhere)."""
    if "tensorflow" in sys.modules:
        return
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or not _stderr_is_a_file():
        _load()
        return
    # Level 2 also drops TensorFlow's later INFO and WARNING lines (XLA's banner, for one):
    # these tools print their own progress; TF_CPP_MIN_LOG_LEVEL=0 brings them back.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    with open(log_path, "a+b") if log_path else tempfile.TemporaryFile() as log:
        start = log.seek(0, os.SEEK_END)
        sys.stderr.flush()
        terminal = os.dup(2)
        try:
            os.dup2(log.fileno(), 2)
            _load()
        except Exception:
            os.dup2(terminal, 2)
            log.seek(start)
            sys.stderr.write(log.read().decode(errors="replace"))
            raise
        finally:  # also on Ctrl-C: the caller's "interrupted" sentence must reach the terminal
            os.dup2(terminal, 2)
            os.close(terminal)


def _load() -> None:
    with stops_after_import():
        import keras  # noqa: F401
        import tensorflow as tf

        tf.config.list_logical_devices()  # the device search logs too (cuInit)


HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stops_after_import() -> Iterator[None]:
    """Hold a Ctrl-C or SIGTERM until the block ends, then deliver it to the handler before.

    A KeyboardInterrupt in the middle of an import leaves a module half made, and Keras then
    reports a missing package ("you need to have `optree` installed") instead of the interrupt.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    # Every handler is put back even if a restored one raises at once (a second Ctrl-C).
    with contextlib.ExitStack() as restore:
        for s in HELD_SIGNALS:
            if signal.getsignal(s) is not signal.SIG_IGN:
                before = signal.signal(s, lambda signum, _frame: caught.append(signum))
                restore.callback(signal.signal, s, before)
        yield
    for s in dict.fromkeys(caught):
        signal.raise_signal(s)  # Python's SIGINT handler raises KeyboardInterrupt here


def _stderr_is_a_file() -> bool:
    """False where there is no fd 2 to redirect (pythonw, a closed stderr)."""
    try:
        os.fstat(2)
    except OSError:
        return False
    return sys.stderr is not None
