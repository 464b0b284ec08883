"""The one nft transaction type and the FakeNft that runs it, by value (no root).

The kernel side of the same facts is in tests/integration/test_services_table.py (the model
against `nft list`) and the CNI plugin tests (the plugins' transactions on the real kernel).
"""

from __future__ import annotations

import ipaddress

import pytest

from gingham.agent.overlay import NODE_TABLE, node_nat
from gingham.cni.plugins import bridge, portmap
from gingham.kernel.fakenft import FakeNft, Refused
from gingham.kernel.nftables import BaseChain, Ruleset, Transaction, diff, element, full


def test_str_is_the_nft_script_in_order():
    tx = (Transaction("ip", "t").add_table().add_set("s", "type ipv4_addr; flags interval")
          .add_chain("in", BaseChain("in", "filter", "input", 0)).add_chain("c")
          .add_rule("in", "ip saddr @s jump c").add_elements("s", ["10.0.0.0/8", "172.16.0.0/12"])
          .add_element("s", "192.168.0.0/16", comment='a "b"'))
    assert str(tx).splitlines() == [
        "add table ip t",
        "add set ip t s { type ipv4_addr; flags interval; }",
        "add chain ip t in { type filter hook input priority 0; policy accept; }",
        "add chain ip t c",
        "add rule ip t in ip saddr @s jump c",
        "add element ip t s { 10.0.0.0/8, 172.16.0.0/12 }",
        "add element ip t s { 192.168.0.0/16 comment \"a 'b'\" }",
    ]
    assert element("k", "v", "o") == 'k comment "o" : v' and not Transaction("ip", "t")


def test_elements_go_in_statements_of_a_thousand():
    tx = Transaction("ip", "t").add_elements("s", [f"10.0.{i // 256}.{i % 256}" for i in range(2500)])
    assert len(tx) == 3 and str(tx).count(",") == 2497


def test_joining_transactions_of_two_tables_is_refused():
    with pytest.raises(ValueError, match="inet u"):
        Transaction("ip", "t").extend(Transaction("inet", "u"))


def test_fakenft_applies_a_transaction_whole_or_not_at_all():
    nft = FakeNft()
    nft.run(Transaction("ip", "t").add_table().add_chain("a").add_rule("a", "accept"))
    before = nft.dump()
    bad = Transaction("ip", "t").add_chain("b").add_rule("b", "drop").add_rule("a", "jump nowhere")
    with pytest.raises(Refused, match="does not exist"):
        nft.run(bad)
    assert nft.dump() == before  # chain b was not left behind


@pytest.mark.parametrize("tx,why", [
    (Transaction("ip", "t").delete_table(), "no such table"),
    (Transaction("ip", "t").add_table().delete_chain("c"), "no such chain"),
    (Transaction("ip", "t").add_table().add_chain("c").add_rule("c", "accept").delete_chain("c"), "not empty"),
    (Transaction("ip", "t").add_table().add_chain("a").add_chain("c").add_rule("a", "jump c").flush_chain("c")
     .delete_chain("c"), "still pointed at"),
    (Transaction("ip", "t").add_table().add_set("s", "type ipv4_addr").delete_element("s", "10.0.0.1"),
     "no such element"),
    (Transaction("ip", "t").add_table().add_set("s", "type ipv4_addr").add_chain("c")
     .add_rule("c", "ip saddr @s drop").delete_container("set", "s"), "a rule still uses it"),
    (Transaction("ip", "t").add_table().add_map("m", "type ipv4_addr : verdict").add_element("m", "10.0.0.1"),
     "map element"),
    (Transaction("ip", "t").add_table().add_set("s", "type ipv4_addr").add_set("s", "type ipv6_addr"),
     "another type"),
    (Transaction("ip", "t").add_table().add_chain("c", BaseChain("c", "filter", "input", 0))
     .add_chain("c", BaseChain("c", "filter", "output", 0)), "another hook"),
    (Transaction("ip", "t").add_rule("c", "accept"), "no such table"),
])
def test_fakenft_refuses_what_the_kernel_refuses(tx, why):
    with pytest.raises(Refused, match=why):
        FakeNft().run(tx)


def test_diff_of_two_states_is_a_transaction_that_ends_in_the_second():
    old = Ruleset("ip", "t", [BaseChain("in", "filter", "input", 0)], {"in": ["ip saddr @s jump a"], "a": ["drop"]},
                  {}, {"s": "type ipv4_addr"}, {"s": {"10.0.0.1": "", "10.0.0.2": ""}})
    new = Ruleset("ip", "t", [BaseChain("in", "filter", "input", 0)], {"in": ["ip saddr @s jump b"], "b": ["accept"]},
                  {}, {"s": "type ipv4_addr"}, {"s": {"10.0.0.2": "", "10.0.0.3": ""}})
    kernel, expected = FakeNft(), FakeNft()
    kernel.run(full(old))
    kernel.run(diff(old, new))
    expected.run(full(new))
    assert kernel.dump() == expected.dump()
    assert "delete table" not in str(diff(old, new)) and not diff(new, new)


def test_the_plugins_transactions_can_be_run_again_for_the_next_pod():
    """bridge and portmap write the shared table on every ADD: the second ADD must be taken too."""
    nft = FakeNft()
    for i in (2, 3):
        ip = ipaddress.ip_interface(f"10.22.0.{i}/24")
        nft.run(bridge.masq_script(f"net/c{i}/eth0", [ip]))
        nft.run(bridge.spoof_script(f"net/c{i}/eth0", f"veth{i}", f"02:00:00:00:00:0{i}"))
        nft.run(portmap.add_script(f"net/c{i}/eth0", [portmap.Mapping(8000 + i, 80, "tcp", "")], {4: str(ip.ip)},
                                   True, False))
    masq = nft.table("inet", bridge.MASQ_TABLE)
    assert set(masq.containers["masq4"]) == {"10.22.0.2", "10.22.0.3"}
    hostports = nft.table("inet", portmap.TABLE).containers["hostports4"]
    assert hostports == {"tcp . 8002": "10.22.0.2 . 80", "tcp . 8003": "10.22.0.3 . 80"}
    assert nft.table("bridge", bridge.SPOOF_TABLE).containers["allowed"] == {
        '"veth2" . 02:00:00:00:00:02': "", '"veth3" . 02:00:00:00:00:03': ""}


def test_node_masquerade_keeps_pod_to_pod_addresses():
    nft = FakeNft()
    nft.run(node_nat("10.244.0.0/16"))
    nft.run(node_nat("10.244.0.0/16"))  # the agent writes it at every start
    assert nft.table("ip", NODE_TABLE).chains["postrouting"] == [
        'ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 oifname != "cni0" masquerade']
