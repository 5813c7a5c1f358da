"""Waiting out a store server that is unreachable, instead of failing the operation at once.

A server store (PostgreSQL) raises ``StoreUnavailableError`` when its server is down, restarting
or drops a connection mid-statement; what was being written did not commit (or, if the reply to
the commit was lost, did: every write of a store is an upsert or an insert-if-new, and the lease a
renewal by the same owner, so doing it again changes nothing).  ``retry_unavailable`` makes every
public ``Store`` method of a class try again with exponential backoff (50 ms doubling to 2 s),
logging a warning each time, for up to the instance's ``retry_s`` seconds; then the error is raised
with its hint.  So a controller, a standby or a CLI command rides out a server restart, and says so
in its log, and a server that never comes back is still a clear error.

Only the outermost call retries (a method calling another one does not multiply the waits).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from skyweave.errors import StoreUnavailableError
from skyweave.store.base import Store

log = logging.getLogger(__name__)

DEFAULT_RETRY_S = 60.0
_FIRST_BACKOFF = 0.05
_LAST_BACKOFF = 2.0

S = TypeVar("S", bound=type[Store])


class _Depth(threading.local):
    inside = False


_depth = _Depth()


def retried(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` of an object with a ``retry_s`` attribute, retried while the store is unavailable."""

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _depth.inside:
            return method(self, *args, **kwargs)
        _depth.inside = True
        try:
            give_up = time.monotonic() + self.retry_s
            pause = _FIRST_BACKOFF
            while True:
                try:
                    return method(self, *args, **kwargs)
                except StoreUnavailableError as exc:
                    left = give_up - time.monotonic()
                    if left <= 0:
                        raise
                    pause = min(pause, left)
                    log.warning("%s (in %s); retrying in %.2f s (for %.0f s more)", exc.message,
                                method.__name__, pause, left)
                    time.sleep(pause)
                    pause = min(2 * pause, _LAST_BACKOFF)
        finally:
            _depth.inside = False
    return call


def retry_unavailable(cls: S) -> S:
    """Wrap every public method of the ``Store`` interface that ``cls`` has (not ``close``) in
    ``retried``; the instances need a ``retry_s`` attribute."""
    for name in dir(Store):
        if name.startswith("_") or name == "close" or not callable(getattr(Store, name)):
            continue
        setattr(cls, name, retried(getattr(cls, name)))
    return cls
