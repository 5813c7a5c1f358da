"""``skyweave dead-letters`` shows what the bus put aside, with the reason: a malformed message on
the store's SQLite bus, and on a Redis bus a dispatch delivered ``max_deliveries`` times without
finishing (a poison message)."""

from __future__ import annotations

import uuid

import pytest

from skyweave.bus import open_bus
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
    assert cli.json("dead-letters") == [{"error": "malformed bus message: truncated JSON",
                                         "data": '{"v": 1, "body": '}]
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
    finally:
        bus.purge()
        bus.close()
