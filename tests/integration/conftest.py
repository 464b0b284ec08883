"""Fixtures for tests on the real kernel: namespaces, CNI dirs, and a leftover check."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import uuid
from typing import Callable, Iterator

import pytest

from gingham.cni import install

REF_CNI_DIR = "/usr/lib/cni"
RUN_ID = uuid.uuid4().hex[:4]
# GINGHAM_TEST_OVERLAY=bgp: the shared labs (the Services and NetworkPolicy suites) are built on
# that overlay instead of their own; with bgp, a router at 192.168.200.1 is the external peer
# (scripts/test.sh runs those two suites a second time so)
OVERLAY = os.environ.get("GINGHAM_TEST_OVERLAY", "")


def with_overlay(paths: list[str], overlay: str, into: str) -> list[str]:
    """Copies of the manifests at `paths` in the folder `into`, their Cluster on `overlay`."""
    import yaml
    out = []
    for i, src in enumerate(paths):
        with open(src) as f:
            docs = list(yaml.safe_load_all(f))
        for d in docs:
            if isinstance(d, dict) and d.get("kind") == "Cluster":
                spec = d.setdefault("spec", {})
                spec["overlay"] = overlay
                if overlay == "bgp":
                    spec.setdefault("bgp", {"peers": [{"address": "192.168.200.1", "asNumber": 64500}]})
        out.append(os.path.join(into, f"{i}-{os.path.basename(src)}"))
        with open(out[-1], "w") as f:
            yaml.safe_dump_all(docs, f, sort_keys=False)
    return out


def overlay_is(*overlays: str) -> bool:
    """Whether the shared labs run on one of `overlays` (their own when no override is set)."""
    return OVERLAY in overlays


def _state() -> dict[str, set[str]]:
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    procs = subprocess.run(["ps", "-e", "-o", "pid=,comm="], capture_output=True, text=True).stdout
    return {
        "links": {line.split(": ")[1].split("@")[0] for line in links.splitlines() if ": " in line},
        "netns": set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set(),
        "/etc/netns": set(os.listdir("/etc/netns")) if os.path.isdir("/etc/netns") else set(),
        "labs": set(os.listdir("/var/lib/gingham/labs")) if os.path.isdir("/var/lib/gingham/labs") else set(),
        "nft tables": {t for t in tables.splitlines() if t.strip()},
        "processes": {p.split(None, 1)[1] for p in procs.splitlines()
                      if p.strip() and p.split(None, 1)[1] not in ("ps", "pytest", "python", "python3")},
        "cgroups": {d for d in glob.glob("/sys/fs/cgroup/*/gingham") + glob.glob("/sys/fs/cgroup/gingham")},
    }


def _left(before: dict[str, set[str]]) -> dict[str, list[str]]:
    after = _state()
    return {k: sorted(after[k] - before[k]) for k in after if after[k] - before[k]}


_SHARED: list[object] = []  # the fixtures shared_lab made; their modules are checked whole


@pytest.fixture(autouse=True)
def no_leftovers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails a test that leaves a namespace, link, nft table, process or cgroup behind.

    A test on a module's shared lab is checked with its module instead (the lab outlives
    each test on purpose): shared_lab compares the machine before `lab up` and after `lab
    down`, so whatever such a test leaves still fails the module."""
    if "lab" in request.fixturenames and any(getattr(request.module, "lab", None) is f for f in _SHARED):
        yield
        return
    before = _state()
    yield
    left = _left(before)
    if left:
        pytest.fail(f"test left these behind: {left}")


class Namespaces:
    """Named network namespaces made for one test and removed after it."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, hint: str = "pod") -> str:
        name = f"gt-{hint}-{uuid.uuid4().hex[:6]}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        self.names.append(name)
        return f"/run/netns/{name}"

    def remove(self, path: str) -> None:
        name = os.path.basename(path)
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        if name in self.names:
            self.names.remove(name)

    def cleanup(self) -> None:
        for n in list(self.names):
            self.remove(n)


@pytest.fixture
def netns() -> Iterator[Namespaces]:
    ns = Namespaces()
    yield ns
    ns.cleanup()


class CNIDirs:
    def __init__(self, root: str) -> None:
        self.bin = os.path.join(root, "bin")
        self.data = os.path.join(root, "networks")
        self.cache = os.path.join(root, "cache")
        install.install(self.bin)
        self.path = f"{self.bin}:{REF_CNI_DIR}"


@pytest.fixture
def cni(tmp_path: "os.PathLike[str]") -> CNIDirs:
    return CNIDirs(str(tmp_path))


_counter = [0]


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Short unique names (bridges must fit in 15 characters)."""
    def make(prefix: str) -> str:
        _counter[0] += 1
        return f"{prefix}{RUN_ID}{_counter[0]}"
    return make


