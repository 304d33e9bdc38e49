"""Import TensorFlow with its start-up chatter sent to a file, not to the person at the terminal.

On a CPU-only machine TensorFlow prints about eight C++ log lines when it loads and first looks
for devices (no CUDA drivers, oneDNN is on, a failed cuInit). TF_CPP_MIN_LOG_LEVEL does not
silence them: absl writes whatever is logged before its initialisation straight to file
descriptor 2. The command-line tools people read (training, evaluation, export, predict) call
`import_tensorflow` first; if the import fails, the captured lines are shown with the error.
Setting TF_CPP_MIN_LOG_LEVEL yourself turns the capture off: you chose TensorFlow's logging.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def import_tensorflow(log_path: Path | None = None) -> None:
    """Load TensorFlow and Keras, their start-up log lines going to `log_path` (or nowhere)."""
    if "tensorflow" in sys.modules:
        return
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        import keras

        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"  # later INFO lines (XLA's) go through TF's filter
    log = open(log_path, "a+b") if log_path else tempfile.TemporaryFile()  # noqa: SIM115
    sys.stderr.flush()
    terminal = os.dup(2)
    os.dup2(log.fileno(), 2)
    try:
        import keras  # noqa: F401
        import tensorflow as tf

        tf.config.list_logical_devices()  # the device search logs too (cuInit)
    except BaseException:
        os.dup2(terminal, 2)
        log.seek(0)
        sys.stderr.write(log.read().decode(errors="replace"))
        raise
    finally:
        os.dup2(terminal, 2)
        os.close(terminal)
        log.close()
