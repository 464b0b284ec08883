"""The etcd client, the list + watch source and the node lease, against a real etcd in a namespace."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections import defaultdict
from typing import Iterator

import pytest

from gingham.kernel import netns as kns
from gingham.model import registry as reg
from gingham.model.objects import Cluster, Pod
from gingham.sources.cache import Source
from gingham.sources.etcd import Compacted, Etcd, EtcdError, cmp_absent, op_put
from gingham.sources.lease import NodeLease

pytestmark = pytest.mark.root


@pytest.fixture
def etcd(netns, tmp_path) -> Iterator[Etcd]:
    """One etcd member on 127.0.0.1 inside a namespace of the test's own."""
    ns = netns("etcd")
    proc = subprocess.Popen(["ip", "netns", "exec", os.path.basename(ns), "etcd", "--data-dir", str(tmp_path / "d"),
                             "--listen-client-urls", "http://127.0.0.1:2379",
                             "--advertise-client-urls", "http://127.0.0.1:2379",
                             "--listen-peer-urls", "http://127.0.0.1:2380", "--log-level", "error", "--logger", "zap"],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "etcd.log", "w"))

    def connect(host: str, port: int, timeout: float) -> socket.socket:
        with kns.entered(ns):
            return socket.create_connection((host, port), timeout=timeout)

    client = Etcd("http://127.0.0.1:2379", timeout=2, connect=connect)
    deadline = time.monotonic() + 15
    while True:
        try:
            client.revision()
            break
        except EtcdError:
            assert time.monotonic() < deadline, (tmp_path / "etcd.log").read_text()[-500:]
            time.sleep(0.05)
    yield client
    client.close()
    proc.terminate()
    proc.wait(10)


def test_kv_range_paging_and_compare_and_swap(etcd: Etcd) -> None:
    for i in range(5):
        etcd.put(f"/t/k{i}", f"v{i}".encode())
    etcd.put("/u/other", b"x")
    kvs, rev = etcd.range("/t/", page=2)
    assert [kv.key for kv in kvs] == [f"/t/k{i}" for i in range(5)] and [kv.value for kv in kvs][0] == b"v0"
    assert rev == etcd.revision()
    got = etcd.get("/t/k3")
    assert got is not None and got.value == b"v3" and got.mod_revision > 0
    assert etcd.get("/t/none") is None
    ok, _, _ = etcd.txn([cmp_absent("/lock")], [op_put("/lock", b"a")])
    again, _, _ = etcd.txn([cmp_absent("/lock")], [op_put("/lock", b"b")])
    assert ok and not again and etcd.get("/lock").value == b"a"  # type: ignore[union-attr]
    etcd.delete("/t/", prefix=True)
    assert etcd.range("/t/")[0] == [] and etcd.get("/u/other") is not None


def test_a_leased_key_goes_when_the_lease_is_not_kept(etcd: Etcd) -> None:
    held = NodeLease(etcd, "/lease/a", b"a", ttl=2)
    held.start()
    deadline = time.monotonic() + 3
    while etcd.get("/lease/a") is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(2.5)  # longer than the TTL: kept alive all along
    assert etcd.get("/lease/a") is not None
    held.stop()
    deadline = time.monotonic() + 6
    while etcd.get("/lease/a") is not None:
        assert time.monotonic() < deadline, "the key outlived its lease"
        time.sleep(0.1)


def test_a_watch_sees_puts_and_deletes_in_order_and_compaction_says_so(etcd: Etcd) -> None:
    start = etcd.put("/w/a", b"1")
    etcd.put("/w/b", b"2")
    etcd.delete("/w/a")
    w = etcd.watch("/w/", start)
    seen = []
    for _, events in w:
        seen += [(e.key, e.value) for e in events]
        if len(seen) >= 3:
            break
    w.close()
    assert seen == [("/w/a", b"1"), ("/w/b", b"2"), ("/w/a", None)]
    etcd.compact(etcd.revision())
    with pytest.raises(Compacted):
        for _ in etcd.watch("/w/", start):
            pass


def test_a_source_lists_again_after_a_compaction_and_ends_where_a_fresh_one_does(etcd: Etcd) -> None:
    def pod(name: str, labels: dict[str, str]) -> bytes:
        return reg.dumps(reg.encode_pod(Pod("default", name, labels, "node-1")))

    etcd.put(reg.CLUSTER, reg.dumps(reg.encode_cluster(Cluster())))
    etcd.put(reg.pod_key("default", "a"), pod("a", {"v": "1"}))
    etcd.put(reg.pod_key("default", "b"), pod("b", {}))
    src = Source(etcd)
    listing = src._list()  # what a source saw before it stopped hearing
    etcd.put(reg.pod_key("default", "a"), pod("a", {"v": "2"}))
    etcd.delete(reg.pod_key("default", "b"))
    etcd.put(reg.pod_key("default", "c"), pod("c", {}))
    etcd.compact(etcd.revision())
    src._load(listing, defaultdict(set))
    assert set(src.cache.pods) == {"default/a", "default/b"}
    src._thread = threading.Thread(target=src._run, daemon=True)
    src._thread.start()
    try:
        changes = src.wait(5)
        for kind, keys in src.settle(quiet=0.3, limit=2).items():
            changes[kind] |= keys
        assert src.relists == 1
        assert changes["pod"] == {"default/a", "default/b", "default/c"}
        fresh = Source(etcd)
        fresh.start()
        fresh.stop()
        assert src.cache.pods == fresh.cache.pods and src.cache.raw == fresh.cache.raw
        assert src.cache.pods["default/a"].labels == {"v": "2"}
        etcd.put(reg.pod_key("default", "d"), pod("d", {}))  # and it watches on from there
        assert src.wait(5)["pod"] == {"default/d"}
    finally:
        src.stop()
