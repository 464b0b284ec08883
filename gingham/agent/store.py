"""The lab's embedded store: one JSON file of cluster objects, replaced atomically per revision.

The lab (the API server's stand-in) writes it; node agents read it and reconcile. Each
agent reports back in its own status file. No server runs: a rename is the commit.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import Any

from ..model.objects import Cluster, ClusterState, ContainerPort, Namespace, Object, Pod

STATE_FILE = "store.json"
HEARTBEAT = "heartbeat"  # its mtime is the agent's last sign of life


def encode_state(state: ClusterState, nodes: dict[str, dict[str, Any]], revision: int, lab: str) -> dict[str, Any]:
    return {"revision": revision, "lab": lab, "cluster": asdict(state.cluster), "nodes": nodes,
            "namespaces": [asdict(n) for n in state.namespaces.values()],
            "pods": [asdict(p) for p in state.pods.values()],
            "objects": [asdict(o) for o in state.objects.values()]}


def decode_state(d: dict[str, Any]) -> ClusterState:
    c = d["cluster"]
    cluster = Cluster(**{**c, "nodes": tuple(c["nodes"]), "upstream_dns": tuple(c.get("upstream_dns", ()))})
    st = ClusterState(cluster)
    for n in d["namespaces"]:
        st.namespaces[n["name"]] = Namespace(n["name"], n["labels"])
    for p in d["pods"]:
        pod = Pod(p["namespace"], p["name"], p["labels"], p["node_name"],
                  tuple(ContainerPort(**cp) for cp in p["ports"]), p["owner"])
        st.pods[pod.key] = pod
    for o in d["objects"]:
        obj = Object(o["kind"], o["namespace"], o["name"], o["raw"])
        st.objects[obj.key] = obj
    return st


class Store:
    def __init__(self, root: str) -> None:
        self.root = root
        self.path = os.path.join(root, STATE_FILE)

    def read(self) -> dict[str, Any]:
        with open(self.path) as f:
            doc: dict[str, Any] = json.load(f)
        return doc

    def revision(self) -> int:
        try:
            return int(self.read()["revision"])
        except (OSError, ValueError, KeyError):
            return 0

    def write(self, state: ClusterState, nodes: dict[str, dict[str, Any]], lab: str) -> int:
        rev = self.revision() + 1
        write_json(self.path, encode_state(state, nodes, rev, lab))
        return rev

    def node_dir(self, node: str) -> str:
        return os.path.join(self.root, "nodes", node)

    def status(self, node: str) -> dict[str, Any]:
        """What the node's agent last reported, with `time`, its last heartbeat (0 if none)."""
        try:
            with open(os.path.join(self.node_dir(node), "status.json")) as f:
                st: dict[str, Any] = json.load(f)
        except (OSError, ValueError):
            return {}
        try:
            st["time"] = os.stat(os.path.join(self.node_dir(node), HEARTBEAT)).st_mtime
        except OSError:
            st["time"] = 0.0
        return st

    def heartbeat(self, node: str) -> None:
        path = os.path.join(self.node_dir(node), HEARTBEAT)
        try:
            os.utime(path)
        except FileNotFoundError:
            open(path, "w").close()


def write_json(path: str, obj: Any) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)
