"""Pure: Services, endpoints and pods -> the records of the Kubernetes DNS specification.

What CoreDNS's kubernetes plugin answers (kubernetes/dns docs/specification.md): A for
ClusterIP Services, an A per ready endpoint for headless ones (and `<hostname>.<svc>`
names), SRV for named ports, CNAME for ExternalName, PTR for Service and endpoint
addresses, `a-b-c-d.<ns>.pod` names, and `dns-version` TXT. Every name that exists,
with any type, answers NOERROR; others NXDOMAIN. TTL 5 s, as CoreDNS's default.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ..model.services import Endpoint, Service

TTL = 5
SCHEMA_VERSION = "1.1.0"


@dataclass
class RecordIndex:
    domain: str = "cluster.local"
    records: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # name -> [(type, rdata)]
    names: set[str] = field(default_factory=set)                            # every name that exists
    synced: bool = False
    upstreams: tuple[str, ...] = ()

    def add(self, name: str, rtype: str, rdata: str) -> None:
        name = name.lower().rstrip(".") + "."
        self.records.setdefault(name, [])
        if (rtype, rdata) not in self.records[name]:
            self.records[name].append((rtype, rdata))
        labels = name.rstrip(".").split(".")
        for i in range(len(labels)):  # every parent inside the zone exists too (empty non-terminals)
            parent = ".".join(labels[i:]) + "."
            if parent.endswith(self.domain + ".") or parent == self.domain + ".":
                self.names.add(parent)

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
        n = name.lower().rstrip(".")
        return n == self.domain or n.endswith("." + self.domain) or n.endswith(".in-addr.arpa")


def reverse(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer


def build(services: list[Service], endpoints: dict[str, list[Endpoint]], pods: list[tuple[str, str]],
          domain: str = "cluster.local", upstreams: tuple[str, ...] = ()) -> RecordIndex:
    """`pods`: (namespace, ip) of every running pod."""
    ix = RecordIndex(domain, upstreams=upstreams)
    ix.add(f"dns-version.{domain}", "TXT", SCHEMA_VERSION)
    for svc in services:
        fqdn = f"{svc.name}.{svc.namespace}.svc.{domain}"
        if svc.type == "ExternalName":
            ix.add(fqdn, "CNAME", svc.external_name.rstrip(".") + ".")
            continue
        eps = [e for e in endpoints.get(svc.key, []) if e.ready]
        if svc.headless:
            for e in eps:
                ix.add(fqdn, "A" if ":" not in e.ip else "AAAA", e.ip)
                host = e.hostname or e.ip.replace(".", "-").replace(":", "-")
                ix.add(f"{host}.{fqdn}", "A" if ":" not in e.ip else "AAAA", e.ip)
                ix.add(reverse(e.ip), "PTR", f"{host}.{fqdn}.")
            if not eps:
                ix.names.add(fqdn + ".")
        elif svc.cluster_ip:
            ix.add(fqdn, "A" if ":" not in svc.cluster_ip else "AAAA", svc.cluster_ip)
            ix.add(reverse(svc.cluster_ip), "PTR", fqdn + ".")
        for sp in svc.ports:
            if not sp.name:
                continue
            srv = f"_{sp.name}._{sp.protocol.lower()}.{fqdn}"
            if svc.headless:
                for e in eps:
                    port = e.port_for(sp)
                    host = e.hostname or e.ip.replace(".", "-")
                    if port is not None:
                        ix.add(srv, "SRV", f"0 {100 // max(len(eps), 1)} {port} {host}.{fqdn}.")
            else:
                ix.add(srv, "SRV", f"0 100 {sp.port} {fqdn}.")
    for ns, ip in pods:
        ix.add(f"{ip.replace('.', '-')}.{ns}.pod.{domain}", "A", ip)
    ix.synced = True
    return ix
