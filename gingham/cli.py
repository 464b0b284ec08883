"""The `gingham` command; every subcommand is a thin call into the packages."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from typing import Any, Callable, NoReturn

from .model.errors import BAD_INPUT, FAILED


def _cni(args: argparse.Namespace) -> int:
    from .cni import runtime
    from .cni.spec import CNIError
    net = runtime.Network.load(args.conflist)
    rt = runtime.Runtime(args.cni_path, args.cache_dir)
    try:
        cap = json.loads(args.cap_args) if args.cap_args else {}
    except ValueError as e:
        raise CNIError(7, f"--cap-args is not valid JSON: {e}") from None
    if not isinstance(cap, dict):
        raise CNIError(7, "--cap-args must be a JSON object")
    if args.verb in ("add", "del", "check"):
        if not args.netns and args.verb != "del":
            raise CNIError(4, f"cni {args.verb} needs NETNS")
        att = runtime.Attachment(args.container_id or _default_cid(args.netns), args.netns or "",
                                 args.ifname, runtime.parse_args(args.args), cap)
        if args.verb == "add":
            print(json.dumps(rt.add(net, att), indent=2))
        elif args.verb == "del":
            rt.delete(net, att)
        else:
            rt.check(net, att)
    elif args.verb == "status":
        rt.status(net)
    elif args.verb == "gc":
        valid = [tuple(v.split("/", 1)) if "/" in v else (v, args.ifname) for v in args.valid]
        for r in rt.gc(net, valid):
            print(f"removed {r}")
    return 0


def _default_cid(netns: str) -> str:
    """cnitool's default container id: derived from the netns path."""
    import hashlib
    return "cnitool-" + hashlib.sha512(netns.encode()).hexdigest()[:20]


def _install_cni(args: argparse.Namespace) -> int:
    from .cni import install
    for p in install.install(args.bin_dir):
        print(p)
    return 0


def _agent(args: argparse.Namespace) -> int:
    if args.etcd:
        if not args.node:
            print("gingham agent: --etcd needs --node NAME (the node this agent runs)", file=sys.stderr)
            return 2
        from .agent.node import NodeAgent
        from .lab.supervisor import ZygoteWorkloads
        state_dir = args.state_dir or os.path.join("/var/lib/gingham/node", args.node)
        os.makedirs(state_dir, exist_ok=True)
        NodeAgent(args.etcd, args.node, state_dir, ZygoteWorkloads(state_dir), args.netns_prefix).run()
        return 0
    from .agent import cni_server
    cni_server.warm_up()
    srv = cni_server.CNIServer(args.cni_socket)
    srv.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"gingham agent: CNI socket {args.cni_socket}", file=sys.stderr, flush=True)
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write(str(os.getpid()))
    stop.wait()
    srv.stop()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from . import demo
    return demo.run()


def _cni_parser(sub: Any) -> None:
    c = sub.add_parser("cni", help="run a conflist like kubelet/containerd/cnitool do")
    c.add_argument("verb", choices=["add", "del", "check", "status", "gc"])
    c.add_argument("conflist")
    c.add_argument("netns", nargs="?", default="")
    c.add_argument("--ifname", default="eth0")
    c.add_argument("--container-id", default="")
    c.add_argument("--args", default="", help="CNI_ARGS, K=V;K=V")
    c.add_argument("--cap-args", default="", help="capability args as JSON, e.g. {\"portMappings\": [...]}")
    c.add_argument("--cni-path", default=os.environ.get("CNI_PATH", "/opt/cni/bin"))
    c.add_argument("--cache-dir", default="/var/lib/cni")
    c.add_argument("--valid", action="append", default=[], help="gc: CONTAINERID[/IFNAME] to keep")
    c.set_defaults(fn=_cni)


def _install_cni_parser(sub: Any) -> None:
    i = sub.add_parser("install-cni", help="put the gingham CNI plugins into a CNI bin dir")
    i.add_argument("--bin-dir", default="/opt/cni/bin")
    i.set_defaults(fn=_install_cni)


def _agent_parser(sub: Any) -> None:
    a = sub.add_parser("agent", help="the node agent (serves the CNI plugins over a unix socket)")
    a.add_argument("--cni-socket", default="/run/gingham/cni.sock")
    a.add_argument("--ready-file", default="")
    a.add_argument("--etcd", default="", help="etcd client URLs (comma-separated): run as a cluster node's agent")
    a.add_argument("--node", default="", help="this node's name, as registered in the datastore")
    a.add_argument("--state-dir", default="", help="this node's own files (default /var/lib/gingham/node/NAME)")
    a.add_argument("--netns-prefix", default="gingham-pod-", help="pod network namespaces are PREFIX<ns>.<pod>")
    a.set_defaults(fn=_agent)


