"""The cluster objects gingham needs, projected from Kubernetes YAML into frozen dataclasses.

Only the fields a compiler or the lab reads are kept (CoreDNS's `ToService` idea); the
raw manifest stays in `raw` so later compilers (Services, NetworkPolicy) can project more.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

DEFAULT_POD_CIDR = "10.244.0.0/16"
DEFAULT_SERVICE_CIDR = "10.96.0.0/16"


@dataclass(frozen=True)
class ContainerPort:
    port: int
    protocol: str = "TCP"
    name: str = ""


@dataclass(frozen=True)
class Probe:
    """A container's readinessProbe: one action (tcpSocket, httpGet or exec) and kubelet's timing.

    The defaults are the API's (period 10 s, timeout 1 s, success 1, failure 3)."""

    action: str                      # "tcpSocket" | "httpGet" | "exec"
    port: int | str = 0              # tcpSocket/httpGet: a number or a container port's name
    path: str = "/"                  # httpGet
    command: tuple[str, ...] = ()    # exec
    initial_delay: int = 0
    period: int = 10
    timeout: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    node_name: str = ""
    ports: tuple[ContainerPort, ...] = ()
    owner: str = ""  # "Deployment/<name>" or "StatefulSet/<name>" for replicas
    hostname: str = ""   # spec.hostname (a StatefulSet's pods: their own name)
    subdomain: str = ""  # spec.subdomain (a StatefulSet's serviceName)
    readiness: Probe | None = None       # the first container's readinessProbe
    grace_seconds: float | None = None   # terminationGracePeriodSeconds (None: the lab's default)
    host_network: bool = False           # spec.hostNetwork: the node's namespace and address
    cpu_millis: int = 0                  # resources.limits.cpu, in millicores (0: none)
    memory_bytes: int = 0                # resources.limits.memory (0: none)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class BgpPeer:
    """A router outside the cluster every node peers with over eBGP."""
    address: str
    as_number: int


@dataclass(frozen=True)
class BgpSpec:
    """spec.bgp: the nodes' AS, the nodes that reflect routes (none: a full mesh, every node
    peering with every other), and the external peers."""
    as_number: int = 64512
    route_reflectors: tuple[str, ...] = ()
    peers: tuple[BgpPeer, ...] = ()


@dataclass(frozen=True)
class Cluster:
    name: str = "lab"
    nodes: tuple[str, ...] = ("node-1", "node-2")
    pod_cidr: str = DEFAULT_POD_CIDR
    service_cidr: str = DEFAULT_SERVICE_CIDR
    node_cidr_mask: int = 24
    overlay: str = "vxlan"
    cluster_domain: str = "cluster.local"
    upstream_dns: tuple[str, ...] = ()  # where names outside the cluster domain go; none: SERVFAIL at once
    load_balancer_pool: str = ""  # "192.168.200.200/29" or "192.168.200.200-192.168.200.209"
    bgp: BgpSpec | None = None    # with overlay bgp
    racks: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (name, its nodes): separate L3 segments; none: one

    def rack_of(self, node: str) -> int:
        """The index of the rack (L3 segment) a node is in; 0 without racks."""
        return next((i for i, (_, ns) in enumerate(self.racks) if node in ns), 0)

    @property
    def dns_ip(self) -> str:
        """kube-dns's ClusterIP: .10 of the service range, as kubeadm sets it."""
        return str(ipaddress.ip_network(self.service_cidr).network_address + 10)

    def node_cidrs(self) -> dict[str, str]:
        """Each node's podCIDR: the i-th /mask of podCIDR, in node order (kube-controller-manager's job)."""
        subnets = ipaddress.ip_network(self.pod_cidr).subnets(new_prefix=self.node_cidr_mask)
        return {n: str(next(subnets)) for n in self.nodes}


@dataclass(frozen=True)
class Object:
    """Any other manifest object (Service, NetworkPolicy, ...), kept whole for later compilers."""

    kind: str
    namespace: str
    name: str
    raw: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass
class ClusterState:
    """One consistent snapshot of everything the lab was given."""

    cluster: Cluster = field(default_factory=Cluster)
    namespaces: dict[str, Namespace] = field(default_factory=dict)
    pods: dict[str, Pod] = field(default_factory=dict)
    objects: dict[str, Object] = field(default_factory=dict)
