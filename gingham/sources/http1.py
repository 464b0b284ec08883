"""Just enough HTTP/1.1 for etcd's JSON gateway: POST with a body, keep-alive, and a
response read whole (Content-Length, chunked, or to the end) or as a stream of lines.

Why not http.client: importing it (with the email parser and ssl it pulls in) took 21 ms
of the ~120 ms every `gingham lab ...` command spent before doing anything, and the
gateway needs none of what it offers beyond this. Failures are OSErrors (a ProtocolError
for a malformed answer), which the client already treats as "try the next member".
"""

from __future__ import annotations

import socket
from typing import Iterator


class ProtocolError(OSError):
    """The peer's answer is not the HTTP/1.1 this module reads."""


class Response:
    def __init__(self, conn: Connection, status: int, headers: dict[str, str]) -> None:
        self._conn, self.status, self.headers = conn, status, headers
        self._chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        length = headers.get("content-length")
        try:
            self._length = int(length) if length is not None else None
        except ValueError:
            raise ProtocolError(f"bad Content-Length {length!r}") from None

    def read(self) -> bytes:
        """The whole body."""
        if self._chunked:
            return b"".join(self._chunks())
        f = self._conn.rfile
        if self._length is None:
            data = f.read()
            self._conn.reusable = False
            return data
        data = f.read(self._length)
        if len(data) < self._length:
            raise ProtocolError("connection closed inside a response")
        return data

    def lines(self) -> Iterator[bytes]:
        """The body as it arrives, one line (without its newline) at a time (a watch stream)."""
        buf = b""
        for chunk in self._chunks() if self._chunked else iter(lambda: self._conn.rfile.readline(), b""):
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                yield line
        if buf:
            yield buf

    def _chunks(self) -> Iterator[bytes]:
        f = self._conn.rfile
        while True:
            size_line = f.readline(1024)
            if not size_line:
                raise ProtocolError("connection closed inside a chunked response")
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {size_line[:40]!r}") from None
            if size == 0:
                while f.readline(1024) not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return
            data = f.read(size)
            if len(data) < size:
                raise ProtocolError("connection closed inside a chunk")
            f.readline(1024)  # the chunk's CRLF
            yield data


class Connection:
    """One keep-alive connection over a socket the caller opened."""

    def __init__(self, sock: socket.socket, host: str) -> None:
        self.sock, self.host = sock, host
        self.rfile = sock.makefile("rb")
        self.reusable = True

    def post(self, path: str, body: bytes) -> Response:
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.sock.sendall(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.sock.sendall(body)
        return self._response()

    def _response(self) -> Response:
        line = self.rfile.readline(65536)
        if not line:
            raise ProtocolError("connection closed before a response")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"not an HTTP/1.1 status line: {line[:60]!r}")
        headers: dict[str, str] = {}
        while True:
            h = self.rfile.readline(65536)
            if h in (b"\r\n", b"\n"):
                break
            if not h:
                raise ProtocolError("connection closed inside the headers")
            name, _, value = h.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("connection", "").lower() == "close":
            self.reusable = False
        return Response(self, int(parts[1]), headers)

    def close(self) -> None:
        try:
            self.rfile.close()
        finally:
            self.sock.close()
