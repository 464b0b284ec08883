"""A small etcd v3 client over etcd's JSON gateway (HTTP/1.1 over sources/http1.py).

Why our own and not a package (README, "The datastore"): the PyPI `etcd3` package is
unmaintained and breaks with protobuf 4+; the maintained ones are either asyncio + gRPC
(`aetcd`, `etcd3aio`: grpcio's import alone costs more than a whole `gingham lab get`)
or `etcd3gw` (OpenStack's, on the same JSON gateway as this module, but with `requests`
and `futurist` threads under it, and a watch that cannot say "compacted"). What gingham
needs is seven calls: range, put, delete, txn, lease grant/keepalive/revoke, watch and
compact; one keep-alive connection per client, JSON in and out.

Keys and values are bytes on the wire (base64 in JSON); here they are `str` keys and
`bytes` values. Revisions are ints. Every call fails over across the given endpoints
(a member that is down or not reachable), as etcd's own clients do.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from . import http1

Connect = Callable[[str, int, float], socket.socket]


class EtcdError(Exception):
    """etcd refused a request, or no member answered."""


class Compacted(EtcdError):
    """A watch asked for a revision that compaction has removed: list again."""

    def __init__(self, revision: int) -> None:
        super().__init__(f"revision compacted (compact revision {revision})")
        self.revision = revision


@dataclass(frozen=True)
class KV:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int = 0
    lease: int = 0


@dataclass(frozen=True)
class Event:
    """One change: `value` is None for a delete."""

    key: str
    value: bytes | None
    mod_revision: int


def b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def _unb64(s: str) -> bytes:
    return base64.b64decode(s) if s else b""


def prefix_end(prefix: str) -> str:
    """The range end that makes [prefix, end) every key starting with prefix (etcd's convention)."""
    b = bytearray(prefix.encode())
    b[-1] += 1
    return b.decode()


def _kv(d: dict[str, Any]) -> KV:
    return KV(_unb64(d["key"]).decode(), _unb64(d.get("value", "")), int(d.get("mod_revision", 0)),
              int(d.get("create_revision", 0)), int(d.get("lease", 0)))


def plain_connect(host: str, port: int, timeout: float) -> socket.socket:
    return socket.create_connection((host, port), timeout=timeout)


class Etcd:
    def __init__(self, endpoints: list[str] | str, timeout: float = 5.0, connect: Connect = plain_connect) -> None:
        eps = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
        self.endpoints = [e.strip().removeprefix("http://").rstrip("/") for e in eps if e.strip()]
        if not self.endpoints:
            raise EtcdError("no etcd endpoint given")
        self.timeout = timeout
        self._connect = connect
        self._lock = threading.Lock()
        self._conn: http1.Connection | None = None
        self._current = 0

    def _open(self, i: int, timeout: float | None) -> http1.Connection:
        host, _, port = self.endpoints[i].rpartition(":")
        sock = self._connect(host, int(port), timeout if timeout is not None else self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return http1.Connection(sock, self.endpoints[i])

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POSTs one request; on a connection failure tries each member once."""
        data = json.dumps(body).encode()
        last: Exception | None = None
        with self._lock:
            for attempt in range(len(self.endpoints) + 1):
                try:
                    if self._conn is None:
                        self._conn = self._open(self._current, None)
                    resp = self._conn.post(path, data)
                    raw = resp.read()
                except OSError as e:
                    last = e
                    if self._conn is not None:
                        self._conn.close()
                        self._conn = None
                    if attempt > 0:  # the same member twice (a stale keep-alive), then the next one
                        self._current = (self._current + 1) % len(self.endpoints)
                    continue
                if not self._conn.reusable:
                    self._conn.close()
                    self._conn = None
                try:
                    out: dict[str, Any] = json.loads(raw) if raw else {}
                except ValueError:
                    raise EtcdError(f"etcd {path}: an answer that is not JSON (status {resp.status})") from None
                if resp.status != 200:
                    raise EtcdError(f"etcd {path}: {out.get('error') or out.get('message') or resp.status}")
                return out
        raise EtcdError(f"no etcd member answered ({', '.join(self.endpoints)}): {last}")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- kv ----------------------------------------------------------------------------
    def get(self, key: str) -> KV | None:
        kvs = self.call("/v3/kv/range", {"key": b64(key)}).get("kvs") or []
        return _kv(kvs[0]) if kvs else None

    def range(self, prefix: str, page: int = 2000, keys_only: bool = False) -> tuple[list[KV], int]:
        """Every key under `prefix` at one revision (paged, each page read at the first's revision)."""
        out: list[KV] = []
        start, end, rev = prefix, prefix_end(prefix), 0
        while True:
            body: dict[str, Any] = {"key": b64(start), "range_end": b64(end), "limit": page}
            if rev:
                body["revision"] = rev
            if keys_only:
                body["keys_only"] = True
            r = self.call("/v3/kv/range", body)
            rev = rev or int(r["header"]["revision"])
            kvs = [_kv(d) for d in r.get("kvs") or []]
            out += kvs
            if not r.get("more") or not kvs:
                return out, rev
            start = kvs[-1].key + "\0"

    def revision(self) -> int:
        r = self.call("/v3/kv/range", {"key": b64("\0"), "count_only": True})
        return int(r["header"]["revision"])

    def put(self, key: str, value: bytes, lease: int = 0) -> int:
        body: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = str(lease)
        return int(self.call("/v3/kv/put", body)["header"]["revision"])

    def delete(self, key: str, prefix: bool = False) -> int:
        body = {"key": b64(key)}
        if prefix:
            body["range_end"] = b64(prefix_end(key))
        return int(self.call("/v3/kv/deleterange", body)["header"]["revision"])

    def txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]],
            failure: list[dict[str, Any]] | None = None) -> tuple[bool, int, list[dict[str, Any]]]:
        """etcd's transaction: if every compare holds, the success ops, else the failure ops; atomically."""
        r = self.call("/v3/kv/txn", {"compare": compare, "success": success, "failure": failure or []})
        return bool(r.get("succeeded")), int(r["header"]["revision"]), list(r.get("responses") or [])

    def compact(self, revision: int) -> None:
        self.call("/v3/kv/compaction", {"revision": revision, "physical": True})

    # -- leases ------------------------------------------------------------------------
    def lease_grant(self, ttl: int) -> int:
        return int(self.call("/v3/lease/grant", {"TTL": ttl})["ID"])

    def lease_keepalive(self, lease: int) -> int:
        """Renews a lease; its remaining TTL, 0 when it has already expired."""
        r = self.call("/v3/lease/keepalive", {"ID": str(lease)})
        return int((r.get("result") or {}).get("TTL") or 0)

    def lease_revoke(self, lease: int) -> None:
        try:
            self.call("/v3/lease/revoke", {"ID": str(lease)})
        except EtcdError as e:
            if "not found" not in str(e):
                raise

    # -- watch -------------------------------------------------------------------------
    def watch(self, prefix: str, start_revision: int) -> Watch:
        """A watch of every change under `prefix` from `start_revision` on, on a connection of its own."""
        last: Exception | None = None
        body = json.dumps({"create_request": {"key": b64(prefix), "range_end": b64(prefix_end(prefix)),
                                              "start_revision": start_revision}}).encode()
        for i in range(len(self.endpoints)):
            j = (self._current + i) % len(self.endpoints)
            c: http1.Connection | None = None
            try:
                c = self._open(j, self.timeout)
                resp = c.post("/v3/watch", body)
                if resp.status != 200:
                    raise http1.ProtocolError(f"status {resp.status}")
            except OSError as e:
                last = e
                if c is not None:
                    c.close()
                continue
            c.sock.settimeout(None)  # events come when they come; close() ends the wait
            return Watch(c, resp)
        raise EtcdError(f"no etcd member answered a watch ({', '.join(self.endpoints)}): {last}")


