"""The plugin shims hand requests to a running node agent, and fall back when it is gone."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from gingham.cni.runtime import Attachment, Runtime
from gingham.cni.shim import DEFAULT_SOCKET

from .conftest import probe_from
from ..helpers.cni import allocations, bridge_plugin, net_of


def test_shims_use_the_agent_then_fall_back(netns, cni, unique, host_cleanup, servers, tmp_path):
    br, name = unique("gta"), unique("net")
    host_cleanup(br)
    log = open(tmp_path / "agent.log", "w+")
    agent = subprocess.Popen([sys.executable, "-m", "gingham.cli", "agent", "--cni-socket", DEFAULT_SOCKET],
                             stderr=log)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(DEFAULT_SOCKET):
            assert time.monotonic() < deadline and agent.poll() is None, "agent did not start"
            time.sleep(0.05)
        net = net_of(name, [bridge_plugin(br, "10.22.20.0/24", cni.data), {"type": "gingham-loopback"}])
        rt = Runtime(cni.path, cni.cache)
        a, b = netns(), netns()
        rt.add(net, Attachment("ag1", a))
        rt.add(net, Attachment("ag2", b))
        servers.start(b, "pod-b")
        assert probe_from(a, "10.22.20.3", 80) == "pod-b"
        rt.delete(net, Attachment("ag1", a))
        log.seek(0)
        served = log.read()
        assert "cni ADD bridge ag1/eth0 rc=0" in served and "cni ADD loopback ag2/eth0 rc=0" in served
        assert "cni DEL bridge ag1/eth0 rc=0" in served
    finally:
        agent.terminate()
        agent.wait(10)
    assert not os.path.exists(DEFAULT_SOCKET)
    rt.delete(net, Attachment("ag2", b))  # no agent now: the plugins do it in-process
    assert allocations(cni.data, name) == []
