"""The EndpointSlice controller's inputs, gathered from the store and every node's status.

Shared by the agents (to compile Services) and the lab (to know when all agents have
seen the same endpoints), so both derive them in exactly one way.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

from ..model.objects import ClusterState
from ..model.services import Endpoint, PodView, Service, derive_endpoints
from ..services.allocate import services_of


def pod_views(state: ClusterState, statuses: dict[str, dict[str, Any]]) -> list[PodView]:
    out = []
    for key, pod in state.pods.items():
        rec = (statuses.get(pod.node_name, {}).get("pods") or {}).get(key) or {}
        if not rec.get("ip") or rec.get("terminating"):
            continue
        out.append(PodView(pod.namespace, pod.name, pod.labels, pod.node_name, rec["ip"], bool(rec.get("ready")),
                           False, tuple((p.name, p.protocol, p.port) for p in pod.ports), pod.name))
    return out


def endpoints_of(state: ClusterState, statuses: dict[str, dict[str, Any]]) -> tuple[list[Service], dict[str, list[Endpoint]]]:
    services = services_of(state)
    return services, derive_endpoints(services, pod_views(state, statuses))


def digest(endpoints: dict[str, list[Endpoint]]) -> str:
    blob = json.dumps({k: [asdict(e) for e in v] for k, v in sorted(endpoints.items())}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
