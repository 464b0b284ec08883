"""Thrown bad CNI input: generated configs and environments at each plugin, run as a runtime
runs them (the executables, no agent). Each call must succeed or answer a CNI error object
with one of the spec's codes (never 999, never a traceback), and a failed ADD must leave
nothing it made: no link in the pod or on the host, no address reserved, and no bridge when
this ADD created it."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..helpers.mutations import mutate, time_limit
from ..helpers.cni import allocations

pytestmark = pytest.mark.root
CODES = {1, 2, 3, 4, 5, 6, 7, 8, 11, 50, 51}  # the spec's (8: libcni's ErrInvalidNetNS)


def links(ns: str | None) -> set[str]:
    cmd = ["ip", "-j", "link", "show"] if ns is None else ["ip", "-n", os.path.basename(ns), "-j", "link", "show"]
    return {link["ifname"] for link in json.loads(subprocess.run(cmd, capture_output=True, text=True).stdout or "[]")}


def bases(br: str, data: str) -> dict[str, dict[str, object]]:
    ipam = {"type": "gingham-host-local", "ranges": [[{"subnet": "10.23.0.0/28"}]], "dataDir": data,
            "routes": [{"dst": "0.0.0.0/0"}]}
    prev = {"interfaces": [{"name": "eth0", "sandbox": "x"}, {"name": "veth0"}],
            "ips": [{"address": "10.23.0.2/28", "gateway": "10.23.0.1", "interface": 0}]}
    return {
        "gingham-bridge": {"type": "gingham-bridge", "bridge": br, "isGateway": True, "ipMasq": True,
                           "hairpinMode": True, "mtu": 1400, "ipam": ipam},
        "gingham-host-local": {"type": "gingham-host-local", **{k: v for k, v in ipam.items() if k != "type"}},
        "gingham-portmap": {"type": "gingham-portmap", "snat": True, "prevResult": prev,
                            "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80,
                                                                "protocol": "tcp"}]}},
        "gingham-bandwidth": {"type": "gingham-bandwidth", "prevResult": prev,
                              "runtimeConfig": {"bandwidth": {"ingressRate": 1000000, "ingressBurst": 100000}}},
        "gingham-loopback": {"type": "gingham-loopback"},
    }


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "120")), deadline=None,
          suppress_health_check=list(HealthCheck), derandomize=not os.environ.get("FUZZ_EXAMPLES"))
@given(data=st.data())
def test_bad_cni_input_is_a_coded_error_and_leaves_nothing(data: st.DataObject, netns, cni, unique,
                                                           host_cleanup, tmp_path_factory) -> None:
    br = unique("gfz")
    host_cleanup(br)
    plugin = data.draw(st.sampled_from(sorted(bases(br, cni.data))))
    conf = {"cniVersion": data.draw(st.sampled_from(["1.0.0", "1.1.0", "0.4.0", "0.3.1"])), "name": "fuzznet",
            **bases(br, cni.data)[plugin]}
    body: bytes
    if data.draw(st.booleans()):
        conf = mutate([conf], data)[0]
        body = json.dumps(conf, default=str).encode()
    else:
        body = json.dumps(conf).encode()
        if data.draw(st.booleans()):
            body = data.draw(st.sampled_from([b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe", b"", b"null",
                                              b'{"cniVersion": "1.0.0", "name": "x", "type": 5}']))
    pod = netns()
    plain = tmp_path_factory.mktemp("f") / "regular-file"
    plain.write_text("not a namespace")
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "fuzz1", "CNI_NETNS": pod, "CNI_IFNAME": "eth0",
           "CNI_PATH": cni.path, "PATH": os.environ["PATH"]}
    bad_env = data.draw(st.sampled_from(["", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_CONTAINERID"]))
    if bad_env:
        env[bad_env] = data.draw(st.sampled_from([str(plain), "/run/netns/none", "", "x" * 20, "a/b", "IP=1.2.3",
                                                   "K8S_POD_NAME", "-bad-", "é"]))
    host_before, pod_before = links(None), links(pod)
    with time_limit(60):
        r = subprocess.run([os.path.join(cni.bin, plugin)], input=body, env=env, capture_output=True)
    assert b"Traceback" not in r.stderr + r.stdout, r.stderr.decode(errors="replace")[-2000:]
    out = json.loads(r.stdout) if r.stdout.strip() else {}
    if r.returncode == 0:
        env["CNI_COMMAND"] = "DEL"
        conf_del = json.loads(body)
        subprocess.run([os.path.join(cni.bin, plugin)], input=json.dumps(conf_del).encode(), env=env,
                       capture_output=True)
        return
    assert out.get("code") in CODES, (r.returncode, out)
    assert out.get("msg"), out
    if env["CNI_NETNS"] == pod:
        assert links(pod) <= pod_before, f"{plugin} left {links(pod) - pod_before} in the pod ({out})"
    assert links(None) <= host_before, f"{plugin} left {links(None) - host_before} on the host ({out})"
    assert allocations(cni.data, "fuzznet") == [], f"{plugin} left an address reserved ({out})"
