"""Lease owners: who holds a run, and whether that holder is provably gone.

An owner is `host/pid/nonce`. A lease normally ends when it expires; but when the holder ran on
this very host and its process no longer exists (a worker killed with SIGKILL), the lease is
dead now, and waiting out its expiry would only delay the run.
"""

from __future__ import annotations

import os
import secrets
import socket

__all__ = ["lease_is_dead", "new_owner"]

_HOST = socket.gethostname()


def new_owner() -> str:
    """A fresh owner name for this process."""
    return f"{_HOST}/{os.getpid()}/{secrets.token_hex(4)}"


def lease_is_dead(owner: str) -> bool:
    """True only when the owner ran on this host and its process is gone."""
    host, _, rest = owner.partition("/")
    pid_text = rest.partition("/")[0]
    if host != _HOST or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    # A killed child that its parent has not reaped yet still answers signal 0.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:  # noqa: PTH123
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return False
