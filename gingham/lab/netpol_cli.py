"""`gingham netpol ...`'s parser; the commands are in netpol_cmds.py, imported only to run one."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("netpol", help="NetworkPolicy: reachability matrix and explanations")
    ps = p.add_subparsers(dest="netpol_cmd", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        src = q.add_mutually_exclusive_group(required=True)
        src.add_argument("--lab", help="a running lab")
        src.add_argument("-f", "--file", action="append", help="cluster YAML, without a lab")
        q.add_argument("--protocol", default="TCP", type=str.upper, choices=["TCP", "UDP", "SCTP"])
        q.add_argument("-o", "--output", choices=["json", "table"], default="table")

    m = ps.add_parser("matrix", help="who can reach whom, computed (and with --probe, probed)")
    common(m)
    m.add_argument("--port", type=int, default=80)
    how = m.add_mutually_exclusive_group()
    how.add_argument("--probe", action="store_true", help="also probe every cell in the running lab")
    how.add_argument("--kernel", action="store_true",
                     help="also trace every cell through the nodes' policy tables, read from their kernels")
    m.set_defaults(fn="cmd_matrix")
    e = ps.add_parser("explain", help="allowed or denied, and which policy and rule decides")
    common(e)
    e.add_argument("source")
    e.add_argument("dest")
    e.add_argument("port", type=int)
    e.set_defaults(fn="cmd_explain")


def run(a: argparse.Namespace) -> int:
    from ..model.errors import BAD_INPUT, ManifestError
    from . import netpol_cmds
    from .cluster import LabError
    try:
        return int(getattr(netpol_cmds, a.fn)(a))
    except ManifestError as e:
        print(f"gingham netpol: invalid manifest: {e}", file=sys.stderr)
        return BAD_INPUT
    except LabError as e:
        print(f"gingham netpol: {e}", file=sys.stderr)
        return e.code
