"""host-local's on-disk store, byte-compatible with the reference plugin.

`<dataDir>/<network>/<ip>` holds "<containerID>\\r\\n<ifname>" (legacy files hold only
the container id), `last_reserved_ip.<rangeset index>` the last address handed out,
and `lock` is flock'd around every change, so gingham and the reference can share a
directory and a node can switch between them without losing allocations.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os


TYPE_CHECKING = False  # typing is not imported at run time: a CNI plugin process pays for every import
if TYPE_CHECKING:
    from typing import Iterator

    from .ranges import IPAddress

LOCK = "lock"
LAST_RESERVED = "last_reserved_ip."


class DiskStore:
    def __init__(self, data_dir: str, network: str) -> None:
        self.dir = os.path.join(data_dir, network)
        self._lock_fd: int | None = None

    # -- locking ---------------------------------------------------------------
    def __enter__(self) -> "DiskStore":
        os.makedirs(self.dir, mode=0o755, exist_ok=True)
        self._lock_fd = os.open(os.path.join(self.dir, LOCK), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- reservations ----------------------------------------------------------
    def _path(self, ip: IPAddress) -> str:
        return os.path.join(self.dir, str(ip))

    def reserve(self, cid: str, ifname: str, ip: IPAddress, rangeset_idx: int) -> bool:
        try:
            fd = os.open(self._path(ip), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        try:
            os.write(fd, f"{cid}\r\n{ifname}".encode())
        finally:
            os.close(fd)
        self._write_last(rangeset_idx, ip)
        return True

    def _write_last(self, idx: int, ip: IPAddress) -> None:
        tmp = os.path.join(self.dir, f".{LAST_RESERVED}{idx}.tmp")
        with open(tmp, "w") as f:
            f.write(str(ip))
        os.replace(tmp, os.path.join(self.dir, f"{LAST_RESERVED}{idx}"))

    def last_reserved(self, idx: int) -> IPAddress | None:
        try:
            with open(os.path.join(self.dir, f"{LAST_RESERVED}{idx}")) as f:
                return ipaddress.ip_address(f.read().strip())
        except (OSError, ValueError):
            return None

    def entries(self) -> Iterator[tuple[IPAddress, str, str | None]]:
        """(ip, container id, ifname or None for legacy files) for every reservation."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return
        for name in names:
            if name == LOCK or name.startswith(LAST_RESERVED) or name.startswith("."):
                continue
            try:
                ip = ipaddress.ip_address(name.replace("_", ":"))
                with open(os.path.join(self.dir, name), "rb") as f:
                    raw = f.read().decode(errors="replace")
            except (ValueError, OSError):
                continue
            cid, _, ifname = raw.strip().partition("\r\n")
            yield ip, cid.strip(), (ifname.strip() or None)

    def owned_by(self, cid: str, ifname: str) -> list[IPAddress]:
        return [ip for ip, c, i in self.entries() if c == cid and i in (ifname, None)]

    def release(self, ip: IPAddress) -> None:
        try:
            os.unlink(self._path(ip))
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise

    def release_by_id(self, cid: str, ifname: str) -> list[IPAddress]:
        ips = self.owned_by(cid, ifname)
        for ip in ips:
            self.release(ip)
        return ips
