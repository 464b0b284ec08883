"""Pure: Services, endpoints and pods -> the records of the Kubernetes DNS specification.

What CoreDNS's kubernetes plugin answers (kubernetes/dns docs/specification.md): A for
ClusterIP Services, an A per ready endpoint for headless ones (and `<hostname>.<svc>`
names), SRV for named ports, CNAME for ExternalName, PTR for Service and endpoint
addresses, `a-b-c-d.<ns>.pod` names, and `dns-version` TXT. Every name that exists,
with any type, answers NOERROR; others NXDOMAIN. TTL 5 s, as CoreDNS's default (the
`dns-version` TXT 28800 s, as CoreDNS gives it). The zone apex has an SOA and an NS,
`ns.dns.<zone>`, whose address is the DNS Service's; negative answers carry the SOA.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field
from typing import Sequence

from ..model.services import Endpoint, Service

TTL = 5
VERSION_TTL = 28800  # CoreDNS's for dns-version
SCHEMA_VERSION = "1.1.0"
# an SOA as CoreDNS's kubernetes plugin writes it: ns.dns.<zone>, hostmaster.<zone>, these timers,
# and the TTL as minimum (so resolvers cache a denial as long as an answer)
SOA_TIMERS = (7200, 1800, 86400, TTL)


Record = tuple[str, str, str]  # (name, type, rdata)


@dataclass
class RecordIndex:
    """Records by name, each contributed by an owner (a Service or a pod) and replaced per owner.

    `put(owner, ...)` swaps one owner's records for new ones, so a changed Service costs its
    own records, not the zone. Lists are replaced, never changed in place, so the server's
    threads read a consistent list; `generation` moves on every change (the wire cache's key).
    """

    domain: str = "cluster.local"
    records: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # name -> [(type, rdata)]
    names: set[str] = field(default_factory=set)                            # every name that exists
    synced: bool = False
    upstreams: tuple[str, ...] = ()
    generation: int = 0
    serial: int = 0  # the SOA's: the time of the last change, as CoreDNS takes the API's
    _owned: dict[str, tuple[list[Record], list[str]]] = field(default_factory=dict)
    _refs: dict[Record, int] = field(default_factory=dict)
    _name_refs: dict[str, int] = field(default_factory=dict)

    def _exists(self, name: str) -> list[str]:
        """The name and every parent of it inside the zone (empty non-terminals exist too)."""
        n, zone = name.rstrip("."), self.domain
        if n != zone and not n.endswith("." + zone):
            return []
        out = [n + "."]
        while n != zone:
            n = n.split(".", 1)[1]
            out.append(n + ".")
        return out

    def put(self, owner: str, recs: list[Record], bare: Sequence[str] = ()) -> None:
        """`owner`'s records are now `recs` (and `bare`: names that exist with no record)."""
        recs = [(n.lower().rstrip(".") + ".", t, d) for n, t, d in recs]
        names = [n.lower().rstrip(".") + "." for n in bare]
        old = self._owned.pop(owner, None)
        if old is not None and old == (recs, names):
            self._owned[owner] = old
            return
        if recs or names:
            self._owned[owner] = (recs, names)
        touched: set[str] = set()
        for r in recs:
            self._refs[r] = self._refs.get(r, 0) + 1
            touched.add(r[0])
        for n in [r[0] for r in recs] + names:
            for e in self._exists(n):
                self._name_refs[e] = self._name_refs.get(e, 0) + 1
                self.names.add(e)
        if old is not None:
            for r in old[0]:
                self._refs[r] -= 1
                if not self._refs[r]:
                    del self._refs[r]
                touched.add(r[0])
            for n in [r[0] for r in old[0]] + old[1]:
                for e in self._exists(n):
                    self._name_refs[e] -= 1
                    if not self._name_refs[e]:
                        del self._name_refs[e]
                        self.names.discard(e)
        for name in touched:  # each list rebuilt in first-seen order, without duplicates
            have = [(t, d) for t, d in self.records.get(name, []) if (name, t, d) in self._refs]
            new = [(t, d) for n, t, d in recs if n == name and (t, d) not in have]
            lst = have + list(dict.fromkeys(new))
            if lst:
                self.records[name] = lst
            else:
                self.records.pop(name, None)
        self.generation += 1
        self.serial = int(time.time())

    def drop(self, owner: str) -> None:
        self.put(owner, [], [])

    def lookup(self, name: str, rtype: str) -> tuple[str, list[tuple[str, str]]]:
        """('NOERROR' | 'NXDOMAIN', [(type, rdata)]) for a name inside the zone."""
        name = name.lower().rstrip(".") + "."
        recs = self.records.get(name, [])
        if rtype == "ANY":
            return "NOERROR" if name in self.names else "NXDOMAIN", recs
        hits = [r for r in recs if r[0] == rtype]
        if not hits:
            hits = [r for r in recs if r[0] == "CNAME"]
        if hits or name in self.names:
            return "NOERROR", hits
        return "NXDOMAIN", []

    def in_zone(self, name: str) -> bool:
        return bool(self.zone_of(name))

    def zone_of(self, name: str) -> str:
        """The zone this server answers `name` in (the cluster domain or in-addr.arpa), or ""."""
        n = name.lower().rstrip(".")
        if n == self.domain or n.endswith("." + self.domain):
            return self.domain + "."
        if n == "in-addr.arpa" or n.endswith(".in-addr.arpa"):
            return "in-addr.arpa."
        return ""

    def soa(self, zone: str) -> str:
        """The zone's SOA rdata: mname rname serial refresh retry expire minimum."""
        return " ".join([f"ns.dns.{zone}", f"hostmaster.{zone}", str(self.serial), *map(str, SOA_TIMERS)])


def reverse(ip: str) -> str:
    """The PTR name of an address (IPv4 by hand: this runs once per Service and endpoint)."""
    if ":" not in ip:
        return ".".join(reversed(ip.split("."))) + ".in-addr.arpa"
    return ipaddress.ip_address(ip).reverse_pointer


def service_records(svc: Service, endpoints: list[Endpoint], domain: str) -> tuple[list[Record], list[str]]:
    """A Service's records (and a headless Service's name, which exists even with no endpoint)."""
    out: list[Record] = []
    fqdn = f"{svc.name}.{svc.namespace}.svc.{domain}"
    if svc.type == "ExternalName":
        return [(fqdn, "CNAME", svc.external_name.rstrip(".") + ".")], []
    eps = [e for e in endpoints if e.ready]
    if svc.headless:
        for e in eps:
            out.append((fqdn, "A" if ":" not in e.ip else "AAAA", e.ip))
            host = endpoint_name(e)
            out.append((f"{host}.{fqdn}", "A" if ":" not in e.ip else "AAAA", e.ip))
            out.append((reverse(e.ip), "PTR", f"{host}.{fqdn}."))
    elif svc.cluster_ip:
        out.append((fqdn, "A" if ":" not in svc.cluster_ip else "AAAA", svc.cluster_ip))
        out.append((reverse(svc.cluster_ip), "PTR", fqdn + "."))
    # SRV: `_<port>._<proto>.<svc>` for each named port, and, as CoreDNS answers an SRV query
    # for the Service's own name, one record per port and endpoint there; the weights share 100
    bare: list[tuple[int, str]] = []
    for sp in svc.ports:
        targets = [(p, f"{endpoint_name(e)}.{fqdn}.") for e in eps if (p := e.port_for(sp)) is not None] \
            if svc.headless else [(sp.port, f"{fqdn}.")]
        bare += targets
        if sp.name:
            srv = f"_{sp.name}._{sp.protocol.lower()}.{fqdn}"
            out += [(srv, "SRV", f"0 {100 // max(len(targets), 1)} {port} {target}") for port, target in targets]
    out += [(fqdn, "SRV", f"0 {100 // len(bare)} {port} {target}") for port, target in bare]
    return out, [fqdn] if svc.headless and not eps else []


def endpoint_name(e: Endpoint) -> str:
    """A headless endpoint's name: its hostname (a pod whose subdomain is the Service), else its
    address with dashes (CoreDNS's rule: 10-244-1-5, 5678-abcd--1)."""
    return e.hostname or e.ip.replace(".", "-").replace(":", "-")


def pod_records(namespace: str, ip: str, domain: str) -> list[Record]:
    return [(f"{ip.replace('.', '-')}.{namespace}.pod.{domain}", "A", ip)]


def new_index(domain: str, upstreams: tuple[str, ...] = (), dns_ip: str = "") -> RecordIndex:
    """An index with the zone's own records: dns-version, and the apex's SOA and NS (the name
    server `ns.dns.<zone>` at `dns_ip`, the DNS Service's address)."""
    ix = RecordIndex(domain, upstreams=upstreams)
    ix.put("dns-version", [(f"dns-version.{domain}", "TXT", SCHEMA_VERSION)])
    zone = domain + "."
    apex: list[Record] = [(zone, "SOA", ""), (zone, "NS", f"ns.dns.{zone}")]
    if dns_ip:
        apex.append((f"ns.dns.{zone}", "A", dns_ip))
    ix.put("zone", apex, [f"svc.{zone}", f"pod.{zone}"])  # these exist with no Service or pod (CoreDNS)
    return ix


def build(services: list[Service], endpoints: dict[str, list[Endpoint]], pods: list[tuple[str, str]],
          domain: str = "cluster.local", upstreams: tuple[str, ...] = (), dns_ip: str = "") -> RecordIndex:
    """The whole index at once. `pods`: (namespace, ip) of every running pod."""
    ix = new_index(domain, upstreams, dns_ip)
    for svc in services:
        ix.put(f"service/{svc.key}", *service_records(svc, endpoints.get(svc.key, []), domain))
    for ns, ip in pods:
        ix.put(f"pod/{ns}/{ip}", pod_records(ns, ip, domain))
    ix.synced = True
    return ix
