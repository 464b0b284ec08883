"""The DNS record index and answers by value, and malformed packets thrown at the handler."""

from __future__ import annotations

from dnslib import QTYPE, RCODE, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from gingham.dns.records import build
from gingham.dns.server import Stats, answer, handle
from gingham.model.services import Endpoint, parse_service


def svc(name, **spec):
    spec.setdefault("ports", [{"name": "http", "port": 80, "targetPort": 8080}])
    spec.setdefault("selector", {"app": name})
    return parse_service("shop", name, {"spec": spec}, "10.96.0.0/16")


INDEX = build(
    [svc("web", clusterIP="10.96.0.11"), svc("db", clusterIP="None"),
     svc("ext", type="ExternalName", externalName="example.org", ports=[])],
    {"shop/web": [Endpoint("10.244.1.2", "n1", "shop/web-0", ports=(("http", "TCP", 8080),))],
     "shop/db": [Endpoint("10.244.1.5", "n1", "shop/db-0", ports=(("http", "TCP", 8080),), hostname="db-0"),
                 Endpoint("10.244.2.5", "n2", "shop/db-1", ready=False, ports=(("http", "TCP", 8080),),
                          hostname="db-1")]},
    [("shop", "10.244.1.2")])


def ask(name, qtype="A"):
    reply = answer(INDEX, DNSRecord.question(name, qtype))
    return RCODE.get(reply.header.rcode), sorted(f"{QTYPE.get(r.rtype)} {r.rdata}" for r in reply.rr), reply


def test_records_of_every_kind():
    assert ask("web.shop.svc.cluster.local")[:2] == ("NOERROR", ["A 10.96.0.11"])
    assert ask("db.shop.svc.cluster.local")[:2] == ("NOERROR", ["A 10.244.1.5"])  # the unready one is left out
    assert ask("db-0.db.shop.svc.cluster.local")[:2] == ("NOERROR", ["A 10.244.1.5"])
    assert ask("_http._tcp.web.shop.svc.cluster.local", "SRV")[:2] == (
        "NOERROR", ["SRV 0 100 80 web.shop.svc.cluster.local."])
    assert ask("_http._tcp.db.shop.svc.cluster.local", "SRV")[1] == ["SRV 0 100 8080 db-0.db.shop.svc.cluster.local."]
    assert ask("ext.shop.svc.cluster.local")[:2] == ("NOERROR", ["CNAME example.org."])
    assert ask("11.0.96.10.in-addr.arpa", "PTR")[:2] == ("NOERROR", ["PTR web.shop.svc.cluster.local."])
    assert ask("10-244-1-2.shop.pod.cluster.local")[:2] == ("NOERROR", ["A 10.244.1.2"])
    assert ask("dns-version.cluster.local", "TXT")[:2] == ("NOERROR", ['TXT "1.1.0"'])
    rcode, _, reply = ask("web.shop.svc.cluster.local")
    assert reply.rr[0].ttl == 5 and reply.header.aa == 1


def test_nxdomain_versus_nodata():
    assert ask("nope.shop.svc.cluster.local")[:2] == ("NXDOMAIN", [])
    assert ask("web.shop.svc.cluster.local", "AAAA")[:2] == ("NOERROR", [])  # exists, no record of that type
    assert ask("shop.svc.cluster.local")[:2] == ("NOERROR", [])               # an empty non-terminal exists
    assert ask("example.com")[0] == "SERVFAIL"                                 # outside the zone, no upstream


def test_large_answers_are_truncated_over_udp():
    eps = [Endpoint(f"10.244.3.{i}", "n1", f"shop/big-{i}", ports=(("http", "TCP", 8080),)) for i in range(1, 60)]
    ix = build([svc("big", clusterIP="None")], {"shop/big": eps}, [])
    q = DNSRecord.question("big.shop.svc.cluster.local").pack()
    udp = DNSRecord.parse(handle(lambda: ix, q, Stats(), 512))
    tcp = DNSRecord.parse(handle(lambda: ix, q, Stats(), None))
    assert udp.header.tc == 1 and not udp.rr
    assert len(tcp.rr) == 59


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=0, max_size=300))
def test_malformed_packets_never_break_the_handler(data):
    out = handle(lambda: INDEX, data, Stats(), 512)
    if out is not None:
        assert len(out) >= 12
        if len(data) >= 2:
            assert out[:2] == data[:2]  # the reply carries the query's id


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["web", "db", "shop", "svc", "cluster", "local", "x", "_http", "_tcp"]),
                min_size=1, max_size=6), st.sampled_from(["A", "AAAA", "SRV", "TXT", "PTR", "CNAME", "ANY"]))
def test_every_name_gets_a_well_formed_answer(labels, qtype):
    reply = answer(INDEX, DNSRecord.question(".".join(labels), qtype))
    assert RCODE.get(reply.header.rcode) in ("NOERROR", "NXDOMAIN", "SERVFAIL")
    DNSRecord.parse(reply.pack())


