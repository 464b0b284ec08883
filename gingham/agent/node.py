"""The node agent: the loop that wires the datastore to this node's controllers.

It runs inside its node's network namespace, lists and watches the datastore (etcd, over
the node's network: sources/), holds its node's lease, and hands each pass's changes to
the controllers they concern: the overlay (agent/overlay.py, Flannel's part), the pods
(agent/pods.py, kubelet's), Services (agent/services.py, kube-proxy's), NetworkPolicy
(agent/netpol.py), DNS (agent/dns.py), LoadBalancer addresses (agent/loadbalancer.py),
health-check ports (agent/health.py), and, on the agent holding its lease, the
EndpointSlice controller (agent/slices.py). It waits on the watch while nothing changes. A
restarted agent lists again, adopts what is there and converges without touching live
pods. Its own files (CNI config, IPAM, pod records) stay in its state directory, which no
other node reads; what it tells the others (pod statuses, what it has programmed) goes to
the datastore.
"""

from __future__ import annotations

import copy
import gc
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any

from ..cni import install
from ..cni.runtime import Runtime
from ..dns.server import DNSServer
from ..model import registry as reg
from ..netpol.world import world_of
from ..sources.cache import Cache, Changes, Source, merge
from ..sources.etcd import Etcd, EtcdError
from ..sources.lease import NodeLease
from . import loadbalancer, overlay
from .cni_server import CNIServer, warm_up
from .dns import DNSController
from .health import HealthServers
from ..bgp import bird
from .bgp import BgpSpeaker
from .flows import FlowRecorder, build_view
from .pinger import Pinger
from .pinger import targets as pinger_targets
from .ingress import IngressController
from .metrics import METRICS_PORT, AgentMetrics, serve_metrics
from .netpol import NetpolController
from .pods import PodController
from .services import ServicesController, set_bridge_netfilter
from .slices import EndpointSliceController
from .workloads import Workloads

# the kinds of change each controller hears (sources/cache.py names them)
OVERLAY = {"cluster", "node", "lease"}
NETPOL = {"policy", "pod", "podstatus", "namespace", "node", "lease"}
IGNORED = {"nodestatus", "revision", "endpointslice"}  # reports and outputs; the marker only asks for a status


