"""kernel/netns.pids_in lists the processes of a network namespace from /proc."""

from __future__ import annotations

import os
import subprocess
import sys

from gingham.kernel import netns


def test_processes_of_our_own_namespace_and_of_none() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        pids = netns.pids_in("/proc/self/ns/net")
        assert os.getpid() in pids and child.pid in pids
    finally:
        child.kill()
        child.wait()
    assert netns.pids_in("/nonexistent") == []