def test_negative_answers_carry_the_soa_and_the_apex_answers_soa_and_ns():
    ix = build([svc("web", clusterIP="10.96.0.11")], {}, [], dns_ip="10.96.0.10")
    for name, qtype, rcode in (("nope.shop.svc.cluster.local", "A", RCODE.NXDOMAIN),
                               ("web.shop.svc.cluster.local", "AAAA", RCODE.NOERROR),
                               ("1.2.3.4.in-addr.arpa", "PTR", RCODE.NXDOMAIN)):
        reply = answer(ix, DNSRecord.question(name, qtype))
        assert reply.header.rcode == rcode and not reply.rr and len(reply.auth) == 1
        soa = reply.auth[0]
        zone = "in-addr.arpa." if name.endswith("arpa") else "cluster.local."
        assert (str(soa.rname), soa.ttl, QTYPE.get(soa.rtype)) == (zone, 5, "SOA")
        assert str(soa.rdata.mname) == f"ns.dns.{zone}" and str(soa.rdata.rname) == f"hostmaster.{zone}"
        assert soa.rdata.times[1:] == (7200, 1800, 86400, 5)
    reply = answer(ix, DNSRecord.question("cluster.local", "NS"))
    assert [str(r.rdata) for r in reply.rr] == ["ns.dns.cluster.local."]
    assert [(str(r.rname), str(r.rdata)) for r in reply.ar] == [("ns.dns.cluster.local.", "10.96.0.10")]
    assert QTYPE.get(answer(ix, DNSRecord.question("cluster.local", "SOA")).rr[0].rtype) == "SOA"
    assert answer(ix, DNSRecord.question("dns-version.cluster.local", "TXT")).rr[0].ttl == 28800


def test_flags_opcodes_and_responses():
    q = DNSRecord.question("web.shop.svc.cluster.local")
    q.header.ad = 1
    assert answer(INDEX, q).header.ad == 0  # the zone is not signed
    q.header.opcode = 2  # STATUS
    assert answer(INDEX, q).header.rcode == RCODE.NOTIMP
    response = DNSRecord.question("web.shop.svc.cluster.local").reply().pack()
    assert handle(lambda: INDEX, response, Stats(), 512) is None  # never answer an answer


def test_an_externalname_inside_the_zone_is_followed():
    ix = build([svc("web", clusterIP="10.96.0.11"),
                svc("alias", type="ExternalName", externalName="web.shop.svc.cluster.local", ports=[])], {}, [])
    reply = answer(ix, DNSRecord.question("alias.shop.svc.cluster.local", "A"))
    assert [(str(r.rname), QTYPE.get(r.rtype), str(r.rdata)) for r in reply.rr] == [
        ("alias.shop.svc.cluster.local.", "CNAME", "web.shop.svc.cluster.local."),
        ("web.shop.svc.cluster.local.", "A", "10.96.0.11")]
    only = answer(ix, DNSRecord.question("alias.shop.svc.cluster.local", "CNAME"))
    assert len(only.rr) == 1


def test_headless_names_come_from_hostname_and_subdomain_only():
    from gingham.model.services import PodView, derive_endpoints
    db = svc("db", clusterIP="None")
    pods = [PodView("shop", "db-0", {"app": "db"}, "n1", "10.244.1.5", True, hostname="db-0", subdomain="db"),
            PodView("shop", "other", {"app": "db"}, "n1", "10.244.1.6", True, hostname="h", subdomain="elsewhere"),
            PodView("shop", "plain", {"app": "db"}, "n1", "10.244.1.7", True)]
    eps = derive_endpoints([db], pods)["shop/db"]
    assert [e.hostname for e in eps] == ["db-0", "", ""]
    ix = build([db], {"shop/db": eps}, [])
    assert answer(ix, DNSRecord.question("db-0.db.shop.svc.cluster.local")).rr[0].rdata.__str__() == "10.244.1.5"
    for name in ("other.db.shop.svc.cluster.local", "plain.db.shop.svc.cluster.local"):
        assert answer(ix, DNSRecord.question(name)).header.rcode == RCODE.NXDOMAIN
    assert str(answer(ix, DNSRecord.question("10-244-1-7.db.shop.svc.cluster.local")).rr[0].rdata) == "10.244.1.7"
    ptr = answer(ix, DNSRecord.question("6.1.244.10.in-addr.arpa", "PTR"))
    assert [str(r.rdata) for r in ptr.rr] == ["10-244-1-6.db.shop.svc.cluster.local."]


