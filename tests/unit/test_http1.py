"""sources/http1.py against hand-written answers over a socket pair (no server library)."""

from __future__ import annotations

import socket
import threading

import pytest

from gingham.sources import http1


def serve(answer: bytes, requests: int = 1) -> tuple[http1.Connection, list[bytes]]:
    """A connection whose peer reads `requests` requests and sends `answer` after each."""
    ours, theirs = socket.socketpair()
    seen: list[bytes] = []

    def peer() -> None:
        f = theirs.makefile("rb")
        for _ in range(requests):
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                head += f.read(1)
            length = int([ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")][0]
                         .split(b":")[1])
            seen.append(head + f.read(length))
            theirs.sendall(answer)
        theirs.shutdown(socket.SHUT_WR)

    threading.Thread(target=peer, daemon=True).start()
    return http1.Connection(ours, "etcd:2379"), seen


def test_content_length_and_keep_alive() -> None:
    conn, seen = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Type: application/json\r\n\r\n{\"a\":1}", 2)
    for _ in range(2):
        r = conn.post("/v3/kv/range", b'{"key":"YQ=="}')
        assert (r.status, r.read()) == (200, b'{"a":1}')
        assert conn.reusable
    assert seen[0].startswith(b"POST /v3/kv/range HTTP/1.1\r\nHost: etcd:2379\r\n")
    assert seen[0].endswith(b'\r\n\r\n{"key":"YQ=="}')
    conn.close()


def test_chunked_stream_lines_cross_chunks() -> None:
    body = [b'{"result":{"a', b'":1}}\n{"result"', b':{"b":2}}\n', b'{"c":3}']
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in body) + b"0\r\n\r\n"
    conn, _ = serve(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
    r = conn.post("/v3/watch", b"{}")
    assert list(r.lines()) == [b'{"result":{"a":1}}', b'{"result":{"b":2}}', b'{"c":3}']


def test_chunked_read_whole_and_connection_close() -> None:
    conn, _ = serve(b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n")
    r = conn.post("/x", b"")
    assert (r.status, r.read(), conn.reusable) == (404, b"abcde", False)


@pytest.mark.parametrize("answer", [
    b"",                                                        # closed before answering
    b"SSH-2.0-OpenSSH\r\n\r\n",                                 # not HTTP
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",       # body cut short
    b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",            # bad length
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # bad chunk size
    b"HTTP/1.1 200 OK\r\nContent-Le",                           # closed inside the headers
])
def test_malformed_answers_are_oserrors(answer: bytes) -> None:
    conn, _ = serve(answer)
    with pytest.raises(OSError):
        conn.post("/x", b"{}").read()