class Servers:
    """Workload processes inside namespaces, stopped after the test."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, ns_path: str | None, name: str, tcp: tuple[int, ...] = (80,), udp: tuple[int, ...] = ()) -> None:
        """Starts a workload in `ns_path` (None: here, in the sandboxed host)."""
        ready = f"/tmp/gt-ready-{uuid.uuid4().hex}"
        cmd = [sys.executable, "-m", "gingham.lab.workload", "--name", name, "--ready", ready]
        if ns_path:
            cmd = ["ip", "netns", "exec", os.path.basename(ns_path)] + cmd
        cmd += [x for p in tcp for x in ("--tcp", str(p))] + [x for p in udp for x in ("--udp", str(p))]
        p = subprocess.Popen(cmd)
        self.procs.append(p)
        import time
        deadline = time.monotonic() + 10
        while not os.path.exists(ready):
            if time.monotonic() > deadline or p.poll() is not None:
                raise RuntimeError(f"workload {name} did not start")
            time.sleep(0.02)
        os.unlink(ready)

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(5)


@pytest.fixture
def servers() -> Iterator[Servers]:
    s = Servers()
    yield s
    s.stop()


def in_ns(ns_path: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", os.path.basename(ns_path), *cmd], capture_output=True,
                          text=True, check=check)


def probe_from(ns_path: str | None, host: str, port: int, protocol: str = "TCP", timeout: float = 2.0) -> str | None:
    """Runs the probe client inside a namespace (or here when ns_path is None)."""
    code = ("import sys; from gingham.lab.probe import probe; "
            f"r = probe({host!r}, {port}, {protocol!r}, {timeout}); print(r or ''); sys.exit(0 if r else 1)")
    cmd = [sys.executable, "-c", code]
    if ns_path:
        cmd = ["ip", "netns", "exec", os.path.basename(ns_path)] + cmd
    r = subprocess.run(cmd, capture_output=True, text=True)
    return r.stdout.strip() or None


def conflist(name: str, plugins: list[dict[str, object]], version: str = "1.1.0") -> bytes:
    return json.dumps({"cniVersion": version, "name": name, "plugins": plugins}).encode()


def have_reference() -> bool:
    return os.path.exists(os.path.join(REF_CNI_DIR, "bridge")) and shutil.which("nft") is not None


@pytest.fixture
def host_cleanup() -> Iterator[Callable[[str], None]]:
    """Removes bridges and nft tables a test's plugins leave in the (sandboxed) host on purpose.

    The bridge and the shared tables outlive a pod, as with the reference plugins; a
    test that made them removes them, so the leftover check still sees everything else.
    """
    tables_before = set(subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout.splitlines())
    bridges: list[str] = []
    yield bridges.append
    for b in bridges:
        subprocess.run(["ip", "link", "delete", b], capture_output=True)
    after = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout.splitlines()
    for t in set(after) - tables_before:
        subprocess.run(["nft", "delete", "table", *t.split()[1:]], capture_output=True)


def shared_lab(name: str, files: Callable[[object], list[str]]) -> Callable[..., object]:
    """A module-scoped lab for tests that share one (`files` gets a tmp_path_factory).

    The tests that use it are checked for leftovers together: the machine after `lab down`
    at the end of the module must be as it was before `lab up`.
    """
    from gingham.lab.cluster import Lab

    @pytest.fixture(scope="module")
    def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
        before = _state()
        lab = Lab(f"{name}{RUN_ID}")
        try:
            paths = files(tmp_path_factory)
            lab.up(with_overlay(paths, OVERLAY, str(tmp_path_factory.mktemp("overlay"))) if OVERLAY else paths)
            yield lab
        finally:
            lab.down()
        left = _left(before)
        if left:
            pytest.fail(f"the module's shared lab, or a test on it, left these behind: {left}")
    _SHARED.append(lab)
    return lab


@pytest.fixture
def lab_name() -> Iterator[Callable[[], object]]:
    """Labs with names unique to this run, each taken down after the test."""
    n = [0]

    def make() -> str:
        n[0] += 1
        return f"t{RUN_ID}{n[0]}"
    from gingham.lab.cluster import Lab
    made: list[Lab] = []

    def factory() -> Lab:
        lab = Lab(make())
        made.append(lab)
        return lab
    yield factory
    for lab in made:
        lab.down()


def slice_of(lab: object, name: str, timeout: float = 10.0) -> dict[str, object]:
    """A Service's EndpointSlice once the controller has written it: after `lab up` it may come
    a moment after the nodes report (the first full write does not hold their reports back; in
    Kubernetes, too, EndpointSlices follow a change asynchronously)."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        found = next((s for s in lab.endpointslices() if s["name"] == name), None)  # type: ignore[attr-defined]
        if found is not None or time.monotonic() > deadline:
            assert found is not None, f"no EndpointSlice for {name} within {timeout}s"
            return found
        time.sleep(0.1)
