"""The datastore's key layout and the objects' JSON, both ways (pure).

Keys follow kube-apiserver's own etcd layout (`/registry/<resource>/<namespace>/<name>`),
with JSON values in Kubernetes' shape instead of protobuf, so `etcdctl get --prefix
/registry/` reads like `kubectl get -o json`. What Kubernetes keeps elsewhere or does not
have lives under `/registry/gingham.dev/`:

  /registry/gingham.dev/cluster                 the Cluster object (written by `lab up`)
  /registry/gingham.dev/revision                rewritten by every `lab up/apply/delete`: its
                                                mod_revision is the desired state's revision
  /registry/gingham.dev/podstatus/<ns>/<name>   a pod's status, written by its node's agent
  /registry/gingham.dev/nodestatus/<node>       what a node's agent has programmed, by itself
  /registry/ranges/serviceips                   allocation, compare-and-swap (Kubernetes' names):
  /registry/ranges/servicenodeports              {"range", "data": base64 bitmap}, as RangeAllocation
  /registry/ranges/loadbalancerips               {"allocated": {address: "ns/name"}}
  /registry/namespaces/<name>
  /registry/minions/<node>                      Node: spec.podCIDR, InternalIP, VTEP MAC
  /registry/leases/kube-node-lease/<node>       held under an etcd lease by the node's agent
  /registry/pods/<ns>/<name>                    spec only (status is the agent's key above)
  /registry/endpointslices/<ns>/<service>[-<n>]  written by the agent holding the controller's lease
  /registry/leases/kube-system/gingham-endpointslice-controller   that lease's key (its holder)
  /registry/services/specs/<ns>/<name>          Services with their allocated values
  /registry/<kind, lowercase plural>/<ns>/<name> anything else (networkpolicies, deployments...)

Spec keys are written by the lab (the API server's part), status keys by their owners.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .objects import BgpPeer, BgpSpec, Cluster, ClusterState, ContainerPort, Namespace, Object, Pod, Probe

if TYPE_CHECKING:  # loaded by the slice functions that build them: a `lab get pods` needs neither
    from .services import Endpoint, Service

ROOT = "/registry/"
CLUSTER = ROOT + "gingham.dev/cluster"
REVISION = ROOT + "gingham.dev/revision"
POD_STATUS = ROOT + "gingham.dev/podstatus/"
NODE_STATUS = ROOT + "gingham.dev/nodestatus/"
NAMESPACES = ROOT + "namespaces/"
NODES = ROOT + "minions/"
LEASES = ROOT + "leases/kube-node-lease/"
PODS = ROOT + "pods/"
SERVICES = ROOT + "services/specs/"
ENDPOINT_SLICES = ROOT + "endpointslices/"
SLICE_LEADER = ROOT + "leases/kube-system/gingham-endpointslice-controller"
RANGE_SERVICE_IPS = ROOT + "ranges/serviceips"
RANGE_NODE_PORTS = ROOT + "ranges/servicenodeports"
RANGE_LB_IPS = ROOT + "ranges/loadbalancerips"
LEASE_TTL = 3  # seconds: a node whose agent is silent this long is gone for the others

_RESOURCES = {"Service": SERVICES, "NetworkPolicy": ROOT + "networkpolicies/",
              "Deployment": ROOT + "deployments/", "StatefulSet": ROOT + "statefulsets/",
              "Ingress": ROOT + "ingress/", "IngressClass": ROOT + "ingressclasses/", "Secret": ROOT + "secrets/",
              "GatewayClass": ROOT + "gatewayclasses/", "Gateway": ROOT + "gateways/",
              "HTTPRoute": ROOT + "httproutes/", "ReferenceGrant": ROOT + "referencegrants/"}
_KINDS = {v: k for k, v in _RESOURCES.items()}


class DecodeError(ValueError):
    """A key holds something that is not a valid object of its kind."""


@dataclass(frozen=True)
class NodeInfo:
    """A node as the network needs it: its address, pod CIDR and VTEP MAC."""

    name: str
    ip: str
    pod_cidr: str
    vtep_mac: str = ""
    netns: str = ""

    def as_dict(self) -> dict[str, str]:
        """The shape the overlay and Services compilers take (`ip`, `podCIDR`, `vtepMAC`)."""
        return {"ip": self.ip, "podCIDR": self.pod_cidr, "vtepMAC": self.vtep_mac, "netns": self.netns}


@dataclass(frozen=True)
class PodStatus:
    """What a pod's node says of it: its address, readiness, since when it terminates (0: not),
    and when any of those last changed (the Ready condition's lastTransitionTime, with its
    fraction of a second: what the network programming latency is measured from)."""

    namespace: str
    name: str
    node: str
    ip: str = ""
    ready: bool = False
    terminating: float = 0.0
    changed: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


_CLUSTER_SCOPED = {ROOT + "ingressclasses/", ROOT + "gatewayclasses/"}  # /registry/<resource>/<name>, no namespace


def prefix(kind: str) -> str:
    """Where a kind's objects live: /registry/<resource>/."""
    return _RESOURCES.get(kind) or f"{ROOT}{kind.lower()}s/"


