"""A backend that is fast on purpose, for benches that measure the path to it: HAProxy answering
every HTTP request with a fixed 200 on :8081, run inside a lab pod's network namespace."""

from __future__ import annotations

import os
import signal
import subprocess

CONFIG = """global
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fast
    bind :8081
    http-request return status 200 content-type text/plain string "ok\\n"
"""


def start(netns_path: str, directory: str) -> str:
    """Starts it in the namespace; the pid file to give `stop`."""
    cfg, pid_file = os.path.join(directory, "fast.cfg"), os.path.join(directory, "fast.pid")
    with open(cfg, "w") as f:
        f.write(CONFIG)
    subprocess.run(["nsenter", f"--net={netns_path}", "haproxy", "-D", "-f", cfg, "-p", pid_file], check=True)
    return pid_file


def stop(pid_file: str) -> None:
    try:
        with open(pid_file) as f:
            os.kill(int(f.read().split()[0]), signal.SIGTERM)
    except (OSError, ValueError):
        pass
