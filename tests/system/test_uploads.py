"""Connection handling around refused uploads, against the real gunicorn proxy.

Found by the soak run: after answering 413 to an upload whose body it had not read, the proxy
closed the TCP connection while its answer said `Connection: keep-alive`, so a keep-alive
client's next request failed. The proxy now reads and drops a refused body (up to a cap)
before answering, and the connection stays usable.
"""

from __future__ import annotations

import os
import re
import socket

from fuzz_inputs import seed_files

from bench.soak_load import MULTIPART, multipart
from proxy.errors import DRAIN_CAP_BYTES


def _request(body: bytes) -> bytes:
    head = (f"POST /api/predict HTTP/1.1\r\nHost: proxy\r\nContent-Type: {MULTIPART}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")  # fmt: skip
    return head.encode() + body


def _answer(sock: socket.socket) -> bytes:
    """Status line and headers of one response, its body read off the socket (b"" when the
    peer has closed), so that the next response starts at its own status line."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = re.search(rb"^content-length:\s*(\d+)", head, re.I | re.M)
    while length and len(body) < int(length.group(1)):
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return head


def test_after_a_413_the_connection_stays_usable(system_stack) -> None:
    too_big = multipart([("big.jpg", os.urandom(system_stack.limits.max_upload_bytes + 4096))])
    assert len(too_big) < DRAIN_CAP_BYTES  # small enough for the proxy to read and drop
    good = multipart([("a.png", seed_files()[1])])
    with socket.create_connection(("127.0.0.1", system_stack.ports.proxy_port), 60) as sock:
        sock.sendall(_request(too_big))  # the proxy reads and drops the refused body
        first = _answer(sock)
        assert first.startswith(b"HTTP/1.1 413"), first
        assert b"connection: close" not in first.lower(), first
        try:
            sock.sendall(_request(good))
            second = _answer(sock)
        except (BrokenPipeError, ConnectionResetError) as error:
            second = repr(error).encode()
        assert second.startswith(b"HTTP/1.1 200"), (first, second)
