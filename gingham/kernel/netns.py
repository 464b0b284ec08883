"""Network namespaces: enter one on the current thread, create and remove named ones.

setns(2) changes only the calling thread, so `entered()` is safe in a threaded agent
as long as the body does not hand work to other threads; sockets opened inside stay
bound to the namespace after the thread leaves it.
"""

from __future__ import annotations

import ctypes
import errno
import os
from contextlib import contextmanager

TYPE_CHECKING = False  # typing is not imported at run time: a CNI plugin process pays for every import
if TYPE_CHECKING:
    from typing import Iterator

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsNotFound(Exception):
    pass


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def open_ns(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise NetnsNotFound(f"network namespace {path} does not exist") from e


def join(path: str) -> None:
    """Moves this thread into the namespace at `path` for good (a forked child that lives there)."""
    fd = open_ns(path)
    try:
        _setns(fd)
    finally:
        os.close(fd)


@contextmanager
def entered(path: str) -> Iterator[None]:
    """Runs the body with this thread inside the namespace at `path`."""
    target = open_ns(path)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            _setns(target)
        except OSError as e:
            if e.errno == errno.EINVAL:
                raise NetnsNotFound(f"{path} is not a network namespace") from e
            raise
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


def exists(path: str) -> bool:
    try:
        os.close(open_ns(path))
        return True
    except NetnsNotFound:
        return False


def path_of(name: str) -> str:
    return name if name.startswith("/") else os.path.join(NETNS_RUN_DIR, name)


def add(name: str) -> str:
    """Creates a named namespace (iproute2's layout, so `ip netns` sees it)."""
    import subprocess  # not at import: CNI plugins enter namespaces, they never make them
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    return path_of(name)


def delete(name: str) -> None:
    """Removes a named namespace; absent is fine."""
    import subprocess
    r = subprocess.run(["ip", "netns", "delete", name], capture_output=True, text=True)
    if r.returncode != 0 and os.path.exists(path_of(name)):
        raise RuntimeError(f"ip netns delete {name}: {r.stderr.strip()}")


def pids_in(path: str) -> list[int]:
    """The processes whose network namespace is the one at `path` (read from /proc, as `ip netns
    pids` does it, without a process to run and parse)."""
    try:
        want = os.stat(path)
    except OSError:
        return []
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:  # gone, or a kernel thread
            continue
        if (st.st_dev, st.st_ino) == (want.st_dev, want.st_ino):
            out.append(int(entry))
    return out
