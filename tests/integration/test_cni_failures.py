"""Bad input and bad luck: every failure is a CNI error with the right code and leaves nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from gingham.cni import invoke, spec
from gingham.cni.runtime import Attachment, Runtime
from gingham.cni.spec import CNIError

from ..helpers.cni import allocations, bridge_plugin, bridge_ports, net_of
from .conftest import REF_CNI_DIR


def call(cni, plugin: str, conf: dict | bytes, netns: str, command: str = "ADD", cid: str = "bad") -> CNIError:
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": netns, "CNI_IFNAME": "eth0",
           "CNI_PATH": cni.path, "PATH": os.environ["PATH"]}
    stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    with pytest.raises(CNIError) as e:
        invoke.exec_plugin(os.path.join(cni.bin, plugin), env, stdin)
    return e.value


def host_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": " in line}


def base(br: str, data: str, **over: object) -> dict:
    conf = {"cniVersion": "1.0.0", "name": "failnet", **bridge_plugin(br, "10.22.9.0/30", data)}
    conf.update(over)
    return conf


def assert_clean(br: str, data: str) -> None:
    assert allocations(data, "failnet") == []
    assert bridge_ports(br) == []


@pytest.mark.parametrize("case,code", [
    ("malformed json", spec.ERR_DECODE),
    ("unknown version", spec.ERR_INCOMPATIBLE_VERSION),
    ("wrong-typed key", spec.ERR_INVALID_CONFIG),
    ("overlapping ranges", spec.ERR_INVALID_CONFIG),
    ("missing netns", spec.ERR_UNKNOWN_CONTAINER),
    ("unsupported key", spec.ERR_UNSUPPORTED_FIELD),
    ("bad mtu", spec.ERR_INVALID_CONFIG),
    ("ipam names a main plugin", spec.ERR_INVALID_CONFIG),
    ("ipam names the plugin itself", spec.ERR_INVALID_CONFIG),
    ("unreadable resolvConf", spec.ERR_IO),
    ("netns is a regular file", spec.ERR_INVALID_NETNS),
])
def test_bad_input_returns_a_coded_error_and_leaves_nothing(case, code, netns, cni, unique, host_cleanup):
    br = unique("gtf")
    host_cleanup(br)
    pod = netns()
    conf: dict | bytes = base(br, cni.data)
    if case == "malformed json":
        conf = b'{"cniVersion": "1.0.0", "name": '
    elif case == "unknown version":
        conf["cniVersion"] = "7.0.0"
    elif case == "wrong-typed key":
        conf["isGateway"] = "yes"
    elif case == "overlapping ranges":
        conf["ipam"]["ranges"] = [[{"subnet": "10.22.9.0/24"}], [{"subnet": "10.22.9.128/25"}]]
    elif case == "missing netns":
        pod = "/run/netns/does-not-exist"
    elif case == "unsupported key":
        conf["vlanTrunk"] = [{"id": 5}]
    elif case == "bad mtu":
        conf["mtu"] = 100000
    elif case == "ipam names a main plugin":
        conf["ipam"]["type"] = "bridge"
    elif case == "ipam names the plugin itself":
        conf["ipam"]["type"] = "gingham-bridge"
    elif case == "unreadable resolvConf":
        conf["ipam"]["resolvConf"] = "/nonexistent/resolv.conf"  # read before an address is reserved
    elif case == "netns is a regular file":
        pod = __file__
    err = call(cni, "gingham-bridge", conf, pod)
    assert err.code == code, err
    assert err.msg and (err.details or len(err.msg) > 10)
    assert_clean(br, cni.data)


def test_exhausted_pool_fails_without_a_half_made_veth(netns, cni, unique, host_cleanup):
    br = unique("gtf")
    host_cleanup(br)
    conf = base(br, cni.data)  # a /30: one address besides the gateway
    net = net_of("failnet", [{k: v for k, v in conf.items() if k not in ("cniVersion", "name")}], "1.1.0")
    rt = Runtime(cni.path, cni.cache)
    first = netns()
    rt.add(net, Attachment("one", first))
    with pytest.raises(CNIError) as e:
        rt.add(net, Attachment("two", netns()))
    assert e.value.code == spec.ERR_TRY_AGAIN and "no IP addresses available" in str(e.value)
    assert len(bridge_ports(br)) == 1 and allocations(cni.data, "failnet") == ["10.22.9.2"]
    with pytest.raises(CNIError) as e:
        rt.status(net)
    assert e.value.code == spec.ERR_NOT_AVAILABLE
    rt.delete(net, Attachment("one", first))
    rt.status(net)  # a free address again
    assert_clean(br, cni.data)


def test_fifty_parallel_adds_get_fifty_distinct_addresses(netns, cni, unique, host_cleanup):
    br = unique("gtp")
    host_cleanup(br)
    net = net_of("par", [bridge_plugin(br, "10.22.10.0/24", cni.data)], "1.1.0")
    rt = Runtime(cni.path, cni.cache)
    pods = [netns() for _ in range(50)]
    with ThreadPoolExecutor(16) as ex:
        results = list(ex.map(lambda i: rt.add(net, Attachment(f"par{i}", pods[i])), range(50)))
    addrs = [r["ips"][0]["address"] for r in results]
    assert len(set(addrs)) == 50
    assert len(allocations(cni.data, "par")) == 50 and len(bridge_ports(br)) == 50
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda i: rt.delete(net, Attachment(f"par{i}", pods[i])), range(50)))
    assert allocations(cni.data, "par") == [] and bridge_ports(br) == []


def test_plugins_killed_mid_add_then_gc_leak_nothing(netns, cni, unique, host_cleanup, tmp_path):
    br = unique("gtk")
    host_cleanup(br)
    links_before = host_links()
    conflist = tmp_path / "kill.conflist"
    conflist.write_text(json.dumps({"cniVersion": "1.1.0", "name": "kill",
                                    "plugins": [bridge_plugin(br, "10.22.11.0/24", cni.data)]}))
    pods = [netns() for _ in range(12)]
    procs = []
    for i, pod in enumerate(pods):
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "gingham.cli", "cni", "add", str(conflist), pod, "--container-id", f"k{i}",
             "--cni-path", cni.path, "--cache-dir", cni.cache], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True))
    time.sleep(0.4)
    for p in procs[::2]:  # kill half of them, with whatever plugins they are running
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for p in procs:
        p.wait(60)
    rt = Runtime(cni.path, cni.cache)
    from gingham.cni.runtime import Network
    net = Network.load(str(conflist))
    done = [(e["containerId"], e["ifName"]) for e in rt.cached_attachments(net)]
    rt.gc(net, done)
    owners = sorted(open(os.path.join(cni.data, "kill", ip), newline="").read().split("\r\n")[0]
                    for ip in allocations(cni.data, "kill"))
    assert owners == sorted(c for c, _ in done)
    for cid, _ in done:
        rt.delete(net, Attachment(cid, pods[int(cid[1:])]))
    rt.gc(net, [])
    assert allocations(cni.data, "kill") == []
    # veths of killed ADDs die with their pod namespaces (the kernel tears a namespace down on a
    # work queue of its own, so a moment after the namespace's last reference goes)
    for pod in pods:
        netns.remove(pod)
    deadline = time.monotonic() + 5
    while host_links() - links_before - {br} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert host_links() - links_before - {br} == set()
    assert bridge_ports(br) == []


def test_a_vlan_port_is_made_over_netlink_or_refused_as_the_kernel_refuses_it(netns, cni, unique, host_cleanup):
    """`vlan` needs a bridge that filters VLANs. Where the kernel can, the pod's port is an access
    port of that VLAN (PVID, untagged), as `bridge vlan show` reads it; where it cannot (this
    VM's kernel answers EOPNOTSUPP), ADD is a CNI error naming the step, leaving nothing, and
    the reference plugin fails on the same kernel."""
    br = unique("gtv")
    host_cleanup(br)
    conf = base(br, cni.data, vlan=5)
    pod = netns()
    rt, net = Runtime(cni.path, cni.cache), net_of("failnet", [bridge_plugin(br, "10.22.9.0/30", cni.data, vlan=5)])
    try:
        rt.add(net, Attachment("v", pod))
    except CNIError as e:
        assert "VLAN" in e.msg + e.details and "not supported" in (e.msg + e.details).lower(), e
        assert_clean(br, cni.data)
        ref = dict(conf, type="bridge", ipam={"type": "host-local", "ranges": [[{"subnet": "10.44.9.0/30"}]],
                                              "dataDir": cni.data})
        other = unique("gtv")
        host_cleanup(other)
        ref["bridge"] = other
        assert call(cni, os.path.join(REF_CNI_DIR, "bridge"), ref, pod).code  # an absolute path: the reference
        return
    (port,) = bridge_ports(br)
    shown = json.loads(subprocess.run(["bridge", "-j", "vlan", "show", "dev", port], capture_output=True,
                                      text=True, check=True).stdout)
    vlans = [v for entry in shown for v in entry["vlans"]]
    assert vlans == [{"vlan": 5, "flags": ["PVID", "Egress Untagged"]}]
    rt.delete(net, Attachment("v", pod))
    assert_clean(br, cni.data)
