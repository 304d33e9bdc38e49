"""TensorFlow's start-up lines go to the log file, and come back to the terminal on failure.

The import is replaced by a stand-in that writes to file descriptor 2 the way absl does before
its initialisation (TensorFlow's own lines differ between machines and versions, so a test on
them could pass by printing nothing). Each case runs in a fresh interpreter: the capture
redirects this process's fd 2 and does nothing once TensorFlow is imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import os, sys
from pathlib import Path
from runtime import tf_startup

def fake_load():
    os.write(2, b"I0000 cuInit: no CUDA-capable device\\n")
    if sys.argv[2] == "fail":
        raise ImportError("libtensorflow_cc.so.2: cannot open shared object file")

tf_startup._load = fake_load
tf_startup.import_tensorflow(Path(sys.argv[1]))
os.write(2, b"after the import\\n")
"""


def run(log: Path, mode: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(log), mode],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_start_up_lines_go_to_the_log_and_stderr_comes_back(tmp_path) -> None:
    log = tmp_path / "tensorflow.log"
    done = run(log, "ok")
    assert done.returncode == 0, done.stderr
    assert "cuInit" in log.read_text()
    assert "cuInit" not in done.stderr
    assert done.stderr == "after the import\n"  # fd 2 is the terminal again


def test_a_failed_import_shows_the_captured_lines_with_the_error(tmp_path) -> None:
    done = run(tmp_path / "tensorflow.log", "fail")
    assert done.returncode == 1
    assert "cuInit" in done.stderr and "libtensorflow_cc.so.2" in done.stderr
    assert done.stderr.index("cuInit") < done.stderr.index("Traceback")


def test_setting_the_log_level_yourself_turns_the_capture_off(tmp_path) -> None:
    log = tmp_path / "tensorflow.log"
    done = run(log, "ok", TF_CPP_MIN_LOG_LEVEL="0")
    assert "cuInit" in done.stderr
    assert not log.exists()


def test_a_ctrl_c_during_the_import_is_acted_on_after_it():
    """A Ctrl-C that lands inside Keras's import made it report 'you need to have optree
    installed' (a CI failure of the test now called
    test_a_stop_before_training_starts_is_a_sentence_and_a_log_line)."""
    import signal
    import time

    import pytest

    from runtime.tf_startup import stops_after_import

    finished = False
    with pytest.raises(KeyboardInterrupt), stops_after_import():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        finished = True  # the "import" ran to its end
    assert finished
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_sigterm_during_the_import_is_acted_on_after_it():
    """As Ctrl-C: held until the import ends, then given to the handler there before (the
    training's, which raises Terminated so that train.log can say so)."""
    import signal

    import pytest

    from runtime.interrupts import Terminated, sigterm_as_ctrl_c
    from runtime.tf_startup import stops_after_import

    finished = False
    with pytest.raises(Terminated), sigterm_as_ctrl_c(), stops_after_import():
        os.kill(os.getpid(), signal.SIGTERM)
        finished = True
    assert finished
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
