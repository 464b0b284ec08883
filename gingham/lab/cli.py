"""`gingham lab ...`: thin calls into lab.cluster, printing tables or JSON (-o json)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: `gingham lab apply` should not pay for `lab trace`
    from .cluster import Lab


def _lab(name: str) -> Lab:
    from .cluster import Lab
    return Lab(name)


def _print(args: argparse.Namespace, rows: Any, cols: list[str] | None = None) -> None:
    if getattr(args, "output", "") == "json":
        print(json.dumps(rows, indent=2))
        return
    if getattr(args, "output", "") == "yaml":
        import yaml
        print(yaml.safe_dump(rows, sort_keys=False, default_flow_style=False), end="")
        return
    if isinstance(rows, dict) or cols is None:
        print(rows if isinstance(rows, str) else json.dumps(rows, indent=2))
        return
    table = [[c.upper() for c in cols]]
    for r in rows:
        table.append([",".join(f"{k}={v}" for k, v in r[c].items()) if isinstance(r[c], dict)
                      else ",".join(r[c]) if isinstance(r[c], list) else str(r[c]) for c in cols])
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def cmd_up(a: argparse.Namespace) -> int:
    lab = _lab(a.name)
    meta = lab.up(a.file, etcd_members=a.etcd_members, monitoring=a.monitoring)
    if a.output in ("json", "yaml"):
        _print(a, {"lab": a.name, "seconds": meta["upSeconds"], "nodes": lab.nodes(), "pods": lab.pods()})
        return 0
    nodes, pods = lab.nodes(), lab.pods()
    print(f"lab {a.name!r} (cluster {meta['cluster']}) is up in {meta['upSeconds']:.1f}s: "
          f"{len(nodes)} nodes on {nodes[0]['overlay']}, {len(pods)} pods")
    _print(a, nodes, ["name", "ip", "podCIDR", "pods", "status"])
    print()
    _print(a, pods, ["namespace", "name", "node", "ip", "status"])
    return 0


def cmd_down(a: argparse.Namespace) -> int:
    removed = _lab(a.name).down()
    _print(a, {"lab": a.name, "removed": removed} if a.output in ("json", "yaml") else
           f"lab {a.name}: removed {len(removed)} namespaces" if removed else f"lab {a.name}: nothing to remove")
    return 0


def cmd_list(a: argparse.Namespace) -> int:
    from .cluster import list_labs
    _print(a, list_labs(), ["name", "cluster", "nodes", "pods", "overlay"])
    return 0


def cmd_apply(a: argparse.Namespace) -> int:
    lab = _lab(a.name)
    t = time.monotonic()
    rev = (lab.apply if a.lab_cmd == "apply" else lab.delete)(a.file)
    _print(a, {"lab": a.name, "revision": rev, "seconds": round(time.monotonic() - t, 2)} if a.output in ("json", "yaml")
           else f"lab {a.name}: revision {rev} applied on every node in {time.monotonic() - t:.1f}s")
    return 0


# table columns per kind: the default, and what -o wide adds
COLUMNS = {
    "nodes": (["name", "status", "ip", "podCIDR", "pods"], ["overlay"]),
    "pods": (["namespace", "name", "ready", "status", "ip", "node"], ["ports", "labels", "limits", "netns"]),
    "services": (["namespace", "name", "type", "clusterIP", "externalIP", "ports"], ["selector"]),
    "endpointslices": (["namespace", "name", "endpoints"], ["service"]),
    "ingresses": (["namespace", "name", "class", "hosts", "address", "ports"], []),
    "ingressclasses": (["name", "controller", "default"], []),
    "gatewayclasses": (["name", "controller", "accepted"], []),
    "gateways": (["namespace", "name", "class", "address", "programmed"], []),
    "httproutes": (["namespace", "name", "hostnames", "accepted"], []),
}
KINDS = {"node": "nodes", "nodes": "nodes", "no": "nodes", "pod": "pods", "pods": "pods", "po": "pods",
         "service": "services", "services": "services", "svc": "services", "endpointslices": "endpointslices",
         "endpointslice": "endpointslices", "endpoints": "endpointslices", "eps": "endpointslices",
         "ingress": "ingresses", "ingresses": "ingresses", "ing": "ingresses", "ingressclass": "ingressclasses",
         "ingressclasses": "ingressclasses", "gatewayclass": "gatewayclasses", "gatewayclasses": "gatewayclasses",
         "gc": "gatewayclasses", "gateway": "gateways", "gateways": "gateways", "gtw": "gateways",
         "httproute": "httproutes", "httproutes": "httproutes", "routes": "routes", "route": "routes"}


def cmd_get(a: argparse.Namespace) -> int:
    """A table (-o wide: more columns), or the objects as a Kubernetes List (-o json|yaml)."""
    lab, kind = _lab(a.name), KINDS[a.what]
    if kind == "routes":
        return cmd_routes(a, lab)
    if a.target is not None:
        from ..model.errors import BAD_INPUT
        from .cluster import LabError
        raise LabError(f"lab get {a.what}: unexpected argument {a.target!r} (only routes takes one)", BAD_INPUT)
    if a.output in ("json", "yaml"):
        from .kube import as_list
        _print(a, as_list(lab.objects(kind, a.namespace)))
        return 0
    if kind == "nodes":
        rows = lab.nodes()
    elif kind == "pods":
        rows = lab.pods(a.namespace)
    elif kind == "services":
        rows = lab.services(a.namespace)
    elif kind == "ingresses":
        from .ingress import ingress_rows
        rows = ingress_rows(lab.objects(kind, a.namespace))
    elif kind in ("gatewayclasses", "gateways", "httproutes"):
        from .ingress import gateway_rows
        rows = gateway_rows(kind, lab.objects(kind, a.namespace))
    elif kind == "ingressclasses":
        from ..model.ingress import DEFAULT_CLASS_ANNOTATION
        rows = [{"name": c["metadata"]["name"], "controller": c.get("spec", {}).get("controller", ""),
                 "default": str(c["metadata"].get("annotations", {}).get(DEFAULT_CLASS_ANNOTATION) == "true").lower()}
                for c in lab.objects(kind)]
    else:
        rows = [{"namespace": r["namespace"], "name": r["name"], "service": r["service"],
                 "endpoints": [f"{e['ip']}({e['node']}{'' if e['ready'] else ',notready'})" for e in r["endpoints"]]}
                for r in lab.endpointslices(a.namespace)]
    cols, wide = COLUMNS[kind]
    _print(a, rows, cols + (wide if a.output == "wide" else []))
    return 0


def cmd_routes(a: argparse.Namespace, lab: Any) -> int:
    """Each BGP speaker's sessions and routes (overlay bgp), read from its BIRD."""
    from .bgp import speaker_routes
    got = speaker_routes(lab, a.target)
    if a.output in ("json", "yaml"):
        _print(a, got)
        return 0
    for who, r in got.items():
        print(f"{who}: BGP sessions")
        _print(a, [{**s, "routes": f"{s['imported']} in, {s['exported']} out"} for s in r["sessions"]],
               ["name", "neighbor", "as", "state", "since", "routes"])
        print(f"{who}: routes")
        _print(a, [{**x, "via": ",".join(x["via"]) or "-", "best": "*" if x["best"] else ""} for x in r["routes"]],
               ["prefix", "kind", "via", "from", "best"])
        print()
    return 0