def object_key(kind: str, namespace: str, name: str) -> str:
    where = prefix(kind)
    return f"{where}{name}" if where in _CLUSTER_SCOPED else f"{where}{namespace}/{name}"


def pod_key(namespace: str, name: str) -> str:
    return f"{PODS}{namespace}/{name}"


def pod_status_key(namespace: str, name: str) -> str:
    return f"{POD_STATUS}{namespace}/{name}"


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, default=str).encode()


# -- encoding ------------------------------------------------------------------------------
def encode_cluster(c: Cluster) -> dict[str, Any]:
    return {"apiVersion": "gingham.dev/v1alpha1", "kind": "Cluster", "metadata": {"name": c.name},
            "spec": {"nodes": list(c.nodes), "podCIDR": c.pod_cidr, "serviceCIDR": c.service_cidr,
                     "nodeCIDRMaskSize": c.node_cidr_mask, "overlay": c.overlay, "clusterDomain": c.cluster_domain,
                     "upstreamDNS": list(c.upstream_dns), "loadBalancerPool": c.load_balancer_pool,
                     **({"bgp": encode_bgp(c.bgp)} if c.bgp is not None else {}),
                     **({"racks": [{"name": n, "nodes": list(ns)} for n, ns in c.racks]} if c.racks else {})}}


def encode_bgp(b: BgpSpec) -> dict[str, Any]:
    return {"asNumber": b.as_number, "routeReflectors": list(b.route_reflectors),
            "peers": [{"address": p.address, "asNumber": p.as_number} for p in b.peers]}


def encode_namespace(n: Namespace) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n.name, "labels": dict(n.labels)}}


def encode_node(n: NodeInfo) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": n.name, "annotations": {"gingham.dev/vtep-mac": n.vtep_mac,
                                                          "gingham.dev/netns": n.netns}},
            "spec": {"podCIDR": n.pod_cidr, "podCIDRs": [n.pod_cidr]},
            "status": {"addresses": [{"type": "InternalIP", "address": n.ip}, {"type": "Hostname", "address": n.name}]}}


def encode_pod(p: Pod) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": p.namespace, "name": p.name, "labels": dict(p.labels)}
    if p.owner:
        kind, _, owner = p.owner.partition("/")
        meta["ownerReferences"] = [{"kind": kind, "name": owner, "controller": True}]
    ports = [{"containerPort": cp.port, "protocol": cp.protocol, **({"name": cp.name} if cp.name else {})}
             for cp in p.ports]
    container: dict[str, Any] = {"name": "main", "ports": ports}
    if p.readiness is not None:
        container["readinessProbe"] = encode_probe(p.readiness)
    limits = {**({"cpu": f"{p.cpu_millis}m"} if p.cpu_millis else {}),
              **({"memory": str(p.memory_bytes)} if p.memory_bytes else {})}
    if limits:
        container["resources"] = {"limits": limits}
    spec: dict[str, Any] = {"nodeName": p.node_name, "containers": [container]}
    for key, value in (("hostname", p.hostname), ("subdomain", p.subdomain)):
        if value:
            spec[key] = value
    if p.grace_seconds is not None:
        spec["terminationGracePeriodSeconds"] = int(p.grace_seconds)
    if p.host_network:
        spec["hostNetwork"] = True
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def encode_probe(pr: Probe) -> dict[str, Any]:
    action: dict[str, Any] = {"command": list(pr.command)} if pr.action == "exec" else {"port": pr.port}
    if pr.action == "httpGet":
        action["path"] = pr.path
    return {pr.action: action, "initialDelaySeconds": pr.initial_delay, "periodSeconds": pr.period,
            "timeoutSeconds": pr.timeout, "successThreshold": pr.success_threshold,
            "failureThreshold": pr.failure_threshold}


