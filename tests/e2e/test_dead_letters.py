"""``skyweave dead-letters`` shows what the bus put aside, with the reason: a malformed message on
the store's SQLite bus, and on a Redis bus a dispatch delivered ``max_deliveries`` times without
finishing (a poison message); ``skyweave dead-letters redrive ID... | --all`` puts poisoned
dispatches back on the queue."""

from __future__ import annotations

import uuid

import pytest

from skyweave.bus import Bus, open_bus
from skyweave.bus.redis import RedisBus
from skyweave.config.settings import load_settings
from tests.e2e.helpers import CLI, flat, poll
from tests.services import service_url


def test_no_dead_letters_and_a_malformed_message_on_the_store_bus(cli: CLI) -> None:
    assert "no dead letters" in cli("dead-letters").ok().out
    settings = load_settings(store=str(cli.store))
    bus = open_bus(settings.bus_url(shared=True))
    try:
        bus.dead_letter(b'{"v": 1, "body": ', "malformed bus message: truncated JSON")
    finally:
        bus.close()
    [letter] = cli.json("dead-letters")
    assert letter == {"id": letter["id"], "dispatch": None, "error": "malformed bus message: truncated JSON",
                      "data": '{"v": 1, "body": '}
    shown = flat(cli("dead-letters").ok().out)
    assert "1 dead letter(s)" in shown and "truncated JSON" in shown


@pytest.mark.integration
def test_a_poison_dispatch_on_a_redis_bus_is_listed_after_max_deliveries(cli: CLI) -> None:
    url = f"{service_url('redis')}?prefix=test-{uuid.uuid4().hex[:12]}&max_deliveries=2"
    bus = RedisBus(url)
    try:
        bus.enqueue([("act-1:1", 0, b"kills its worker")])
        for _ in range(2):  # two workers take it and die: each 1 ms lease runs out
            poll(lambda: bus.claim("doomed", 1, 0.001), deadline=10, what="a redelivery", interval=0.005)
        poll(lambda: bus.claim("next", 1, 60.0) == [] and bus.dead_letters(), deadline=10,
             what="the dead letter", interval=0.005)
        [letter] = cli.json("dead-letters", "--bus", url)
        assert letter["data"] == "kills its worker"
        assert "act-1:1 was delivered 2 times without being acknowledged" in letter["error"]
        assert cli.json("dead-letters", "redrive", "--all", "--bus", url) == {
            "redriven": [{"id": letter["id"], "dispatch": "act-1:1"}], "enqueued": 1}
        assert cli.json("dead-letters", "--bus", url) == []
        [claimed] = bus.claim("fixed", 1, 60.0)
        assert (claimed.id, claimed.deliveries, claimed.data) == ("act-1:1", 1, b"kills its worker")
    finally:
        bus.purge()
        bus.close()


def _poison_on(bus: Bus, message_id: str) -> None:
    """Enqueue a dispatch that every worker taking it dies with, until the bus puts it aside."""
    bus.max_deliveries = 2
    bus.enqueue([(message_id, 3, b"kills its worker")])
    for _ in range(2):  # two workers take it and die: each 1 ms lease runs out
        poll(lambda: bus.claim("doomed", 1, 0.001), deadline=10, what="a redelivery", interval=0.005)
    poll(lambda: bus.claim("next", 1, 60.0) == [] and bus.dead_letters(), deadline=10,
         what="the dead letter", interval=0.005)


def test_a_poison_dispatch_is_redriven_by_id_on_the_store_bus(cli: CLI) -> None:
    settings = load_settings(store=str(cli.store))
    bus = open_bus(settings.bus_url(shared=True))
    try:
        _poison_on(bus, "act-7:1")
        bus.dead_letter(b"{not json", "malformed bus message: bad JSON")
        poisoned, malformed = cli.json("dead-letters")
        assert (poisoned["dispatch"], malformed["dispatch"]) == ("act-7:1", None)

        refused = cli("dead-letters", "redrive", "nope", poisoned["id"])
        assert refused.code == 3
        assert "no dead letter 'nope' on this bus; nothing was re-driven" in flat(refused.err + refused.out)
        assert cli("dead-letters", "redrive").code == 2  # neither ids nor --all

        out = flat(cli("dead-letters", "redrive", poisoned["id"]).ok().out)
        assert "re-drove 1 dispatch(es)" in out
        [claimed] = bus.claim("fixed", 1, 60.0)
        assert (claimed.id, claimed.deliveries) == ("act-7:1", 1)
        # the malformed message stays aside: --all re-drives only poisoned dispatches
        assert "no poisoned dispatches to re-drive" in flat(cli("dead-letters", "redrive", "--all").ok().out)
        assert cli.json("dead-letters") == [malformed]
    finally:
        bus.close()
