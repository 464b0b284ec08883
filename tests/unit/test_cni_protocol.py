"""The skeleton and result conversion, by value: env + stdin in, stdout + status out."""

from __future__ import annotations

import json

import pytest

from gingham.cni import spec
from gingham.cni.runtime import Network, select_version
from gingham.cni.skel import dispatch
from gingham.cni.spec import CNIError


class Echo:
    name = "echo"
    versions = spec.SUPPORTED_VERSIONS

    def add(self, a):
        if a.conf.get("boom"):
            raise RuntimeError("kaboom")
        return {"cniVersion": "1.1.0", "ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1"}],
                "routes": [{"dst": "0.0.0.0/0", "mtu": 1400}]}

    def delete(self, a):
        return None

    check = status = gc = delete


# a real network namespace file (our own, allowed by the override): the skeleton checks that CNI_NETNS is one
ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/proc/self/ns/net", "CNI_IFNAME": "eth0",
       "CNI_PATH": "/opt/cni/bin", "CNI_NETNS_OVERRIDE": "1"}


def run(env, conf):
    out, rc = dispatch(env, conf if isinstance(conf, bytes) else json.dumps(conf).encode(), Echo())
    return json.loads(out) if out else None, rc


def test_add_converts_to_the_config_version():
    out, rc = run(ENV, {"cniVersion": "0.4.0", "name": "n"})
    assert rc == 0
    assert out == {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.0.0.2/24", "gateway": "10.0.0.1"}],
                   "routes": [{"dst": "0.0.0.0/0"}], "dns": {}}
    out, _ = run(ENV, {"cniVersion": "1.1.0", "name": "n"})
    assert out["routes"] == [{"dst": "0.0.0.0/0", "mtu": 1400}] and "version" not in out["ips"][0]


@pytest.mark.parametrize("env_change,conf,code,needle", [
    ({"CNI_COMMAND": ""}, {"cniVersion": "1.1.0", "name": "n"}, 4, "CNI_COMMAND"),
    ({"CNI_NETNS": ""}, {"cniVersion": "1.1.0", "name": "n"}, 4, "CNI_NETNS"),
    ({"CNI_IFNAME": "a/b"}, {"cniVersion": "1.1.0", "name": "n"}, 4, "CNI_IFNAME"),
    ({"CNI_IFNAME": "x" * 16}, {"cniVersion": "1.1.0", "name": "n"}, 4, "CNI_IFNAME"),
    ({"CNI_CONTAINERID": "-bad"}, {"cniVersion": "1.1.0", "name": "n"}, 4, "CNI_CONTAINERID"),
    ({}, b"{not json", 6, "decode"),
    ({}, {"cniVersion": "9.9.9", "name": "n"}, 1, "incompatible"),
    ({}, {"name": "n"}, 1, "cniVersion"),
    ({}, {"cniVersion": "1.1.0", "name": "bad name"}, 7, "network name"),
    ({}, {"cniVersion": "1.1.0", "name": "n", "boom": True}, 999, "internal"),
    ({"CNI_COMMAND": "CHECK"}, {"cniVersion": "0.3.1", "name": "n"}, 1, "CHECK"),
    ({"CNI_COMMAND": "GC"}, {"cniVersion": "1.0.0", "name": "n"}, 1, "GC"),
    ({"CNI_NETNS": "/run/netns/gone"}, {"cniVersion": "1.1.0", "name": "n"}, 3, "does not exist"),
    ({"CNI_NETNS": __file__}, {"cniVersion": "1.1.0", "name": "n"}, 8, "not a network namespace"),
    ({"CNI_NETNS": "/proc/self/ns/uts"}, {"cniVersion": "1.1.0", "name": "n"}, 8, "another kind of namespace"),
    ({}, b"[" * 100_000 + b"]" * 100_000, 6, "nests deeper"),
])
def test_bad_input_gets_the_spec_code(env_change, conf, code, needle):
    out, rc = run({**ENV, **env_change}, conf)
    assert rc == 1 and out["code"] == code
    assert needle.lower() in (out["msg"] + out.get("details", "")).lower()


