"""Server-side batching (--enable_batching): concurrent requests to the same signature of the
same version are merged into one model call.

Follows TF Serving's BatchingSession + SharedBatchScheduler (reference §6): a batch closes when
it reaches `max_batch_size` (with `enable_large_batch_splitting`, `max_execution_batch_size`,
and a request that does not fit is cut: a piece fills the open batch, the rest come in pieces of
that size) or its oldest request has waited
`batch_timeout_micros`, and a free batch thread takes it; batches are padded up to the next
`allowed_batch_sizes` entry with copies of the first row. Requests block on an Event while
`num_batch_threads` threads run batches, so idle threads cost nothing and the GIL is free while
TensorFlow computes.

A lone request waits the full `batch_timeout_micros` for company, as in TF Serving (its
BasicBatchScheduler schedules an underfull batch only once the oldest task has waited that long).

Deadlines (batching_session.cc ProcessBatch): a batch runs under the latest deadline of its
requests (none if any request has none). Unlike TF Serving, which still runs a request that
expired in the queue if a live one shares its batch, an expired request is never run; it gets
TF Serving's RESOURCE_EXHAUSTED "Run() timeout exceeded while waiting in batching queue" (a gRPC
client, whose deadline has passed by then, sees DEADLINE_EXCEEDED).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import grpc
import numpy as np

from modelserver import deadlines
from modelserver.config_files import BatchingOptions
from modelserver.deadlines import Deadline
from modelserver.metrics import Metrics
from modelserver.servable import Signature
from modelserver.status import ServingError, invalid_argument

Outputs = dict[str, np.ndarray]
RunFn = Callable[[Signature, Mapping[str, np.ndarray], Deadline], Outputs]
QUEUE_TIMEOUT = "Run() timeout exceeded while waiting in batching queue"  # batching_session.cc


@dataclass
class _Task:
    signature: Signature
    inputs: Mapping[str, np.ndarray]
    size: int
    shape_key: tuple
    deadline: Deadline
    enqueued: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    outputs: Outputs | None = None
    error: ServingError | None = None


def batch_size_of(inputs: Mapping[str, np.ndarray]) -> int:
    """The shared first dimension of all inputs (BatchingSession requires one)."""
    sizes = {value.shape[0] if value.ndim else -1 for value in inputs.values()}
    if len(sizes) != 1 or -1 in sizes:
        raise invalid_argument(
            "Batching session Run() input tensors must have equal 0th-dimension size"
        )
    return sizes.pop()


class Batcher:
    """One batching queue per signature of one servable, served by its own batch threads."""

    def __init__(self, run: RunFn, options: BatchingOptions, metrics: Metrics, model: str) -> None:
        self._run, self._options, self._metrics, self._model = run, options, metrics, model
        # The most rows one model call takes. max_batch_size limits a request either way; with
        # large-batch splitting a batch runs at most max_execution_batch_size rows, and a request
        # is cut to fit (shared_batch_scheduler.h; `_piece_sizes`).
        self._batch_limit = (
            options.max_execution_batch_size
            if options.enable_large_batch_splitting
            else options.max_batch_size
        )
        self._queues: dict[str, deque[_Task]] = {}
        self._queued_sizes: dict[str, int] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{options.thread_pool_name}-{i}", daemon=True)
            for i in range(options.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    # ----- request side --------------------------------------------------------------------

    def submit(
        self, signature: Signature, inputs: Mapping[str, np.ndarray], deadline: Deadline = None
    ) -> Outputs:
        """Queues the request, waits for its batch, returns this request's slice of outputs."""
        deadlines.check(deadline)
        size = batch_size_of(inputs)
        if size > self._options.max_batch_size:
            # Also with large-batch splitting on: max_batch_size is the input limit
            # (shared_batch_scheduler.h ValidateBatchTaskQueueCapacity; issue #1401).
            raise invalid_argument(
                f"Task size {size} is larger than maximum input batch size "
                f"{self._options.max_batch_size}"
            )
        step, key = self._batch_limit, _shape_key(inputs)
        with self._cond:
            if self._stopping:  # unloading: in-flight requests still get an answer
                return self._run(signature, inputs, deadline)
            queued = self._queued_sizes.get(signature.name, 0)
            if queued + size > self._options.max_enqueued_batches * step:
                raise ServingError(
                    grpc.StatusCode.UNAVAILABLE,
                    "The batch scheduling queue to which this task was submitted is full",
                )
            queue = self._queues.setdefault(signature.name, deque())
            pieces = [
                _Task(signature, _rows(inputs, start, count), count, key, deadline)
                for start, count in self._piece_sizes(size, queue, key)
            ]
            queue.extend(pieces)
            self._queued_sizes[signature.name] = queued + size
            self._cond.notify()
        # Once per request at its full size, as BatchingSession records it, pieces or not.
        self._metrics.input_batch_size.observe(size, self._model, signature.name)
        for piece in pieces:
            piece.done.wait()
        if error := next((piece.error for piece in pieces if piece.error is not None), None):
            raise error
        if len(pieces) == 1:
            return pieces[0].outputs
        parts = [piece.outputs for piece in pieces]
        return {  # a scalar output is the same for every piece
            alias: np.concatenate([part[alias] for part in parts]) if value.ndim else value
            for alias, value in parts[0].items()
        }

    def _piece_sizes(self, size: int, queue: deque[_Task], key: tuple) -> list[tuple[int, int]]:
        """(start, rows) of each piece a request is queued as. With large-batch splitting, a
        request larger than the room left in the open batch is cut: the first piece fills that
        room, the rest are batch-sized (shared_batch_scheduler.h, eager split); without it, a
        request is never cut (its size is at most max_batch_size, the batch limit then)."""
        if size == 1 or not self._options.enable_large_batch_splitting:
            return [(0, size)]  # cannot be cut (skips the walk through the queue)
        room = self._open_room(queue, key)
        if size <= room:
            return [(0, size)]
        step = self._batch_limit
        return [(0, room)] + [(start, min(step, size - start)) for start in range(room, size, step)]

    def _open_room(self, queue: deque[_Task], key: tuple) -> int:
        """Rows still free in the batch that the queue's last tasks will form (packed from the
        head as `_fitting_tasks` packs them); a whole batch when a new one would start."""
        room, last_key = self._batch_limit, None
        for task in queue:
            if task.shape_key != last_key or task.size > room:
                room, last_key = self._batch_limit, task.shape_key
            room -= task.size
        return room if last_key == key and room > 0 else self._batch_limit

    def stop(self) -> None:
        """Finishes queued work, then lets the threads exit."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    # ----- batch threads -------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                batch = self._next_batch()
                if batch is None:
                    return
            self._process(batch)

    def _next_batch(self) -> list[_Task] | None:
        """Waits (holding the condition) until a batch is due; None once stopped and drained."""
        timeout = self._options.batch_timeout_micros / 1e6
        while True:
            queue_name = self._oldest_queue()
            if queue_name is None:
                if self._stopping:
                    return None
                self._cond.wait()
                continue
            queue = self._queues[queue_name]
            count, total = self._fitting_tasks(queue)
            wait_left = queue[0].enqueued + timeout - time.monotonic()
            if total >= self._batch_limit or wait_left <= 0 or self._stopping:
                tasks = [queue.popleft() for _ in range(count)]
                self._queued_sizes[queue_name] -= total
                return tasks
            self._cond.wait(wait_left)

    def _oldest_queue(self) -> str | None:
        heads = [(q[0].enqueued, name) for name, q in self._queues.items() if q]
        return min(heads)[1] if heads else None

    def _fitting_tasks(self, queue: deque[_Task]) -> tuple[int, int]:
        """How many head tasks (same input shapes as the first) fit in one batch."""
        key, total, count = queue[0].shape_key, 0, 0
        for task in queue:
            if task.shape_key != key or total + task.size > self._batch_limit:
                break
            total += task.size
            count += 1
        return count, total

    def _process(self, tasks: list[_Task]) -> None:
        signature = tasks[0].signature
        started = time.monotonic()
        for task in tasks:
            self._metrics.queuing_latency.observe(
                (started - task.enqueued) * 1e6, self._options.thread_pool_name
            )
        tasks = _drop_expired(tasks, started)
        if not tasks:
            return
        total = sum(task.size for task in tasks)
        padded = self._padded_size(total)
        merged = {
            alias: _pad(np.concatenate([t.inputs[alias] for t in tasks]), padded)
            for alias in tasks[0].inputs
        }
        self._record_batch(signature.name, total, padded)
        try:
            outputs = self._run(signature, merged, _batch_deadline(tasks))
        except ServingError as error:
            self._fail_or_retry_alone(tasks, error)
            return
        offset = 0
        for task in tasks:
            task.outputs = {
                alias: value[offset : offset + task.size] if value.ndim else value
                for alias, value in outputs.items()
            }
            offset += task.size
            task.done.set()

    def _fail_or_retry_alone(self, tasks: list[_Task], error: ServingError) -> None:
        """A merged batch failed (e.g. one request sent bytes that are not an image). Unlike
        TF Serving, which fails every request in that batch, rerun each request on its own so
        only the bad one gets the error and everyone else keeps being served. A timed-out
        batch is not rerun: its latest deadline has passed, so every request's has."""
        if len(tasks) == 1 or error.code == grpc.StatusCode.DEADLINE_EXCEEDED:
            for task in tasks:
                task.error = error
                task.done.set()
            return
        for task in tasks:
            try:
                task.outputs = self._run(task.signature, task.inputs, task.deadline)
            except ServingError as own_error:
                task.error = own_error
            task.done.set()

    def _padded_size(self, total: int) -> int:
        for allowed in self._options.allowed_batch_sizes:
            if allowed >= total:
                return allowed
        return total

    def _record_batch(self, op_name: str, total: int, padded: int) -> None:
        metrics = self._metrics
        metrics.wrapped_run_count.inc()
        metrics.processed_batch_size.observe(padded, self._model, op_name)
        metrics.padding_size.observe(padded - total, self._model, op_name)


