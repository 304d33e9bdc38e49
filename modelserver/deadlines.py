"""Request deadlines carried into the model run, as TF Serving does it (reference §4, §3.2).

TF Serving turns the gRPC client deadline, and `--rest_api_timeout_in_ms` for REST, into the
session run's `RunOptions.timeout_in_ms` (model_servers/prediction_service_impl.cc,
http_rest_api_handler.cc). When it passes, the session cancels the run and the request fails
with DEADLINE_EXCEEDED "Timed out waiting for notification" (TensorFlow's DirectSession), which
REST shows as 504. Here each run gets a TensorFlow CancellationManager that one watchdog thread
cancels at the deadline, so a runaway graph stops instead of holding a thread and a core.

A deadline is a `time.monotonic()` instant, or None for "no deadline".
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
from tensorflow.python.eager import cancellation

from modelserver.status import ServingError

Deadline = float | None

TIMED_OUT = "Timed out waiting for notification"  # DirectSession::WaitForNotification
NOT_STARTED = "Deadline exceeded before the model ran"  # local: TF Serving would run it anyway

_local = threading.local()


def _thread_manager() -> cancellation.CancellationManager | None:
    return getattr(_local, "manager", None)


# TensorFlow keeps the active CancellationManager in one process-wide global that every eager
# function call reads (tensorflow/python/eager/cancellation.py, context.py `call_function`).
# Request threads run concurrently, so each must see only its own manager: one run's deadline
# must never cancel another's.
cancellation.context = _thread_manager


def after(seconds: float | None) -> Deadline:
    """The deadline `seconds` from now (None: no deadline)."""
    return None if seconds is None else time.monotonic() + seconds


def check(deadline: Deadline) -> None:
    """Raises DEADLINE_EXCEEDED if `deadline` has passed, before any work is spent on it."""
    if deadline is not None and time.monotonic() >= deadline:
        raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, NOT_STARTED)


@contextlib.contextmanager
def enforced(deadline: Deadline) -> Iterator[None]:
    """TensorFlow function calls inside the block are cancelled when `deadline` passes; the
    block then raises DEADLINE_EXCEEDED instead of the cancellation error."""
    if deadline is None:
        yield
        return
    check(deadline)
    watch = _WATCHDOG.watch(deadline)
    _local.manager = watch.manager
    try:
        yield
    except Exception as error:
        # Not `manager.is_cancelled`: TensorFlow also cancels the manager when an op fails.
        if watch.fired:
            raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, TIMED_OUT) from error
        raise
    finally:
        _local.manager = None
        _WATCHDOG.forget(watch)


@dataclass(order=True)
class _Watch:
    deadline: float
    number: int
    manager: cancellation.CancellationManager = field(
        default_factory=cancellation.CancellationManager, compare=False
    )
    fired: bool = field(default=False, compare=False)


class _Watchdog:
    """One thread that cancels runs at their deadlines (a timer thread per request would cost
    more than a small model run). Holds only the runs in flight."""

    def __init__(self) -> None:
        self._heap: list[_Watch] = []
        self._numbers = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._sleeping_until = math.inf  # the instant the thread will next wake by itself

    def watch(self, deadline: float) -> _Watch:
        watch = _Watch(deadline, next(self._numbers))
        with self._cond:
            heapq.heappush(self._heap, watch)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deadlines", daemon=True)
                self._thread.start()
            # Wake the thread only for a deadline before the one it already sleeps towards:
            # requests with equal timeouts then cost no thread switch each.
            if watch.deadline < self._sleeping_until:
                self._cond.notify()
        return watch

    def forget(self, watch: _Watch) -> None:
        with self._cond, contextlib.suppress(ValueError):  # already fired
            self._heap.remove(watch)
            heapq.heapify(self._heap)

    def _run(self) -> None:
        with self._cond:
            while True:
                if not self._heap:
                    self._sleeping_until = math.inf
                    self._cond.wait()
                    continue
                left = self._heap[0].deadline - time.monotonic()
                if left > 0:
                    self._sleeping_until = self._heap[0].deadline
                    self._cond.wait(left)
                    continue
                watch = heapq.heappop(self._heap)
                watch.fired = True
                watch.manager.start_cancel()


_WATCHDOG = _Watchdog()