class NodeAgent:
    def __init__(self, etcd: str, node: str, state_dir: str, workloads: Workloads,
                 netns_prefix: str = "gingham-pod-") -> None:
        self.etcd = Etcd(etcd)
        self.source = Source(self.etcd)
        self.node = node
        self.dir = state_dir
        os.makedirs(self.dir, exist_ok=True)
        self.sock = os.path.join(self.dir, "cni.sock")
        self.bin = os.path.join(self.dir, "bin")
        rt = Runtime(self.bin, os.path.join(self.dir, "cache"), extra_env={"GINGHAM_CNI_SOCKET": self.sock})
        self.stop = threading.Event()
        self.metrics = AgentMetrics()
        self.workloads = workloads
        self.pods = PodController(node, state_dir, rt, netns_prefix, workloads, self.etcd)
        self.services = ServicesController(node, self.metrics)
        self.netpol = NetpolController(node)
        self.dns = DNSController()
        self.ingress = IngressController(node, state_dir)
        self.bgp = BgpSpeaker(node, state_dir)
        self.flows = FlowRecorder(state_dir, self.metrics)
        self.pinger = Pinger(self.metrics)
        self.flows.quiet_ports = self.pinger.ports
        self.health = HealthServers()
        self.special: set[str] = set()  # LoadBalancer and health-check Services, as last announced
        self.bridge_netfilter = False    # bridged frames through the IP hooks (agent/services.py)
        self.status: dict[str, Any] = {}
        self.status_written: dict[str, Any] = {}
        self.lease: NodeLease = NodeLease(self.etcd, reg.LEASES + node, reg.dumps({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"namespace": "kube-node-lease", "name": node},
            "spec": {"holderIdentity": node, "leaseDurationSeconds": reg.LEASE_TTL}}), reg.LEASE_TTL)
        self.slices = EndpointSliceController(self.etcd, node, self.lease)

    @property
    def cache(self) -> Cache:
        """The source's typed cache (a new source after a failed first listing has a new one)."""
        return self.source.cache

    # -- the loop --------------------------------------------------------------------
    def start_source(self) -> Changes:
        """Lists the datastore once this node is registered in it, retrying until a member answers.

        The lab starts agents while it writes the cluster: until the node's key exists, one key
        is read every 50 ms, not the whole prefix."""
        said = ""
        while not self.stop.is_set():
            try:
                if self.etcd.get(reg.NODES + self.node) is not None:
                    t0 = time.monotonic()
                    changes = self.source.start()
                    if self.node in self.cache.nodes and self.cache.cluster is not None:
                        print(f"agent {self.node}: listed {len(self.cache.raw):,} keys at revision "
                              f"{self.cache.revision} in {time.monotonic() - t0:.2f}s", file=sys.stderr, flush=True)
                        return changes
                    self.source.stop()
                    self.source = Source(self.etcd)
                msg = "not registered in the datastore yet"
            except EtcdError as e:
                msg = str(e)
            if msg != said:
                print(f"agent {self.node}: {msg}", file=sys.stderr, flush=True)
                said = msg
            self.stop.wait(0.05)
        return {}

    def run(self) -> None:
        install.install(self.bin)
        warm_up()
        server = CNIServer(self.sock, self.metrics)
        server.start()
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        # the lease first: the other agents, listing at the same time, see this node alive in their
        # first pass instead of rewriting every Service when it appears a moment later
        self.lease.start()
        changes = self.start_source()
        if self.stop.is_set():
            self.lease.stop()
            server.stop()
            return
        # bound to the node address, not 0.0.0.0: a UDP reply from a wildcard socket takes the
        # source address of the route back (cni0's), which conntrack would not match to the DNAT
        node_ip = self.cache.nodes[self.node].ip
        dns = DNSServer(lambda: self.dns.index, node_ip)
        dns.start()
        metrics = serve_metrics(node_ip, 9153, lambda: dns.stats.prometheus())
        agent_metrics = serve_metrics(node_ip, METRICS_PORT, self.metrics.render)
        set_bridge_netfilter(False)  # until a Service backend or a policy needs bridged frames judged
        try:
            if os.environ.get("GINGHAM_FLOWS", "on") != "off":  # off: for measuring what recording costs
                self.flows.start()
        except OSError as e:  # a kernel without nfnetlink_log or ctnetlink events: no flow records
            print(f"agent {self.node}: flow records off: {e}", file=sys.stderr, flush=True)
        self.pinger.start()
        full = True
        try:
            while not self.stop.is_set():
                try:
                    if full or set(changes) - {"nodestatus"} or self.pods.terminating_due():
                        self.sync(changes, full)
                        if full:  # what a full pass built lives long: the collector need not walk it each pass
                            gc.freeze()
                        full = False
                    elif max(self.cache.spec_revision, self.cache.status_revision) > self.status.get("synced", 0):
                        self.write_status()  # a rewrite that changed nothing here: seen, all the same
                    if self.pods.probes_due():  # readiness probes: a changed Ready comes back as a podstatus change
                        self.pods.run_probes(self.cache)
                except Exception:
                    traceback.print_exc(file=sys.stderr)
                    self.services.resync()
                    full = True
                    self.stop.wait(0.5)
                # nothing to do until the watch brings a change, a terminating pod's grace ends or a
                # readiness probe is due;
                # then what follows within a few ms joins it (a burst of writes, one pass)
                changes = self.source.wait(self.pods.next_deadline())
                if changes:
                    merge(changes, self.source.settle(quiet=0.003, limit=0.05))
        finally:
            self.pinger.stop()
            self.bgp.stop()
            self.flows.stop()
            self.lease.stop()
            self.source.stop()
            self.health.stop()
            dns.stop()
            for srv in (metrics, agent_metrics):
                srv.shutdown()
                srv.server_close()
            self.workloads.close()
            server.stop()

    def sync(self, changes: Changes, full: bool) -> None:
        """One pass: the controllers the changes concern (logged when it is slow)."""
        t0 = time.monotonic()
        self._sync(changes, full)
        took = time.monotonic() - t0
        if took > 0.2 or full:
            what = ", ".join(f"{len(v)} {k}" for k, v in sorted(changes.items()))
            print(f"agent {self.node}: {'full ' if full else ''}sync of {what or 'nothing'} took {took:.2f}s",
                  file=sys.stderr, flush=True)

    def _sync(self, changes: Changes, full: bool) -> None:
        cache = self.cache
        if full or changes.keys() & OVERLAY or self.pods.terminating_due() \
                or self.pods.mine(changes.get("pod", set()), cache):
            self.reconcile_node()
        if full and self.await_pods(changes):
            self.reconcile_node()  # what came while waiting concerned this node's pods or the overlay
        alive = self.alive_nodes()
        touched: set[str] = set()
        if full or changes.keys() - IGNORED:
            touched, changed_pods = self.services.sync(cache, changes, full, alive)
            svc = self.services
            world = None
            if full or changes.keys() & NETPOL:
                world = world_of(cache.state(), cache.pod_status, cache.node_dicts(), cache.policies.values())
                self.metrics.policies.set(len(world.policies))
                with self.metrics.timed(self.metrics.netpol_sync):
                    self.netpol.sync(world)
            if not self.bridge_netfilter and (svc.local or cache.policies):
                # on once needed, and never off again while the agent runs: turned off under live
                # traffic, a pod on this node lost cluster DNS for seconds (the last Service backend
                # of the node had just gone; tests/integration/test_dns.py caught it)
                set_bridge_netfilter(True)
                self.bridge_netfilter = True
            special = {k for k in touched if (s := svc.services.get(k)) is not None
                       and (s.type == "LoadBalancer" or s.health_check_node_port or s.external_ips)}
            if full or special or self.special & touched or changes.keys() & {"node", "lease"}:
                every = list(svc.services.values())
                cluster = cache.state().cluster
                if cluster.overlay == "bgp":  # every candidate node announces, over BGP, no address on the uplink
                    mine = loadbalancer.bgp_addresses(every, svc.endpoints, sorted(alive), self.node)
                    self.bgp.sync(bird.node_config(cluster, self.node, cache.node_dicts(), mine,
                                                   overlay.uplink_network()))
                    loadbalancer.announce(overlay.UPLINK, set())
                else:
                    mine = loadbalancer.elect(every, svc.endpoints, sorted(alive), self.node)
                    loadbalancer.announce(overlay.UPLINK, mine)
                self.status["loadBalancerIPs"] = sorted(mine)
                self.health.sync(cache.nodes[self.node].ip, every, svc.endpoints, self.node)
                self.special = {s.key for s in every if s.type == "LoadBalancer" or s.health_check_node_port
                                or s.external_ips}
            self.dns.sync(cache, svc.services, svc.endpoints, touched, changed_pods, full)
            self.flows.view = build_view(self.node, cache, svc.services, world, self.flows.view,
                                         {"all"} if full else set(changes))
            self.flows.program()
            if full or changes.keys() & {"node", "lease", "pod", "podstatus"}:
                pods = [(st.ip, p.node_name, next((c.port for c in p.ports if c.protocol == "TCP"), 0))
                        for k, st in cache.pod_status.items() if (p := cache.pods.get(k)) is not None and st.ip
                        and st.ready and not p.host_network]
                self.pinger.targets = pinger_targets(self.node, cache.nodes, [t for t in pods if t[2]], alive,
                                                     METRICS_PORT)
            if full or self.ingress.concerned(changes.get("object", set()), touched):
                try:
                    self.ingress.sync(cache.objects, svc.services, svc.endpoints,
                                      {n: ns.labels for n, ns in cache.namespaces.items()})
                except RuntimeError as e:  # a refused configuration: the running proxy keeps the last good one
                    print(f"agent {self.node}: {e}", file=sys.stderr, flush=True)
            if not full:  # a change's slices are in the datastore when `lab apply` returns
                self.slices.sync(cache, svc.services, svc.endpoints, touched)
        self.write_status()
        if full:
            # after the status: the slices are the controller's report, not what this node
            # programs, and writing 30,000 of them at start must not hold back "programmed"
            self.slices.sync(cache, self.services.services, self.services.endpoints, touched)

    def reconcile_node(self) -> None:
        """The overlay towards the nodes holding a lease, and this node's pods."""
        cache = self.cache
        alive = self.alive_nodes()
        plan, net = overlay.program_node(cache.state().cluster, self.node,
                                         {n: v for n, v in cache.node_dicts().items() if n in alive}, self.dir)
        self.pods.reconcile(cache.state(), net, cache)
        self.status.update({"overlay": plan.mode, "podMTU": plan.pod_mtu})

    def await_pods(self, changes: Changes, limit: float = 3.0) -> bool:
        """Before a full Services sync, up to `limit` seconds for the pods of live nodes to say they
        are ready (kube-proxy's first sync waits for its informers, too): a starting node whose
        pods come up with the others' would otherwise write every Service twice, once without
        endpoints and once with. What arrives meanwhile joins `changes`; True when some of it
        concerns this node's pods or the overlay."""
        deadline = time.monotonic() + limit
        mine = False
        while time.monotonic() < deadline:
            alive, cache = self.alive_nodes(), self.cache
            if all((st := cache.pod_status.get(k)) is not None and st.ready and st.node == p.node_name
                   for k, p in cache.pods.items() if p.node_name in alive):
                break
            more = self.source.wait(min(0.05, max(0.0, deadline - time.monotonic())))
            mine |= bool(more.keys() & OVERLAY) or self.pods.mine(more.get("pod", set()), cache)
            merge(changes, more)
        return mine

    def alive_nodes(self) -> set[str]:
        """Nodes whose agent holds its lease (this one always counts itself)."""
        return {n for n in self.cache.nodes if n == self.node or n in self.cache.leases}

    def write_status(self) -> None:
        """What this node has programmed, up to which revision of the datastore (only when it changed)."""
        self.status.update({"synced": self.cache.revision, "node": self.node, "agentPid": os.getpid()})
        pods = self.pods.load().values()
        terminating = sum(1 for r in pods if r.get("terminating"))
        self.metrics.pods.labels(phase="running").set(len(pods) - terminating)
        self.metrics.pods.labels(phase="terminating").set(terminating)
        if self.status != self.status_written:
            self.etcd.put(reg.NODE_STATUS + self.node, reg.dumps(self.status))
            self.status_written = copy.deepcopy(self.status)
