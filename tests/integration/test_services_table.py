"""The table model and the tracer, kept honest by the kernel.

The Services table the unit tests trace (tests/unit/test_services_trace.py) is written to
a real nft in a namespace of its own, listed back, parsed, and must equal the model
built from the same statements: so what the tracer says of the model holds for the
kernel's table. Then a sequence of partial syncs, each compared the same way.
"""

from __future__ import annotations

import os
import subprocess

from gingham.model.services import Endpoint
from gingham.kernel.fakenft import FakeNft, Table
from gingham.kernel.nftables import Transaction, full
from gingham.services.compile import compile_services
from gingham.services.proxy import ServiceProxy
from gingham.services.compile import TABLE
from gingham.services.trace import parse_listing, trace

from ..helpers.services_world import CTX, FLOWS, LOCAL, NODE_IPS, REMOTE1, world


def kernel_table(ns: str) -> Table:
    out = subprocess.run(["ip", "netns", "exec", os.path.basename(ns), "nft", "list", "table", "ip", TABLE],
                         capture_output=True, text=True, check=True).stdout
    return parse_listing(out)


def apply(ns: str, tx: Transaction) -> None:
    subprocess.run(["ip", "netns", "exec", os.path.basename(ns), "nft", "-f", "-"], input=str(tx), text=True,
                   check=True)


def test_the_kernel_holds_what_the_model_holds(netns):
    ns = netns("nft")
    services, eps = world()
    tx = full(compile_services(CTX, services, eps))
    apply(ns, tx)
    kernel = FakeNft()
    kernel.run(tx)
    model = kernel.table("ip", TABLE)
    live = kernel_table(ns)
    assert live.chains == model.chains
    assert live.containers == model.containers
    for f in FLOWS:  # and so the traces agree
        a = trace(live, f.src, f.proto, f.dst, f.dport, NODE_IPS, f.local_origin)
        b = trace(model, f.src, f.proto, f.dst, f.dport, NODE_IPS, f.local_origin)
        assert (a.verdict, a.dnat, a.masq) == (b.verdict, b.dnat, b.masq), f.name


def test_partial_syncs_leave_the_kernel_where_the_model_is(netns):
    ns = netns("nft")
    kernel = FakeNft()

    def run(tx: Transaction) -> None:
        apply(ns, tx)
        kernel.run(tx)

    def model() -> Table:
        return kernel.table("ip", TABLE)
    proxy = ServiceProxy(CTX, run)
    services, eps = world()
    proxy.sync(services, eps)
    moved = {k: v for k, v in eps.items()}
    key = next(k for k in eps if k.endswith("/web"))
    moved[key] = [Endpoint(REMOTE1, "node-2", "default/x", True, True, False, (("", "TCP", 8080),))]
    for step in ({**eps, key: []}, moved, eps):
        proxy.sync(services, step)
        live = kernel_table(ns)
        assert live.chains == model().chains and live.containers == model().containers
    proxy.sync([s for s in services if not s.key.endswith(("/web", "/sticky"))], eps)
    live = kernel_table(ns)
    assert live.chains == model().chains and live.containers == model().containers
    assert trace(live, "10.244.0.9", "tcp", "10.96.0.30", 80, NODE_IPS).dnat == [f"{LOCAL}:8080"]
