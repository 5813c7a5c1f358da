"""The controller lease: one active controller per store.

A controller takes the store's lease row before it starts and renews it while it runs; a lease
left by a ``kill -9``-ed process of this host is taken over at once (its pid is gone), any other
when it expires.  Every changeset the controller applies names the lease's owner, and the store
checks the lease inside that transaction, so a deposed controller writes nothing
(``LeaseLostError``).  ``ControllerService.stand_by`` waits on it as a standby.
"""

from __future__ import annotations

import os
import socket
import time

from skyweave.model.ids import new_id
from skyweave.store.base import Store, check_fence


def owner_name() -> str:
    """``controller-<host>-<pid>-<tag>``: who holds a lease, and whether that process still lives."""
    return f"controller-{socket.gethostname()}-{os.getpid()}-{new_id('c')[-6:]}"


class Lease:
    def __init__(self, store: Store, owner: str, ttl_s: float, renew_s: float) -> None:
        self.store = store
        self.owner = owner
        self.ttl_s = ttl_s
        self.renew_s = renew_s
        self._renewed = 0.0

    def take(self) -> tuple[str, float] | None:
        """Take the lease if it is free, expired, or left by a dead process of this host; ``None``
        when taken, else ``(holder, expires_at)`` of the live controller holding it."""
        now = time.time()
        if self.store.acquire_controller_lease(self.owner, self.ttl_s, now):
            self._renewed = now
            return None
        holder = self.store.controller_lease_holder()
        if holder is not None and dead_local(holder[0]) and self.store.acquire_controller_lease(
                self.owner, self.ttl_s, holder[1]):
            self._renewed = now
            return None
        return holder or ("?", now)

    def renew(self, now: float) -> None:
        """Renew the lease if due; ``LeaseLostError`` if another controller took it over."""
        if now - self._renewed >= self.renew_s:
            if not self.store.acquire_controller_lease(self.owner, self.ttl_s, now):
                check_fence(self.owner, self.store.controller_lease_holder(), now)  # raises
            self._renewed = now

    def release(self) -> None:
        self.store.release_controller_lease(self.owner)


def dead_local(owner: str) -> bool:
    """A lease held by a process of this host that no longer exists (killed with -9)."""
    parts = owner.split("-")
    if len(parts) < 4 or parts[0] != "controller":
        return False
    host, pid_text = "-".join(parts[1:-2]), parts[-2]
    if host != socket.gethostname() or not pid_text.isdigit():
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
    return False
