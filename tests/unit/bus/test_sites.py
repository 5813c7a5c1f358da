"""Site routing, part of the bus contract (``Bus.enqueue(site=)`` / ``Bus.claim(site=)``): a worker
claims only the dispatches of its own site, in the bus's claim order, and every other operation is
the same for all sites.  Runs on every backend of ``conftest.BUS_FACTORIES``."""

from __future__ import annotations

from skyweave.bus import Bus, Claimed

from .conftest import OpenHandle
from .test_contract import LONG, SHORT, eventually


def ids(claimed: list[Claimed]) -> list[str]:
    return [c.id for c in claimed]


def test_a_worker_claims_only_the_dispatches_of_its_site(bus: Bus) -> None:
    bus.enqueue([("any", 9, b"")])
    bus.enqueue([("east-low", 0, b"e0"), ("east-high", 5, b"e5")], site="east")
    bus.enqueue([("west", 7, b"w")], site="west")
    assert ids(bus.claim("w-east", 10, LONG, site="east")) == ["east-high", "east-low"]
    assert ids(bus.claim("w-none", 10, LONG)) == ["any"], "a worker with no site takes only unsited work"
    assert ids(bus.claim("w-west", 10, LONG, site="west")) == ["west"]
    assert bus.claim("w-north", 10, LONG, site="north") == []
    assert bus.queued() == 4


def test_a_lease_that_runs_out_goes_back_to_its_own_site(bus: Bus) -> None:
    bus.enqueue([("e", 0, b"")], site="east")
    bus.enqueue([("sentinel", 0, b"")])
    assert ids(bus.claim("w-east", 1, SHORT, site="east")) == ["e"]
    assert ids(bus.claim("w", 1, SHORT)) == ["sentinel"]
    assert ids(eventually(lambda: bus.claim("w", 1, LONG))) == ["sentinel"], "not handed to another site"
    assert ids(bus.claim("w-east", 1, LONG, site="east")) == ["e"]


def test_hold_release_reprioritize_and_ack_work_on_sited_dispatches(bus: Bus) -> None:
    bus.enqueue([("a", 0, b""), ("b", 0, b""), ("c", 0, b"")], site="east")
    bus.hold(["a"])
    assert bus.reprioritize(["c"], 9) == 1
    assert ids(bus.claim("w", 1, LONG, site="east")) == ["c"]
    assert bus.withdraw(["b"]) == 1
    assert bus.claim("w", 1, LONG, site="east") == [], "held, withdrawn or claimed: nothing left"
    bus.release(["a"])
    assert ids(bus.claim("w", 1, LONG, site="east")) == ["a"]
    bus.ack(["a", "c"])
    assert bus.queued() == 0


def test_sites_are_shared_between_handles(open_handle: OpenHandle) -> None:
    controller, worker = open_handle(), open_handle()
    controller.enqueue([("x", 0, b"x")], site="east")
    assert worker.claim("w", 1, LONG) == []
    [claimed] = worker.claim("w", 1, LONG, site="east")
    assert (claimed.id, claimed.data) == ("x", b"x")
    worker.report([b"done"], ["x"])
    assert controller.claim("w", 1, LONG, site="east") == [], "a done dispatch is never claimed again"
    assert worker.reclaim("w") == []


def test_a_dispatch_withdrawn_from_one_site_can_be_enqueued_for_another(bus: Bus) -> None:
    """What the controller does with work of a site that has no live worker (``Decisions.relocate``)."""
    bus.enqueue([("taken", 3, b"t"), ("moving", 3, b"m")], site="east")
    assert ids(bus.claim("w-east", 1, LONG, site="east")) == ["taken"]
    assert bus.withdraw(["moving"]) == 1
    assert bus.withdraw(["taken"]) == 0, "a dispatch a worker holds is not taken from it"
    bus.enqueue([("moving", 3, b"m")], site="west")
    assert bus.claim("w-east", 5, LONG, site="east") == []
    [claimed] = bus.claim("w-west", 5, LONG, site="west")
    assert (claimed.id, claimed.data, claimed.deliveries) == ("moving", b"m", 1)
