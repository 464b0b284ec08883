"""The node agent: kubelet's pod lifecycle, Flannel's overlay, kube-proxy, NetworkPolicy, DNS.

It runs inside its node's network namespace, lists and watches the datastore (etcd, over
the node's network: sources/), holds its node's lease, and makes the node match the
cluster: the overlay (VTEP, neighbours, FDB, routes, or host-gw routes) towards the nodes
that hold a lease, the node's masquerade, and one network namespace per pod of this node,
attached through CNI exactly as kubelet would, with a workload that answers on the pod's
ports. It waits on the watch while nothing changes; a change wakes only the parts it
concerns, and each part changes only differences in the kernel. A restarted agent lists
again, adopts what is there and converges without touching live pods.

It keeps its own files (CNI config, IPAM, pod records) in its state directory, which no
other node reads; everything it tells the others (pod statuses, what it has programmed)
goes to the datastore.
"""

from __future__ import annotations

import copy
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
import traceback
from collections import ChainMap
from typing import Any, Mapping

import gingham

from ..cni import install
from ..cni.runtime import Attachment, Network, Runtime
from ..cni.spec import CNIError
from ..dns import records
from ..dns.server import DNSServer
from ..kernel import arp, netns, nft
from ..kernel.links import Netlink
from ..model import registry as reg
from ..model.objects import Cluster, ClusterState, Pod
from ..overlay.plan import OverlayPlan, compile_overlay
from ..netpol.compile import TABLE as NETPOL_TABLE
from ..netpol.compile import compile_netpol
from ..services import ruleset
from ..services.compile import NodeContext
from ..services.proxy import ServiceProxy
from .cni_server import CNIServer, warm_up
from ..sources.cache import Changes, Source
from ..sources.etcd import Etcd, EtcdError, op_delete, op_put
from ..sources.lease import NodeLease
from ..model.endpoints import EndpointIndex, pod_view
from ..model.services import Service
from .endpoints import kube_dns, world_of
from .health import HealthServers
from .metrics import METRICS_PORT, AgentMetrics, serve_metrics
from .procs import pid_alive
from .store import write_json

NODE_TABLE = "gingham-node"
# A removed pod keeps running this long, out of every Service's endpoints, before it is torn
# down (terminationGracePeriodSeconds; 30 s in Kubernetes, short in a lab).
GRACE_SECONDS = 1.5
BRIDGE = "cni0"
UPLINK = "eth0"


def pod_netns(prefix: str, pod: Pod) -> str:
    # Kubernetes namespaces hold no dots, so "<ns>.<pod>" cannot be mistaken for another pair.
    return f"{prefix}{pod.namespace}.{pod.name}"


def container_id(pod: Pod) -> str:
    return f"{pod.namespace}.{pod.name}"