def _drop_expired(tasks: list[_Task], now: float) -> list[_Task]:
    """Fails the tasks whose deadline passed in the queue (they are not run); returns the rest."""
    live = []
    for task in tasks:
        if task.deadline is not None and task.deadline <= now:
            task.error = ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, QUEUE_TIMEOUT)
            task.done.set()
        else:
            live.append(task)
    return live


def _batch_deadline(tasks: list[_Task]) -> Deadline:
    """The batch runs until its last request's deadline; without a limit if one has none."""
    if any(task.deadline is None for task in tasks):
        return None
    return max(task.deadline for task in tasks)


def _rows(inputs: Mapping[str, np.ndarray], start: int, count: int) -> dict[str, np.ndarray]:
    return {alias: value[start : start + count] for alias, value in inputs.items()}


def _shape_key(inputs: Mapping[str, np.ndarray]) -> tuple:
    return tuple(
        sorted((alias, value.dtype.str, value.shape[1:]) for alias, value in inputs.items())
    )


def _pad(value: np.ndarray, size: int) -> np.ndarray:
    """Pads the batch with copies of its first row (batching_session.cc)."""
    missing = size - value.shape[0]
    if missing <= 0:
        return value
    return np.concatenate([value, np.repeat(value[:1], missing, axis=0)])
