"""Pure: Services + EndpointSlices + this node -> the `ip gingham-services` ruleset.

The shape follows kube-proxy's nftables mode (reference/services.md): verdict maps keyed
by `ip . proto . port` dispatch a new connection in one lookup whatever the number of
Services; masquerade is a mark honoured in postrouting; Services with no usable endpoint
reject new connections from the filter hooks (ICMP, so clients fail at once). Where
kube-proxy gives every Service its own chains, gingham picks the endpoint with a second
map lookup, `frontend . numgen random mod k -> endpoint`, from a chain shared by every
Service with k endpoints (see `_pick`): a Service is then map elements only, and a change
to it touches no chain. ClientIP affinity keeps a chain per Service and a timed dynamic
set per endpoint; those chain names carry a hash and the readable `ns/svc/proto/port`.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from dataclasses import dataclass

from ..model.services import Endpoint, Service, ServicePort, usable
from ..kernel.nftables import BaseChain, Ruleset, merge

TABLE = "gingham-services"
MASQ_MARK = "0x4000"
PROTOCOLS = ("tcp", "udp", "sctp")

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
    for proto in PROTOCOLS:  # frontend . slot -> endpoint, see _pick
        for name in (f"{proto}-endpoints", f"{proto}-local-endpoints"):
            rs.maps[name] = f"typeof ip daddr . {proto} dport . numgen random mod 1 : ip daddr . {proto} dport"
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
    """Appends the endpoint choice to `chain`: a ClientIP-affinity Service's own chain.

    `numgen random mod k == 0` per endpoint, with k counting down (1/3, then 1/2 of the
    rest, then the last), so every endpoint has the same chance; each endpoint has a chain
    that refreshes the client's entry in its timed set, so the choice must be a jump to
    it rather than a map lookup.
    """
    targets = [(ep, port) for ep in eps if (port := ep.port_for(sp)) is not None]
    proto = sp.protocol.lower()
    rules = rs.chains[chain]
    k = len(targets)
    for i, (ep, port) in enumerate(targets):
        pick = f"numgen random mod {k - i} == 0 " if i < k - 1 else ""
        suffix = f"__{ep.ip}/{port}"
        ep_chain = chain_name("endpoint", pid, suffix)
        aff = chain_name("affinity", pid, suffix)
        rs.sets[aff] = f"type ipv4_addr; flags dynamic,timeout; timeout {svc.affinity_timeout}s"
        rules.insert(i, f"ip saddr @{aff} goto {ep_chain}")
        rs.chains[ep_chain] = [f"update @{aff} {{ ip saddr }}", f"meta l4proto {proto} dnat to {ep.ip}:{port}"]
        rules.append(f"{pick}goto {ep_chain}")


def is_shared(chain: str) -> bool:
    """Shared chains (`balance-tcp-3`, `external-balance-tcp-3`...) serve every Service of their shape and
    carry no Service's name; a Service's own chains carry its `ns/name/proto/port`."""
    return "/" not in chain


def _pick(rs: Ruleset, frontends: list[tuple[str, int]], sp: ServicePort, eps: list[Endpoint], local: bool) -> str:
    """The chain that picks one of `eps` for a connection to any of `frontends`.

    A shared chain per protocol and endpoint count k (`balance-tcp-3`, `local-balance-tcp-3`
    for the local subset) holds one rule, `dnat ip to ip daddr . tcp dport . numgen random
    mod k map @tcp-endpoints`, and a Service's endpoints are the k elements
    `address . port . slot : endpoint ip . port` of that map, one set per frontend:
    one hash lookup whatever the number of Services, and a change to a Service's endpoints
    is a change of its elements only. (nft 1.0 loads every chain of the table before it
    adds an element or a rule, so a chain per Service would make every change cost time in
    proportion to the number of Services: 180 ms at 30,000.) A map per protocol, because
    nft 1.0.6 cannot read back a map typed `th dport` to add a rule that uses it.
    """
    k = len(eps)
    proto = sp.protocol.lower()
    name = f"{'local-' if local else ''}balance-{proto}-{k}"
    endpoints = f"{proto}-local-endpoints" if local else f"{proto}-endpoints"
    rs.chains[name] = [f"dnat ip to ip daddr . {proto} dport . numgen random mod {k} map @{endpoints}"]
    for ep in eps:
        rs.element("hairpin", f"{ep.ip} . {ep.ip}")
    for ip, port in frontends:
        for slot, ep in enumerate(eps):
            rs.element(endpoints, f"{ip} . {port} . {slot}", f"{ep.ip} . {ep.port_for(sp)}")
    return name


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
        cip_key = f"{svc.cluster_ip} . {proto} . {sp.port}"
        # traffic from outside: external IPs, the load balancer IP, the NodePort
        outside = list(svc.external_ips) + ([svc.load_balancer_ip] if svc.type == "LoadBalancer" and
                                             svc.load_balancer_ip else [])
        outside_fronts = [(ip, sp.port) for ip in outside]
        if svc.external and sp.node_port:
            outside_fronts.append((ctx.ip, sp.node_port))  # the NodePort as its packets carry it
        use_local = svc.internal_policy_local or svc.external_policy_local
        all_t = local_t = ""
        if svc.session_affinity:
            if eps:
                all_t = chain_name("service", pid)
                rs.chains[all_t] = []
                _balance(rs, all_t, pid, svc, sp, eps)
            if local and use_local:
                local_t = chain_name("local", pid)
                rs.chains[local_t] = []
                _balance(rs, local_t, pid, svc, sp, local)
            for ep in eps:
                rs.element("hairpin", f"{ep.ip} . {ep.ip}")
        else:
            cip = [(svc.cluster_ip, sp.port)]
            all_fronts = ([] if svc.internal_policy_local else cip) + outside_fronts
            local_fronts = (cip if svc.internal_policy_local else []) + \
                (outside_fronts if svc.external_policy_local else [])
            if eps and all_fronts:
                all_t = _pick(rs, all_fronts, sp, eps, False)
            if local and local_fronts:
                local_t = _pick(rs, local_fronts, sp, local, True)
        # the ClusterIP itself
        if svc.internal_policy_local:
            if local:
                rs.element("service-ips", cip_key, f"goto {local_t}")
            else:
                rs.element("no-endpoint-services", cip_key, "drop" if eps else "goto reject-chain")
        elif eps:
            rs.element("service-ips", cip_key, f"goto {all_t}")
        else:
            rs.element("no-endpoint-services", cip_key, "goto reject-chain")
        if not outside_fronts:
            continue
        ext_chain = ""
        if eps:
            if svc.external_policy_local:
                rules = [f"ip saddr {ctx.pod_cidr} goto {all_t}",
                         "fib saddr type local jump mark-for-masquerade",
                         f"fib saddr type local goto {all_t}"]
                if local:
                    rules.append(f"goto {local_t}")
            else:
                rules = ["jump mark-for-masquerade", f"goto {all_t}"]
            # named for what it holds: shared by every Service with the same targets
            ext_chain = (chain_name("external", pid) if not is_shared(all_t) else
                         f"external-local-{all_t}-{local_t or 'none'}" if svc.external_policy_local else
                         f"external-{all_t}")
            rs.chains[ext_chain] = rules
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
            ranges = allowed[0] if len(allowed) == 1 else f"{{ {', '.join(allowed)} }}"  # as nft lists it
            rs.chains[fw] = [f"ip saddr != {ranges} drop"]
            rs.element("firewall-ips", f"{svc.load_balancer_ip} . {proto} . {sp.port}", f"goto {fw}")
        if svc.external and sp.node_port:
            key = f"{proto} . {sp.node_port}"
            if eps:
                rs.element("service-nodeports", key, f"goto {ext_chain}")
            if not eps or no_local:
                rs.element("no-endpoint-nodeports", key, "drop" if no_local and eps else "goto reject-chain")
    return rs


def compile_services(ctx: NodeContext, services: list[Service], endpoints: dict[str, list[Endpoint]]) -> Ruleset:
    rs = base_ruleset(ctx)
    for svc in sorted(services, key=lambda s: s.key):
        merge(rs, compile_service(ctx, svc, endpoints.get(svc.key, [])))
    return rs
