"""The cluster DNS server: `answer()` is a pure function of the index and the query; the
asyncio protocols only frame bytes (UDP with truncation at 512 bytes or the EDNS size,
TCP with the 2-byte length), and any failure becomes SERVFAIL, never a dead server.

As CoreDNS's kubernetes plugin answers (RFC 1035, 2308): a negative answer in the zone
(NXDOMAIN, or NOERROR with no record of the type asked) carries the zone's SOA in the
authority section; the apex answers SOA and NS; AD is never set (the zone is not signed);
a packet that is itself a response gets no answer; an opcode other than QUERY gets
NOTIMP; an ExternalName whose target is in the zone is answered with the CNAME and the
target's records.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections import Counter
from typing import Callable

from dnslib import CNAME, NS, OPCODE, PTR, QTYPE, RCODE, RR, SOA, SRV, TXT, A, AAAA, DNSError, DNSRecord

from .records import TTL, VERSION_TTL, RecordIndex

_RDATA = {"A": A, "AAAA": AAAA, "CNAME": CNAME, "PTR": PTR, "TXT": TXT, "NS": NS}
CHASE = 8  # CNAMEs followed inside the zone, at most


def _rr(index: RecordIndex, name: str, rtype: str, data: str) -> RR:
    ttl = VERSION_TTL if rtype == "TXT" and name.lower().startswith("dns-version.") else TTL
    if rtype == "SRV":
        prio, weight, port, target = data.split()
        rdata: object = SRV(int(prio), int(weight), int(port), target)
    elif rtype == "SOA":
        return _soa(index, index.zone_of(name))
    else:
        rdata = _RDATA[rtype](data)
    return RR(name, getattr(QTYPE, rtype), rdata=rdata, ttl=ttl)


def _soa(index: RecordIndex, zone: str) -> RR:
    mname, rname, *times = index.soa(zone).split()
    return RR(zone, QTYPE.SOA, rdata=SOA(mname, rname, tuple(int(t) for t in times)), ttl=min(TTL, 300))


def answer(index: RecordIndex, query: DNSRecord) -> DNSRecord:
    reply = query.reply()
    reply.header.ra = 1
    reply.header.ad = 0  # the zone is not signed: never "authenticated data"
    if query.header.opcode != OPCODE.QUERY:
        reply.header.rcode = RCODE.NOTIMP
        return reply
    if not query.questions:
        reply.header.rcode = RCODE.FORMERR
        return reply
    q = query.questions[0]
    name, rtype = str(q.qname), QTYPE.get(q.qtype, str(q.qtype))
    zone = index.zone_of(name)
    if not zone or not index.synced:  # outside the zone with no upstream: fail fast, never leave the lab
        reply.header.rcode = RCODE.SERVFAIL
        return reply
    rcode, recs = index.lookup(name, rtype)
    reply.header.aa = 1
    reply.header.rcode = getattr(RCODE, rcode)
    owner = name
    for _ in range(CHASE):
        for rt, data in recs:
            reply.add_answer(_rr(index, owner, rt, data))
        cname = next((d for rt, d in recs if rt == "CNAME"), "")
        if not cname or rtype == "CNAME" or not index.in_zone(cname):
            break
        owner = cname  # an ExternalName pointing inside the zone: its target's records follow
        _, recs = index.lookup(owner, rtype)
    if rtype in ("NS", "SRV"):  # the targets' addresses in the additional section, as CoreDNS gives them
        targets = dict.fromkeys(str(rr.rdata.target if rtype == "SRV" else rr.rdata) for rr in reply.rr)
        for target in targets:
            for kind in ("A", "AAAA"):
                reply.add_ar(*(_rr(index, target, rt, d) for rt, d in index.lookup(target, kind)[1] if rt == kind))
    if not reply.rr:  # NXDOMAIN or NODATA: the SOA says how long a resolver may remember it
        reply.add_auth(_soa(index, zone))
    return reply


BUCKETS = (0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024)


class Stats:
    """Counters in the shape of CoreDNS's: requests by type and rcode, cache hits, a latency histogram.

    Kept by hand rather than with prometheus-client (which the agent's metrics use): on the
    per-query path a labelled counter and a histogram cost 3.7 us there and 1 us here."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()  # (type, rcode)
        self.cache_hits = 0
        self.forwarded = 0
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.latency_sum = 0.0
        self.lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        i = 0
        while i < len(BUCKETS) and seconds > BUCKETS[i]:
            i += 1
        self.buckets[i] += 1
        self.latency_sum += seconds

    def hit(self) -> None:
        self.cache_hits += 1  # one writer thread (the server loop); a lost update only undercounts

    def count(self, rtype: str, rcode: str) -> None:
        with self.lock:
            self.requests[(rtype, rcode)] += 1

    def prometheus(self) -> str:
        lines = ["# TYPE gingham_dns_requests_total counter"]
        with self.lock:
            for (t, r), n in sorted(self.requests.items()):
                lines.append(f'gingham_dns_requests_total{{type="{t}",rcode="{r}"}} {n}')
        lines += ["# TYPE gingham_dns_cache_hits_total counter", f"gingham_dns_cache_hits_total {self.cache_hits}",
                  "# TYPE gingham_dns_forward_requests_total counter",
                  f"gingham_dns_forward_requests_total {self.forwarded}",
                  "# TYPE gingham_dns_request_duration_seconds histogram"]
        acc = 0
        for le, n in zip([*(str(b) for b in BUCKETS), "+Inf"], self.buckets):
            acc += n
            lines.append(f'gingham_dns_request_duration_seconds_bucket{{le="{le}"}} {acc}')
        lines += [f"gingham_dns_request_duration_seconds_sum {self.latency_sum:.6f}",
                  f"gingham_dns_request_duration_seconds_count {acc}"]
        return "\n".join(lines) + "\n"


class WireCache:
    """Encoded answers by query bytes (all but the 2-byte id), valid for one generation of one index.

    Answers are a pure function of the index and the query, so a repeated query skips
    parsing and encoding altogether: the cached reply gets the new id and goes out.
    """

    LIMIT = 200_000

    def __init__(self) -> None:
        self.index: RecordIndex | None = None
        self.generation = -1
        self.answers: dict[tuple[bool, bytes], bytes] = {}
        self.hits = 0

    def get(self, index: RecordIndex, udp: bool, data: bytes) -> bytes | None:
        if index is not self.index or index.generation != self.generation:
            self.index, self.generation, self.answers = index, index.generation, {}
            return None
        out = self.answers.get((udp, data[2:]))
        if out is not None:
            self.hits += 1
            return data[:2] + out[2:]
        return None

    def put(self, index: RecordIndex, generation: int, udp: bool, data: bytes, out: bytes) -> None:
        """Keeps `out`, computed at `generation`, if the index has not moved on since."""
        if index is self.index and generation == self.generation == index.generation:
            if len(self.answers) >= self.LIMIT:
                self.answers.clear()
            self.answers[(udp, data[2:])] = out


def handle(get_index: Callable[[], RecordIndex], data: bytes, stats: Stats, max_udp: int | None,
           cache: WireCache | None = None) -> bytes | None:
    t = time.perf_counter()
    index = get_index()
    generation = index.generation  # read before answering: an answer is kept only for the generation it saw
    if cache is not None and len(data) >= 12:
        hit = cache.get(index, max_udp is not None, data)
        if hit is not None:
            stats.hit()
            stats.observe(time.perf_counter() - t)
            return hit
    out, cacheable = _handle(index, data, stats, max_udp)
    if cache is not None and out is not None and cacheable:
        cache.put(index, generation, max_udp is not None, data, out)
    stats.observe(time.perf_counter() - t)
    return out


class Forwarder:
    """Names outside the cluster domain go to the upstream servers; answers are cached for their TTL."""

    MAX_TTL = 30

    def __init__(self) -> None:
        self.cache: dict[tuple[str, int], tuple[float, DNSRecord]] = {}
        self.lock = threading.Lock()

    def resolve(self, query: DNSRecord, upstreams: tuple[str, ...], stats: Stats) -> DNSRecord:
        q = query.questions[0]
        key = (str(q.qname).lower(), q.qtype)
        with self.lock:
            hit = self.cache.get(key)
        if hit and hit[0] > time.monotonic():
            stats.hit()
            reply = DNSRecord.parse(hit[1].pack())
            reply.header.id = query.header.id
            return reply
        for up in upstreams:
            try:
                stats.forwarded += 1
                raw = query.send(up, 53, timeout=2)
                reply = DNSRecord.parse(raw)
            except (OSError, DNSError, struct.error):
                continue
            ttl = min([rr.ttl for rr in reply.rr] or [self.MAX_TTL])
            with self.lock:
                if len(self.cache) > 10000:
                    self.cache.clear()
                self.cache[key] = (time.monotonic() + min(ttl, self.MAX_TTL), reply)
            return reply
        reply = query.reply()
        reply.header.rcode = RCODE.SERVFAIL
        return reply


FORWARDER = Forwarder()


def _handle(index: RecordIndex, data: bytes, stats: Stats, max_udp: int | None) -> tuple[bytes | None, bool]:
    """(answer, whether it is a pure function of the index and the query bytes)."""
    if len(data) >= 3 and data[2] & 0x80:  # a response (QR set): answering it could loop two servers
        return None, False
    try:
        query = DNSRecord.parse(data)
    except (DNSError, struct.error, IndexError, ValueError, UnicodeDecodeError):
        if len(data) >= 12:  # a header we can echo back: FORMERR, as RFC 1035 asks
            hdr = bytearray(data[:12])
            hdr[2] = (hdr[2] | 0x80) & 0xF9
            hdr[3] = (hdr[3] & 0xF0) | RCODE.FORMERR
            return bytes(hdr[:4]) + b"\x00" * 8, False
        return None, False
    forwarded = bool(index.upstreams and query.questions and not index.in_zone(str(query.questions[0].qname)))
    try:
        if forwarded:
            reply = FORWARDER.resolve(query, index.upstreams, stats)
        else:
            reply = answer(index, query)
    except Exception:
        reply = query.reply()
        reply.header.rcode = RCODE.SERVFAIL
    qt = QTYPE.get(query.questions[0].qtype, "?") if query.questions else "?"
    stats.count(str(qt), RCODE.get(reply.header.rcode, "?"))
    out = reply.pack()
    if max_udp is not None:
        limit = max(512, min(max_udp, 4096))
        for rr in query.ar:
            if rr.rtype == QTYPE.OPT:
                limit = max(512, min(rr.rclass, 4096))
        if len(out) > limit:
            reply.rr = []
            reply.header.tc = 1
            out = reply.pack()
    return out, not forwarded


class DNSServer:
    """Serves UDP and TCP on `host:port` from a thread of its own."""

    def __init__(self, get_index: Callable[[], RecordIndex], host: str = "0.0.0.0", port: int = 53) -> None:
        self.get_index, self.host, self.port = get_index, host, port
        self.stats = Stats()
        self.cache = WireCache()
        self.pool = ThreadPoolExecutor(8, thread_name_prefix="dns-fwd")
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readexactly(2)
                data = await reader.readexactly(struct.unpack("!H", head)[0])
                out = await self.loop.run_in_executor(self.pool, handle, self.get_index, data, self.stats, None,
                                                      self.cache)
                if out is None:
                    break
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def start(self) -> None:
        # UDP is a plain blocking loop on its own thread: per datagram it costs a third of
        # asyncio's protocol machinery, and a cache hit is then a dict lookup and a sendto.
        self.udp = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.udp.bind((self.host, self.port))
        threading.Thread(target=self._udp_loop, daemon=True, name="dns-udp").start()
        threading.Thread(target=self._run, daemon=True, name="dns-tcp").start()
        self.ready.wait(5)

    def _udp_loop(self) -> None:
        sock, get_index = self.udp, self.get_index
        while True:
            try:
                data, addr = sock.recvfrom(4096)
            except OSError:
                return  # closed by stop()
            if get_index().upstreams:  # a forward may wait on an upstream: never in this loop
                self.pool.submit(self._answer_udp, data, addr)
            else:
                self._answer_udp(data, addr)

    def _answer_udp(self, data: bytes, addr: tuple[str, int]) -> None:
        out = handle(self.get_index, data, self.stats, 512, self.cache)
        if out is not None:
            try:
                self.udp.sendto(out, addr)
            except OSError:
                pass

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(asyncio.start_server(self._tcp, self.host, self.port))
        self.ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        self.udp.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
