"""gingham and the reference plugins (Debian's containernetworking-plugins) side by side.

Chains mix the two in both directions, and a differential test runs one conflist with
`bridge`/`host-local` and with `gingham-bridge`/`gingham-host-local` and compares what
the pod ends up with.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from gingham.cni.runtime import Attachment, Runtime

from .conftest import have_reference, in_ns, probe_from
from ..helpers.cni import allocations, bridge_plugin, bridge_ports, net_of

pytestmark = pytest.mark.skipif(not have_reference(), reason="the reference plugins are not installed in /usr/lib/cni")


@pytest.mark.parametrize("bridge_type,ipam_type", [("bridge", "gingham-host-local"),
                                                   ("gingham-bridge", "host-local")])
def test_mixed_main_and_ipam_plugins(bridge_type, ipam_type, netns, cni, unique, host_cleanup, servers):
    br, name = unique("gtb"), unique("net")
    host_cleanup(br)
    net = net_of(name, [bridge_plugin(br, "10.44.1.0/24", cni.data, bridge_type, ipam_type)], "1.0.0")
    rt = Runtime(cni.path, cni.cache)
    a, b = netns(), netns()
    rt.add(net, Attachment("ia", a))
    rb = rt.add(net, Attachment("ib", b))
    assert rb["ips"][0]["address"] == "10.44.1.3/24"
    servers.start(b, "pod-b")
    assert probe_from(a, "10.44.1.3", 80) == "pod-b"
    rt.check(net, Attachment("ia", a))
    rt.delete(net, Attachment("ia", a))
    rt.delete(net, Attachment("ib", b))
    assert allocations(cni.data, name) == []
    assert bridge_ports(br) == []


@pytest.mark.parametrize("first,portmap", [("gingham-bridge", "portmap"), ("bridge", "gingham-portmap")])
def test_portmap_chained_across_implementations(first, portmap, netns, cni, unique, host_cleanup, servers):
    br, name = unique("gtb"), unique("net")
    host_cleanup(br)
    net = net_of(name, [bridge_plugin(br, "10.44.2.0/24", cni.data, first, "gingham-host-local"),
                        {"type": portmap, "capabilities": {"portMappings": True}}], "1.0.0")
    rt = Runtime(cni.path, cni.cache)
    pod = netns()
    caps = {"portMappings": [{"hostPort": 18081, "containerPort": 80, "protocol": "tcp"}]}
    rt.add(net, Attachment("pmx", pod, cap_args=caps))
    servers.start(pod, "pod-x")
    assert probe_from(None, "10.44.2.1", 18081) == "pod-x"
    rt.delete(net, Attachment("pmx", pod, cap_args=caps))
    assert probe_from(None, "10.44.2.1", 18081, timeout=0.5) is None


def _snapshot(pod: str, br: str, result: dict) -> dict:
    links = json.loads(in_ns(pod, "ip", "-j", "link", "show").stdout)
    addrs = json.loads(in_ns(pod, "ip", "-j", "addr", "show", "dev", "eth0").stdout)[0]
    routes = json.loads(in_ns(pod, "ip", "-j", "route", "show").stdout)
    br_addrs = json.loads(subprocess.run(["ip", "-j", "addr", "show", "dev", br], capture_output=True,
                                         text=True).stdout)[0]
    return {
        "pod links": sorted((li["ifname"], li["operstate"] if li["ifname"] != "lo" else "") for li in links),
        "pod mtu": addrs["mtu"],
        "pod addresses": sorted(f"{a['local']}/{a['prefixlen']}" for a in addrs["addr_info"] if a["family"] == "inet"),
        "pod routes": sorted((r["dst"], r.get("gateway", ""), r.get("scope", ""), r["dev"]) for r in routes),
        "bridge addresses": sorted(f"{a['local']}/{a['prefixlen']}" for a in br_addrs["addr_info"] if a["family"] == "inet"),
        "bridge ports": len(bridge_ports(br)),
        "host veth prefix": result["interfaces"][1]["name"][:4],
        "result ips": result["ips"],
        "result routes": result["routes"],
        "result interfaces": [(i["name"] if i["name"] in ("eth0", br) else "veth", "sandbox" in i)
                              for i in result["interfaces"]],
    }


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
def test_differential_reference_vs_gingham(version, netns, cni, unique, host_cleanup, tmp_path):
    """Same conflist, reference plugins then gingham's: the pod's network must be the same."""
    br, name = unique("gtd"), unique("net")
    host_cleanup(br)
    snaps = []
    for impl in ("", "gingham-"):
        data = str(tmp_path / f"data-{impl or 'ref'}")
        net = net_of(name, [bridge_plugin(br, "10.44.3.0/24", data, impl + "bridge", impl + "host-local",
                                          routes=[{"dst": "192.168.77.0/24"}], isDefaultGateway=True,
                                          ipMasq=True, hairpinMode=True, mtu=1400),
                            {"type": impl + "loopback"}], version)
        rt = Runtime(cni.path, str(tmp_path / f"cache-{impl or 'ref'}"))
        pod = netns()
        res = rt.add(net, Attachment("diff", pod))
        # The default route comes from isDefaultGateway (the reference fails with "file exists"
        # when IPAM names 0.0.0.0/0 too; gingham accepts that), the other route from IPAM.
        snaps.append(_snapshot(pod, br, res))
        rt.delete(net, Attachment("diff", pod))
        netns.remove(pod)
        subprocess.run(["ip", "link", "delete", br], capture_output=True)
    ref, ours = snaps
    assert ours == ref
