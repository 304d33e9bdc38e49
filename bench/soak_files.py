"""Which files did *this run's processes* write outside the run folder?

On a shared machine a before/after snapshot of the repo and /tmp also shows everybody
else's edits and temp files, so the soak attributes each write to a process instead: Linux
fanotify reports every file closed after writing, with the writer's pid, on the watched
file systems; a write counts when that pid is this process or a descendant of it (the
servers are started from here, in their own sessions but still our children). Files that
were already deleted when closed (anonymous temp files) leave nothing behind and are
ignored. Without fanotify (needs CAP_SYS_ADMIN) the check falls back to comparing
snapshots (`bench.soak_stack.FileSnapshot`), which can only be trusted on a quiet machine.
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
import threading
from pathlib import Path

FAN_CLOEXEC = 0x1
FAN_NONBLOCK = 0x2
FAN_CLOSE_WRITE = 0x8
FAN_MARK_ADD = 0x1
FAN_MARK_FILESYSTEM = 0x100
AT_FDCWD = -100
EVENT = struct.Struct("=IBBHQii")  # struct fanotify_event_metadata


class WriteWatcher:
    """Collects paths closed-after-writing by our process tree, outside `allowed`."""

    def __init__(self, roots: tuple[Path, ...], allowed: tuple[Path, ...]) -> None:
        self.allowed = tuple(str(p.resolve()) for p in allowed)
        self.written: set[str] = set()
        self._me = os.getpid()
        self._ours: dict[int, bool] = {}
        self._stop = threading.Event()
        self._fd = _fanotify(roots)
        self._thread = threading.Thread(target=self._read, name="write-watcher", daemon=True)

    @property
    def available(self) -> bool:
        return self._fd >= 0

    def start(self) -> WriteWatcher:
        if self.available:
            self._thread.start()
        return self

    def stop(self) -> list[str]:
        if self.available:
            self._stop.set()
            self._thread.join()
            os.close(self._fd)
        return sorted(self.written)

    def _read(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.2)
            if ready:
                self._drain()
        self._drain()

    def _drain(self) -> None:
        try:
            buffer = os.read(self._fd, 64 * 1024)
        except BlockingIOError:
            return
        offset = 0
        while offset + EVENT.size <= len(buffer):
            length, _, _, _, _, fd, pid = EVENT.unpack_from(buffer, offset)
            offset += length
            if fd < 0:
                continue
            try:
                path = os.readlink(f"/proc/self/fd/{fd}")
            finally:
                os.close(fd)
            if self._counts(path, pid):
                self.written.add(path)

    def _counts(self, path: str, pid: int) -> bool:
        if path.endswith(" (deleted)") or path.startswith(self.allowed):
            return False
        return self._is_ours(pid)

    def _is_ours(self, pid: int) -> bool:
        """pid is us or descends from us (walks the parent chain in /proc, cached)."""
        if pid not in self._ours:
            chain, current = [], pid
            while current > 1 and current != self._me and current not in self._ours:
                chain.append(current)
                current = _parent(current)
            verdict = current == self._me or self._ours.get(current, False)
            for p in chain:
                self._ours[p] = verdict
            self._ours[pid] = verdict
        return self._ours[pid]


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0  # already gone: cannot be attributed
    return int(stat.rsplit(")", 1)[1].split()[1])


def _fanotify(roots: tuple[Path, ...]) -> int:
    """A fanotify fd watching close-after-write on the file systems of `roots`, or -1."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        fd = libc.fanotify_init(FAN_CLOEXEC | FAN_NONBLOCK, os.O_RDONLY | os.O_LARGEFILE)
    except (OSError, AttributeError):
        return -1
    if fd < 0:
        return -1
    marked = 0
    for root in roots:
        flags = FAN_MARK_ADD | FAN_MARK_FILESYSTEM
        mask = ctypes.c_uint64(FAN_CLOSE_WRITE)
        marked += libc.fanotify_mark(fd, flags, mask, AT_FDCWD, str(root).encode()) == 0
    if not marked:
        os.close(fd)
        return -1
    return fd
