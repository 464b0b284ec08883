"""Pure: Services + EndpointSlices + this node -> the `ip gingham-services` ruleset.

The shape is kube-proxy's nftables mode (reference/services.md): verdict maps keyed by
`ip . proto . port` dispatch a new connection in one lookup whatever the number of
Services; `numgen random` picks an endpoint; masquerade is a mark honoured in
postrouting; Services with no usable endpoint reject new connections from the filter
hooks (ICMP, so clients fail at once); ClientIP affinity is a timed dynamic set per
endpoint. Chain names carry a hash and the readable `ns/svc/proto/port`.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from dataclasses import dataclass

from ..model.services import Endpoint, Service, ServicePort, usable
from .ruleset import BaseChain, Ruleset

TABLE = "gingham-services"
MASQ_MARK = "0x4000"

BASE_CHAINS = [
    BaseChain("filter-prerouting-pre-dnat", "filter", "prerouting", -110),
    BaseChain("filter-output-pre-dnat", "filter", "output", -110),
    BaseChain("filter-forward", "filter", "forward", 0),
    BaseChain("filter-input", "filter", "input", 0),
    BaseChain("filter-output", "filter", "output", 0),
    BaseChain("nat-prerouting", "nat", "prerouting", -100),
    BaseChain("nat-output", "nat", "output", -100),
    BaseChain("nat-postrouting", "nat", "postrouting", 100),
]


@dataclass(frozen=True)
class NodeContext:
    name: str
    ip: str
    pod_cidr: str          # the cluster's pod network: traffic from it is "internal"
    service_cidr: str


def _hash(s: str) -> str:
    return base64.b32encode(hashlib.sha256(s.encode()).digest())[:8].decode()


def port_id(svc: Service, sp: ServicePort) -> str:
    return f"{svc.namespace}/{svc.name}/{sp.protocol.lower()}/{sp.name or sp.port}"


def chain_name(prefix: str, pid: str, suffix: str = "") -> str:
    return f"{prefix}-{_hash(pid + suffix)}-{pid}{suffix}"


def base_ruleset(ctx: NodeContext) -> Ruleset:
    rs = Ruleset("ip", TABLE, list(BASE_CHAINS))
    for name in ("service-ips", "no-endpoint-services", "firewall-ips"):
        rs.maps[name] = "type ipv4_addr . inet_proto . inet_service : verdict"
    for name in ("service-nodeports", "no-endpoint-nodeports"):
        rs.maps[name] = "type inet_proto . inet_service : verdict"
    rs.sets["cluster-ips"] = "type ipv4_addr"
    rs.sets["nodeport-ips"] = "type ipv4_addr"
    rs.element("nodeport-ips", ctx.ip)
    c = rs.chains
    c["filter-prerouting-pre-dnat"] = ["ct state new jump firewall-check"]
    c["filter-output-pre-dnat"] = ["ct state new jump firewall-check"]
    c["filter-forward"] = ["ct state new jump service-endpoints-check", "ct state new jump cluster-ips-check"]
    c["filter-input"] = ["ct state new jump nodeport-endpoints-check", "ct state new jump service-endpoints-check"]
    c["filter-output"] = ["ct state new jump service-endpoints-check", "ct state new jump cluster-ips-check"]
    c["nat-prerouting"] = ["jump services"]
    c["nat-output"] = ["jump services"]
    c["nat-postrouting"] = ["jump masquerading"]
    c["services"] = ["ip daddr . meta l4proto . th dport vmap @service-ips",
                     "ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports"]
    c["service-endpoints-check"] = ["ip daddr . meta l4proto . th dport vmap @no-endpoint-services"]
    c["nodeport-endpoints-check"] = ["ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports"]
    c["firewall-check"] = ["ip daddr . meta l4proto . th dport vmap @firewall-ips"]
    c["cluster-ips-check"] = ["ip daddr @cluster-ips reject", f"ip daddr {ctx.service_cidr} drop"]
    c["reject-chain"] = ["reject"]
    c["mark-for-masquerade"] = [f"mark set mark or {MASQ_MARK}"]
    c["masquerading"] = [f"mark and {MASQ_MARK} == 0 return", f"mark set mark xor {MASQ_MARK}",
                         "masquerade fully-random"]
    return rs


def _balance(rs: Ruleset, chain: str, pid: str, svc: Service, sp: ServicePort, eps: list[Endpoint]) -> None:
    """Appends affinity lookups and the numgen dispatch to `chain`, and makes the endpoint chains."""
    targets = []
    for ep in eps:
        port = ep.port_for(sp)
        if port is None:
            continue
        suffix = f"__{ep.ip}/{port}"
        ep_chain = chain_name("endpoint", pid, suffix)
        rules = [f"ip saddr {ep.ip} jump mark-for-masquerade"]
        if svc.session_affinity:
            aff = chain_name("affinity", pid, suffix)
            rs.sets[aff] = f"type ipv4_addr; flags dynamic,timeout; timeout {svc.affinity_timeout}s"
            rs.chains[chain].append(f"ip saddr @{aff} goto {ep_chain}")
            rules.append(f"update @{aff} {{ ip saddr }}")
        rules.append(f"meta l4proto {sp.protocol.lower()} dnat to {ep.ip}:{port}")
        rs.chains[ep_chain] = rules
        targets.append(ep_chain)
    if targets:
        vm = ", ".join(f"{i} : goto {t}" for i, t in enumerate(targets))
        rs.chains[chain].append(f"numgen random mod {len(targets)} vmap {{ {vm} }}")


def compile_services(ctx: NodeContext, services: list[Service], endpoints: dict[str, list[Endpoint]]) -> Ruleset:
    rs = base_ruleset(ctx)
    for svc in sorted(services, key=lambda s: s.key):
        if svc.type == "ExternalName" or svc.headless or not svc.cluster_ip:
            continue
        rs.element("cluster-ips", svc.cluster_ip)
        all_eps = endpoints.get(svc.key, [])
        for sp in svc.ports:
            pid = port_id(svc, sp)
            proto = sp.protocol.lower()
            eps = [e for e in usable(all_eps) if e.port_for(sp) is not None]
            local = [e for e in usable(all_eps, lambda e: e.node == ctx.name) if e.port_for(sp) is not None]
            svc_chain = chain_name("service", pid)
            cip_key = f"{svc.cluster_ip} . {proto} . {sp.port}"
            if eps:
                rs.chains[svc_chain] = [f"ip daddr {svc.cluster_ip} ip saddr != {ctx.pod_cidr} jump mark-for-masquerade"]
                _balance(rs, svc_chain, pid, svc, sp, eps)
            local_chain = chain_name("local", pid)
            if local and (svc.internal_policy_local or svc.external_policy_local):
                rs.chains[local_chain] = []
                _balance(rs, local_chain, pid, svc, sp, local)
            # the ClusterIP itself
            if svc.internal_policy_local:
                if local:
                    rs.element("service-ips", cip_key, f"goto {local_chain}")
                else:
                    rs.element("no-endpoint-services", cip_key, "drop" if eps else "goto reject-chain")
            elif eps:
                rs.element("service-ips", cip_key, f"goto {svc_chain}")
            else:
                rs.element("no-endpoint-services", cip_key, "goto reject-chain")
            # traffic from outside: external IPs, the load balancer IP, the NodePort
            outside = list(svc.external_ips) + ([svc.load_balancer_ip] if svc.type == "LoadBalancer" and
                                                 svc.load_balancer_ip else [])
            if not (outside or (svc.external and sp.node_port)):
                continue
            ext_chain = chain_name("external", pid)
            if eps:
                if svc.external_policy_local:
                    rules = [f"ip saddr {ctx.pod_cidr} goto {svc_chain}",
                             "fib saddr type local jump mark-for-masquerade",
                             f"fib saddr type local goto {svc_chain}"]
                    if local:
                        rules.append(f"goto {local_chain}")
                    rs.chains[ext_chain] = rules
                else:
                    rs.chains[ext_chain] = ["jump mark-for-masquerade", f"goto {svc_chain}"]
            no_local = svc.external_policy_local and not local
            for ip in outside:
                key = f"{ip} . {proto} . {sp.port}"
                if eps:
                    rs.element("service-ips", key, f"goto {ext_chain}")
                if not eps or no_local:
                    rs.element("no-endpoint-services", key, "drop" if no_local and eps else "goto reject-chain")
            if svc.type == "LoadBalancer" and svc.load_balancer_ip and svc.lb_source_ranges:
                fw = chain_name("firewall", pid)
                allowed = list(svc.lb_source_ranges)
                if any(ipaddress.ip_address(ctx.ip) in ipaddress.ip_network(r) for r in allowed):
                    allowed.append(svc.load_balancer_ip)  # the node's own traffic to a VIP it holds comes from the VIP
                rs.chains[fw] = [f"ip saddr != {{ {', '.join(allowed)} }} drop"]
                rs.element("firewall-ips", f"{svc.load_balancer_ip} . {proto} . {sp.port}", f"goto {fw}")
            if svc.external and sp.node_port:
                key = f"{proto} . {sp.node_port}"
                if eps:
                    rs.element("service-nodeports", key, f"goto {ext_chain}")
                if not eps or no_local:
                    rs.element("no-endpoint-nodeports", key, "drop" if no_local and eps else "goto reject-chain")
    return rs
