"""One node's Services world, by value: the Services, their endpoints, and the flows through them.

It follows the suite's address plan (tests/conftest.py): this node is node-1 at 192.168.200.11
with pods in 10.244.0.0/24; load balancer addresses 192.168.200.20x; external clients in
203.0.113.0/24 (203.0.113.200 is outside every source range). Endpoints: 10.244.0.5 is on this
node, 10.244.1.2 and 10.244.2.2 on others.
"""

from __future__ import annotations

from dataclasses import dataclass

from gingham.model.services import Endpoint, parse_service
from gingham.services.compile import NodeContext

CTX = NodeContext("node-1", "192.168.200.11", "10.244.0.0/16", "10.96.0.0/16")
NODE_IPS = {"192.168.200.11"}
LOCAL, REMOTE1, REMOTE2 = "10.244.0.5", "10.244.1.2", "10.244.2.2"
POD = "10.244.0.9"
CLIENT, BLOCKED = "203.0.113.5", "203.0.113.200"

SERVICES = {
    "web": ({"clusterIP": "10.96.0.20"}, [LOCAL, REMOTE1, REMOTE2]),
    "np": ({"clusterIP": "10.96.0.21", "type": "NodePort",
            "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080}]}, [LOCAL, REMOTE1, REMOTE2]),
    "lb-local": ({"clusterIP": "10.96.0.22", "type": "LoadBalancer", "externalTrafficPolicy": "Local",
                  "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30081}]}, [LOCAL, REMOTE1]),
    "lb-remote": ({"clusterIP": "10.96.0.23", "type": "LoadBalancer", "externalTrafficPolicy": "Local",
                   "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30082}]}, [REMOTE1]),
    "empty": ({"clusterIP": "10.96.0.24", "type": "NodePort",
               "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30084}]}, []),
    "sticky": ({"clusterIP": "10.96.0.25", "sessionAffinity": "ClientIP"}, [REMOTE1, REMOTE2]),
    "fenced": ({"clusterIP": "10.96.0.26", "type": "LoadBalancer", "loadBalancerSourceRanges": ["203.0.113.0/25"],
                "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30083}]}, [REMOTE1, REMOTE2]),
    "itp-local": ({"clusterIP": "10.96.0.27", "internalTrafficPolicy": "Local"}, [LOCAL, REMOTE1]),
    "ext-ip": ({"clusterIP": "10.96.0.28", "externalIPs": ["192.168.200.150"],
                "ports": [{"port": 8080, "targetPort": 8080}]}, [REMOTE1, REMOTE2]),
    "dns": ({"clusterIP": "10.96.0.29", "ports": [{"port": 53, "protocol": "UDP", "targetPort": 8080}]},
            [REMOTE1, REMOTE2]),
    "solo": ({"clusterIP": "10.96.0.30"}, [LOCAL]),
    "headless": ({"clusterIP": "None"}, [REMOTE1]),
}
LB_IPS = {"lb-local": "192.168.200.200", "lb-remote": "192.168.200.201", "fenced": "192.168.200.202"}


def world() -> tuple[list, dict]:
    """The Services above and their endpoints."""
    services, eps = [], {}
    for name, (spec, ips) in SERVICES.items():
        spec = {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": name}, **spec}
        obj = {"spec": spec, "status": {"loadBalancer": {"ingress": [{"ip": LB_IPS[name]}]}} if name in LB_IPS else {}}
        s = parse_service("default", name, obj, "10.96.0.0/16")
        services.append(s)
        eps[s.key] = [Endpoint(ip, "node-1" if ip == LOCAL else "node-2", f"default/{name}-{ip}", True, True, False,
                               (("", "TCP", 8080), ("", "UDP", 8080))) for ip in ips]
    return services, eps


@dataclass(frozen=True)
class Flow:
    name: str
    src: str
    dst: str
    dport: int
    expect: str      # "ip:port, ..." (sorted), DROP, REJECT or ACCEPT
    masq: bool = False
    proto: str = "tcp"
    local_origin: bool = False


def eps(*ips: str, port: int = 8080) -> str:
    return ", ".join(sorted(f"{ip}:{port}" for ip in ips))


FLOWS = [
    Flow("pod to ClusterIP: every endpoint, no masquerade", POD, "10.96.0.20", 80, eps(LOCAL, REMOTE1, REMOTE2)),
    Flow("node to ClusterIP: masqueraded", "192.168.200.11", "10.96.0.20", 80, eps(LOCAL, REMOTE1, REMOTE2),
         masq=True, local_origin=True),
    Flow("a port the Service lacks is rejected", POD, "10.96.0.20", 81, "REJECT"),
    Flow("an unallocated ClusterIP is dropped", POD, "10.96.0.99", 80, "DROP"),
    Flow("no endpoints: rejected at once", POD, "10.96.0.24", 80, "REJECT"),
    Flow("no endpoints: the NodePort rejects too", CLIENT, "192.168.200.11", 30084, "REJECT"),
    Flow("NodePort from outside: every endpoint, masqueraded", CLIENT, "192.168.200.11", 30080,
         eps(LOCAL, REMOTE1, REMOTE2), masq=True),
    Flow("ETP Local NodePort: the local endpoint, client address kept", CLIENT, "192.168.200.11", 30081, eps(LOCAL)),
    Flow("ETP Local load balancer IP: the local endpoint", CLIENT, "192.168.200.200", 80, eps(LOCAL)),
    Flow("ETP Local from a pod: every endpoint", POD, "192.168.200.200", 80, eps(LOCAL, REMOTE1)),
    Flow("ETP Local from the node: every endpoint, masqueraded", "192.168.200.11", "192.168.200.200", 80,
         eps(LOCAL, REMOTE1), masq=True, local_origin=True),
    Flow("ETP Local without a local endpoint: dropped", CLIENT, "192.168.200.11", 30082, "DROP"),
    Flow("ETP Local without a local endpoint, its LB IP: dropped", CLIENT, "192.168.200.201", 80, "DROP"),
    Flow("ClusterIP of an ETP Local Service: every endpoint", POD, "10.96.0.23", 80, eps(REMOTE1)),
    Flow("ClientIP affinity: every endpoint can be chosen first", POD, "10.96.0.25", 80, eps(REMOTE1, REMOTE2)),
    Flow("source ranges: an allowed client", CLIENT, "192.168.200.202", 80, eps(REMOTE1, REMOTE2), masq=True),
    Flow("source ranges: a client outside them is dropped", BLOCKED, "192.168.200.202", 80, "DROP"),
    Flow("source ranges do not fence the NodePort", BLOCKED, "192.168.200.11", 30083, eps(REMOTE1, REMOTE2),
         masq=True),
    Flow("ITP Local: only the local endpoint", POD, "10.96.0.27", 80, eps(LOCAL)),
    Flow("external IP from outside: masqueraded", CLIENT, "192.168.200.150", 8080, eps(REMOTE1, REMOTE2), masq=True),
    Flow("UDP ClusterIP", POD, "10.96.0.29", 53, eps(REMOTE1, REMOTE2), proto="udp"),
    Flow("UDP to a TCP port of a ClusterIP: rejected", POD, "10.96.0.20", 80, "REJECT", proto="udp"),
    Flow("hairpin: a pod through its own Service is masqueraded", LOCAL, "10.96.0.30", 80, eps(LOCAL), masq=True),
    Flow("pod to pod: untouched", POD, REMOTE1, 8080, "ACCEPT"),
]