def cmd_exec(a: argparse.Namespace) -> int:
    lab = _lab(a.name)
    path, pod = lab.target(a.target)
    if pod is not None and pod["limits"]:
        from ..kernel import cgroups
        cgroups.join(lab.pod_cgroup(a.target, pod))  # counted against the pod's limits, as kubectl exec is
    cmd = a.command
    if not cmd:
        from ..model.errors import BAD_INPUT
        from .cluster import LabError
        raise LabError("give a command after --, e.g. gingham lab exec default/web-0 -- ip addr", BAD_INPUT)
    os.execvp("ip", ["ip", "netns", "exec", os.path.basename(path), *cmd])
    return 1


def cmd_probe(a: argparse.Namespace) -> int:
    from ..kernel import netns
    from .probe import probe
    lab = _lab(a.name)
    src = lab.target_netns(a.source)
    dst = lab.resolve(a.dest, a.source)
    t = time.monotonic()
    with netns.entered(src):
        who = probe(dst, a.port, a.protocol, a.timeout)
    ms = 1000 * (time.monotonic() - t)
    out = {"source": a.source, "destination": a.dest, "address": dst, "port": a.port, "protocol": a.protocol,
           "connected": who is not None, "answeredBy": who, "ms": round(ms, 2)}
    if a.output in ("json", "yaml"):
        _print(a, out)
    elif who is not None:
        print(f"{a.source} -> {dst}:{a.port}/{a.protocol}: answered by {who} ({ms:.1f} ms)")
    else:
        print(f"{a.source} -> {dst}:{a.port}/{a.protocol}: no answer within {a.timeout}s")
    return 0 if who is not None else 1


