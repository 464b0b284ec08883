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
    rs.sets["hairpin"] = "type ipv4_addr . ipv4_addr"
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
    # Traffic to a ClusterIP from outside the pod network is masqueraded (one rule for all Services).
    c["services"] = [f"ip saddr != {ctx.pod_cidr} ip daddr @cluster-ips jump mark-for-masquerade",
                     "ip daddr . meta l4proto . th dport vmap @service-ips",
                     "ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports"]
    c["service-endpoints-check"] = ["ip daddr . meta l4proto . th dport vmap @no-endpoint-services"]
    c["nodeport-endpoints-check"] = ["ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports"]
    c["firewall-check"] = ["ip daddr . meta l4proto . th dport vmap @firewall-ips"]
    c["cluster-ips-check"] = ["ip daddr @cluster-ips reject", f"ip daddr {ctx.service_cidr} drop"]
    c["reject-chain"] = ["reject"]
    c["mark-for-masquerade"] = [f"mark set mark or {MASQ_MARK}"]
    # A pod reaching itself through a Service is masqueraded, so its reply comes back through the node.
    c["masquerading"] = ["ct status dnat ip saddr . ip daddr @hairpin masquerade",
                         f"mark and {MASQ_MARK} == 0 return", f"mark set mark xor {MASQ_MARK}",
                         "masquerade fully-random"]
    return rs


def _balance(rs: Ruleset, chain: str, pid: str, svc: Service, sp: ServicePort, eps: list[Endpoint]) -> None:
    """Appends the endpoint choice to `chain`.

    Without affinity the DNAT is inline: `numgen random mod k == 0` per endpoint, with k
    counting down (1/3, then 1/2 of the rest, then the last), so every endpoint has the
    same chance and a Service costs one chain. (An inline `numgen ... vmap {}` would be
    one rule, but each is an anonymous set, and nft 1.0 makes those in quadratic time:
    8,000 Services took minutes instead of seconds.) With ClientIP affinity each endpoint
    gets a chain that refreshes its timed set.
    """
    targets = [(ep, port) for ep in eps if (port := ep.port_for(sp)) is not None]
    proto = sp.protocol.lower()
    for ep, _ in targets:
        rs.element("hairpin", f"{ep.ip} . {ep.ip}")
    rules = rs.chains[chain]
    k = len(targets)
    for i, (ep, port) in enumerate(targets):
        pick = f"numgen random mod {k - i} == 0 " if i < k - 1 else ""
        if svc.session_affinity:
            suffix = f"__{ep.ip}/{port}"
            ep_chain = chain_name("endpoint", pid, suffix)
            aff = chain_name("affinity", pid, suffix)
            rs.sets[aff] = f"type ipv4_addr; flags dynamic,timeout; timeout {svc.affinity_timeout}s"
            rules.insert(i, f"ip saddr @{aff} goto {ep_chain}")
            rs.chains[ep_chain] = [f"update @{aff} {{ ip saddr }}", f"meta l4proto {proto} dnat to {ep.ip}:{port}"]
            rules.append(f"{pick}goto {ep_chain}")
        else:
            rules.append(f"{pick}meta l4proto {proto} dnat to {ep.ip}:{port}")


def compile_service(ctx: NodeContext, svc: Service, all_eps: list[Endpoint]) -> Ruleset:
    """The chains, sets and map elements one Service adds to the base ruleset (a fragment)."""
    rs = Ruleset("ip", TABLE)
    if svc.type == "ExternalName" or svc.headless or not svc.cluster_ip:
        return rs
    rs.element("cluster-ips", svc.cluster_ip)
    for sp in svc.ports:
        pid = port_id(svc, sp)
        proto = sp.protocol.lower()
        eps = [e for e in usable(all_eps) if e.port_for(sp) is not None]
        local = [e for e in usable(all_eps, lambda e: e.node == ctx.name) if e.port_for(sp) is not None]
        svc_chain = chain_name("service", pid)
        cip_key = f"{svc.cluster_ip} . {proto} . {sp.port}"
        if eps:
            rs.chains[svc_chain] = []
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


def merge(into: Ruleset, frag: Ruleset) -> None:
    into.chains.update(frag.chains)
    into.sets.update(frag.sets)
    for c, elems in frag.elements.items():
        into.elements.setdefault(c, {}).update(elems)


def compile_services(ctx: NodeContext, services: list[Service], endpoints: dict[str, list[Endpoint]]) -> Ruleset:
    rs = base_ruleset(ctx)
    for svc in sorted(services, key=lambda s: s.key):
        merge(rs, compile_service(ctx, svc, endpoints.get(svc.key, [])))
    return rs
