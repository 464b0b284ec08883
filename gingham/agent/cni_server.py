"""The agent's CNI socket: plugin shims hand their request here and get the answer back.

Requests are served on threads; each plugin call enters the pod's namespace on its own
thread only (kernel.netns), so calls for different pods run side by side. A caller in
other network or mount namespaces is told to fall back and do the work itself.
"""

from __future__ import annotations

import json
import os
import socketserver
import sys
import threading
import time
import traceback

from ..cni import spec
from ..cni.plugins import registry
from ..cni.shim import VERSION, encode, namespace_ids, recv_frame
from ..cni.skel import dispatch
from ..cni.spec import CNIError
from .metrics import AgentMetrics


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            req = recv_frame(self.request)
        except (ConnectionError, OSError):
            return
        if len(req) < 4 or req[0] != VERSION or req[2] != self.server.ns_ids:  # type: ignore[attr-defined]
            self.request.sendall(encode([b"fallback", b"", b""]))
            return
        name, stdin = req[1].decode(), req[3]
        env = {req[i].decode(): req[i + 1].decode("utf-8", "surrogateescape") for i in range(4, len(req) - 1, 2)}
        plugin = registry.get(name)
        if plugin is None:
            err = CNIError(spec.ERR_INVALID_CONFIG, f"unknown gingham plugin {name!r}")
            out, rc = (json.dumps(err.to_dict()) + "\n").encode(), 1
        else:
            t = time.perf_counter()
            try:
                out, rc = dispatch(env, stdin, plugin)
            except Exception:  # dispatch converts errors itself; this is a last guard for the socket
                traceback.print_exc(file=sys.stderr)
                out, rc = (json.dumps(CNIError(spec.ERR_INTERNAL, "agent failed").to_dict()) + "\n").encode(), 1
            took = time.perf_counter() - t
            cmd = env.get("CNI_COMMAND", "?")
            print(f"cni {cmd} {name} {env.get('CNI_CONTAINERID', '-')}/{env.get('CNI_IFNAME', '-')} rc={rc} "
                  f"{1000 * took:.1f}ms", file=sys.stderr, flush=True)
            metrics = self.server.metrics  # type: ignore[attr-defined]
            if metrics is not None:
                metrics.cni.labels(command=cmd, plugin=name, result="ok" if rc == 0 else "error").inc()
                metrics.cni_duration.labels(command=cmd).observe(took)
        self.request.sendall(encode([b"ok", str(rc).encode(), out]))


class CNIServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, path: str, metrics: AgentMetrics | None = None) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        super().__init__(path, _Handler)
        os.chmod(path, 0o600)
        self.path = path
        self.ns_ids = namespace_ids()
        self.metrics = metrics

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self.serve_forever, name="cni-server", daemon=True)
        t.start()
        return t

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def warm_up() -> None:
    """Imports every plugin now, so that the first ADD pays nothing for it."""
    for name in registry.MODULES:
        registry.get(name)
