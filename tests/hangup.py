"""Children started with SIGHUP ignored (as under nohup) or at its default (as from a
terminal), without subprocess's preexec_fn.

preexec_fn runs Python in a forked copy of the test process before exec, and the test process
has gRPC's threads running by then (the in-process proxy tests): its fork handlers logged
"epoll_wait error: Bad file descriptor" and the child never reached exec, a hang that failed
two CI runs of the `make serve` tests. Python's documentation warns that preexec_fn may
deadlock with threads. Here a fresh interpreter sets the disposition and execs the command:
an ignored signal stays ignored across exec, a default one stays default.
"""

from __future__ import annotations

import sys


def with_hangup(command: list[str], ignored: bool) -> list[str]:
    disposition = "SIG_IGN" if ignored else "SIG_DFL"
    code = (
        "import os, signal, sys; "
        f"signal.signal(signal.SIGHUP, signal.{disposition}); "
        "os.execvp(sys.argv[1], sys.argv[1:])"
    )
    return [sys.executable, "-c", code, *command]