@pytest.mark.parametrize("prev,where", [
    ({"interfaces": [{"sandbox": "x"}]}, "interfaces[0].name"),
    ({"interfaces": "eth0"}, "interfaces"),
    ({"interfaces": [5]}, "interfaces[0]"),
    ({"ips": [{"address": "10.0.0.2"}]}, "ips[0].address"),
    ({"ips": [{"address": "10.0.0.2/24", "gateway": [1]}]}, "ips[0].gateway"),
    ({"ips": [{"address": "10.0.0.2/24", "interface": 3}]}, "ips[0].interface"),
    ({"routes": [{"gw": "10.0.0.1"}]}, "routes[0].dst"),
    ({"dns": []}, "dns"),
])
def test_a_malformed_prev_result_is_a_decoding_error_naming_the_field(prev, where):
    with pytest.raises(CNIError) as e:
        spec.result_to_internal({"cniVersion": "1.0.0", **prev})
    assert e.value.code == spec.ERR_DECODE and where in e.value.details


def test_version_lists_what_the_plugin_speaks():
    out, rc = run({"CNI_COMMAND": "VERSION"}, {"cniVersion": "0.4.0"})
    assert rc == 0 and out == {"cniVersion": "0.4.0", "supportedVersions": list(spec.SUPPORTED_VERSIONS)}


def test_del_and_check_print_nothing_on_success():
    out, rc = dispatch({**ENV, "CNI_COMMAND": "DEL"}, b'{"cniVersion":"1.1.0","name":"n"}', Echo())
    assert (out, rc) == (b"", 0)
    prev = {"cniVersion": "1.1.0", "ips": [{"address": "10.0.0.2/24"}]}
    check = {"cniVersion": "1.1.0", "name": "n", "prevResult": prev}
    out, rc = dispatch({**ENV, "CNI_COMMAND": "CHECK"}, json.dumps(check).encode(), Echo())
    assert (out, rc) == (b"", 0)


def test_runtime_injects_only_declared_capabilities():
    net = Network.parse(json.dumps({"cniVersion": "1.0.0", "name": "n", "plugins": [
        {"type": "a", "capabilities": {"portMappings": True}},
        {"type": "b", "capabilities": {"bandwidth": False}, "keep": 1}]}).encode())
    caps = {"portMappings": [{"hostPort": 1, "containerPort": 2}], "bandwidth": {"ingressRate": 1}}
    a = net.plugin_conf(net.plugins[0], caps, None)
    b = net.plugin_conf(net.plugins[1], caps, {"cniVersion": "1.0.0"})
    assert a == {"type": "a", "cniVersion": "1.0.0", "name": "n", "runtimeConfig": {"portMappings": caps["portMappings"]}}
    assert b == {"type": "b", "keep": 1, "cniVersion": "1.0.0", "name": "n", "prevResult": {"cniVersion": "1.0.0"}}


def test_runtime_picks_the_highest_supported_version():
    assert select_version({"cniVersion": "0.4.0", "cniVersions": ["1.0.0", "1.1.0", "2.0.0"]}, "x") == "1.1.0"
    with pytest.raises(CNIError) as e:
        select_version({"cniVersion": "0.2.0"}, "x")
    assert e.value.code == spec.ERR_INCOMPATIBLE_VERSION


def test_malformed_conflists_are_refused_with_the_reason():
    for raw, code in ((b"[", 6), (b'{"cniVersion":"1.0.0","plugins":[{"type":"x"}]}', 7),
                      (b'{"cniVersion":"1.0.0","name":"n","plugins":[{}]}', 7)):
        with pytest.raises(CNIError) as e:
            Network.parse(raw)
        assert e.value.code == code