def _lab_parser(sub: Any) -> None:
    from .lab import cli as lab_cli
    lab_cli.add_parser(sub)


def _netpol_parser(sub: Any) -> None:
    from .lab import netpol_cli
    netpol_cli.add_parser(sub)


def _demo_parser(sub: Any) -> None:
    sub.add_parser("demo", help="two pods on a bridge, made with the gingham plugins, talking").set_defaults(fn=_demo)


def _completion(args: argparse.Namespace) -> int:
    from .completion import bash
    from .lab.cluster import LAB_ROOT
    print(bash(build_parser(), LAB_ROOT), end="")
    return 0


def _completion_parser(sub: Any) -> None:
    c = sub.add_parser("completion", help="a shell completion script: source <(gingham completion bash)")
    c.add_argument("shell", choices=["bash"])
    c.set_defaults(fn=_completion)


COMMANDS: dict[str, Callable[[Any], None]] = {
    "cni": _cni_parser, "install-cni": _install_cni_parser, "agent": _agent_parser, "lab": _lab_parser,
    "netpol": _netpol_parser, "demo": _demo_parser, "completion": _completion_parser}


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, naming the command and where its help is (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(BAD_INPUT, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser(only: str = "") -> argparse.ArgumentParser:
    """The command line; with `only` (a command's name), that command's subtree alone: building
    all eighteen parsers took a tenth of every command's start."""
    from . import __version__
    p = _Parser(prog="gingham", description="Kubernetes pod networking on the real kernel",
                                epilog="Exit codes: 0 done, 1 failed, 2 bad input (usage, manifest, name), "
                                       "3 not found (lab, pod, node). --debug (anywhere) shows tracebacks.")
    p.add_argument("--version", action="version", version=f"gingham {__version__}")
    p.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, add in COMMANDS.items():
        if not only or only == name:
            add(sub)
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line. Everything after the first `--` is a command to run (`lab exec
    TARGET --name LAB -- CMD`), split off before parsing so that options may come anywhere
    before it, as kubectl allows; so may `--debug`."""
    after: list[str] | None = None
    if "--" in argv:
        i = argv.index("--")
        argv, after = argv[:i], argv[i + 1:]
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else "")
    args, extra = parser.parse_known_args(argv)
    # argparse gives an optional positional (lab get routes [TARGET]) its place at the first
    # positional and none after an option: one left over, not an option, is that one
    if extra and getattr(args, "target", "") is None and len(extra) == 1 and not extra[0].startswith("-"):
        args.target, extra = extra[0], []
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.debug = debug or bool(os.environ.get("GINGHAM_DEBUG"))
    if after is not None:
        if not hasattr(args, "command"):
            parser.error("'--' and a command after it are for `gingham lab exec` only")
        args.command = [*args.command, *after]
    return args


def _run(args: argparse.Namespace) -> int:
    if args.cmd == "lab":
        from .lab import cli as lab_cli
        return lab_cli.run(args)
    if args.cmd == "netpol":
        from .lab import netpol_cli
        return netpol_cli.run(args)
    from .cni.spec import CNIError
    try:
        return int(args.fn(args))
    except CNIError as e:
        print(json.dumps(e.to_dict()), file=sys.stdout)
        print(f"gingham: error {e.code}: {e}", file=sys.stderr)
        return FAILED


def main(argv: list[str] | None = None) -> None:
    """Every error is one line on stderr and an exit code (model/errors.py); `--debug` (or
    GINGHAM_DEBUG=1) shows the traceback of one that was not expected."""
    args = parse(sys.argv[1:] if argv is None else list(argv))
    try:
        rc = _run(args)
    except KeyboardInterrupt:
        rc = 130
    except OSError as e:  # a file or directory the command was pointed at, or the system refused
        if args.debug:
            raise
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"gingham {args.cmd}: {where}{e.strerror or e}", file=sys.stderr)
        rc = FAILED
    except Exception as e:
        if args.debug:
            raise
        print(f"gingham {args.cmd}: unexpected {type(e).__name__}: {e} (run again with --debug for the traceback, "
              "and please report it)", file=sys.stderr)
        rc = FAILED
    sys.exit(rc)


if __name__ == "__main__":
    main()