def cmd_trace(a: argparse.Namespace) -> int:
    from .trace import describe, trace_connection
    r = trace_connection(_lab(a.name), a.source, a.dest, a.port, a.protocol)
    _print(a, r) if a.output in ("json", "yaml") else print(describe(r))
    return 0


def cmd_flows(a: argparse.Namespace) -> int:
    from .flows import cmd_flows as flows
    return flows(a)


def cmd_top(a: argparse.Namespace) -> int:
    from .top import cmd_top as top
    return top(a)


def cmd_tls(a: argparse.Namespace) -> int:
    """A Secret manifest on stdout for `hosts`, signed by the CA kept in --dir (made if missing)."""
    from ..ingress import certs
    from ..model.errors import BAD_INPUT
    from ..model.ingress import IngressError, check_host
    from .cluster import LabError
    for i, h in enumerate(a.hosts):
        try:
            check_host(h, f"hosts[{i}]")
        except IngressError as e:
            raise LabError(str(e), BAD_INPUT) from None
    ca = certs.lab_ca(a.dir)
    cert, key = certs.make_cert(a.hosts, ca)
    sys.stdout.write(certs.secret_manifest(a.namespace, a.secret, cert, key))
    print(f"gingham lab tls: Secret {a.namespace}/{a.secret} for {', '.join(a.hosts)}, signed by "
          f"{os.path.join(a.dir, 'ca.crt')} (curl --cacert it)", file=sys.stderr)
    return 0


