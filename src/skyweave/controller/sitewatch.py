"""Work placed at a site with no live worker (docs/operations.md, "Several sites").

Each dispatch placed at a site is watched until it starts.  A site is *down* once no worker of it
has been heard from for ``Sites.grace_s`` (counted from the moment its last worker was judged
silent — ``worker_timeout_s`` after its last heartbeat — or, for a site never heard from since this
controller started, from when work was first placed there).  Then:

* unpinned work placed there goes to the site with live workers holding most of its input bytes
  (``placement.fallback``): when dispatched, it is enqueued there at once; already on the bus, it
  is taken back and enqueued there (``Decisions.relocate``: the shell moves only what no worker has
  claimed meanwhile).  The worker there brings its inputs over and records the transfers as for
  any run away from its data.  The activity gets a ``site-moved`` detour saying from where, to
  where and why;
* after a restart, dispatches still on the bus are watched again (``adopt``), from the new
  controller's clock;
* work pinned to the site — or unpinned work when no other site has a live worker — waits, and
  says so: a ``site-wait`` detour (``skyweave status`` shows it as the activity's waiting reason,
  closed when the activity starts) and a warning in the controller's log, once per site.

The answers use the controller's clock (``now``) and what it has heard (``Liveness``), so they are
as pure as the rest of the core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from skyweave.controller.decisions import Decisions, Timer
from skyweave.controller.liveness import Liveness
from skyweave.controller.placement import Sites, fallback, place
from skyweave.model.messages import ProductRef
from skyweave.model.records import ActivityRecord, Detour
from skyweave.model.states import ActivityState as A

SITES = "sites"
"""The kind of the timer that looks at work waiting for a site."""
WAIT = "site-wait"
MOVED = "site-moved"
"""Kinds of the detours recorded on an activity that waits for a site or was moved away from one."""


class Host(Protocol):
    now: float
    out: Decisions
    activities: dict[str, ActivityRecord]
    sites: Sites
    live: Liveness

    def touch(self, rec: ActivityRecord) -> None: ...


@dataclass(slots=True)
class Placed:
    """A dispatch placed at a site, not started yet."""

    attempt: int
    site: str
    pinned: bool
    message: tuple[str, int, bytes]
    """``(message id, priority, data)`` as enqueued (to enqueue it elsewhere)."""
    inputs: list[ProductRef]
    waiting: bool = False
    """A ``site-wait`` detour is open for this attempt."""


class SiteWatch:
    def __init__(self, ctrl: Host) -> None:
        self.ctrl = ctrl
        self.placed: dict[str, Placed] = {}
        """Activity id -> its dispatch placed at a site, until it starts."""
        self._noticed: dict[str, float] = {}
        """Site -> when work was placed there while it had no live worker (never heard from)."""
        self._told: set[tuple[str, str]] = set()
        """(site, detour kind) said in the log (said again once a worker of the site was alive)."""
        self._due: float | None = None
        self._live: tuple[float, int, set[str]] = (-1.0, -1, set())

    # -- placing -------------------------------------------------------------------------------
    def place(self, rec: ActivityRecord, pinned: str, refs: list[ProductRef],
              message: tuple[str, int, bytes]) -> str:
        """The site a dispatch is enqueued for (``""``: the workers with no site)."""
        sites = self.ctrl.sites
        site = place(pinned, refs, sites)
        if not site:
            return site
        if len(self.placed) > 1024 and len(self.placed) > 4 * len(self.ctrl.activities):
            self._prune()
        entry = self.placed[rec.id] = Placed(attempt=rec.attempt, site=site, pinned=bool(pinned),
                                              message=message, inputs=refs)
        self._review(rec, entry)
        return entry.site

    def adopt(self, rec: ActivityRecord, pinned: str, refs: list[ProductRef],
              message: tuple[str, int, bytes]) -> None:
        """A dispatch found on the bus after a restart (placed by an earlier controller): watched
        from now on as if placed now, and moved (``relocate``) if its site is down and it may go."""
        site = place(pinned, refs, self.ctrl.sites)
        if not site:
            return
        entry = self.placed[rec.id] = Placed(attempt=rec.attempt, site=site, pinned=bool(pinned),
                                              message=message, inputs=refs)
        self._review(rec, entry)
        if entry.site != site:
            self.ctrl.out.relocate.append((message[0], rec.priority, message[2], entry.site))

    def started(self, rec: ActivityRecord) -> None:
        """The activity started: it waits no more."""
        entry = self.placed.pop(rec.id, None)
        if entry is not None and entry.waiting:
            self._close_wait(rec)

    def site_gone(self, site: str) -> None:
        """The last live worker of ``site`` may have gone: look at its waiting work soon."""
        if any(entry.site == site for entry in self.placed.values()):
            self._arm(self.ctrl.now)

    def site_worker(self, site: str) -> None:
        """A worker of ``site`` is heard from for the first time: work waiting for a site with live
        workers may go there now."""
        if site and any(entry.waiting and not entry.pinned for entry in self.placed.values()):
            self._arm(self.ctrl.now)

    # -- the timer -----------------------------------------------------------------------------
    def check(self) -> None:
        self._due = None
        for aid, entry in list(self.placed.items()):
            rec = self.ctrl.activities.get(aid)
            if rec is None or rec.attempt != entry.attempt or rec.state != A.DISPATCHED:
                del self.placed[aid]
                continue
            before = entry.site
            self._review(rec, entry)
            if entry.site != before:
                mid, _, data = entry.message
                self.ctrl.out.relocate.append((mid, rec.priority, data, entry.site))

    # -- the rules -----------------------------------------------------------------------------
    def _live_sites(self) -> set[str]:
        at, heard, live = self._live
        if (at, heard) != (self.ctrl.now, self.ctrl.live.heard_count):
            live = self.ctrl.live.live_sites()
            self._live = (self.ctrl.now, self.ctrl.live.heard_count, live)
            self._told = {told for told in self._told if told[0] not in live}
        return live

    def down_since(self, site: str) -> float | None:
        """Since when ``site`` has had no live worker (``None``: it has one)."""
        if site in self._live_sites():
            self._noticed.pop(site, None)
            return None
        heard = self.ctrl.live.last_heard.get(site)
        if heard is not None:
            return heard + self.ctrl.live.timeout_s
        return self._noticed.setdefault(site, self.ctrl.now)

    def _review(self, rec: ActivityRecord, entry: Placed) -> None:
        since = self.down_since(entry.site)
        if since is None:
            return
        ctrl, grace = self.ctrl, self.ctrl.sites.grace_s
        if ctrl.now < since + grace:
            self._arm(since + grace)
            return
        silent = ctrl.now - since
        other = "" if entry.pinned else fallback(entry.inputs, ctrl.sites, self._live_sites(), entry.site)
        if other:
            if entry.waiting:
                self._close_wait(rec)
                entry.waiting = False
            reason = (f"site {entry.site} has had no live worker for {silent:.0f} s (site_grace_s "
                      f"{grace:g}): moved to site {other}, which has live workers; its inputs are "
                      "brought there")
            rec.detours.append(Detour(kind=MOVED, product_type="", param=other, reason=reason, at=ctrl.now,
                                      ended_at=ctrl.now))
            ctrl.touch(rec)
            self._tell(entry.site, MOVED, f"site {entry.site} has had no live worker for {silent:.0f} s: its "
                                          f"unpinned work goes to other sites (first: {rec.id} to {other})")
            entry.site = other
            return
        if not entry.pinned:  # no other site to go to: look again later
            self._arm(ctrl.now + max(grace, 1.0))
        if entry.waiting:
            return
        why = (f"its task is pinned to site {entry.site}" if entry.pinned else
               "no other site has a live worker")
        reason = (f"waits for a worker of site {entry.site}: none has been alive for {silent:.0f} s and "
                  f"{why}; start one (`skyweave worker --site {entry.site}`)")
        rec.detours.append(Detour(kind=WAIT, product_type="", param=entry.site, reason=reason, at=ctrl.now))
        entry.waiting = True
        ctrl.touch(rec)
        self._tell(entry.site, WAIT, f"work waits for a worker of site {entry.site} (none alive for "
                                     f"{silent:.0f} s): {rec.id} ({why}); start one with "
                                     f"`skyweave worker --site {entry.site}`")

    def _close_wait(self, rec: ActivityRecord) -> None:
        for detour in reversed(rec.detours):
            if detour.kind == WAIT and detour.ended_at is None:
                detour.ended_at = self.ctrl.now
                self.ctrl.touch(rec)
                return

    def _tell(self, site: str, kind: str, notice: str) -> None:
        if (site, kind) not in self._told:
            self._told.add((site, kind))
            self.ctrl.out.notices.append(notice)

    def _arm(self, at: float) -> None:
        if self._due is None or at < self._due:
            self._due = at
            self.ctrl.out.timers.append(Timer(at=at, kind=SITES, activity_id=""))

    def _prune(self) -> None:
        for aid, entry in list(self.placed.items()):
            rec = self.ctrl.activities.get(aid)
            if rec is None or rec.attempt != entry.attempt or rec.state != A.DISPATCHED:
                del self.placed[aid]
