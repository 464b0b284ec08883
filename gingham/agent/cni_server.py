"""The agent's CNI socket: plugin shims hand their request here and get the answer back.

Requests are served on threads; each plugin call enters the pod's namespace on its own
thread only (kernel.netns), so calls for different pods run side by side. A caller in
other network or mount namespaces is told to fall back and do the work itself.
"""

from __future__ import annotations

import os
import socketserver
import sys
import threading
import traceback

from ..cni import spec
from ..cni.plugins import registry
from ..cni.shim import namespace_ids, recv_msg, send_msg
from ..cni.skel import dispatch
from ..cni.spec import CNIError


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            req = recv_msg(self.request)
        except (ConnectionError, ValueError):
            return
        if not isinstance(req, dict) or req.get("ns") != self.server.ns_ids:  # type: ignore[attr-defined]
            send_msg(self.request, {"fallback": True})
            return
        plugin = registry.get(str(req.get("plugin")))
        if plugin is None:
            err = CNIError(spec.ERR_INVALID_CONFIG, f"unknown gingham plugin {req.get('plugin')!r}")
            send_msg(self.request, {"stdout": spec_json(err), "rc": 1})
            return
        try:
            out, rc = dispatch(dict(req.get("env") or {}), str(req.get("stdin", "")).encode("utf-8", "surrogateescape"),
                               plugin)
        except Exception:  # dispatch converts errors itself; this is a last guard for the socket
            traceback.print_exc(file=sys.stderr)
            out, rc = spec_json(CNIError(spec.ERR_INTERNAL, "agent failed")).encode(), 1
        send_msg(self.request, {"stdout": out.decode("utf-8", "surrogateescape"), "rc": rc})


def spec_json(err: CNIError) -> str:
    import json
    return json.dumps(err.to_dict()) + "\n"


class CNIServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        super().__init__(path, _Handler)
        os.chmod(path, 0o600)
        self.path = path
        self.ns_ids = namespace_ids()

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
