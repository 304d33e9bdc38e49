"""`make serve`: the local model server and the proxy together, stopped together.

Starts `python -m modelserver` on $GRPC_PORT/$REST_PORT with the model in $MODEL_BASE_PATH
(or the models.config in $MODEL_CONFIG_FILE, for labels and version policies),
waits until a version is AVAILABLE, starts the proxy under gunicorn on $PROXY_PORT, waits
for /readyz, prints the URL, and on Ctrl-C / SIGTERM / SIGHUP (a closed terminal) stops the
proxy, then the model server. A model server that exits is started again (the proxy answers
503 meanwhile), up to RESTARTS_ALLOWED times in RESTART_WINDOW_S; past that, or if the proxy
exits, the stack stops. Both children run in their own session, so a Ctrl-C or a hang-up
reaches only this script, which shuts them down in order.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from modelserver.version_names import version_dirs
from runtime.interrupts import STOP_SIGNALS
from stack.processes import (
    SETTINGS,
    STOP_TIMEOUT_S,
    Stack,
    exited,
    how_it_ended,
    model_settled,
    port_in_use,
    proxy_command,
    proxy_env,
    proxy_ready,
    start,
    stop,
    wait_for,
)

# STOP_SIGNALS stop the stack: Ctrl-C, `kill`, and the hang-up of a closed terminal or SSH
# session (the children, in their own sessions, do not get them, so without a handler they would
# outlive us). A signal already ignored when we start (SIGHUP under `nohup`) stays ignored.
_stop_requested = False  # set by the handler of STOP_SIGNALS, read by the waiting loops
MODEL_SERVER, PROXY = "the model server", "the proxy"
# A model server that exits (killed for memory, a crash) is started again, as compose's
# `restart: unless-stopped` and Kubernetes do; one that keeps exiting is a fault to see, not
# to hide, so after this many restarts within the window the stack stops.
RESTARTS_ALLOWED = 3
RESTART_WINDOW_S = 300.0


class Stopped(Exception):
    """Raised by the waiting loops once a stop signal came, to unwind into the shutdown."""


def parse_args(argv: list[str] | None) -> None:
    """No options, only --help: the settings are environment variables, as in `make serve`."""
    width = max(map(len, SETTINGS))
    settings = "\n".join(
        f"  {name:<{width}}  {what} (default {default})"
        for name, (default, what) in SETTINGS.items()
    )
    argparse.ArgumentParser(
        prog="python -m stack.serve",
        description=__doc__.split("\n\n")[0],
        epilog=f"environment variables:\n{settings}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    parse_args(argv)
    try:
        stack = Stack.from_env()
    except ValueError as error:
        print(f"serve: {error}", file=sys.stderr)
        return 2
    problem = preflight(stack)
    if problem:
        print(f"serve: {problem}", file=sys.stderr)
        return 2
    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, request_stop)
    metrics_dir = tempfile.mkdtemp(prefix="proxy-metrics-")
    children: dict[str, subprocess.Popen] = {}
    try:
        ports = f"gRPC {stack.grpc_port}, REST {stack.rest_port}"
        served = stack.config_file or stack.base_path
        say(f"starting the model server on {ports} with {served}")
        say("(without a GPU, TensorFlow's start-up lines include a 'failed call to cuInit' "
            "error: expected, and harmless)")  # fmt: skip
        start_model_server(stack, children)
        say(f"starting the proxy on port {stack.proxy_port}")
        children[PROXY] = start(proxy_command(), proxy_env(stack, metrics_dir))
        wait_for(lambda: proxy_ready(stack), children, PROXY, check_stop)
        say(f"ready: open {stack.url}   (Ctrl-C stops both)")
        return supervise(stack, children)
    except Stopped:
        say("stopping")
        return 0
    except RuntimeError as error:
        say(str(error))
        return 1
    finally:
        ignore_stop_signals()  # a second Ctrl-C must not cut the shutdown short
        for name, child in reversed(children.items()):  # the proxy first
            if not stop(child):
                say(f"{name} did not stop within {STOP_TIMEOUT_S} s of SIGTERM: killed")
        shutil.rmtree(metrics_dir, ignore_errors=True)


def supervise(stack: Stack, children: dict[str, subprocess.Popen]) -> int:
    """Until a child exits for good: the model server is started again, as compose and
    Kubernetes would, up to RESTARTS_ALLOWED times within RESTART_WINDOW_S; the proxy's exit
    stops the stack. The exit code (Stopped: a stop signal came)."""
    restarts: list[float] = []
    window = f"{RESTART_WINDOW_S:.0f} s"
    while True:
        name, dead = wait_for_exit(children)
        ended = f"{name} {how_it_ended(dead)} (see its log above)"
        if name == PROXY:
            say(f"{ended}; stopping the other")
            return 1
        if not may_restart(restarts, time.monotonic()):
            say(f"{ended}, after {RESTARTS_ALLOWED} restarts within {window}; stopping "
                "the proxy")  # fmt: skip
            return 1
        say(f"{ended}; starting it again (restart {len(restarts)} of {RESTARTS_ALLOWED} "
            f"allowed within {window}; the proxy answers 503 meanwhile)")  # fmt: skip
        restart_model_server(stack, children)


def start_model_server(stack: Stack, children: dict[str, subprocess.Popen]) -> None:
    """Started (or started again, in its place among the children: the proxy stops first),
    and waited for until its model has settled."""
    children[MODEL_SERVER] = start(stack.model_server_command())
    wait_for(lambda: model_settled(stack.rest_port), children, MODEL_SERVER, check_stop)


def restart_model_server(stack: Stack, children: dict[str, subprocess.Popen]) -> None:
    """start_model_server; a model server that exits again while it starts is left for the
    main loop, which counts that exit against RESTARTS_ALLOWED like any other."""
    try:
        start_model_server(stack, children)
    except RuntimeError as error:
        if children[MODEL_SERVER].poll() is None or children[PROXY].poll() is not None:
            raise  # not ready in time, or the proxy gone: the stack stops
        say(str(error))
        return
    say("the model server is back")


def wait_for_exit(children: dict[str, subprocess.Popen]) -> tuple[str, subprocess.Popen]:
    """The first child to exit, with its name: the proxy before the model server when both
    have (the stack stops either way), and Stopped when a stop signal came meanwhile (a
    shutdown that ends the children too must not restart one)."""
    while (gone := exited(dict(reversed(children.items())))) is None:
        check_stop()
        time.sleep(0.5)
    check_stop()
    return gone


def may_restart(restarts: list[float], now: float) -> bool:
    """Whether another restart fits RESTARTS_ALLOWED within RESTART_WINDOW_S; if so, it is
    counted (`restarts` keeps the times of those within the window)."""
    restarts[:] = [t for t in restarts if now - t < RESTART_WINDOW_S]
    if len(restarts) >= RESTARTS_ALLOWED:
        return False
    restarts.append(now)
    return True


def preflight(stack: Stack) -> str | None:
    """A clear message for the mistakes a first run makes (no model, port taken)."""
    if stack.config_file is not None:  # the server finds its folders (and names a missing one)
        if not stack.config_file.is_file():
            return f"MODEL_CONFIG_FILE={stack.config_file} is not a file"
    else:
        try:
            found = version_dirs(stack.base_path)
        except OSError as error:  # a folder this user may not read
            return f"cannot read MODEL_BASE_PATH={stack.base_path} ({error.strerror})"
        if not found:
            return (
                f"no model version folder in {stack.base_path}: train and export one "
                "(make train && make export) or set MODEL_BASE_PATH"
            )
    names = ("grpc_port", "rest_port", "proxy_port")
    ports = [getattr(stack, name) for name in names]
    if len(set(ports)) < len(ports):
        given = ", ".join(f"{name.upper()}={port}" for name, port in zip(names, ports, strict=True))
        return f"the three ports must differ ({given})"
    for name, port in zip(names, ports, strict=True):
        if port_in_use(port):
            return f"port {port} is already in use; choose another with {name.upper()}=..."
    return None


def request_stop(signum: int, frame: object) -> None:
    """Only sets a flag that the loops check (a plain bool: a threading.Event takes a lock the
    interrupted thread may hold). Raising from the handler could land anywhere, e.g. inside
    Popen.poll() between taking its lock and the `try` that frees it, and the shutdown's own
    wait on that child would then block for ever."""
    global _stop_requested
    ignore_stop_signals()  # once: a second signal must not cut the shutdown short
    _stop_requested = True


def check_stop() -> None:
    if _stop_requested:
        raise Stopped


def ignore_stop_signals() -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def say(message: str) -> None:
    # After a SIGHUP the terminal may be gone; the shutdown must go on regardless.
    with contextlib.suppress(OSError):
        print(f"serve: {message}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