class Watch:
    """An open watch: iterate for (header revision, events); close() from any thread ends it."""

    def __init__(self, conn: http1.Connection, resp: http1.Response) -> None:
        self._conn, self._resp = conn, resp
        self.closed = False

    def close(self) -> None:
        self.closed = True
        try:
            self._conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def __iter__(self) -> Iterator[tuple[int, list[Event]]]:
        lines = self._resp.lines()
        try:
            while True:
                try:
                    line = next(lines, None)
                except (OSError, ValueError) as e:
                    if self.closed:
                        return
                    raise EtcdError(f"watch connection lost: {e}") from None
                if line is None:
                    if self.closed:
                        return
                    raise EtcdError("watch closed by etcd")
                if not line.strip():
                    continue
                msg = json.loads(line)
                if "error" in msg:
                    raise EtcdError(f"watch: {msg['error'].get('message', msg['error'])}")
                r = msg.get("result") or {}
                if int(r.get("compact_revision") or 0):
                    raise Compacted(int(r["compact_revision"]))
                if r.get("canceled"):
                    raise EtcdError(f"watch canceled: {r.get('cancel_reason', '')}")
                if r.get("created"):
                    continue  # its header is the store's revision now, not what this watch has sent yet
                events = [Event(_unb64(e["kv"]["key"]).decode(),
                                None if e.get("type") == "DELETE" else _unb64(e["kv"].get("value", "")),
                                int(e["kv"].get("mod_revision", 0))) for e in r.get("events") or []]
                yield int(r.get("header", {}).get("revision", 0)), events
        finally:
            self._conn.close()


def op_put(key: str, value: bytes, lease: int = 0) -> dict[str, Any]:
    req: dict[str, Any] = {"key": b64(key), "value": b64(value)}
    if lease:
        req["lease"] = str(lease)
    return {"request_put": req}


def op_delete(key: str) -> dict[str, Any]:
    return {"request_delete_range": {"key": b64(key)}}


def op_get(key: str) -> dict[str, Any]:
    """A txn read of one key, or of every key under it when it ends with "/"."""
    if key.endswith("/"):
        return {"request_range": {"key": b64(key), "range_end": b64(prefix_end(key))}}
    return {"request_range": {"key": b64(key)}}


def cmp_mod(key: str, revision: int) -> dict[str, Any]:
    """Holds when `key` was last written at `revision` (0: the key does not exist)."""
    return {"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(revision)}


def cmp_absent(key: str) -> dict[str, Any]:
    return {"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}


def kvs_of(response: dict[str, Any]) -> list[KV]:
    """The KVs of a txn's range response."""
    return [_kv(d) for d in (response.get("response_range") or {}).get("kvs") or []]
