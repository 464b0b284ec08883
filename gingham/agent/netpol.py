"""NetworkPolicy's part of the agent: this node's policy table, written whole once, then by differences.

The compile is pure and incremental (netpol/compile.py's NetpolCompiler: only the local
pods a change concerns are compiled again), from the World of netpol/world.py; each
change is one nft transaction, so the kernel never holds half a policy.
"""

from __future__ import annotations

from ..kernel import nft
from ..netpol.compile import TABLE, NetpolCompiler
from ..netpol.evaluate import World
from ..kernel.nftables import Ruleset, Transaction, diff, full


class NetpolController:
    def __init__(self, node: str) -> None:
        self.node = node
        self.applied: Ruleset | None = None  # what the kernel holds
        self.table = False
        self.compiler = NetpolCompiler(node)  # recompiles only the pods a change concerns

    def sync(self, world: World) -> None:
        if not world.policies:
            if self.table:
                nft.run(Transaction("inet", TABLE).add_table().delete_table())
                self.table, self.applied = False, None
            return
        rs = self.compiler.compile(world)
        tx = full(rs) if self.applied is None else diff(self.applied, rs)
        if tx:
            try:
                nft.run(tx)
            except nft.NftError:
                self.applied = None  # written whole next time
                raise
        self.applied, self.table = rs, True
