"""kubelet's part of the agent: this node's pods, each a network namespace attached through CNI.

`pod_actions` (pure) decides from the wanted pods and the node's records what to do: a
pod that is no longer wanted first leaves every Service's endpoints (terminating), and is
torn down after its grace period (terminationGracePeriodSeconds, or the lab's 1.5 s). A pod
with a readinessProbe is ready when its probe says so (agent/probes.py); one without, once
its workload listens. `PodController` carries it out (netns, CNI ADD/DEL with
kubelet's CNI_ARGS, resolv.conf, the workload through agent/workloads.py) and publishes
the pods' statuses to the datastore. Its records (`pods.json`) are the node's own.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import sys
import time
from dataclasses import replace
from typing import Any

from ..cni.runtime import Attachment, Network, Runtime
from ..cni.spec import CNIError
from ..kernel import netns
from ..model import registry as reg
from ..model.objects import Cluster, ClusterState, Pod
from ..sources.cache import Cache
from ..sources.etcd import Etcd, op_delete, op_put
from .probes import ProbeTracker, run_probe
from .store import write_json
from .workloads import Workloads

# A removed pod keeps running this long, out of every Service's endpoints, before it is torn
# down (terminationGracePeriodSeconds; 30 s in Kubernetes, short in a lab).
GRACE_SECONDS = 1.5


def pod_actions(wanted: set[str], records: dict[str, dict[str, Any]], now: float,
                grace: float = GRACE_SECONDS) -> tuple[list[str], list[str]]:
    """(pods to mark terminating, pods to tear down) among the records no longer wanted."""
    gone = [k for k in records if k not in wanted]
    return ([k for k in gone if not records[k].get("terminating")],
            [k for k in gone if records[k].get("terminating") and now - records[k]["terminating"] >
             records[k].get("grace", grace)])


def container_id(pod: Pod) -> str:
    return f"{pod.namespace}.{pod.name}"


class PodController:
    def __init__(self, node: str, state_dir: str, rt: Runtime, netns_prefix: str, workloads: Workloads,
                 etcd: Etcd) -> None:
        self.node, self.dir, self.rt = node, state_dir, rt
        self.netns_prefix, self.workloads, self.etcd = netns_prefix, workloads, etcd
        self.path = os.path.join(state_dir, "pods.json")
        self.published: dict[str, reg.PodStatus] | None = None  # as last written to the datastore
        self.records: dict[str, dict[str, Any]] | None = None  # pods.json, read once: this is its only writer
        self.probes: dict[str, tuple[Pod, ProbeTracker]] = {}    # pods with a readinessProbe

    # -- records -------------------------------------------------------------------
    def load(self) -> dict[str, dict[str, Any]]:
        """This node's pod records (what a restarted agent adopts): read from disk once, then kept."""
        if self.records is None:
            try:
                with open(self.path) as f:
                    self.records = dict(json.load(f))
            except (OSError, ValueError):
                self.records = {}
        return self.records

    def save(self, pods: dict[str, dict[str, Any]]) -> None:
        write_json(self.path, pods)
        self.records = pods

    def terminating_due(self) -> bool:
        """A terminating pod's grace period is over: it is time to tear it down."""
        return any(r.get("terminating") and time.time() - r["terminating"] > r.get("grace", GRACE_SECONDS)
                   for r in self.load().values())

    def next_deadline(self) -> float:
        """Seconds until a terminating pod's grace ends or a probe is due (1 s when neither)."""
        now = time.time()
        ends = [r["terminating"] + r.get("grace", GRACE_SECONDS) - now for r in self.load().values()
                if r.get("terminating")]
        ends += [t.next_run - now for _, t in self.probes.values()]
        return max(0.01, min(ends)) if ends else 1.0

    def probes_due(self) -> bool:
        now = time.time()
        return any(t.due(now) for _, t in self.probes.values())

    def run_probes(self, cache: Cache) -> None:
        """The readiness probes that are due, at once (each bounded by its timeoutSeconds);
        what changes a pod's Ready goes to the datastore."""
        from concurrent.futures import ThreadPoolExecutor
        have, now = self.load(), time.time()
        due = [(k, pod, t) for k, (pod, t) in self.probes.items() if t.due(now) and k in have]
        if not due:
            return
        def probe(key: str, pod: Pod, tracker: ProbeTracker) -> bool:
            return run_probe(tracker.probe, pod, have[key].get("ip", ""), self._netns_path(have[key]))

        with ThreadPoolExecutor(min(8, len(due))) as pool:
            results = list(pool.map(lambda d: probe(*d), due))
        changed = False
        for (key, _, tracker), ok in zip(due, results):
            tracker.record(ok, time.time())
            if not have[key].get("terminating") and bool(have[key].get("ready")) != tracker.ready:
                have[key]["ready"] = tracker.ready
                changed = True
        if changed:
            self.save(have)
            self.publish(have, cache)

    def _readiness(self, key: str, pod: Pod, rec: dict[str, Any]) -> bool:
        """Ready, as the pod's probe says, or, with no probe, as its workload says. A restarted
        agent (no tracker yet) starts a probed pod from what its record says, so adopting pods
        does not take them out of their endpoints; a new or changed probe starts not ready."""
        if pod.readiness is None:
            self.probes.pop(key, None)
            rec.pop("probed", None)
            return self.workloads.ready(pod)
        have = self.probes.get(key)
        if have is None or have[0].readiness != pod.readiness:
            tracker = ProbeTracker(pod.readiness, float(rec.get("started") or time.time()))
            tracker.ready = have is None and bool(rec.get("probed")) and bool(rec.get("ready"))
            self.probes[key] = (pod, tracker)
            rec["probed"] = True  # this record's Ready comes from a probe
        return self.probes[key][1].ready

    def mine(self, keys: set[str], cache: Cache) -> bool:
        """Whether any of these pod keys is, or was, this node's."""
        have = self.load()
        return any(k in have or (p := cache.pods.get(k)) is not None and p.node_name == self.node for k in keys)

    # -- reconcile -------------------------------------------------------------------
    def reconcile(self, state: ClusterState, net: Network, cache: Cache) -> None:
        wanted = {k: p for k, p in state.pods.items() if p.node_name == self.node}
        have = self.load()
        leaving, due = pod_actions(set(wanted), have, time.time())
        for key in leaving:  # first out of the endpoints, then gone
            have[key]["terminating"], have[key]["ready"] = time.time(), False
        for key in due:
            self.teardown(net, key, have.pop(key))
        if leaving or due:
            self.save(have)
        self.publish(have, cache)  # out of every Service's endpoints before anything new starts
        for key, pod in wanted.items():
            rec = have.get(key)
            ports = [[p.port, p.protocol] for p in pod.ports]
            if rec is not None and bool(rec.get("hostNetwork")) != pod.host_network:
                self.teardown(net, key, rec)  # moved in or out of the node's namespace: made anew
                rec = None
            if rec is not None and (rec.get("hostNetwork") or netns.exists(netns.path_of(rec["netns"]))) \
                    and rec.get("ip") and not rec.get("terminating"):
                if rec.get("ports") != ports or not (not rec.get("ports") or self.workloads.alive(int(rec["pid"]))):
                    self.workloads.stop(int(rec.get("pid") or 0), pod)
                    rec["pid"] = self.workloads.start(self._netns_path(rec), pod)
                    rec["ports"] = ports
                rec["labels"] = pod.labels
                if pod.grace_seconds is not None:
                    rec["grace"] = pod.grace_seconds
                continue
            if rec is not None:
                self.teardown(net, key, rec)
            have[key] = self.setup(net, pod, state.cluster, cache)
            self.save(have)
        self.wait_ready(list(wanted.values()))
        for key in [k for k in self.probes if k not in wanted]:
            del self.probes[key]
        for key, pod in wanted.items():  # readiness: endpoints only once the probe (or the workload) says so
            if key in have:
                have[key]["ready"] = self._readiness(key, pod, have[key])
        self.save(have)
        self.publish(have, cache)

    def wait_ready(self, pods: list[Pod], timeout: float = 15) -> None:
        """Pods count as up once their workload listens (a readiness probe, in kubelet's terms)."""
        deadline = time.monotonic() + timeout
        for pod in pods:
            while not self.workloads.ready(pod) and time.monotonic() < deadline:
                time.sleep(0.01)

    def publish(self, have: dict[str, dict[str, Any]], cache: Cache) -> None:
        """This node's pods' statuses into the datastore: what differs, in one transaction."""
        if self.published is None:  # after a start: what the datastore holds (our cache may lag our own writes)
            self.published = {k: st for k, st in cache.pod_status.items() if st.node == self.node}
        now = time.time()
        want = {}
        for key, rec in have.items():
            st = reg.PodStatus(rec["namespace"], rec["name"], self.node, rec.get("ip", ""),
                               bool(rec.get("ready")), float(rec.get("terminating") or 0.0))
            was = self.published.get(key)  # the transition time moves only when something else did
            want[key] = replace(st, changed=was.changed if was is not None and replace(was, changed=0.0) == st else now)
        ops = [op_put(reg.pod_status_key(st.namespace, st.name), reg.dumps(reg.encode_pod_status(st)))
               for key, st in want.items() if self.published.get(key) != st]
        ops += [op_delete(reg.POD_STATUS + key) for key in self.published if key not in want]
        if ops:
            self.etcd.txn([], ops)
        self.published = want

    # -- one pod ---------------------------------------------------------------------
    def netns_name(self, pod: Pod) -> str:
        # Kubernetes namespaces hold no dots, so "<ns>.<pod>" cannot be mistaken for another pair.
        return f"{self.netns_prefix}{pod.namespace}.{pod.name}"

    def attachment(self, pod: Pod, path: str) -> Attachment:
        return Attachment(container_id(pod), path, "eth0",
                          [("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", pod.namespace), ("K8S_POD_NAME", pod.name),
                           ("K8S_POD_INFRA_CONTAINER_ID", container_id(pod))])

    @staticmethod
    def _netns_path(rec: dict[str, Any]) -> str:
        """Where the pod's processes run: its own namespace, or (hostNetwork) the node's, this agent's."""
        return "/proc/self/ns/net" if rec.get("hostNetwork") else netns.path_of(rec["netns"])

    def setup(self, net: Network, pod: Pod, cluster: Cluster, cache: Cache) -> dict[str, Any]:
        if pod.host_network:  # kubelet's hostNetwork: no namespace, no CNI; the node's address
            rec = {"namespace": pod.namespace, "name": pod.name, "netns": "", "hostNetwork": True,
                   "ip": cache.nodes[self.node].ip, "labels": pod.labels, "ready": False,
                   "ports": [[p.port, p.protocol] for p in pod.ports], "cid": container_id(pod),
                   "pid": self.workloads.start("/proc/self/ns/net", pod), "started": time.time()}
            if pod.grace_seconds is not None:
                rec["grace"] = pod.grace_seconds
            return rec
        name = self.netns_name(pod)
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
               "ready": False, "ports": [[p.port, p.protocol] for p in pod.ports], "cid": container_id(pod),
               "hostVeth": result["interfaces"][1]["name"] if len(result.get("interfaces", [])) > 1 else ""}
        self.write_resolv_conf(name, pod, cluster)
        rec["pid"] = self.workloads.start(path, pod)
        rec["started"] = time.time()  # initialDelaySeconds counts from here
        if pod.grace_seconds is not None:
            rec["grace"] = pod.grace_seconds
        return rec

    def write_resolv_conf(self, ns_name: str, pod: Pod, cluster: Cluster) -> None:
        """What kubelet writes for dnsPolicy ClusterFirst; `ip netns exec` mounts it over /etc/resolv.conf."""
        dom, dns_ip = cluster.cluster_domain, cluster.dns_ip
        d = os.path.join("/etc/netns", ns_name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "resolv.conf"), "w") as f:
            f.write(f"search {pod.namespace}.svc.{dom} svc.{dom} {dom}\nnameserver {dns_ip}\noptions ndots:5\n")

    def teardown(self, net: Network, key: str, rec: dict[str, Any]) -> None:
        ns, name = key.split("/", 1)
        pod = Pod(ns, name)
        self.workloads.stop(int(rec.get("pid") or 0), pod)
        if rec.get("hostNetwork"):
            return
        try:
            self.rt.delete(net, self.attachment(pod, netns.path_of(rec["netns"])))
        except CNIError as e:
            print(f"agent {self.node}: CNI DEL {key}: {e}", file=sys.stderr)
        netns.delete(rec["netns"])
        shutil.rmtree(os.path.join("/etc/netns", rec["netns"]), ignore_errors=True)
