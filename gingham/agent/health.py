"""healthCheckNodePort servers: HTTP 200 with the local endpoint count, 503 when there are none.

What kube-proxy answers for `externalTrafficPolicy: Local` Services, so that a load
balancer sends traffic only to nodes that have endpoints.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Mapping


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        info = self.server.info  # type: ignore[attr-defined]
        n = int(info["localEndpoints"])
        body = json.dumps({"service": info["service"], "localEndpoints": n, "serviceProxyHealthy": True}).encode()
        self.send_response(200 if n > 0 else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Load-Balancing-Endpoint-Weight", str(n))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


class HealthServers:
    def __init__(self) -> None:
        self.servers: dict[int, ThreadingHTTPServer] = {}

    def sync(self, node_ip: str, services: list[Any], eps: Mapping[str, list[Any]], node: str) -> None:
        want: dict[int, dict[str, Any]] = {}
        for s in services:
            if s.health_check_node_port and s.external_policy_local:
                local = [e for e in eps.get(s.key, []) if e.node == node and e.ready]
                want[s.health_check_node_port] = {"service": {"namespace": s.namespace, "name": s.name},
                                                  "localEndpoints": len(local)}
        for port in [p for p in self.servers if p not in want]:
            gone = self.servers.pop(port)
            gone.shutdown()
            gone.server_close()  # the listening socket too, so the port is free again at once
        for port, info in want.items():
            if port not in self.servers:
                srv = ThreadingHTTPServer(("0.0.0.0", port), _Handler)
                srv.daemon_threads = True
                threading.Thread(target=srv.serve_forever, daemon=True).start()
                self.servers[port] = srv
            self.servers[port].info = info  # type: ignore[attr-defined]

    def stop(self) -> None:
        for srv in self.servers.values():
            srv.shutdown()
            srv.server_close()
        self.servers.clear()