# The cases of CoreDNS's kubernetes plugin tests (plugin/kubernetes/handler_test.go), as facts
# checked on the same shapes of objects: a ClusterIP Service with one named port, a headless
# one whose endpoints have no hostname (dashed names) or share one, and names that always exist.
CORE = build(
    [svc("svc1", clusterIP="10.96.0.1"), svc("hdls1", clusterIP="None"),
     svc("external", type="ExternalName", externalName="ext.interwebs.test", ports=[])],
    {"shop/hdls1": [Endpoint(ip, "n1", f"shop/p{i}", ports=(("http", "TCP", 80),), hostname=h)
                    for i, (ip, h) in enumerate([("172.0.0.2", ""), ("172.0.0.3", ""), ("172.0.0.4", "dup-name"),
                                                 ("172.0.0.5", "dup-name")])]},
    [], dns_ip="10.96.0.10")


def core(name, qtype):
    r = answer(CORE, DNSRecord.question(name, qtype))
    section = lambda rrs: sorted(f"{r.rname} {QTYPE.get(r.rtype)} {r.rdata}" for r in rrs)  # noqa: E731
    return RCODE.get(r.header.rcode), section(r.rr), section(r.ar), [QTYPE.get(x.rtype) for x in r.auth]


def test_coredns_srv_answers_carry_their_targets_addresses():
    f = "svc1.shop.svc.cluster.local."
    assert core(f, "SRV") == ("NOERROR", [f"{f} SRV 0 100 80 {f}"], [f"{f} A 10.96.0.1"], [])
    assert core(f"_http._tcp.{f}", "SRV") == ("NOERROR", [f"_http._tcp.{f} SRV 0 100 80 {f}"],
                                              [f"{f} A 10.96.0.1"], [])
    h = "hdls1.shop.svc.cluster.local."
    rcode, ans, extra, _ = core(f"_http._tcp.{h}", "SRV")
    assert ans == sorted(f"_http._tcp.{h} SRV 0 25 80 {t}.{h}" for t in ("172-0-0-2", "172-0-0-3", "dup-name"))
    assert extra == sorted([f"172-0-0-2.{h} A 172.0.0.2", f"172-0-0-3.{h} A 172.0.0.3",
                            f"dup-name.{h} A 172.0.0.4", f"dup-name.{h} A 172.0.0.5"])


def test_coredns_names_that_exist_and_names_that_do_not():
    for name in ("svc.cluster.local", "pod.cluster.local", "shop.svc.cluster.local"):
        assert core(name, "A") == ("NOERROR", [], [], ["SOA"])
        assert core(name, "NS") == ("NOERROR", [], [], ["SOA"])
    for name in ("foo.cluster.local", "foo.svc.cluster.local", "bogusendpoint.hdls1.shop.svc.cluster.local",
                 "bogusendpoint.svc1.shop.svc.cluster.local"):
        assert core(name, "NS" if "bogus" not in name else "A") == ("NXDOMAIN", [], [], ["SOA"])
    assert core("172-0-0-3.hdls1.shop.svc.cluster.local", "A")[1] == [
        "172-0-0-3.hdls1.shop.svc.cluster.local. A 172.0.0.3"]
    assert core("dup-name.hdls1.shop.svc.cluster.local", "A")[1] == [
        "dup-name.hdls1.shop.svc.cluster.local. A 172.0.0.4", "dup-name.hdls1.shop.svc.cluster.local. A 172.0.0.5"]
    assert core("external.shop.svc.cluster.local", "CNAME")[1] == [
        "external.shop.svc.cluster.local. CNAME ext.interwebs.test."]
    assert core("svc1.shop.svc.cluster.local", "TXT") == ("NOERROR", [], [], ["SOA"])
    assert core("svc1.shop.svc.cluster.local", "SOA") == ("NOERROR", [], [], ["SOA"])
    for name in ("endpoint.external.shop.svc.cluster.local", "sub.sub.external.shop.svc.cluster.local"):
        assert core(name, "CNAME") == ("NXDOMAIN", [], [], ["SOA"])  # not the ExternalName's


def test_before_the_index_is_first_built_answers_are_servfail_and_the_cache_does_not_carry_them_over():
    """As CoreDNS's kubernetes plugin before its first sync: SERVFAIL (a client retries), never
    an NXDOMAIN a client would cache; once built, the same query bytes get the record."""
    from gingham.dns.records import RecordIndex
    from gingham.dns.server import WireCache
    current, stats, cache = [RecordIndex()], Stats(), WireCache()
    query = DNSRecord.question("web.shop.svc.cluster.local", "A")
    for index in (RecordIndex(), INDEX):
        current[0] = index
        out = handle(lambda: current[0], bytes(query.pack()), stats, 512, cache)
        reply = DNSRecord.parse(out)
        assert reply.header.id == query.header.id
        if index is INDEX:
            assert RCODE.get(reply.header.rcode) == "NOERROR" and str(reply.rr[0].rdata) == "10.96.0.11"
        else:
            assert RCODE.get(reply.header.rcode) == "SERVFAIL" and not reply.rr
