"""The gingham CNI plugins on the real kernel: every verb, every version, alone and chained."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gingham.cni import spec
from gingham.cni.runtime import Attachment, Runtime
from gingham.cni.spec import CNIError

from ..helpers.cni import allocations, bridge_plugin, bridge_ports, net_of
from .conftest import in_ns, probe_from


def ns_addrs(ns: str, ifname: str = "eth0") -> list[str]:
    out = json.loads(in_ns(ns, "ip", "-j", "addr", "show", "dev", ifname).stdout)
    return [f"{a['local']}/{a['prefixlen']}" for a in out[0]["addr_info"] if a["scope"] == "global"]


def ns_routes(ns: str) -> list[tuple[str, str | None, str]]:
    out = json.loads(in_ns(ns, "ip", "-j", "route", "show").stdout)
    return sorted((r["dst"], r.get("gateway"), r["dev"]) for r in out)


@pytest.mark.parametrize("version", spec.SUPPORTED_VERSIONS)
def test_every_verb_in_every_version(version, netns, cni, unique, host_cleanup):
    br, name = unique("gtb"), unique("net")
    host_cleanup(br)
    net = net_of(name, [bridge_plugin(br, "10.22.1.0/24", cni.data), {"type": "gingham-loopback"}], version)
    rt = Runtime(cni.path, cni.cache)
    pod = netns()
    att = Attachment("c-" + version.replace(".", ""), pod, "eth0")
    result = rt.add(net, att)

    assert result["cniVersion"] == version
    assert result["ips"][0]["address"] == "10.22.1.2/24"
    assert result["ips"][0]["gateway"] == "10.22.1.1"
    assert ("version" in result["ips"][0]) == (spec.version_key(version) < (1, 0, 0))
    assert [i["name"] for i in result["interfaces"][:1]] == [br]
    assert result["interfaces"][2] == {"name": "eth0", "mac": result["interfaces"][2]["mac"], "sandbox": pod}
    assert ns_addrs(pod) == ["10.22.1.2/24"]
    assert ("0.0.0.0/0" in [r[0] for r in ns_routes(pod)]) or ("default" in [r[0] for r in ns_routes(pod)])
    assert allocations(cni.data, name) == ["10.22.1.2"]
    with open(os.path.join(cni.data, name, "10.22.1.2"), "rb") as f:
        assert f.read() == f"{att.container_id}\r\neth0".encode()
    cache = json.load(open(rt.cache_path(net, att)))
    assert cache["kind"] == "cniCacheV1" and cache["result"]["cniVersion"] == version

    if spec.has_check(version):
        rt.check(net, att)
    if spec.has_status(version):
        rt.status(net)

    rt.delete(net, att)
    # gone when DEL answers, though the kernel frees the veth in the background (links.delete)
    host_veth = result["interfaces"][1]["name"]
    assert subprocess.run(["ip", "link", "show", host_veth], capture_output=True).returncode != 0
    assert subprocess.run(["ip", "-n", os.path.basename(pod), "link", "show", "eth0"],
                          capture_output=True).returncode != 0
    assert bridge_ports(br) == []
    rt.delete(net, att)  # DEL is idempotent
    assert allocations(cni.data, name) == []
    assert bridge_ports(br) == []
    assert not os.path.exists(rt.cache_path(net, att))
    if spec.has_check(version):
        with pytest.raises(CNIError):
            rt.check(net, att)


def test_pods_reach_each_other_and_the_host_with_their_own_address(netns, cni, unique, host_cleanup, servers):
    br, name = unique("gtb"), unique("net")
    host_cleanup(br)
    net = net_of(name, [bridge_plugin(br, "10.22.2.0/24", cni.data, ipMasq=True), {"type": "gingham-loopback"}])
    rt = Runtime(cni.path, cni.cache)
    a, b = netns(), netns()
    rt.add(net, Attachment("a", a))
    rt.add(net, Attachment("b", b))
    servers.start(b, "pod-b")
    assert probe_from(a, "10.22.2.3", 80) == "pod-b"
    # The source address seen by b is a's own (no NAT inside the pod subnet).
    in_ns(b, "ip", "link")  # b is alive
    ss = subprocess.Popen(["ip", "netns", "exec", os.path.basename(b), sys.executable, "-c",
                           "import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
                           "s.bind(('0.0.0.0',81));s.listen(1);c,a=s.accept();print(a[0]);c.close()"],
                          stdout=subprocess.PIPE, text=True)
    import time
    time.sleep(0.3)
    probe_from(a, "10.22.2.3", 81, timeout=1)
    assert ss.communicate(timeout=5)[0].strip() == "10.22.2.2"
    servers.start(a, "pod-a")
    assert probe_from(None, "10.22.2.2", 80) == "pod-a"  # host -> pod
    rt.delete(net, Attachment("a", a))
    rt.delete(net, Attachment("b", b))


def test_del_succeeds_when_the_netns_is_already_gone(netns, cni, unique, host_cleanup):
    br, name = unique("gtb"), unique("net")
    host_cleanup(br)
    net = net_of(name, [bridge_plugin(br, "10.22.3.0/24", cni.data, ipMasq=True)])
    rt = Runtime(cni.path, cni.cache)
    pod = netns()
    rt.add(net, Attachment("gone", pod))
    netns.remove(pod)
    rt.delete(net, Attachment("gone", pod))
    assert allocations(cni.data, name) == []
    out = subprocess.run(["nft", "list", "map", "inet", "gingham-bridge", "masq4"], capture_output=True, text=True)
    assert "gone" not in out.stdout


def test_ipmasq_and_macspoofchk_rules_follow_the_pod(netns, cni, unique, host_cleanup):
    br, name = unique("gtb"), unique("net")
    host_cleanup(br)
    net = net_of(name, [bridge_plugin(br, "10.22.4.0/24", cni.data, ipMasq=True, macspoofchk=True)])
    rt = Runtime(cni.path, cni.cache)
    pod = netns()
    res = rt.add(net, Attachment("spoof", pod))
    masq = subprocess.run(["nft", "list", "map", "inet", "gingham-bridge", "masq4"], capture_output=True, text=True).stdout
    assert "10.22.4.2" in masq and f"{name}/spoof/eth0" in masq
    spoof = subprocess.run(["nft", "list", "set", "bridge", "gingham-macspoofchk", "allowed"],
                           capture_output=True, text=True).stdout
    assert res["interfaces"][2]["mac"] in spoof
    rt.delete(net, Attachment("spoof", pod))
    masq = subprocess.run(["nft", "list", "map", "inet", "gingham-bridge", "masq4"], capture_output=True, text=True).stdout
    assert "10.22.4.2" not in masq


def test_portmap_from_localhost_host_ip_and_hairpin(netns, cni, unique, host_cleanup, servers):
    br, name = unique("gtb"), unique("net")
    host_cleanup(br)
    net = net_of(name, [bridge_plugin(br, "10.22.5.0/24", cni.data, hairpinMode=True),
                        {"type": "gingham-portmap", "capabilities": {"portMappings": True}}])
    rt = Runtime(cni.path, cni.cache)
    pod = netns()
    caps = {"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"},
                             {"hostPort": 18053, "containerPort": 53, "protocol": "udp"}]}
    rt.add(net, Attachment("pm", pod, cap_args=caps))
    servers.start(pod, "pod-pm", tcp=(80,), udp=(53,))
    assert probe_from(None, "127.0.0.1", 18080) == "pod-pm"  # localhost
    assert probe_from(None, "10.22.5.1", 18080) == "pod-pm"  # a host address
    assert probe_from(None, "10.22.5.1", 18053, "UDP") == "pod-pm"
    assert probe_from(pod, "10.22.5.1", 18080) == "pod-pm"  # hairpin: the pod through its own hostPort
    rt.delete(net, Attachment("pm", pod, cap_args=caps))
    assert probe_from(None, "127.0.0.1", 18080, timeout=0.5) is None
    listing = subprocess.run(["nft", "list", "table", "inet", "gingham-hostport"], capture_output=True, text=True).stdout
    assert "18080" not in listing


def test_bandwidth_shapes_both_directions_and_cleans_up(netns, cni, unique, host_cleanup):
    br, name = unique("gtb"), unique("net")
    host_cleanup(br)
    net = net_of(name, [bridge_plugin(br, "10.22.6.0/24", cni.data),
                        {"type": "gingham-bandwidth", "capabilities": {"bandwidth": True}}])
    rt = Runtime(cni.path, cni.cache)
    pod = netns()
    caps = {"bandwidth": {"ingressRate": 8_000_000, "ingressBurst": 800_000,
                          "egressRate": 4_000_000, "egressBurst": 400_000}}
    res = rt.add(net, Attachment("bw", pod, cap_args=caps))
    veth = res["interfaces"][1]["name"]
    ifb = res["interfaces"][-1]["name"]
    assert ifb.startswith("bwp")
    q = json.loads(subprocess.run(["tc", "-j", "qdisc", "show", "dev", veth], capture_output=True, text=True).stdout)
    tbf = [x for x in q if x["kind"] == "tbf"]
    assert tbf and tbf[0]["options"]["rate"] == 1_000_000  # bytes/s: 8 Mbit/s
    q = json.loads(subprocess.run(["tc", "-j", "qdisc", "show", "dev", ifb], capture_output=True, text=True).stdout)
    assert [x for x in q if x["kind"] == "tbf"][0]["options"]["rate"] == 500_000
    rt.check(net, Attachment("bw", pod, cap_args=caps))
    rt.delete(net, Attachment("bw", pod, cap_args=caps))
    assert subprocess.run(["ip", "link", "show", ifb], capture_output=True).returncode != 0