def conflist(pod_cidr: str, mtu: int, data_dir: str) -> dict[str, Any]:
    return {"cniVersion": "1.1.0", "name": "gingham", "plugins": [
        {"type": "gingham-bridge", "bridge": BRIDGE, "isGateway": True, "hairpinMode": True, "mtu": mtu,
         "ipam": {"type": "gingham-host-local", "dataDir": data_dir, "ranges": [[{"subnet": pod_cidr}]],
                  "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "gingham-portmap", "capabilities": {"portMappings": True}, "snat": True},
        {"type": "gingham-loopback"}]}


def node_nat_script(pod_cidr: str) -> str:
    """Pods keep their address inside the pod network; leaving it, they take the node's."""
    t = f"ip {NODE_TABLE}"
    return (f"add table {t}\nadd chain {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n"
            f"flush chain {t} postrouting\n"
            f"add rule {t} postrouting ip saddr {pod_cidr} ip daddr != {pod_cidr} oifname != \"{BRIDGE}\" masquerade\n")


class NodeAgent:
    def __init__(self, etcd: str, node: str, state_dir: str, netns_prefix: str = "gingham-pod-") -> None:
        self.etcd = Etcd(etcd)
        self.source = Source(self.etcd)
        self.cache = self.source.cache
        self.node = node
        self.netns_prefix = netns_prefix
        self.dir = state_dir
        os.makedirs(self.dir, exist_ok=True)
        self.sock = os.path.join(self.dir, "cni.sock")
        self.bin = os.path.join(self.dir, "bin")
        self.rt = Runtime(self.bin, os.path.join(self.dir, "cache"), extra_env={"GINGHAM_CNI_SOCKET": self.sock})
        self.pods_file = os.path.join(self.dir, "pods.json")
        self.stop = threading.Event()
        self.proxy: ServiceProxy | None = None  # what the kernel holds, for partial syncs
        self.endpoint_ips: dict[str, set[str]] = {}
        self.health = HealthServers()
        self.status: dict[str, Any] = {}
        self.status_written: dict[str, Any] = {}
        self.metrics = AgentMetrics()
        self.zygote: subprocess.Popen[str] | None = None
        self.dns_index = records.RecordIndex()
        self.dns: DNSServer | None = None
        self.netpol_script = ""
        self.netpol_rs: ruleset.Ruleset | None = None  # what the kernel holds, to write only differences
        self.published: dict[str, reg.PodStatus] | None = None
        self.eps: EndpointIndex | None = None  # EndpointSlices, kept by changed keys
        self.local_services: set[str] = set()  # Services with an endpoint on this node
        self.special: set[str] = set()  # LoadBalancer and health-check Services, as last announced
        self.services: dict[str, Service] = {}  # every Service and kube-dns, by key
        self.served: set[str] = set()  # those with a ClusterIP (not headless, not ExternalName)
        self.bridge_nf: bool | None = None  # this node's pod statuses, as last written
        self.lease = NodeLease(self.etcd, reg.LEASES + node, reg.dumps({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"namespace": "kube-node-lease", "name": node},
            "spec": {"holderIdentity": node, "leaseDurationSeconds": reg.LEASE_TTL}}), reg.LEASE_TTL)

    # -- records -------------------------------------------------------------------
    def load_pods(self) -> dict[str, dict[str, Any]]:
        try:
            with open(self.pods_file) as f:
                return dict(json.load(f))
        except (OSError, ValueError):
            return {}

    def save_pods(self, pods: dict[str, dict[str, Any]]) -> None:
        write_json(self.pods_file, pods)

    # -- the loop --------------------------------------------------------------------
    def start_source(self) -> Changes:
        """Lists the datastore, retrying until a member answers and this node is registered."""
        while not self.stop.is_set():
            try:
                changes = self.source.start()
                if self.node in self.cache.nodes and self.cache.cluster is not None:
                    return changes
                self.source.stop()
                self.source = Source(self.etcd)
                self.cache = self.source.cache
                print(f"agent {self.node}: not registered in the datastore yet", file=sys.stderr, flush=True)
            except EtcdError as e:
                print(f"agent {self.node}: {e}", file=sys.stderr, flush=True)
            self.stop.wait(0.5)
        return {}

    def run(self) -> None:
        install.install(self.bin)
        warm_up()
        server = CNIServer(self.sock, self.metrics)
        server.start()
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        changes = self.start_source()
        if self.stop.is_set():
            server.stop()
            return
        self.lease.start()
        # bound to the node address, not 0.0.0.0: a UDP reply from a wildcard socket takes the
        # source address of the route back (cni0's), which conntrack would not match to the DNAT
        node_ip = self.cache.nodes[self.node].ip
        self.dns = DNSServer(lambda: self.dns_index, node_ip)
        self.dns.start()
        dns = self.dns
        metrics = serve_metrics(node_ip, 9153, lambda: dns.stats.prometheus())
        agent_metrics = serve_metrics(node_ip, METRICS_PORT, self.metrics.render)
        full = True
        try:
            while not self.stop.is_set():
                try:
                    if full or set(changes) - {"nodestatus"} or self.terminating_due():
                        self.sync(changes, full)
                        full = False
                    elif max(self.cache.spec_revision, self.cache.status_revision) > self.status.get("synced", 0):
                        self.write_status()  # a rewrite that changed nothing here: seen, all the same
                except Exception:
                    traceback.print_exc(file=sys.stderr)
                    if self.proxy is not None:
                        self.proxy.full_sync = True  # the next sync writes the whole table again
                    full = True
                    self.stop.wait(0.5)
                # nothing to do until the watch brings a change, or a terminating pod's grace ends;
                # then what follows within a few ms joins it (a burst of writes, one pass)
                changes = self.source.wait(self.next_deadline())
                if changes:
                    for kind, keys in self.source.settle(quiet=0.003, limit=0.05).items():
                        changes[kind] |= keys
        finally:
            self.lease.stop()
            self.source.stop()
            self.health.stop()
            if self.dns is not None:
                self.dns.stop()
            metrics.shutdown()
            agent_metrics.shutdown()
            self.stop_zygote()
            server.stop()

    def next_deadline(self) -> float:
        ends = [r["terminating"] + GRACE_SECONDS - time.time() for r in self.load_pods().values()
                if r.get("terminating")]
        return max(0.01, min(ends)) if ends else 1.0

    def sync(self, changes: Changes, full: bool) -> None:
        """One pass: the parts of the node that the changes concern (logged when it is slow)."""
        t0 = time.monotonic()
        self._sync(changes, full)
        took = time.monotonic() - t0
        if took > 0.2:
            what = ", ".join(f"{len(v)} {k}" for k, v in sorted(changes.items()))
            print(f"agent {self.node}: {'full ' if full else ''}sync of {what or 'nothing'} took {took:.2f}s",
                  file=sys.stderr, flush=True)

    def _sync(self, changes: Changes, full: bool) -> None:
        mine = self.load_pods()
        pods_changed = any(k in mine or (p := self.cache.pods.get(k)) is not None and p.node_name == self.node
                           for k in changes.get("pod", ()))
        if full or pods_changed or self.terminating_due() or changes.keys() & {"cluster", "node", "lease"}:
            self.reconcile()
        if full or changes.keys() - {"nodestatus", "revision"}:
            self.sync_services(changes, full)
        self.write_status()

    def reconcile(self) -> None:
        state = self.cache.state()
        nodes = self.cache.node_dicts()
        me = nodes[self.node]
        alive = {n: v for n, v in nodes.items() if n == self.node or n in self.cache.leases}
        with Netlink() as nl:
            mtu = nl.require(UPLINK).mtu
        plan = compile_overlay(state.cluster.overlay, self.node, alive, UPLINK, mtu)
        self.tune_node()
        self.apply_overlay(plan, state.cluster.pod_cidr, me["podCIDR"])
        with Netlink() as nl:  # a real node reaches ClusterIPs through its default route; a lab node has none
            nl.add_route(state.cluster.service_cidr, nl.require(UPLINK).index, scope=253, replace=True)
        nft.run(node_nat_script(state.cluster.pod_cidr))
        conf_path = os.path.join(self.dir, "cni.conflist")
        conf = conflist(me["podCIDR"], plan.pod_mtu, os.path.join(self.dir, "ipam"))
        raw = json.dumps(conf, indent=1)
        if not os.path.exists(conf_path) or open(conf_path).read() != raw:
            with open(conf_path, "w") as f:
                f.write(raw)
        net = Network.parse(raw.encode(), conf_path)
        self.reconcile_pods(state, net)
        self.status.update({"overlay": plan.mode, "podMTU": plan.pod_mtu})

    def publish_pods(self, have: dict[str, dict[str, Any]]) -> None:
        """This node's pods' statuses into the datastore: what differs, in one transaction."""
        want = {key: reg.PodStatus(rec["namespace"], rec["name"], self.node, rec.get("ip", ""),
                                   bool(rec.get("ready")), float(rec.get("terminating") or 0.0))
                for key, rec in have.items()}
        if self.published is None:  # after a start: what the datastore holds (our cache may lag our own writes)
            self.published = {k: st for k, st in self.cache.pod_status.items() if st.node == self.node}
        ops = [op_put(reg.pod_status_key(st.namespace, st.name), reg.dumps(reg.encode_pod_status(st)))
               for key, st in want.items() if self.published.get(key) != st]
        ops += [op_delete(reg.POD_STATUS + key) for key in self.published if key not in want]
        if ops:
            self.etcd.txn([], ops)
        self.published = want

    def write_status(self) -> None:
        """What this node has programmed, up to which revision of the datastore (only when it changed)."""
        self.status.update({"synced": self.cache.revision, "node": self.node, "agentPid": os.getpid()})
        pods = self.load_pods().values()
        terminating = sum(1 for r in pods if r.get("terminating"))
        self.metrics.pods.labels(phase="running").set(len(pods) - terminating)
        self.metrics.pods.labels(phase="terminating").set(terminating)
        if self.status != self.status_written:
            self.etcd.put(reg.NODE_STATUS + self.node, reg.dumps(self.status))
            self.status_written = copy.deepcopy(self.status)

    # -- services --------------------------------------------------------------------
    def sync_services(self, changes: Changes, full: bool) -> None:
        """kube-proxy's job on this node, and what hangs off it (DNS records, health-check ports,
        LoadBalancer addresses): from the changed keys, the Services whose object or endpoints
        changed, and only those recompiled and written."""
        cache = self.cache
        state = cache.state()
        nodes = cache.node_dicts()
        if full or self.eps is None:
            self.eps = EndpointIndex()
            changed_svcs, changed_pods = set(cache.services) | set(self.eps.services), set(cache.pods)
        else:
            changed_svcs = set(changes.get("service", ()))
            changed_pods = set(changes.get("pod", ())) | set(changes.get("podstatus", ()))
            if "lease" in changes:  # a node came or went: its pods' readiness with it
                changed_pods |= {k for k, p in cache.pods.items() if p.node_name in changes["lease"]}
        alive = set(self.alive_nodes())
        views = {k: pod_view(p, cache.pod_status.get(k), p.node_name in alive)
                 if (p := cache.pods.get(k)) is not None else None for k in changed_pods}
        touched = self.eps.update(cache.services, changed_svcs, views) | changed_svcs
        dns_svc, dns_eps = kube_dns(state, nodes)
        if full or "node" in changes or self.proxy is None:
            touched.add(dns_svc.key)
        if full:  # every Service with kube-dns, kept by changed keys (a list of 30,000 was rebuilt each pass)
            self.services = {**cache.services, dns_svc.key: dns_svc}
            self.served = set()
        for key in changed_svcs:
            svc = cache.services.get(key)
            if svc is None:
                self.services.pop(key, None)
            else:
                self.services[key] = svc
            if svc is not None and svc.cluster_ip and not svc.headless:
                self.served.add(key)
            else:
                self.served.discard(key)
        self.services[dns_svc.key] = dns_svc
        services = self.services
        eps = ChainMap({dns_svc.key: dns_eps}, self.eps.endpoints)
        ctx = NodeContext(self.node, nodes[self.node]["ip"], state.cluster.pod_cidr, state.cluster.service_cidr)
        if self.proxy is None or self.proxy.ctx != ctx:
            self.proxy = ServiceProxy(ctx, nft.run)
        m = self.metrics
        try:
            with m.timed(m.proxy_sync, kind="full" if self.proxy.full_sync else "partial"):
                self.proxy.sync(services, eps, None if full else touched)
        except Exception:
            m.proxy_failures.inc()
            raise
        m.proxy_last.set_to_current_time()
        m.services.set(len(self.served) + 1)  # and kube-dns
        m.endpoints.set(sum(map(len, self.eps.endpoints.values())) + len(dns_eps))
        for key in touched:  # a pod of this node behind a ClusterIP (kube-dns's endpoints are nodes)
            svc = cache.services.get(key)
            if svc is not None and svc.cluster_ip and not svc.headless and \
                    any(e.node == self.node for e in eps.get(key, ())):
                self.local_services.add(key)
            else:
                self.local_services.discard(key)
        if full or changes.keys() & {"policy", "pod", "podstatus", "namespace", "node", "lease"}:
            world = world_of(state, cache.pod_status, nodes)
            m.policies.set(len(world.policies))
            with m.timed(m.netpol_sync):
                self.sync_netpol(world)
        self.set_bridge_netfilter(bool(self.local_services) or bool(cache.policies))
        self.flush_stale_udp(touched, eps)
        special = {k for k in touched if (s := cache.services.get(k)) is not None
                   and (s.type == "LoadBalancer" or s.health_check_node_port)}
        if full or special or self.special & touched or changes.keys() & {"node", "lease"}:
            every = list(services.values())
            self.announce_load_balancers(every, eps)
            self.health.sync(nodes[self.node]["ip"], every, eps, self.node)
            self.special = {s.key for s in every if s.type == "LoadBalancer" or s.health_check_node_port}
        self.sync_dns(touched, changed_pods, full, eps)

    def sync_dns(self, touched: set[str], changed_pods: set[str], full: bool,
                 eps: Mapping[str, list[Any]]) -> None:
        """The DNS index: the records of the Services and pods that changed, or all of them after a start."""
        cache = self.cache
        cluster = cache.state().cluster
        if full or self.dns_index.domain != cluster.cluster_domain or not self.dns_index.synced:
            index = records.new_index(cluster.cluster_domain, cluster.upstream_dns)
            touched, changed_pods = set(cache.services) | {"kube-system/kube-dns"}, set(cache.pods)
        else:
            index = self.dns_index
        for key in touched:
            svc = cache.services.get(key) if key != "kube-system/kube-dns" else None
            if key == "kube-system/kube-dns":
                svc = kube_dns(cache.state(), cache.node_dicts())[0]
            if svc is None:
                index.drop(f"service/{key}")
            else:
                index.put(f"service/{key}", *records.service_records(svc, eps.get(key, []), cluster.cluster_domain))
        for key in changed_pods:
            pod, st = cache.pods.get(key), cache.pod_status.get(key)
            if pod is not None and st is not None and st.ip and st.node == pod.node_name:
                index.put(f"pod/{key}", records.pod_records(pod.namespace, st.ip, cluster.cluster_domain))
            else:
                index.drop(f"pod/{key}")
        index.synced = True
        self.dns_index = index

    def sync_netpol(self, world: Any) -> None:
        """NetworkPolicy for this node's pods: the table written whole once, then only its differences,
        each change in one transaction."""
        if not world.policies:
            if self.netpol_script:
                nft.run(f"add table inet {NETPOL_TABLE}\ndelete table inet {NETPOL_TABLE}\n")
                self.netpol_script, self.netpol_rs = "", None
            return
        rs = compile_netpol(world, self.node)
        script = ruleset.full(rs) if self.netpol_rs is None else ruleset.diff(self.netpol_rs, rs)
        if script.strip():
            try:
                nft.run(script)
            except nft.NftError:
                self.netpol_rs = None  # written whole next time
                raise
        self.netpol_rs = rs
        self.netpol_script = "applied"

    def alive_nodes(self) -> list[str]:
        """Nodes whose agent holds its lease (this one always counts itself)."""
        return [n for n in self.cache.nodes if n == self.node or n in self.cache.leases]

    def announce_load_balancers(self, services: list[Any], eps: Mapping[str, list[Any]]) -> None:
        """One live node answers ARP for each LB address (MetalLB L2's per-address election);
        with externalTrafficPolicy Local only nodes with a ready local endpoint stand, as in MetalLB."""
        alive = sorted(self.alive_nodes())
        mine = set()
        for svc in services:
            ip = svc.load_balancer_ip if svc.type == "LoadBalancer" else ""
            candidates = alive
            if svc.external_policy_local:
                local = {e.node for e in eps.get(svc.key, []) if e.ready}
                candidates = [n for n in alive if n in local]
            if ip and candidates:
                winner = min(candidates, key=lambda n: hashlib.sha256(f"{ip}/{n}".encode()).hexdigest())
                if winner == self.node:
                    mine.add(ip)
        with Netlink() as nl:
            eth0 = nl.require(UPLINK)
            have = {str(a.ip) for a in nl.addresses(eth0.index) if a.network.prefixlen == 32}
            for ip in mine - have:
                nl.add_address(eth0.index, ipaddress.ip_interface(f"{ip}/32"))
                try:
                    arp.announce(UPLINK, eth0.mac, ip)
                except OSError as e:
                    print(f"agent {self.node}: gratuitous ARP for {ip}: {e}", file=sys.stderr)
            for ip in have - mine:
                nl.del_address(eth0.index, ipaddress.ip_interface(f"{ip}/32"))
        self.status["loadBalancerIPs"] = sorted(mine)

    def flush_stale_udp(self, touched: set[str], eps: Mapping[str, list[Any]]) -> None:
        """When a UDP endpoint goes away, so do the conntrack entries that still point at it."""
        for key in touched:
            svc = self.cache.services.get(key)
            now = {e.ip for e in eps.get(key, [])} if svc is not None and any(
                p.protocol == "UDP" for p in svc.ports) else set()
            for ip in self.endpoint_ips.get(key, set()) - now:
                subprocess.run(["conntrack", "-D", "-p", "udp", "--reply-src", ip], capture_output=True)
            if now:
                self.endpoint_ips[key] = now
            else:
                self.endpoint_ips.pop(key, None)

    def set_bridge_netfilter(self, on: bool) -> None:
        """Bridged frames pass the IP hooks only when something needs them: a Service backend on
        this bridge (its reply to a client on the same bridge must meet conntrack to be un-DNATed)
        or a NetworkPolicy (same-node pod traffic must be judged). Otherwise bridged pod traffic
        skips them and runs at veth speed."""
        for fam in ("iptables", "ip6tables"):
            path = f"/proc/sys/net/bridge/bridge-nf-call-{fam}"
            if os.path.exists(path):
                with open(path, "w") as f:
                    f.write("1" if on else "0")

    def tune_node(self) -> None:
        """Bridged pod-to-pod traffic skips the IP hooks (br_netfilter off in this node only).

        Same-node pods then talk at veth speed; the sysctls are per network namespace, so
        nothing outside this node changes. (A Service backend on the same bridge replying
        to its client is the case that needs them back on; the Services compiler owns that.)
        """
        if self.proxy is None:
            self.set_bridge_netfilter(False)

    # -- overlay ---------------------------------------------------------------------
    def apply_overlay(self, plan: OverlayPlan, cluster_cidr: str, own_cidr: str) -> None:
        cluster = ipaddress.IPv4Network(cluster_cidr)  # the lab is IPv4 (README)
        with Netlink() as nl:
            uplink = nl.require(UPLINK)
            dev_index = uplink.index
            if plan.vtep:
                v = plan.vtep
                vt = nl.ensure_vxlan(v["name"], v["vni"], v["local"], v["port"], uplink.index, v["mac"], v["mtu"])
                dev_index = vt.index
                nl.add_address(vt.index, ipaddress.ip_interface(v["address"]))
                for ip, mac in plan.neighbours:
                    nl.neigh_replace(vt.index, ip, mac)
                want = set(plan.fdb)
                have = nl.fdb_entries(vt.index)
                for mac, dst in want - have:
                    nl.fdb_add(vt.index, mac, dst)
                for mac, dst in have - want:
                    nl.fdb_del(vt.index, mac, dst)
            wanted = {r.dst for r in plan.routes}
            for r in plan.routes:
                idx = dev_index if r.dev != UPLINK else uplink.index
                nl.add_route(r.dst, idx, gw=r.via, onlink=r.onlink, replace=True)
            for have_r in nl.routes():
                dst = have_r["dst"]
                net = ipaddress.ip_network(dst, strict=False)
                if isinstance(net, ipaddress.IPv4Network) and net.subnet_of(cluster) and net != cluster \
                        and dst not in wanted and dst != own_cidr and have_r.get("gw"):
                    nl.del_route(dst, have_r["oif"], have_r["gw"])

    # -- pods ------------------------------------------------------------------------
    def terminating_due(self) -> bool:
        return any(r.get("terminating") and time.time() - r["terminating"] > GRACE_SECONDS
                   for r in self.load_pods().values())

    def reconcile_pods(self, state: ClusterState, net: Network) -> None:
        wanted = {k: p for k, p in state.pods.items() if p.node_name == self.node}
        have = self.load_pods()
        for key in [k for k in have if k not in wanted]:
            gone = have[key]
            if not gone.get("terminating"):  # first out of the endpoints, then gone
                gone["terminating"], gone["ready"] = time.time(), False
                self.save_pods(have)
            elif time.time() - gone["terminating"] > GRACE_SECONDS:
                self.teardown(net, key, have.pop(key))
                self.save_pods(have)
        self.publish_pods(have)  # out of every Service's endpoints before anything new starts
        for key, pod in wanted.items():
            rec = have.get(key)
            ports = [[p.port, p.protocol] for p in pod.ports]
            if rec is not None and netns.exists(netns.path_of(rec["netns"])) and rec.get("ip") \
                    and not rec.get("terminating"):
                if rec.get("ports") != ports or not self.workload_alive(rec):
                    self.stop_workload(rec)
                    rec["pid"] = self.start_workload(rec["netns"], pod)
                    rec["ports"] = ports
                rec["labels"] = pod.labels
                self.save_pods(have)
                continue
            if rec is not None:
                self.teardown(net, key, rec)
            have[key] = self.setup(net, pod, state.cluster)
            self.save_pods(have)
        self.wait_workloads(list(wanted.values()))
        for key, pod in wanted.items():  # readiness: endpoints only once the workload listens
            if key in have:
                have[key]["ready"] = not pod.ports or os.path.exists(self.ready_file(pod))
        self.save_pods(have)
        self.publish_pods(have)

    def attachment(self, pod: Pod, path: str) -> Attachment:
        return Attachment(container_id(pod), path, "eth0",
                          [("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", pod.namespace), ("K8S_POD_NAME", pod.name),
                           ("K8S_POD_INFRA_CONTAINER_ID", container_id(pod))])

    def setup(self, net: Network, pod: Pod, cluster: Cluster) -> dict[str, Any]:
        name = pod_netns(self.netns_prefix, pod)
        if netns.exists(netns.path_of(name)):
            netns.delete(name)
        path = netns.add(name)
        try:
            result = self.rt.add(net, self.attachment(pod, path))
        except CNIError:
            netns.delete(name)
            raise
        ip = next((i["address"].split("/")[0] for i in result.get("ips", [])
                   if ipaddress.ip_interface(i["address"]).version == 4), "")
        rec = {"namespace": pod.namespace, "name": pod.name, "netns": name, "ip": ip, "labels": pod.labels,
               "ready": False,
               "ports": [[p.port, p.protocol] for p in pod.ports], "cid": container_id(pod),
               "hostVeth": result["interfaces"][1]["name"] if len(result.get("interfaces", [])) > 1 else ""}
        self.write_resolv_conf(name, pod, cluster)
        rec["pid"] = self.start_workload(name, pod)
        return rec

    def write_resolv_conf(self, ns_name: str, pod: Pod, cluster: Cluster) -> None:
        """What kubelet writes for dnsPolicy ClusterFirst; `ip netns exec` mounts it over /etc/resolv.conf."""
        dom, dns_ip = cluster.cluster_domain, cluster.dns_ip
        d = os.path.join("/etc/netns", ns_name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "resolv.conf"), "w") as f:
            f.write(f"search {pod.namespace}.svc.{dom} svc.{dom} {dom}\nnameserver {dns_ip}\noptions ndots:5\n")

    def teardown(self, net: Network, key: str, rec: dict[str, Any]) -> None:
        self.stop_workload(rec)
        ns, name = key.split("/", 1)
        pod = Pod(ns, name)
        if os.path.exists(self.ready_file(pod)):
            os.unlink(self.ready_file(pod))
        path = netns.path_of(rec["netns"])
        try:
            self.rt.delete(net, self.attachment(pod, path))
        except CNIError as e:
            print(f"agent {self.node}: CNI DEL {key}: {e}", file=sys.stderr)
        netns.delete(rec["netns"])
        shutil.rmtree(os.path.join("/etc/netns", rec["netns"]), ignore_errors=True)

    def workload_zygote(self) -> subprocess.Popen[str]:
        """The node's workload zygote (lab/workload.py), started once: `python -I -S` with the
        package's own path (no site scan), forking each pod's workload into its namespace.
        Its command line, which the workloads inherit, names the module: that is how the
        agent and the lab recognise a workload's pid."""
        if self.zygote is None or self.zygote.poll() is not None:
            root = gingham.source_root()
            log = open(os.path.join(self.dir, "workloads.log"), "a")
            self.zygote = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", f"import sys; sys.path.insert(0, {root!r}); "
                 "from gingham.lab.workload import zygote; zygote()"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
            log.close()
        return self.zygote

    def stop_zygote(self) -> None:
        if self.zygote is not None and self.zygote.stdin is not None:
            self.zygote.stdin.close()  # it ends at the end of its input; the workloads stay
            self.zygote.wait(5)

    def start_workload(self, ns_name: str, pod: Pod) -> int:
        if not pod.ports:
            return 0
        ready = self.ready_file(pod)
        if os.path.exists(ready):
            os.unlink(ready)
        args = ["--name", pod.name, "--ready", ready]
        for p in pod.ports:
            if p.protocol in ("TCP", "UDP", "SCTP"):
                args += [f"--{p.protocol.lower()}", str(p.port)]
        z = self.workload_zygote()
        assert z.stdin is not None and z.stdout is not None
        z.stdin.write(json.dumps({"netns": netns.path_of(ns_name), "log": os.path.join(self.dir, "workloads.log"),
                                  "args": args}) + "\n")
        z.stdin.flush()
        return int(z.stdout.readline())

    def ready_file(self, pod: Pod) -> str:
        d = os.path.join(self.dir, "ready")
        os.makedirs(d, exist_ok=True)
        return os.path.join(d, container_id(pod))

    def wait_workloads(self, pods: list[Pod], timeout: float = 15) -> None:
        """Pods count as up once their workload listens (a readiness probe, in kubelet's terms)."""
        deadline = time.monotonic() + timeout
        for pod in pods:
            while pod.ports and not os.path.exists(self.ready_file(pod)) and time.monotonic() < deadline:
                time.sleep(0.01)

    def workload_alive(self, rec: dict[str, Any]) -> bool:
        return not rec.get("ports") or bool(rec.get("pid")) and pid_alive(int(rec["pid"]), "gingham.lab.workload")

    def stop_workload(self, rec: dict[str, Any]) -> None:
        pid = int(rec.get("pid") or 0)
        if pid and pid_alive(pid, "gingham.lab.workload"):
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if not pid_alive(pid, "gingham.lab.workload"):
                    break
                time.sleep(0.02)
        try:
            os.waitpid(pid, os.WNOHANG)
        except (ChildProcessError, OSError):
            pass
