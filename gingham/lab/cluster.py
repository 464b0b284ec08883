"""A lab: a cluster network on one host, built from network namespaces and a store.

Topology (all of it inside namespaces; the host's root namespace is never touched):
  gl-<lab>-underlay   a bridge `ul0` standing for the nodes' L2 network, 192.168.200.0/24
  gl-<lab>-node-<n>   one per node: eth0 = 192.168.200.(11+i), its own agent and pod CIDR
  gl-<lab>-external   a client outside the cluster, 192.168.200.100
  gl-<lab>-pod-<ns>.<pod>  one per pod, made by its node's agent through CNI
State lives in /var/lib/gingham/labs/<lab>/: lab.json (what was built, with pids), the
store the agents read, and one directory per node (its CNI config, bin, IPAM, status).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

from ..agent.endpoints import digest, endpoints_of
from ..agent.node import pid_alive
from ..agent.store import Store, decode_state, write_json
from ..kernel import netns
from ..kernel.links import Netlink
from ..model import manifest
from ..model.objects import ClusterState
from ..services.allocate import AllocationError, allocate

LAB_ROOT = os.environ.get("GINGHAM_LAB_ROOT", "/var/lib/gingham/labs")
UNDERLAY = ipaddress.ip_network("192.168.200.0/24")
EXTERNAL_IP = "192.168.200.100"


class LabError(Exception):
    pass


def vtep_mac(lab: str, node: str) -> str:
    """A stable, locally administered MAC per node, so a restarted agent keeps its VTEP (as Flannel does)."""
    h = hashlib.sha256(f"{lab}/{node}".encode()).digest()
    return "0e:" + ":".join(f"{b:02x}" for b in h[:5])


class Lab:
    def __init__(self, name: str = "lab") -> None:
        if not name or len(name) > 20 or not name.replace("-", "").isalnum() or name != name.lower():
            raise LabError(f"lab name {name!r}: use up to 20 lowercase letters, digits and '-'")
        self.name = name
        self.dir = os.path.join(LAB_ROOT, name)
        self.store = Store(self.dir)
        self.meta_path = os.path.join(self.dir, "lab.json")

    # -- names -------------------------------------------------------------------------
    def ns(self, what: str) -> str:
        return f"gl-{self.name}-{what}"

    def exists(self) -> bool:
        return os.path.exists(self.meta_path)

    def meta(self) -> dict[str, Any]:
        try:
            with open(self.meta_path) as f:
                return dict(json.load(f))
        except OSError:
            raise LabError(f"no lab named {self.name!r} is up (gingham lab list)") from None

    def state(self) -> tuple[ClusterState, dict[str, Any]]:
        try:
            doc = self.store.read()
        except OSError:
            raise LabError(f"no lab named {self.name!r} is up (gingham lab list)") from None
        return decode_state(doc), doc

    # -- up / down ---------------------------------------------------------------------
    def up(self, files: list[str], timeout: float = 120) -> dict[str, Any]:
        if self.exists():
            raise LabError(f"lab {self.name!r} is already up: use `gingham lab apply`, or `gingham lab down` first")
        # every document is checked, and Service addresses allocated, before anything is built
        state = self._allocate(manifest.schedule(manifest.parse(files)), None)
        t0 = time.monotonic()
        os.makedirs(self.dir, exist_ok=True)
        meta: dict[str, Any] = {"name": self.name, "cluster": state.cluster.name, "netns": [], "agents": {},
                                "created": time.time()}
        write_json(self.meta_path, meta)
        try:
            nodes = self._build(state, meta)
            rev = self.store.write(state, nodes, self.name)
            for node in state.cluster.nodes:
                meta["agents"][node] = self._start_agent(node)
            write_json(self.meta_path, meta)
            self.wait(rev, timeout)
        except BaseException:
            self.down()
            raise
        meta["upSeconds"] = round(time.monotonic() - t0, 2)
        write_json(self.meta_path, meta)
        return meta

    def _build(self, state: ClusterState, meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
        underlay = self._add_ns(meta, "underlay")
        with netns.entered(underlay), Netlink() as nl:
            nl.ensure_bridge("ul0")
            nl.set(nl.require("lo").index, "lo up", state="up")
        hosts = [("external", EXTERNAL_IP)]
        cidrs = state.cluster.node_cidrs()
        nodes: dict[str, dict[str, Any]] = {}
        for i, node in enumerate(state.cluster.nodes):
            ip = str(UNDERLAY.network_address + 11 + i)
            hosts.append((f"node-{node}", ip))
            nodes[node] = {"ip": ip, "podCIDR": cidrs[node], "vtepMAC": vtep_mac(self.name, node),
                           "netns": self.ns(f"node-{node}")}
        ul_fd = netns.open_ns(underlay)
        try:
            for i, (what, ip) in enumerate(hosts):
                path = self._add_ns(meta, what)
                port = f"ul-{i}"
                with netns.entered(path), Netlink() as nl:
                    eth0 = nl.add_veth("eth0", port, ul_fd)
                    nl.add_address(eth0.index, ipaddress.ip_interface(f"{ip}/{UNDERLAY.prefixlen}"))
                    nl.set(eth0.index, "eth0 up", state="up")
                    nl.set(nl.require("lo").index, "lo up", state="up")
                with netns.entered(underlay), Netlink() as nl:
                    link = nl.require(port)
                    nl.set(link.index, f"{port} on ul0", master=nl.require("ul0").index, state="up")
        finally:
            os.close(ul_fd)
        return nodes

    def _add_ns(self, meta: dict[str, Any], what: str) -> str:
        name = self.ns(what)
        if netns.exists(netns.path_of(name)):
            netns.delete(name)
        path = netns.add(name)
        meta["netns"].append(name)
        write_json(self.meta_path, meta)
        return path

    def _start_agent(self, node: str) -> int:
        os.makedirs(self.store.node_dir(node), exist_ok=True)
        log = open(os.path.join(self.store.node_dir(node), "agent.log"), "a")
        proc = subprocess.Popen(["nsenter", f"--net={netns.path_of(self.ns(f'node-{node}'))}", sys.executable, "-m",
                                 "gingham.cli", "agent", "--lab-dir", self.dir, "--node", node],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        return proc.pid

    def restart_agent(self, node: str) -> int:
        meta = self.meta()
        meta["agents"][node] = self._start_agent(node)
        write_json(self.meta_path, meta)
        return int(meta["agents"][node])

    def down(self) -> list[str]:
        """Removes everything the lab made; a lab that is not there is fine."""
        removed: list[str] = []
        meta: dict[str, Any] = {}
        if os.path.exists(self.meta_path):
            with open(self.meta_path) as f:
                meta = json.load(f)
        for pid in (meta.get("agents") or {}).values():
            _kill(int(pid), "gingham.cli")
        nodes_dir = os.path.join(self.dir, "nodes")
        pod_ns = []
        for node in (os.listdir(nodes_dir) if os.path.isdir(nodes_dir) else []):
            try:
                with open(os.path.join(nodes_dir, node, "pods.json")) as f:
                    pods = json.load(f)
            except (OSError, ValueError):
                pods = {}
            for rec in pods.values():
                _kill(int(rec.get("pid") or 0), "gingham.lab.workload")
                pod_ns.append(rec["netns"])
        prefix = self.ns("")
        leftovers = [n for n in (os.listdir(netns.NETNS_RUN_DIR) if os.path.isdir(netns.NETNS_RUN_DIR) else [])
                     if n.startswith(prefix)]  # namespaces an agent made but had not recorded yet
        for name in dict.fromkeys(pod_ns + list(meta.get("netns") or []) + leftovers):
            if netns.exists(netns.path_of(name)):
                _kill_ns_processes(name)
                netns.delete(name)
                removed.append(name)
            shutil.rmtree(os.path.join("/etc/netns", name), ignore_errors=True)  # the pod's resolv.conf
        shutil.rmtree(self.dir, ignore_errors=True)
        return removed

    # -- changes -----------------------------------------------------------------------
    def apply(self, files: list[str], timeout: float = 60) -> int:
        state, doc = self.state()
        new = self._allocate(manifest.schedule(manifest.parse(files, state)), state)
        rev = self.store.write(new, doc["nodes"], self.name)
        self.wait(rev, timeout)
        return rev

    def delete(self, files: list[str], timeout: float = 60) -> int:
        state, doc = self.state()
        gone = manifest.parse(files, ClusterState(state.cluster))
        for key in gone.pods:
            state.pods.pop(key, None)
        for key in gone.objects:
            state.objects.pop(key, None)
        rev = self.store.write(state, doc["nodes"], self.name)
        self.wait(rev, timeout)
        return rev

    @staticmethod
    def _allocate(state: ClusterState, previous: ClusterState | None) -> ClusterState:
        try:
            return allocate(state, previous)
        except AllocationError as e:
            raise LabError(f"refused: {e}") from None

    def statuses(self, state: ClusterState) -> dict[str, dict[str, Any]]:
        return {n: self.store.status(n) for n in state.cluster.nodes}

    def wait(self, rev: int, timeout: float) -> None:
        """Returns when every agent has applied `rev` and every pod has its address."""
        deadline = time.monotonic() + timeout
        state, _ = self.state()
        while True:
            pending = []
            for node in state.cluster.nodes:
                st = self.store.status(node)
                if st.get("revision", 0) < rev:
                    pending.append(f"node {node} at revision {st.get('revision', 0)} of {rev}")
                    continue
                for key, pod in state.pods.items():
                    if pod.node_name == node and not (st.get("pods", {}).get(key) or {}).get("ready"):
                        pending.append(f"pod {key} is not ready yet")
                pending += [f"pod {k} is still terminating" for k in st.get("pods", {}) if k not in state.pods
                            or state.pods[k].node_name != node]
            if not pending:
                statuses = self.statuses(state)
                want = digest(endpoints_of(state, statuses, self.store.read()["nodes"])[1])
                pending = [f"node {n} has not programmed the current endpoints and policies"
                           for n, st in statuses.items() if st.get("endpoints") != want or st.get("synced", 0) < rev]
            if not pending:
                return
            if time.monotonic() > deadline:
                logs = "; ".join(self._agent_log_tail(n) for n in state.cluster.nodes)
                raise LabError(f"lab {self.name} did not converge in {timeout:.0f}s: {', '.join(pending[:5])}. {logs}")
            time.sleep(0.05)

    def _agent_log_tail(self, node: str) -> str:
        try:
            with open(os.path.join(self.store.node_dir(node), "agent.log")) as f:
                lines = [ln for ln in f.read().splitlines() if ln.strip() and not ln.startswith("cni ")]
            return f"agent {node}: {lines[-1]}" if lines else ""
        except OSError:
            return ""

    # -- reading -----------------------------------------------------------------------
    def nodes(self) -> list[dict[str, Any]]:
        state, doc = self.state()
        meta = self.meta()
        out = []
        for node in state.cluster.nodes:
            n = doc["nodes"][node]
            st = self.store.status(node)
            alive = pid_alive(int(meta["agents"].get(node, 0)), "gingham.cli")
            out.append({"name": node, "ip": n["ip"], "podCIDR": n["podCIDR"], "overlay": state.cluster.overlay,
                        "pods": len(st.get("pods", {})),
                        "status": "Ready" if alive and st.get("revision") == doc["revision"] else "NotReady"})
        return out

    def pods(self, namespace: str | None = None) -> list[dict[str, Any]]:
        state, _ = self.state()
        statuses = {n: self.store.status(n).get("pods", {}) for n in state.cluster.nodes}
        out = []
        for key, p in sorted(state.pods.items()):
            if namespace and p.namespace != namespace:
                continue
            rec = statuses.get(p.node_name, {}).get(key) or {}
            out.append({"namespace": p.namespace, "name": p.name, "node": p.node_name, "ip": rec.get("ip", ""),
                        "labels": p.labels, "ports": [f"{x.port}/{x.protocol}" for x in p.ports],
                        "netns": rec.get("netns", ""), "status": "Running" if rec.get("ip") else "Pending"})
        return out

    def services(self, namespace: str | None = None) -> list[dict[str, Any]]:
        state, _ = self.state()
        services, _ = endpoints_of(state, self.statuses(state), self.store.read()["nodes"])
        out = []
        for s in sorted(services, key=lambda s: s.key):
            if namespace and s.namespace != namespace:
                continue
            ext = list(s.external_ips) + ([s.load_balancer_ip] if s.load_balancer_ip else [])
            out.append({"namespace": s.namespace, "name": s.name, "type": s.type, "clusterIP": s.cluster_ip or "-",
                        "externalIP": ",".join(ext) or ("<pending>" if s.type == "LoadBalancer" else "-"),
                        "ports": [f"{p.port}" + (f":{p.node_port}" if p.node_port else "") + f"/{p.protocol}"
                                  for p in s.ports], "selector": s.selector or {}})
        return out

    def endpointslices(self, namespace: str | None = None) -> list[dict[str, Any]]:
        state, _ = self.state()
        _, eps = endpoints_of(state, self.statuses(state), self.store.read()["nodes"])
        out = []
        for key, lst in sorted(eps.items()):
            ns, name = key.split("/", 1)
            if namespace and ns != namespace:
                continue
            out.append({"namespace": ns, "name": name, "endpoints": [
                {"ip": e.ip, "node": e.node, "pod": e.pod, "ready": e.ready, "serving": e.serving,
                 "terminating": e.terminating, "ports": [f"{n or '-'}:{p}/{pr}" for n, pr, p in e.ports]} for e in lst]})
        return out

    # -- targets -----------------------------------------------------------------------
    def target_netns(self, target: str) -> str:
        """`NS/POD`, `node/NAME` or `external` -> its namespace path."""
        self.meta()
        if target == "external":
            return netns.path_of(self.ns("external"))
        kind, _, name = target.partition("/")
        if not name:
            raise LabError(f"target {target!r}: use NAMESPACE/POD, node/NAME or external")
        if kind == "node":
            state, _ = self.state()
            if name not in state.cluster.nodes:
                raise LabError(f"no node {name!r} in lab {self.name} ({', '.join(state.cluster.nodes)})")
            return netns.path_of(self.ns(f"node-{name}"))
        for p in self.pods():
            if p["namespace"] == kind and p["name"] == name:
                if not p["netns"]:
                    raise LabError(f"pod {target} is not running yet")
                return netns.path_of(p["netns"])
        raise LabError(f"no pod {target} in lab {self.name} (gingham lab get pods)")

    def resolve(self, dest: str, source: str = "") -> str:
        """An IP, `NS/POD`, `node/NAME`, `external`, or a DNS name asked of cluster DNS from `source`
        (with the search path of the source pod's namespace, as its resolver would)."""
        try:
            return str(ipaddress.ip_address(dest))
        except ValueError:
            pass
        if dest.startswith("node/"):
            _, doc = self.state()
            node = dest.split("/", 1)[1]
            if node in doc["nodes"]:
                return str(doc["nodes"][node]["ip"])
        if dest == "external":
            return EXTERNAL_IP
        ns, _, name = dest.partition("/")
        if name:
            for p in self.pods():
                if (p["namespace"], p["name"]) == (ns, name) and p["ip"]:
                    return str(p["ip"])
            raise LabError(f"no pod {dest} with an address in lab {self.name}")
        return self._dns(dest, source)

    def _dns(self, name: str, source: str) -> str:
        from dnslib import QTYPE, DNSRecord

        state, _ = self.state()
        dom = state.cluster.cluster_domain
        server = state.cluster.dns_ip
        src_ns = source.split("/")[0] if "/" in source and not source.startswith("node/") else "default"
        names = [name] if name.endswith(".") or name.count(".") >= 5 else \
            [f"{name}.{s}" for s in (f"{src_ns}.svc.{dom}", f"svc.{dom}", dom)] + [name]
        path = self.target_netns(source) if source else netns.path_of(self.ns("node-" + state.cluster.nodes[0]))
        for candidate in names:
            with netns.entered(path):
                try:
                    reply = DNSRecord.parse(DNSRecord.question(candidate.rstrip("."), "A").send(server, 53, timeout=2))
                except OSError as e:
                    raise LabError(f"cluster DNS at {server} did not answer for {candidate}: {e}") from None
            a = [str(r.rdata) for r in reply.rr if r.rtype == QTYPE.A]
            if a:
                return a[0]
        raise LabError(f"cannot resolve {name!r}: not NAMESPACE/POD, node/NAME, external, an IP, "
                       f"or a name cluster DNS knows (tried {', '.join(names)})")


def list_labs() -> list[dict[str, Any]]:
    out = []
    for name in sorted(os.listdir(LAB_ROOT)) if os.path.isdir(LAB_ROOT) else []:
        try:
            lab = Lab(name)
            meta = lab.meta()
            state, _ = lab.state()
            out.append({"name": name, "cluster": meta.get("cluster"), "nodes": len(state.cluster.nodes),
                        "pods": len(state.pods), "overlay": state.cluster.overlay})
        except (LabError, OSError, ValueError):
            continue
    return out


def _kill(pid: int, needle: str) -> None:
    if pid <= 0 or not pid_alive(pid, needle):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(100):
        if not pid_alive(pid, needle):
            break
        time.sleep(0.02)
    else:
        os.kill(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass


def _kill_ns_processes(name: str) -> None:
    r = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
    for pid in r.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