def add_parser(sub: Any) -> None:
    lab = sub.add_parser("lab", help="a multi-node cluster network on this host, from Kubernetes YAML")
    ls = lab.add_subparsers(dest="lab_cmd", required=True)  # not "cmd": main() dispatches on that

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--name", default=os.environ.get("GINGHAM_LAB", "lab"), help="which lab (default: lab)")
        p.add_argument("-o", "--output", choices=["table", "wide", "json", "yaml"], default="table",
                       help="table (default), wide (more columns), json or yaml (get: a Kubernetes List)")
        return p

    p = common(ls.add_parser("up", help="build a lab from YAML"))
    p.add_argument("-f", "--file", action="append", required=True)
    p.add_argument("--etcd-members", type=int, default=1, help="etcd members of the datastore (1, 3 or 5)")
    p.add_argument("--monitoring", action="store_true",
                   help="run Prometheus (192.168.200.9:9090) scraping every agent and DNS server, with gingham's rules")
    p.set_defaults(fn=cmd_up)
    common(ls.add_parser("down", help="remove everything a lab made")).set_defaults(fn=cmd_down)
    common(ls.add_parser("list", help="labs that are up")).set_defaults(fn=cmd_list)
    for verb in ("apply", "delete"):
        p = common(ls.add_parser(verb, help=f"{verb} objects in a running lab"))
        p.add_argument("-f", "--file", action="append", required=True)
        p.set_defaults(fn=cmd_apply)
    p = common(ls.add_parser("get", help="nodes, pods, services, endpointslices, ingresses, ingressclasses, "
                                         "gateways, httproutes, or routes (BGP) (-o wide|json|yaml)"))
    p.add_argument("what", choices=sorted(KINDS))
    p.add_argument("target", nargs="?", help="routes: node/NAME or router (default: every BGP speaker)")
    p.add_argument("-n", "--namespace", default=None)
    p.set_defaults(fn=cmd_get)
    p = common(ls.add_parser("exec", help="run a command in a pod (NS/POD), node/NAME or external"))
    p.add_argument("target")
    p.add_argument("command", nargs="*", help="the command, after -- (gingham lab exec ns/pod -- ip addr)")
    p.set_defaults(fn=cmd_exec)
    p = common(ls.add_parser("probe", help="connect from SOURCE to DEST:PORT and show who answered"))
    p.add_argument("source")
    p.add_argument("dest")
    p.add_argument("port", type=int)
    p.add_argument("--protocol", default="TCP", type=str.upper, choices=["TCP", "UDP", "SCTP"])
    p.add_argument("--timeout", type=float, default=2.0)
    p.set_defaults(fn=cmd_probe)
    p = common(ls.add_parser("trace", help="what the Services rules do with a new connection from SOURCE to "
                                            "DEST:PORT, read from the node's kernel"))
    p.add_argument("source")
    p.add_argument("dest")
    p.add_argument("port", type=int)
    p.add_argument("--protocol", default="TCP", type=str.upper, choices=["TCP", "UDP", "SCTP"])
    p.set_defaults(fn=cmd_trace)
    from .flows import add_arguments as flow_arguments
    p = ls.add_parser("flows", help="the nodes' flow records: connections and NetworkPolicy drops (hubble observe)")
    p.add_argument("--name", default=os.environ.get("GINGHAM_LAB", "lab"), help="which lab (default: lab)")
    p.add_argument("-o", "--output", choices=["table", "json", "jsonl"], default="table")
    flow_arguments(p)
    p.set_defaults(fn=cmd_flows)
    from .top import add_arguments as top_arguments
    p = ls.add_parser("top", help="the network now: flows, drops, DNS, conntrack, programming latency and "
                                  "top talkers per node, live")
    p.add_argument("--name", default=os.environ.get("GINGHAM_LAB", "lab"), help="which lab (default: lab)")
    top_arguments(p)
    p.set_defaults(fn=cmd_top, output="table")
    p = ls.add_parser("tls", help="a kubernetes.io/tls Secret (YAML on stdout) for some hosts, signed by a lab CA")
    p.add_argument("hosts", nargs="+", help="DNS names the certificate is for (wildcards like *.example.com too)")
    p.add_argument("--secret", required=True, help="the Secret's name")
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("--dir", default=".", help="where the CA is kept (ca.crt, ca.key; made if missing)")
    p.set_defaults(fn=cmd_tls, name="-", output="table")


def run(a: argparse.Namespace) -> int:
    """Runs a lab command; what fails is one line on stderr and an exit code (model/errors.py)."""
    from ..model.errors import BAD_INPUT, FAILED, ManifestError
    from ..sources.etcd import EtcdError
    from .cluster import LabError
    try:
        return int(a.fn(a))
    except ManifestError as e:
        print(f"gingham lab: invalid manifest: {e}", file=sys.stderr)
        return BAD_INPUT
    except LabError as e:
        print(f"gingham lab: {e}", file=sys.stderr)
        return e.code
    except EtcdError as e:  # the lab's datastore stopped answering in the middle of a command
        print(f"gingham lab {a.name}: the datastore does not answer: {e}", file=sys.stderr)
        return FAILED
