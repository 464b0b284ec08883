"""Cluster DNS's part of the agent: the record index, changed per Service and per pod.

The records are a pure function of each Service and its endpoints, or of a pod
(dns/records.py); a pass replaces the records of what changed, and the server (dns/server.py)
answers from the index while it changes (lists are swapped, never edited in place).
"""

from __future__ import annotations

from typing import Mapping

from ..dns import records
from ..model.services import Endpoint, Service
from ..sources.cache import Cache


class DNSController:
    def __init__(self) -> None:
        self.index = records.RecordIndex()

    def sync(self, cache: Cache, services: Mapping[str, Service], eps: Mapping[str, list[Endpoint]],
             touched: set[str], changed_pods: set[str], full: bool) -> None:
        cluster = cache.state().cluster
        domain = cluster.cluster_domain
        if full or self.index.domain != domain or not self.index.synced:
            index = records.new_index(domain, cluster.upstream_dns, cluster.dns_ip)
            touched, changed_pods = set(services), set(cache.pods)
        else:
            index = self.index
        for key in touched:
            svc = services.get(key)
            if svc is None:
                index.drop(f"service/{key}")
            else:
                index.put(f"service/{key}", *records.service_records(svc, eps.get(key, []), domain))
        for key in changed_pods:
            pod, st = cache.pods.get(key), cache.pod_status.get(key)
            if pod is not None and st is not None and st.ip and st.node == pod.node_name:
                index.put(f"pod/{key}", records.pod_records(pod.namespace, st.ip, domain))
            else:
                index.drop(f"pod/{key}")
        index.synced = True
        self.index = index
