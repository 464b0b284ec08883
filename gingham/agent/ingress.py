"""The ingress controller's part of the agent: this node's HAProxy, configured from the served Ingresses.

Each node runs one HAProxy (master-worker) in its own network namespace, listening on :80
and :443, behind the `gingham-system/gingham-ingress` LoadBalancer Service whose endpoints
are the nodes (a DaemonSet-style ingress). On a change the configuration is compiled again
(ingress/haproxy.py, pure); when only endpoints moved, the new addresses go into the
backends' server slots over the runtime API, with no reload; otherwise the files are
written, checked with `haproxy -c`, and the master is told to reload (SIGUSR2: the new
worker takes over the listening sockets, the old one finishes its connections). A check
that fails leaves the running proxy as it was. HAProxy starts with the first served Ingress,
and outlives an agent restart: the next agent finds it by its pid file and takes it over.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Mapping

from ..ingress.gateway import service_name
from ..model.ingress import SERVICE_NAMESPACE
from ..ingress.haproxy import ProxyConfig, compile_proxy, runtime_commands
from ..ingress.objects import gateway_world, parse_objects
from ..ingress.routes import build
from ..model.objects import Object
from ..model.services import Endpoint, Service
from .procs import pid_file

KINDS = ("Ingress/", "IngressClass/", "Secret/", "GatewayClass/", "Gateway/", "HTTPRoute/", "ReferenceGrant/")


class IngressController:
    def __init__(self, node: str, state_dir: str) -> None:
        self.node = node
        self.dir = os.path.join(state_dir, "ingress")
        self.current: ProxyConfig | None = None
        self.watched: set[str] = set()   # the Services the routes name: their endpoints matter here
        self.problems: list[str] = []
        self.reloads = 0
        self.runtime_updates = 0

    def concerned(self, objects: set[str], touched: set[str]) -> bool:
        return any(k.startswith(KINDS) for k in objects) or bool(touched & self.watched)

    def sync(self, objects: Mapping[str, Object], services: Mapping[str, Service],
             endpoints: Mapping[str, list[Endpoint]], namespaces: Mapping[str, dict[str, str]]) -> None:
        objs = parse_objects(objects)
        gateways = gateway_world(objs, services, namespaces)
        if not objs.ingresses and not gateways.gateways and self.current is None and self._pid() is None:
            return
        table = build(objs.ingresses)
        self.watched = {f"{r.namespace}/{r.service}" for r in table.backends()} | {
            f"{b.namespace}/{b.name}" for r in gateways.routes for rule in r.rules for b in rule.backends} | {
            f"{SERVICE_NAMESPACE}/{service_name(g.namespace, g.name)}" for g in gateways.gateways.values()}
        cfg = compile_proxy(table, services, endpoints, objs.secrets, self.dir, self.current, gateways)
        problems = objs.skipped + cfg.problems
        if problems != self.problems:
            for p in problems:
                print(f"agent {self.node}: ingress: {p}", file=sys.stderr, flush=True)
            self.problems = problems
        if self.current is not None and cfg.text == self.current.text and self._pid() is not None:
            return
        cmds = runtime_commands(self.current, cfg) if self.current is not None and self._pid() else None
        if cmds is not None:
            try:
                self._runtime(cmds)
                self.current = cfg
                self.runtime_updates += 1
                return
            except OSError as e:  # the socket is gone or refused a command: a reload puts it right
                print(f"agent {self.node}: ingress: runtime API: {e}; reloading", file=sys.stderr, flush=True)
        self._write(cfg)
        self.current = cfg

    def _path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def _pid(self) -> int | None:
        return pid_file(self._path("haproxy.pid"), "haproxy")

    def _write(self, cfg: ProxyConfig) -> None:
        """Files in place, checked, then HAProxy started or reloaded; a failed check changes nothing."""
        os.makedirs(self._path("certs"), exist_ok=True)
        if not os.path.exists(self._path("default.pem")):
            from ..ingress.certs import make_cert
            cert, key = make_cert([f"ingress.{self.node}.invalid"])
            self._put("default.pem", cert + key)
        staged = self._path("haproxy.cfg.new")
        with open(staged, "w") as f:
            f.write(cfg.text)
        for name, data in cfg.files.items():
            self._put(name, data)
        check = subprocess.run(["haproxy", "-c", "-f", staged], capture_output=True, text=True)
        if check.returncode != 0:  # kept beside the running one, for a person to read
            os.replace(staged, self._path("haproxy.cfg.refused"))
            why = " | ".join(ln for ln in (check.stdout + check.stderr).splitlines() if "ALERT" in ln)
            raise RuntimeError(f"ingress: haproxy -c refused the configuration (see haproxy.cfg.refused): {why[-2000:]}")
        os.replace(staged, self._path("haproxy.cfg"))
        pid = self._pid()
        if pid is None:
            self._start()
        else:
            os.kill(pid, signal.SIGUSR2)
            self.reloads += 1

    def _put(self, name: str, data: bytes) -> None:
        path = self._path(name)
        try:
            with open(path, "rb") as f:
                if f.read() == data:
                    return
        except OSError:
            pass
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
        os.replace(tmp, path)

    def _start(self) -> None:
        log = open(self._path("haproxy.log"), "ab")
        subprocess.Popen(["haproxy", "-W", "-f", self._path("haproxy.cfg"), "-p", self._path("haproxy.pid")],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 5
        while self._pid() is None:  # the pid file is written once the listeners are bound
            if time.monotonic() > deadline:
                raise RuntimeError(f"ingress: haproxy did not start; see {self._path('haproxy.log')}")
            time.sleep(0.02)

    def _runtime(self, cmds: list[str]) -> None:
        """Commands over the admin socket, in one connection; an answer that says a command failed
        raises (a successful `set server ... addr` answers "IP changed from ...", `state` nothing)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(self._path("admin.sock"))
            s.sendall(("; ".join(cmds) + "\n").encode())
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        text = out.decode(errors="replace")
        bad = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(("IP changed", "no need to change"))]
        if bad:
            raise OSError(f"haproxy answered {' | '.join(bad)[:300]!r}")
