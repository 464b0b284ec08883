"""The node's BGP speaker: BIRD 2 in the node's namespace, configured by the agent.

With overlay bgp the agent writes `bird.conf` (gingham/bgp/bird.py) into its state
directory, has BIRD check it (`bird -p`) and starts BIRD with its own control socket
(`bird.ctl` there) or has the running one reread it (`birdc configure`, which keeps every
session whose settings did not change). A configuration BIRD refuses changes nothing: it is
kept as `bird.conf.refused` for a person to read. BIRD runs in a session of its own and
outlives the agent; the next agent finds it by its pid file and takes it over, so an agent
restart withdraws no route. A watchdog thread starts it again if it dies (with graceful
restart its peers keep its routes meanwhile).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from .procs import pid_file

BIRD, BIRDC = "bird", "birdc"


class BgpSpeaker:
    WATCH = 1.0  # seconds between checks that BIRD runs

    def __init__(self, node: str, state_dir: str) -> None:
        self.node, self.dir = node, state_dir
        self.current: str | None = None
        self.reloads = self.restarts = 0
        self.lock = threading.Lock()  # sync and the watchdog
        self.stopping = threading.Event()
        self.watchdog: threading.Thread | None = None

    def stop(self) -> None:
        """Stops watching; BIRD itself keeps running (the next agent takes it over)."""
        self.stopping.set()

    def _watch(self) -> None:
        while not self.stopping.wait(self.WATCH):
            with self.lock:
                if self.current is not None and self.pid() is None:
                    print(f"agent {self.node}: bgp: BIRD is gone; starting it again", file=sys.stderr, flush=True)
                    try:
                        self._start()
                        self.restarts += 1
                    except RuntimeError as e:
                        print(f"agent {self.node}: {e}", file=sys.stderr, flush=True)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def pid(self) -> int | None:
        return pid_file(self.path("bird.pid"), "bird")

    def sync(self, text: str) -> None:
        """BIRD running with exactly `text` as its configuration."""
        with self.lock:
            self._sync(text)
        if self.watchdog is None:
            self.watchdog = threading.Thread(target=self._watch, name="bgp-watchdog", daemon=True)
            self.watchdog.start()

    def _sync(self, text: str) -> None:
        if text == self.current and self.pid() is not None:
            return
        staged = self.path("bird.conf.new")
        with open(staged, "w") as f:
            f.write(text)
        check = subprocess.run([BIRD, "-p", "-c", staged], capture_output=True, text=True)
        if check.returncode != 0:
            os.replace(staged, self.path("bird.conf.refused"))
            raise RuntimeError(f"bgp: bird -p refused the configuration (see bird.conf.refused): "
                               f"{(check.stderr or check.stdout).strip()[-500:]}")
        os.replace(staged, self.path("bird.conf"))
        if self.pid() is None:
            self._start()
        else:
            self.birdc("configure")
            self.reloads += 1
        self.current = text

    def birdc(self, *command: str) -> str:
        """One command over the control socket; its output (OSError when BIRD does not answer)."""
        r = subprocess.run([BIRDC, "-s", self.path("bird.ctl"), *command], capture_output=True, text=True, timeout=10)
        if r.returncode != 0 or "Reconfiguration rejected" in r.stdout:
            raise OSError(f"birdc {' '.join(command)}: {(r.stderr or r.stdout).strip()}")
        return r.stdout

    def _start(self) -> None:
        log = open(self.path("bird.log"), "ab")
        subprocess.Popen([BIRD, "-f", "-c", self.path("bird.conf"), "-s", self.path("bird.ctl"),
                          "-P", self.path("bird.pid")],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 5
        while not (self.pid() is not None and os.path.exists(self.path("bird.ctl"))):
            if time.monotonic() > deadline:
                raise RuntimeError(f"bgp: bird did not start; see {self.path('bird.log')}")
            time.sleep(0.02)
        print(f"agent {self.node}: bgp: BIRD started (pid {self.pid()})", file=sys.stderr, flush=True)