def decode_probe(d: dict[str, Any]) -> Probe:
    action = next((a for a in ("tcpSocket", "httpGet", "exec") if isinstance(d.get(a), dict)), "")
    if not action:
        raise DecodeError("readinessProbe: no tcpSocket, httpGet or exec")
    body = d[action]
    port = body.get("port", 0)
    if isinstance(port, bool) or not isinstance(port, (int, str)):
        raise DecodeError(f"readinessProbe.{action}.port: {port!r}")
    return Probe(action, port, str(body.get("path", "/")), tuple(str(c) for c in body.get("command") or []),
                 _at(d, "initialDelaySeconds", int, 0), _at(d, "periodSeconds", int, 10),
                 _at(d, "timeoutSeconds", int, 1), _at(d, "successThreshold", int, 1),
                 _at(d, "failureThreshold", int, 3))


def timestamp(t: float) -> str:
    """RFC 3339 in UTC with microseconds, as Kubernetes writes a MicroTime."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> float:
    """An RFC 3339 time (with or without a fraction, Z or an offset) as seconds since the epoch."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise DecodeError(f"not an RFC 3339 time: {text!r}") from None


def encode_pod_status(s: PodStatus) -> dict[str, Any]:
    ready: dict[str, Any] = {"type": "Ready", "status": "True" if s.ready else "False"}
    if s.changed:
        ready["lastTransitionTime"] = timestamp(s.changed)
    out: dict[str, Any] = {"nodeName": s.node, "phase": "Running" if s.ip else "Pending", "conditions": [ready]}
    if s.ip:
        out.update({"podIP": s.ip, "podIPs": [{"ip": s.ip}]})
    if s.terminating:
        out["terminatingSince"] = s.terminating
    return {"metadata": {"namespace": s.namespace, "name": s.name}, "status": out}


# -- decoding ------------------------------------------------------------------------------
def document(value: bytes) -> dict[str, Any]:
    """A value as a JSON object (DecodeError otherwise)."""
    try:
        d = json.loads(value)
    except (ValueError, UnicodeDecodeError) as e:
        raise DecodeError(f"not JSON: {e}") from None
    if not isinstance(d, dict):
        raise DecodeError("not a JSON object")
    return d


def _at(d: dict[str, Any], path: str, want: type | tuple[type, ...], default: Any = None) -> Any:
    cur: Any = d
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            if default is not None:
                return default
            raise DecodeError(f"{path}: missing")
        cur = cur[part]
    if not isinstance(cur, want) or isinstance(cur, bool) and want is int:
        raise DecodeError(f"{path}: must be {getattr(want, '__name__', want)}, got {type(cur).__name__}")
    return cur


