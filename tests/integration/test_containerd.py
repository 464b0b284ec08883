"""Under a real runtime: Debian's containerd + runc start containers with `ctr run --cni`.

The image is busybox, built here as an OCI layout and imported (nothing is pulled). ctr
has no flag for port mappings (kubelet passes them over CRI), so the conflist carries the
mapping for the first container as a static runtimeConfig, which libcni passes through.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request

import pytest

from gingham.cni import install

from .oci import busybox_layout
from ..helpers.cni import allocations, bridge_ports

pytestmark = [pytest.mark.containerd,
              pytest.mark.skipif(not shutil.which("containerd") or not shutil.which("runc")
                                 or not os.path.exists("/bin/busybox"),
                                 reason="containerd, runc and busybox-static are needed (scripts/setup.sh)")]
IMAGE = "gingham.test/busybox:latest"
RETRY = "for i in 1 2 3 4 5 6 7 8 9 10; do {} && exit 0; sleep 0.3; done; exit 1"  # until httpd listens
CONF_DIR, BIN_DIR = "/etc/cni/net.d", "/opt/cni/bin"


class Containerd:
    def __init__(self, root: str) -> None:
        self.address = os.path.join(root, "containerd.sock")
        cfg = os.path.join(root, "config.toml")
        with open(cfg, "w") as f:
            f.write(f'version = 2\nroot = "{root}/root"\nstate = "{root}/state"\n'
                    f'[grpc]\n  address = "{self.address}"\n'
                    '[plugins."io.containerd.grpc.v1.cri"]\n  disable_tcp_service = true\n')
        self.log = open(os.path.join(root, "containerd.log"), "w")
        self.proc = subprocess.Popen(["containerd", "--config", cfg], stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 20
        while not os.path.exists(self.address) or self.ctr("version", check=False).returncode != 0:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("containerd did not start: " + open(self.log.name).read()[-2000:])
            time.sleep(0.1)

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ctr", "--address", self.address, *args], capture_output=True, text=True, check=check)

    def run(self, name: str, *cmd: str) -> subprocess.Popen[str]:
        return subprocess.Popen(["ctr", "--address", self.address, "run", "--snapshotter", "native", "--cni", "--rm",
                                 IMAGE, name, *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def exec(self, name: str, *cmd: str) -> str:
        return self.ctr("task", "exec", "--exec-id", f"x{time.monotonic_ns()}", name, *cmd).stdout

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)
        self.log.close()


@pytest.fixture
def containerd(tmp_path):
    c = Containerd(str(tmp_path))
    try:
        c.ctr("image", "import", busybox_layout(str(tmp_path / "image")))
        yield c
    finally:
        c.stop()


def write_conflist(br: str, data: str, mapping: bool) -> str:
    plugins = [{"type": "gingham-bridge", "bridge": br, "isGateway": True, "ipMasq": True, "hairpinMode": True,
                "ipam": {"type": "gingham-host-local", "dataDir": data, "ranges": [[{"subnet": "10.22.66.0/24"}]],
                         "routes": [{"dst": "0.0.0.0/0"}]}},
               {"type": "gingham-portmap", "capabilities": {"portMappings": True}},
               {"type": "gingham-loopback"}]
    if mapping:
        plugins[1]["runtimeConfig"] = {"portMappings": [{"hostPort": 18090, "containerPort": 80, "protocol": "tcp"}]}
    path = os.path.join(CONF_DIR, "10-gingham.conflist")
    with open(path, "w") as f:
        json.dump({"cniVersion": "1.0.0", "name": "gingham-ctr", "plugins": plugins}, f)
    return path


def wait_for_ip(c: Containerd, name: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        out = c.ctr("task", "exec", "--exec-id", f"ip{time.monotonic_ns()}", name, "ip", "-o", "-4", "addr", "show",
                    "eth0", check=False).stdout
        if "inet " in out:
            return out.split("inet ")[1].split("/")[0]
        time.sleep(0.2)
    raise AssertionError(f"{name} got no address")


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=3) as r:
        return r.read().decode().strip()


def test_ctr_run_cni_with_gingham_plugins(containerd, unique, host_cleanup, servers, tmp_path):
    br = unique("gtc")
    host_cleanup(br)
    data = str(tmp_path / "ipam")
    os.makedirs(CONF_DIR, exist_ok=True)
    installed = install.install(BIN_DIR)
    conf = write_conflist(br, data, mapping=True)
    procs = []
    try:
        web = "echo {n} > /www/index.html; exec httpd -f -p 80 -h /www"
        procs.append(containerd.run("c1", "sh", "-c", web.format(n="c1")))
        ip1 = wait_for_ip(containerd, "c1")
        write_conflist(br, data, mapping=False)
        procs.append(containerd.run("c2", "sh", "-c", web.format(n="c2")))
        ip2 = wait_for_ip(containerd, "c2")
        assert ip1 != ip2 and ip1.startswith("10.22.66.") and ip2.startswith("10.22.66.")

        # container <-> container, container -> host, host -> container
        assert containerd.exec("c2", "sh", "-c", RETRY.format(f"wget -qO- http://{ip1}/")).strip() == "c1"
        assert containerd.exec("c1", "sh", "-c", RETRY.format(f"wget -qO- http://{ip2}/")).strip() == "c2"
        servers.start(None, "the-host", tcp=(19999,))
        assert containerd.exec("c1", "sh", "-c", "nc 10.22.66.1 19999 </dev/null").strip() == "the-host"
        assert http_get(f"http://{ip2}/") == "c2"
        # the hostPort mapping, from the host's address and from localhost
        assert http_get("http://10.22.66.1:18090/") == "c1"
        assert http_get("http://127.0.0.1:18090/") == "c1"
        assert len(allocations(data, "gingham-ctr")) == 2
    finally:
        for name in ("c1", "c2"):
            containerd.ctr("task", "kill", "-s", "KILL", name, check=False)
        for p in procs:
            p.wait(30)
    # After the containers are removed, nothing of theirs remains.
    assert allocations(data, "gingham-ctr") == []
    assert bridge_ports(br) == []
    listing = subprocess.run(["nft", "list", "table", "inet", "gingham-hostport"], capture_output=True, text=True).stdout
    assert "18090" not in listing
    masq = subprocess.run(["nft", "list", "map", "inet", "gingham-bridge", "masq4"], capture_output=True, text=True).stdout
    assert "10.22.66." not in masq
    os.unlink(conf)
    for p in installed:
        os.unlink(p)
