"""NetworkPolicy's part of the agent: this node's policy table, written whole once, then by differences.

The compile is pure and incremental (netpol/compile.py's NetpolCompiler: only the local
pods a change concerns are compiled again), from the World of netpol/world.py; each
change is one nft transaction, so the kernel never holds half a policy.
"""

from __future__ import annotations

from ..kernel import nft
from ..netpol.compile import TABLE, NetpolCompiler
from ..netpol.evaluate import World
from ..services import ruleset


class NetpolController:
    def __init__(self, node: str) -> None:
        self.node = node
        self.applied: ruleset.Ruleset | None = None  # what the kernel holds
        self.table = False
        self.compiler = NetpolCompiler(node)  # recompiles only the pods a change concerns

    def sync(self, world: World) -> None:
        if not world.policies:
            if self.table:
                nft.run(f"add table inet {TABLE}\ndelete table inet {TABLE}\n")
                self.table, self.applied = False, None
            return
        rs = self.compiler.compile(world)
        script = ruleset.full(rs) if self.applied is None else ruleset.diff(self.applied, rs)
        if script.strip():
            try:
                nft.run(script)
            except nft.NftError:
                self.applied = None  # written whole next time
                raise
        self.applied, self.table = rs, True