def _labels(d: dict[str, Any]) -> dict[str, str]:
    labels = _at(d, "metadata.labels", dict, {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise DecodeError("metadata.labels: must map strings to strings")
    return dict(labels)


def decode_cluster(value: bytes) -> Cluster:
    d = document(value)
    return Cluster(_at(d, "metadata.name", str), tuple(_at(d, "spec.nodes", list)), _at(d, "spec.podCIDR", str),
                   _at(d, "spec.serviceCIDR", str), _at(d, "spec.nodeCIDRMaskSize", int), _at(d, "spec.overlay", str),
                   _at(d, "spec.clusterDomain", str), tuple(_at(d, "spec.upstreamDNS", list, [])),
                   _at(d, "spec.loadBalancerPool", str, ""), decode_bgp(d["spec"]["bgp"]) if "bgp" in d["spec"] else None,
                   tuple((str(r["name"]), tuple(r["nodes"])) for r in d["spec"].get("racks") or ()))


def decode_bgp(b: dict[str, Any]) -> BgpSpec:
    return BgpSpec(int(b["asNumber"]), tuple(b.get("routeReflectors") or ()),
                   tuple(BgpPeer(str(p["address"]), int(p["asNumber"])) for p in b.get("peers") or ()))


def decode_namespace(value: bytes) -> Namespace:
    d = document(value)
    return Namespace(_at(d, "metadata.name", str), _labels(d))


def decode_node(value: bytes) -> NodeInfo:
    d = document(value)
    addrs = {a.get("type"): a.get("address") for a in _at(d, "status.addresses", list) if isinstance(a, dict)}
    ip = addrs.get("InternalIP")
    if not isinstance(ip, str):
        raise DecodeError("status.addresses: no InternalIP")
    ann = _at(d, "metadata.annotations", dict, {})
    return NodeInfo(_at(d, "metadata.name", str), ip, _at(d, "spec.podCIDR", str),
                    str(ann.get("gingham.dev/vtep-mac", "")), str(ann.get("gingham.dev/netns", "")))


def decode_pod(value: bytes) -> Pod:
    d = document(value)
    owner = ""
    for ref in _at(d, "metadata.ownerReferences", list, []):
        if isinstance(ref, dict) and ref.get("controller"):
            owner = f"{ref.get('kind')}/{ref.get('name')}"
    ports = []
    probe = None
    cpu = memory = 0
    for c in _at(d, "spec.containers", list):
        if not isinstance(c, dict):
            raise DecodeError("spec.containers: must hold objects")
        if probe is None and isinstance(c.get("readinessProbe"), dict):
            probe = decode_probe(c["readinessProbe"])
        limits = (c.get("resources") or {}).get("limits") or {}
        if isinstance(limits, dict) and limits and not (cpu or memory):
            cpu = int(str(limits.get("cpu", "0m")).removesuffix("m") or 0)
            memory = int(limits.get("memory", 0) or 0)
        for p in c.get("ports") or []:
            if not isinstance(p, dict):
                raise DecodeError("spec.containers[].ports: must hold objects")
            ports.append(ContainerPort(_at(p, "containerPort", int), _at(p, "protocol", str, "TCP"),
                                       _at(p, "name", str, "")))
    spec = _at(d, "spec", dict)
    grace = float(_at(spec, "terminationGracePeriodSeconds", int)) if "terminationGracePeriodSeconds" in spec else None
    return Pod(_at(d, "metadata.namespace", str), _at(d, "metadata.name", str), _labels(d),
               _at(d, "spec.nodeName", str, ""), tuple(ports), owner, _at(d, "spec.hostname", str, ""),
               _at(d, "spec.subdomain", str, ""), probe, grace, _at(spec, "hostNetwork", bool, False), cpu, memory)


def decode_pod_status(value: bytes) -> PodStatus:
    d = document(value)
    st = _at(d, "status", dict)
    cond = next((c for c in st.get("conditions") or [] if isinstance(c, dict) and c.get("type") == "Ready"), {})
    changed = cond.get("lastTransitionTime")
    term = st.get("terminatingSince") or 0.0
    if not isinstance(term, (int, float)):
        raise DecodeError("status.terminatingSince: must be a number")
    return PodStatus(_at(d, "metadata.namespace", str), _at(d, "metadata.name", str), _at(d, "status.nodeName", str),
                     _at(d, "status.podIP", str, ""), cond.get("status") == "True", float(term),
                     parse_timestamp(changed) if isinstance(changed, str) else 0.0)


def decode_object(key: str, value: bytes) -> Object:
    """Any other namespaced object, kept whole (`raw`) with its kind from the key's resource."""
    d = document(value)
    parts = key[len(ROOT):].split("/")
    if len(parts) == 2 and ROOT + parts[0] + "/" in _CLUSTER_SCOPED:
        parts.insert(1, "")
    if len(parts) < 3:
        raise DecodeError(f"{key}: not /registry/<resource>/<namespace>/<name>")
    kind = _KINDS.get(ROOT + "/".join(parts[:-2]) + "/") or d.get("kind")
    if not isinstance(kind, str) or not kind:
        raise DecodeError("kind: missing")
    ns, name = parts[-2], parts[-1]
    meta = _at(d, "metadata", dict)
    if meta.get("name") != name or meta.get("namespace", ns) != ns:
        raise DecodeError(f"metadata names {meta.get('namespace')}/{meta.get('name')}, the key {ns}/{name}")
    return Object(kind, ns, name, d)


def is_spec(key: str) -> bool:
    """Keys the lab writes (desired state); the rest belong to agents, controllers or allocation."""
    return key.startswith(ROOT) and not key.startswith(
        (ROOT + "gingham.dev/", ROOT + "leases/", ROOT + "ranges/", ENDPOINT_SLICES)) or key == CLUSTER


def spec_keys(state: ClusterState, nodes: dict[str, NodeInfo]) -> dict[str, bytes]:
    """The desired state as keys and values, exactly as `lab up/apply` writes them."""
    out = {CLUSTER: dumps(encode_cluster(state.cluster))}
    out.update((NAMESPACES + n.name, dumps(encode_namespace(n))) for n in state.namespaces.values())
    out.update((NODES + n.name, dumps(encode_node(n))) for n in nodes.values())
    out.update((pod_key(p.namespace, p.name), dumps(encode_pod(p))) for p in state.pods.values())
    out.update((object_key(o.kind, o.namespace, o.name), dumps(o.raw)) for o in state.objects.values())
    return out


def encode_bitmap(range_: str, data: bytes) -> bytes:
    """A RangeAllocation: the range and one bit per value, set when it is taken."""
    return dumps({"range": range_, "data": base64.b64encode(data).decode()})


def decode_bitmap(value: bytes) -> tuple[str, bytes]:
    d = document(value)
    try:
        return _at(d, "range", str), base64.b64decode(_at(d, "data", str), validate=True)
    except ValueError as e:
        raise DecodeError(f"data: {e}") from None


def encode_holders(allocated: dict[str, str]) -> bytes:
    """Allocated values and the Service ("ns/name") holding each."""
    return dumps({"allocated": allocated})


def decode_holders(value: bytes) -> dict[str, str]:
    return {str(k): str(v) for k, v in _at(document(value), "allocated", dict).items()}


def encode_slices(svc: Service, eps: list[Endpoint]) -> dict[str, dict[str, Any]]:
    """A Service's discovery.k8s.io/v1 EndpointSlices by name: one per set of resolved ports
    (a named targetPort may resolve differently on different pods), the first named after
    the Service, the others `<service>-<n>`; none when the Service has no endpoint."""
    groups: dict[tuple[tuple[str, str, int], ...], list[Endpoint]] = {}
    for e in eps:
        groups.setdefault(e.ports, []).append(e)
    out = {}
    for i, (ports, members) in enumerate(sorted(groups.items(), key=lambda g: -len(g[1]))):
        name = svc.name if i == 0 else f"{svc.name}-{i}"
        out[name] = {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"namespace": svc.namespace, "name": name,
                         "labels": {"kubernetes.io/service-name": svc.name,
                                    "endpointslice.kubernetes.io/managed-by": "gingham.dev/endpointslice-controller"}},
            "ports": [{"name": n, "protocol": proto, "port": port} for n, proto, port in ports],
            "endpoints": [{"addresses": [e.ip], "nodeName": e.node,
                           "conditions": {"ready": e.ready, "serving": e.serving, "terminating": e.terminating},
                           **({"hostname": e.hostname} if e.hostname else {}),
                           "targetRef": {"kind": "Pod", "namespace": e.pod.split("/", 1)[0],
                                         "name": e.pod.split("/", 1)[-1]}} for e in members]}
    return out


def decode_slice(value: bytes) -> tuple[str, str, list[Endpoint]]:
    """(namespace, Service name, endpoints) of an EndpointSlice."""
    from .services import Endpoint
    d = document(value)
    ports = tuple((str(p.get("name", "")), str(p.get("protocol", "TCP")), int(p["port"]))
                  for p in _at(d, "ports", list) if isinstance(p, dict))
    eps = []
    for e in _at(d, "endpoints", list):
        c = e.get("conditions") or {}
        ref = e.get("targetRef") or {}
        eps.append(Endpoint(str(e["addresses"][0]), str(e.get("nodeName", "")),
                            f"{ref.get('namespace', '')}/{ref.get('name', '')}", bool(c.get("ready")),
                            bool(c.get("serving")), bool(c.get("terminating")), ports, str(e.get("hostname", ""))))
    labels = _at(d, "metadata.labels", dict, {})
    return _at(d, "metadata.namespace", str), str(labels.get("kubernetes.io/service-name", "")), eps
