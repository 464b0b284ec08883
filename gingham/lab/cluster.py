"""A lab: a cluster network on one host, built from network namespaces around an etcd datastore.

Topology (all of it inside namespaces; the host's root namespace is never touched):
  gl-<lab>-underlay   a bridge `ul0` standing for the nodes' L2 network, 192.168.200.0/24
  gl-<lab>-etcd-<i>   etcd member i at 192.168.200.(2+i) (lab/etcd.py)
  gl-<lab>-node-<n>   one per node: eth0 = 192.168.200.(11+i), its own agent and pod CIDR
  gl-<lab>-external   a client outside the cluster, 192.168.200.100
  gl-<lab>-pod-<ns>.<pod>  one per pod, made by its node's agent through CNI
Cluster state lives in etcd only (model/registry.py has the key layout): the lab writes
objects as the API server would, agents list + watch them and write their status back.
/var/lib/gingham/labs/<lab>/ holds lab.json (what was built, with pids), the etcd members'
data, and one directory per node that only its agent uses (CNI config, IPAM, pod records).
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
import threading
import time
from typing import TYPE_CHECKING, Any

from ..agent.procs import pid_alive
from ..agent.store import write_json
from ..kernel import netns
from ..model import registry as reg
from ..model.errors import BAD_INPUT, FAILED, NOT_FOUND
from ..model.objects import Cluster, ClusterState, Object
from ..sources.cache import Cache
from ..sources.etcd import EtcdError
from . import etcd as members
from .store import SERVICES, STATUS, ClusterStore, Snapshot, node_status

if TYPE_CHECKING:
    from ..services.allocate import AllocationError, Ranges

LAB_ROOT = os.environ.get("GINGHAM_LAB_ROOT", "/var/lib/gingham/labs")
from .topology import UNDERLAY  # noqa: E402 - where the lab puts things (gingham/lab/topology.py)
EXTERNAL_IP = "192.168.200.100"


class LabError(Exception):
    """A lab command that cannot be done; `code` is the command's exit code (model/errors.py):
    FAILED (it was tried), BAD_INPUT (what was asked cannot be), NOT_FOUND (no such lab, pod...)."""

    def __init__(self, msg: str, code: int = FAILED) -> None:
        super().__init__(msg)
        self.code = code


def vtep_mac(lab: str, node: str) -> str:
    """A stable, locally administered MAC per node, so a restarted agent keeps its VTEP (as Flannel does)."""
    h = hashlib.sha256(f"{lab}/{node}".encode()).digest()
    return "0e:" + ":".join(f"{b:02x}" for b in h[:5])


class Lab:
    def __init__(self, name: str = "lab") -> None:
        if not name or len(name) > 20 or not name.replace("-", "").isalnum() or name != name.lower():
            raise LabError(f"lab name {name!r}: use up to 20 lowercase letters, digits and '-'", BAD_INPUT)
        self.name = name
        self.dir = os.path.join(LAB_ROOT, name)
        self.meta_path = os.path.join(self.dir, "lab.json")
        self._store: ClusterStore | None = None

    @property
    def store(self) -> ClusterStore:
        """The datastore, reached inside an etcd member's namespace (lab/etcd.py)."""
        if self._store is None:
            self._store = ClusterStore(members.client(self.meta().get("etcd") or []))
        return self._store

    def node_dir(self, node: str) -> str:
        return os.path.join(self.dir, "nodes", node)

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
            raise LabError(f"no lab named {self.name!r} is up (gingham lab list)", NOT_FOUND) from None

    def cache(self, what: tuple[str, ...] | None = None) -> Cache:
        """Everything in the datastore, or the keys under the prefixes `what`, typed (one read)."""
        meta = self.meta()
        try:
            return self.store.read(what)
        except EtcdError as e:
            raise LabError(f"lab {self.name}: the datastore does not answer ({e}); "
                           f"its etcd members: {', '.join(m['ip'] for m in meta.get('etcd') or [])}") from None

    def state(self) -> tuple[ClusterState, dict[str, Any]]:
        cache = self.cache()
        return cache.state(), {"nodes": cache.node_dicts(), "revision": cache.spec_revision}

    def status(self, node: str) -> dict[str, Any]:
        return node_status(self.cache(STATUS), node)

    def revision(self) -> int:
        return self.store.revision()

    # -- up / down ---------------------------------------------------------------------
    def up(self, files: list[str], timeout: float = 120, etcd_members: int = 1, monitoring: bool = False) -> dict[str, Any]:
        if self.exists():
            raise LabError(f"lab {self.name!r} is already up: use `gingham lab apply`, or `gingham lab down` first", BAD_INPUT)
        if etcd_members not in (1, 3, 5):
            raise LabError(f"--etcd-members {etcd_members}: use 1, 3 or 5 (a quorum needs an odd count)", BAD_INPUT)
        t0 = time.monotonic()
        from concurrent.futures import ThreadPoolExecutor

        from ..model import manifest
        from ..services.allocate import Ranges
        # every document is checked before anything is built
        from .ingress import with_defaults
        parsed = with_defaults(manifest.schedule(manifest.parse(files)))
        nodes = self._nodes(parsed.cluster)
        from . import bgp, topology
        from .monitoring import IP as MONITORING_IP
        problems = topology.problems(parsed.cluster, {EXTERNAL_IP, MONITORING_IP, str(UNDERLAY.network_address),
                                                      str(UNDERLAY.broadcast_address), *(n.ip for n in nodes.values()),
                                                      *(members.member_ip(UNDERLAY, i) for i in range(5))})
        if problems:
            raise LabError("; ".join(problems), BAD_INPUT)
        os.makedirs(self.dir, exist_ok=True)
        meta: dict[str, Any] = {"name": self.name, "cluster": parsed.cluster.name, "netns": [], "agents": {},
                                "etcd": [], "created": time.time()}
        write_json(self.meta_path, meta)
        # the namespaces, etcd and the agents start while addresses are allocated and the objects
        # encoded (an allocation that fails takes them down again: nothing is left)
        building = ThreadPoolExecutor(1, thread_name_prefix="lab-build")
        built = building.submit(self._build, parsed.cluster, meta, etcd_members, monitoring)
        try:
            try:
                state, ranges = self._allocate(parsed, Snapshot(Cache(), Ranges.empty(parsed.cluster)))
                keys = reg.spec_keys(state, nodes)
            finally:
                building.shutdown(wait=True)
            built.result()
            ok, rev = self.store.commit(self.store.snapshot(), keys, ranges)
            if not ok:
                raise LabError(f"lab {self.name}: its new datastore was written to by someone else")
            self.wait(rev, timeout)
            if parsed.cluster.overlay == "bgp":
                bgp.wait_routes(self, {n: info.as_dict() for n, info in nodes.items()})
        except BaseException:
            self.down()
            raise
        meta["upSeconds"] = round(time.monotonic() - t0, 2)
        write_json(self.meta_path, meta)
        return meta

    def _nodes(self, cluster: Cluster) -> dict[str, reg.NodeInfo]:
        """Each node's address on the underlay, pod CIDR, VTEP MAC and namespace."""
        cidrs = cluster.node_cidrs()
        from .topology import node_ips
        ips = node_ips(cluster)
        return {node: reg.NodeInfo(node, ips[node], cidrs[node], vtep_mac(self.name, node), self.ns(f"node-{node}"))
                for node in cluster.nodes}

    def _build(self, cluster: Cluster, meta: dict[str, Any], etcd_members: int, monitoring: bool = False) -> None:
        """The underlay, the etcd members (ready), the nodes' and external's namespaces, the agents.

        The agents start before the cluster is written: they import, install their CNI
        plugins and wait for their node's key meanwhile."""
        from ..kernel.links import Netlink
        from . import bgp, topology
        segs = topology.segments(cluster)
        underlay = self._add_ns(meta, "underlay")
        with netns.entered(underlay), Netlink() as nl:
            for i in range(len(segs)):
                nl.ensure_bridge(f"ul{i}")
            nl.set(nl.require("lo").index, "lo up", state="up")
        for i in range(etcd_members):
            m = {"name": f"etcd-{i}", "ip": members.member_ip(UNDERLAY, i), "netns": self.ns(f"etcd-{i}")}
            self._add_ns(meta, f"etcd-{i}")
            members.wire(m["netns"], self.ns("underlay"), m["ip"], UNDERLAY.prefixlen, f"ue-{i}")
            self._route_segments(netns.path_of(m["netns"]), segs, 0)
            meta["etcd"].append(m)
        members.start(meta["etcd"], os.path.join(self.dir, "etcd"), f"gingham-{self.name}")
        write_json(self.meta_path, meta)
        # each host and its legs: (address, segment); a router has one on every segment it joins
        hosts: list[tuple[str, tuple[tuple[str, int], ...]]] = [("external", ((EXTERNAL_IP, 0),))]
        hosts += [(f"node-{n}", ((info.ip, cluster.rack_of(n)),)) for n, info in self._nodes(cluster).items()]
        if monitoring:
            from . import monitoring as prom
            hosts.append(("monitoring", ((prom.IP, 0),)))
        routers = topology.routers(cluster)
        hosts += [(r.name, r.legs) for r in routers]
        ul_fd = netns.open_ns(underlay)
        k = 0
        try:
            for what, legs in hosts:
                path = self._add_ns(meta, what)
                for j, (ip, seg) in enumerate(legs):
                    port = f"ul-{k}"
                    k += 1
                    with netns.entered(path), Netlink() as nl:
                        eth = nl.add_veth(f"eth{j}", port, ul_fd)
                        nl.add_address(eth.index, ipaddress.ip_interface(f"{ip}/{segs[seg].prefixlen}"))
                        nl.set(eth.index, f"eth{j} up", state="up")
                        nl.set(nl.require("lo").index, "lo up", state="up")
                    with netns.entered(underlay), Netlink() as nl:
                        link = nl.require(port)
                        nl.set(link.index, f"{port} on ul{seg}", master=nl.require(f"ul{seg}").index, state="up")
                if len(legs) == 1:
                    self._route_segments(path, segs, legs[0][1])
        finally:
            os.close(ul_fd)
        try:
            members.wait_ready(meta["etcd"])
        except EtcdError as e:
            raise LabError(str(e)) from None
        for node in cluster.nodes:
            meta["agents"][node] = self._start_agent(node)
        nodes = {n: info.as_dict() for n, info in self._nodes(cluster).items()}
        for i, r in enumerate(routers):
            meta.setdefault("routers", {})[r.name] = bgp.start_router(
                netns.path_of(self.ns(r.name)), os.path.join(self.dir, r.name), [ip for ip, _ in r.legs], r.as_number,
                cluster, nodes)
            if i == 0 and r.as_number:
                bgp.route_external(netns.path_of(self.ns("external")), r.legs[0][0], cluster)
        if monitoring:
            meta["prometheus"] = prom.start(netns.path_of(self.ns("monitoring")), os.path.join(self.dir, "prometheus"),
                                            [info.ip for info in self._nodes(cluster).values()])
        write_json(self.meta_path, meta)

    @staticmethod
    def _route_segments(path: str, segs: list[ipaddress.IPv4Network], own: int) -> None:
        """A host on segment `own` reaches the other segments through its segment's router."""
        from ..kernel.links import Netlink
        from .topology import gateway
        if len(segs) < 2:
            return
        with netns.entered(path), Netlink() as nl:
            eth0 = nl.require("eth0").index
            for i, seg in enumerate(segs):
                if i != own:
                    nl.add_route(str(seg), eth0, gw=gateway(segs[own]), replace=True)

    def _add_ns(self, meta: dict[str, Any], what: str) -> str:
        name = self.ns(what)
        if netns.exists(netns.path_of(name)):
            netns.delete(name)
        path = netns.add(name)
        meta["netns"].append(name)
        write_json(self.meta_path, meta)
        return path

    def etcd_urls(self) -> str:
        return ",".join(f"http://{m['ip']}:{members.CLIENT_PORT}" for m in self.meta().get("etcd") or [])

    def _start_agent(self, node: str) -> int:
        d = self.node_dir(node)
        os.makedirs(d, exist_ok=True)
        log = open(os.path.join(d, "agent.log"), "a")
        proc = subprocess.Popen(["nsenter", f"--net={netns.path_of(self.ns(f'node-{node}'))}", sys.executable, "-m",
                                 "gingham.cli", "agent", "--etcd", self.etcd_urls(), "--node", node,
                                 "--state-dir", d, "--netns-prefix", self.ns("pod-")],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        return proc.pid

    def member(self, i: int) -> dict[str, Any]:
        return dict((self.meta().get("etcd") or [])[i])

    def stop_member(self, i: int) -> None:
        """Kills etcd member i (a fault, for tests); `start_member` brings it back with its data."""
        _kill(int(self.member(i).get("pid") or 0), "etcd")

    def start_member(self, i: int) -> None:
        meta = self.meta()
        ms = meta["etcd"]
        initial = ",".join(f"{m['name']}=http://{m['ip']}:{members.PEER_PORT}" for m in ms)
        ms[i]["pid"] = members.launch(ms[i], initial, f"gingham-{self.name}")
        write_json(self.meta_path, meta)

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
        for m in meta.get("etcd") or []:
            _kill(int(m.get("pid") or 0), "etcd")
        nodes_dir = os.path.join(self.dir, "nodes")
        pod_ns = []
        node_dirs = [os.path.join(nodes_dir, n) for n in (os.listdir(nodes_dir) if os.path.isdir(nodes_dir) else [])]
        for node in (os.listdir(nodes_dir) if os.path.isdir(nodes_dir) else []):
            try:
                with open(os.path.join(nodes_dir, node, "pods.json")) as f:
                    pods = json.load(f)
            except (OSError, ValueError):
                pods = {}
            for rec in pods.values():
                _kill(int(rec.get("pid") or 0), "gingham.lab.workload")
                if rec.get("netns"):  # a hostNetwork pod has none of its own
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
        from ..kernel import cgroups
        from .supervisor import cgroup_group
        for d in node_dirs:  # the pods' cgroups, once their processes are gone
            cgroups.remove_group(cgroup_group(d))
        shutil.rmtree(self.dir, ignore_errors=True)
        return removed

    # -- changes -----------------------------------------------------------------------
    def apply(self, files: list[str], timeout: float = 60) -> int:
        rev = self._change(files, delete=False)
        self.wait(rev, timeout)
        return rev

    def delete(self, files: list[str], timeout: float = 60) -> int:
        rev = self._change(files, delete=True)
        self.wait(rev, timeout)
        return rev

    def rewrite(self, timeout: float = 30) -> int:
        """Writes the current state again (a new revision, nothing else changed) and waits for it."""
        rev = self._change([], delete=False)
        self.wait(rev, timeout)
        return rev

    def _change(self, files: list[str], delete: bool, tries: int = 5) -> int:
        """One write of the API server's: read what the manifest touches, validate, allocate,
        commit if nothing read has changed meanwhile (else read again). The new revision."""
        from ..model import manifest  # only the commands that write read manifests
        self.meta()
        for _ in range(tries):
            try:
                snap = self.store.snapshot()
            except EtcdError as e:
                raise LabError(f"lab {self.name}: the datastore does not answer ({e})") from None
            base = snap.cache.state()
            if delete:
                from .ingress import with_gateway_services
                gone = with_gateway_services(manifest.parse(files, ClusterState(base.cluster)))
                keys = [reg.object_key(o.kind, o.namespace, o.name) for o in gone.objects.values()]
                self.store.fetch(snap, keys)
                new = ClusterState(base.cluster, dict(base.namespaces),
                                   {k: p for k, p in base.pods.items() if k not in gone.pods}, {})
                ranges = snap.ranges.copy()
                for key, doc in snap.objects.items():
                    if key.startswith(reg.SERVICES):
                        ranges.release(key[len(reg.SERVICES):], doc)
            else:
                from .ingress import with_gateway_services
                new = with_gateway_services(manifest.schedule(manifest.parse(files, base)))
                self.store.fetch(snap, [reg.object_key(o.kind, o.namespace, o.name) for o in new.objects.values()])
                new, ranges = self._allocate(new, snap)
            ok, rev = self.store.commit(snap, reg.spec_keys(new, snap.cache.nodes), ranges)
            if ok:
                return rev
        raise LabError(f"lab {self.name}: the datastore changed under this write {tries} times; try again")

    def _allocate(self, state: ClusterState, snap: Snapshot) -> tuple[ClusterState, Ranges]:
        """The Services of `state` with their ClusterIPs, NodePorts and LB addresses, given what
        they held before (`snap.objects`) and what every other Service holds (`snap.ranges`)."""
        from ..services.allocate import AllocationError, allocate
        services = {f"{o.namespace}/{o.name}": o.raw for o in state.objects.values() if o.kind == "Service"}
        previous = {f"{o.namespace}/{o.name}": snap.objects[k] for o in state.objects.values()
                    if o.kind == "Service" and (k := reg.object_key(o.kind, o.namespace, o.name)) in snap.objects}
        try:
            raws, ranges = allocate(state.cluster, services, previous, snap.ranges)
        except AllocationError as e:
            raise LabError(f"refused: {self._holder(e, services)}", BAD_INPUT) from None
        out = ClusterState(state.cluster, state.namespaces, state.pods, dict(state.objects))
        from .ingress import pin_gateway_ports
        for key, raw in raws.items():
            ns, name = key.split("/", 1)
            out.objects[f"Service/{ns}/{name}"] = Object("Service", ns, name, pin_gateway_ports(raw))
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for key, o in out.objects.items():  # the API server's creationTimestamp: set once, kept after
            was = snap.objects.get(reg.object_key(o.kind, o.namespace, o.name), {}).get("metadata", {})
            meta: dict[str, Any] = o.raw["metadata"] if isinstance(o.raw.get("metadata"), dict) else {}
            stamp = was.get("creationTimestamp") or now
            if meta.get("creationTimestamp") != stamp:
                out.objects[key] = Object(o.kind, o.namespace, o.name,
                                          {**o.raw, "metadata": {**meta, "creationTimestamp": stamp}})
        return out, ranges

    def _holder(self, e: AllocationError, written: dict[str, dict[str, Any]]) -> str:
        """The refusal, naming the Service that holds the value: one being written, kube-dns,
        or one in the datastore (looked up only on this path: the allocation keys say what is
        taken, not by whom)."""
        from ..services.allocate import held_by
        if e.taken is None:
            return str(e)
        kind, value = e.taken
        docs = dict(written)
        if self.exists():
            docs.update((f"{o.namespace}/{o.name}", o.raw) for o in self.cache(SERVICES).objects.values()
                        if o.kind == "Service")
        for key, raw in docs.items():
            if key.split("/", 1)[1] != e.obj and any(k == kind and v == value for k, v in held_by(key, raw)):
                return str(e).replace("another Service", f"Service {key}")
        return str(e)

    def statuses(self, cache: Cache) -> dict[str, dict[str, Any]]:
        return {n: node_status(cache, n) for n in cache.nodes}

    def wait(self, rev: int, timeout: float) -> None:
        """Returns when every pod of the state at `rev` is ready (one with a readinessProbe: running),
        or gone, and then every agent has programmed everything written up to then: the state,
        every pod status and lease.
        It looks again whenever the datastore changes (a watch: no polling while agents work)."""
        deadline = time.monotonic() + timeout
        changed = threading.Event()
        watch = self.store.etcd.watch(reg.ROOT, rev + 1)

        def follow() -> None:
            try:
                for _ in watch:
                    changed.set()
            except EtcdError:
                changed.set()
        threading.Thread(target=follow, daemon=True).start()
        try:
            while True:
                changed.clear()
                pending = self._pending(rev)
                if not pending:
                    return
                if time.monotonic() > deadline:
                    logs = "; ".join(self._agent_log_tail(n) for n in self.cache(STATUS).state().cluster.nodes)
                    raise LabError(f"lab {self.name} did not converge in {timeout:.0f}s: {', '.join(pending[:5])}. "
                                   f"{logs}")
                changed.wait(min(0.5, max(0.0, deadline - time.monotonic())))  # leases lapse without a write
        finally:
            watch.close()

    def _pending(self, rev: int) -> list[str]:
        """What `wait` is still waiting for."""
        cache = self.store.status()
        state = cache.state()
        pending = []
        for key, pod in state.pods.items():
            st = cache.pod_status.get(key)
            # a pod with a readinessProbe is settled once it runs: its probe may rightly say "not
            # ready" for as long as it likes (kubectl apply does not wait for it either)
            settled = st is not None and st.node == pod.node_name and (st.ready or pod.readiness is not None and
                                                                      bool(st.ip))
            if not settled:
                pending.append(f"pod {key} is not ready yet")
        pending += [f"pod {k} is still terminating" for k, st in cache.pod_status.items()
                    if k not in state.pods or state.pods[k].node_name != st.node]
        if not pending:
            need = max(rev, cache.status_revision)
            for node in state.cluster.nodes:
                synced = int((cache.node_status.get(node) or {}).get("synced", 0))
                if node not in cache.leases:
                    pending.append(f"node {node} holds no lease (its agent is not running)")
                elif synced < need:
                    pending.append(f"node {node} has programmed revision {synced}, not yet {need}")
        return pending

    def _agent_log_tail(self, node: str) -> str:
        try:
            with open(os.path.join(self.node_dir(node), "agent.log")) as f:
                lines = [ln for ln in f.read().splitlines() if ln.strip() and not ln.startswith("cni ")]
            return f"agent {node}: {lines[-1]}" if lines else ""
        except OSError:
            return ""

    # -- reading -----------------------------------------------------------------------
    def nodes(self) -> list[dict[str, Any]]:
        return self._node_rows(self.cache(STATUS))

    def _node_rows(self, cache: Cache) -> list[dict[str, Any]]:
        out = []
        for node in cache.state().cluster.nodes:
            n = cache.nodes[node]
            st = node_status(cache, node)
            ready = st["alive"] and int(st.get("synced", 0)) >= cache.spec_revision
            out.append({"name": node, "ip": n.ip, "podCIDR": n.pod_cidr, "overlay": cache.state().cluster.overlay,
                        "pods": len(st["pods"]), "status": "Ready" if ready else "NotReady"})
        return out

    def pods(self, namespace: str | None = None) -> list[dict[str, Any]]:
        cache = self.cache(STATUS)
        out = []
        for key, p in sorted(cache.pods.items()):
            if namespace and p.namespace != namespace:
                continue
            st = cache.pod_status.get(key)
            ip = st.ip if st is not None and st.node == p.node_name else ""
            ready = st is not None and st.ready and st.node == p.node_name and p.node_name in cache.leases
            out.append({"namespace": p.namespace, "name": p.name, "node": p.node_name, "ip": ip,
                        "ready": "1/1" if ready else "0/1",
                        "limits": {**({"cpu": f"{p.cpu_millis}m"} if p.cpu_millis else {}),
                                   **({"memory": f"{p.memory_bytes >> 20}Mi" if not p.memory_bytes % (1 << 20)
                                       else str(p.memory_bytes)} if p.memory_bytes else {})},
                        "labels": p.labels, "ports": [f"{x.port}/{x.protocol}" for x in p.ports],
                        "netns": (self.ns(f"node-{p.node_name}") if p.host_network else
                                  self.pod_netns(p.namespace, p.name)) if ip else "",
                        "status": "Running" if ip else "Pending"})
        return out

    def pod_cgroup(self, target: str, pod: dict[str, Any] | None = None) -> list[str]:
        """The cgroup directories of a pod with limits (what `lab exec` joins, as kubectl exec's
        processes run inside the container's cgroup); [] for anything else. `pod`: its row of
        `pods()`, when the caller has read it already."""
        from ..kernel import cgroups
        from .supervisor import cgroup_group
        ns, _, name = target.partition("/")
        if pod is None:
            pod = next((p for p in self.pods(ns) if p["name"] == name), None)
        if pod is None or not pod["limits"]:
            return []
        return [d for d in cgroups.paths(cgroup_group(self.node_dir(pod["node"])), f"{ns}.{name}")
                if os.path.isdir(d)]

    def pod_netns(self, namespace: str, name: str) -> str:
        # Kubernetes namespaces hold no dots, so "<ns>.<pod>" cannot be mistaken for another pair.
        return self.ns(f"pod-{namespace}.{name}")

    def services(self, namespace: str | None = None) -> list[dict[str, Any]]:
        from ..model.endpoints import kube_dns
        cache = self.cache(SERVICES)  # parsed once, as the agents parse them
        services = [*cache.services.values(), kube_dns(cache.state(), cache.node_dicts())[0]]
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
        """The EndpointSlices in the datastore (written by the agent holding the controller's lease)."""
        cache = self.cache((reg.ENDPOINT_SLICES,))
        out = []
        for key, value in sorted(cache.raw.items()):
            if not key.startswith(reg.ENDPOINT_SLICES):
                continue
            ns, name = key[len(reg.ENDPOINT_SLICES):].split("/", 1)
            if namespace and ns != namespace:
                continue
            _, service, lst = reg.decode_slice(value)
            out.append({"namespace": ns, "name": name, "service": service, "endpoints": [
                {"ip": e.ip, "node": e.node, "pod": e.pod, "ready": e.ready, "serving": e.serving,
                 "terminating": e.terminating, "ports": [f"{n or '-'}:{p}/{pr}" for n, pr, p in e.ports]} for e in lst]})
        return out

    def objects(self, what: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """`what` (nodes, pods, services, endpointslices, ingresses, ingressclasses) as the Kubernetes
        API shows them."""
        from ..model.endpoints import kube_dns
        from . import kube
        if what in ("ingresses", "ingressclasses"):
            from . import ingress
            cache = self.cache(SERVICES + (reg.prefix("Ingress"), reg.prefix("IngressClass")))
            return ingress.ingress_objects(cache, namespace) if what == "ingresses" else ingress.class_objects(cache)
        if what in ("gatewayclasses", "gateways", "httproutes"):
            from . import ingress
            kinds = ("GatewayClass", "Gateway", "HTTPRoute", "ReferenceGrant", "Secret")
            cache = self.cache(SERVICES + (reg.NAMESPACES,) + tuple(reg.prefix(k) for k in kinds))
            kind = {"gatewayclasses": "GatewayClass", "gateways": "Gateway", "httproutes": "HTTPRoute"}[what]
            return ingress.gateway_objects(cache, kind, namespace)
        if what == "endpointslices":
            cache = self.cache((reg.ENDPOINT_SLICES,))
            return [reg.document(v) for k, v in sorted(cache.raw.items()) if k.startswith(reg.ENDPOINT_SLICES)
                    and (not namespace or k[len(reg.ENDPOINT_SLICES):].split("/", 1)[0] == namespace)]
        cache = self.cache(SERVICES if what == "services" else STATUS)
        if what == "nodes":
            return [kube.node_object(cache.nodes[n], row["status"] == "Ready")
                    for n, row in zip(cache.state().cluster.nodes, self._node_rows(cache))]
        if what == "pods":
            return [kube.pod_object(p, cache.pod_status.get(k), cache.nodes[p.node_name].ip if p.node_name in
                                    cache.nodes else "", p.node_name in cache.leases)
                    for k, p in sorted(cache.pods.items()) if not namespace or p.namespace == namespace]
        services = [*cache.services.values(), kube_dns(cache.state(), cache.node_dicts())[0]]
        return [kube.service_object(s) for s in sorted(services, key=lambda s: s.key)
                if not namespace or s.namespace == namespace]

    # -- targets -----------------------------------------------------------------------
    def target_netns(self, target: str) -> str:
        """`NS/POD`, `node/NAME` or `external` -> its namespace path."""
        return self.target(target)[0]

    def target(self, target: str) -> tuple[str, dict[str, Any] | None]:
        """`NS/POD`, `node/NAME` or `external` -> its namespace path, and the pod's row of `pods()`."""
        self.meta()
        if target == "external":
            return netns.path_of(self.ns("external")), None
        kind, _, name = target.partition("/")
        if not name:
            raise LabError(f"target {target!r}: use NAMESPACE/POD, node/NAME or external", BAD_INPUT)
        if kind == "node":
            state = self.cache(STATUS).state()
            if name not in state.cluster.nodes:
                raise LabError(f"no node {name!r} in lab {self.name} ({', '.join(state.cluster.nodes)})", NOT_FOUND)
            return netns.path_of(self.ns(f"node-{name}")), None
        for p in self.pods(kind):
            if p["namespace"] == kind and p["name"] == name:
                if not p["netns"]:
                    raise LabError(f"pod {target} is not running yet")
                return netns.path_of(p["netns"]), p
        raise LabError(f"no pod {target} in lab {self.name} (gingham lab get pods)", NOT_FOUND)

    def resolve(self, dest: str, source: str = "") -> str:
        """An IP, `NS/POD`, `node/NAME`, `external`, or a DNS name asked of cluster DNS from `source`
        (with the search path of the source pod's namespace, as its resolver would)."""
        try:
            return str(ipaddress.ip_address(dest))
        except ValueError:
            pass
        if dest.startswith("node/"):
            nodes = self.cache(STATUS).nodes
            node = dest.split("/", 1)[1]
            if node in nodes:
                return nodes[node].ip
        if dest == "external":
            return EXTERNAL_IP
        ns, _, name = dest.partition("/")
        if name:
            for p in self.pods():
                if (p["namespace"], p["name"]) == (ns, name) and p["ip"]:
                    return str(p["ip"])
            raise LabError(f"no pod {dest} with an address in lab {self.name}", NOT_FOUND)
        return self._dns(dest, source)

    def _dns(self, name: str, source: str) -> str:
        from dnslib import QTYPE, DNSRecord

        state = self.cache(STATUS).state()
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
                       f"or a name cluster DNS knows (tried {', '.join(names)})", NOT_FOUND)


def list_labs() -> list[dict[str, Any]]:
    out = []
    for name in sorted(os.listdir(LAB_ROOT)) if os.path.isdir(LAB_ROOT) else []:
        try:
            lab = Lab(name)
            meta = lab.meta()
            state = lab.cache(STATUS).state()
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
    for pid in netns.pids_in(netns.path_of(name)):
        if pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
