"""A backend's server slots: how endpoints change without a reload.

A backend has a power-of-two number of `server` lines, the unused ones disabled at a
placeholder address. An endpoint keeps the slot it had; a new one takes a free slot; while
the slots suffice, the change is a few runtime API commands (`set server ... addr`, `weight`,
`state`), and the configuration with its slots empty (the skeleton) stays the same. A slot
holds "ip:port" and, for a weighted backend (a Gateway rule's), " weight N".
"""

from __future__ import annotations

PLACEHOLDER = "127.0.0.1:1"  # an unused slot's address (it is disabled)


def slots_for(n: int) -> int:
    """Server slots for n endpoints: room to grow before a reload is needed."""
    size = 4
    while size < n:
        size *= 2
    return size


def _addr(slot: str) -> str:
    return slot.split(" ", 1)[0]


def place(servers: list[str], before: list[str] | None) -> list[str]:
    """The backend's slots: an address keeps the slot it had (its weight may change), new ones
    take free slots, and the slots stay as many as before while they are enough."""
    if before is None or len(servers) > len(before):
        return servers + [""] * (slots_for(len(servers)) - len(servers))
    now = {_addr(s): s for s in servers}
    slots = [now.get(_addr(b), "") if b else "" for b in before]
    taken = {_addr(s) for s in slots if s}
    fresh = iter(s for s in servers if _addr(s) not in taken)
    return [s or next(fresh, "") for s in slots]


def server_lines(slots: list[str], filled: bool) -> list[str]:
    """The `server` lines; not `filled`: the skeleton, every slot empty."""
    return [f"    server s{i} {slot}" if filled and slot else f"    server s{i} {PLACEHOLDER} disabled"
            for i, slot in enumerate(slots, 1)]


def commands(backend: str, was: list[str], now: list[str]) -> list[str]:
    """The runtime API commands that turn one backend's slots into the others."""
    out = []
    for i, (a, b) in enumerate(zip(was, now), 1):
        if a == b:
            continue
        if not b:
            out.append(f"set server {backend}/s{i} state maint")
            continue
        addr, _, weight = b.partition(" weight ")
        if _addr(a) != addr:
            ip, port = addr.rsplit(":", 1)
            out.append(f"set server {backend}/s{i} addr {ip} port {port}")
        if weight and (not a or a.partition(" weight ")[2] != weight):
            out.append(f"set server {backend}/s{i} weight {weight}")
        if not a:
            out.append(f"set server {backend}/s{i} state ready")
    return out
