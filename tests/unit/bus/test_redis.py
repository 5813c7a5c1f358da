"""The ``redis://`` bus beyond the contract suite: opening, unreachable servers, poison messages,
restarts.  Tests that need a server use the one of ``scripts/services.sh`` (or a private
``redis-server`` they start themselves), each bus under its own key prefix."""

from __future__ import annotations

import logging
import socket
import sys
import uuid
from collections.abc import Iterator

import pytest

from skyweave.bus import CONTROLLER_GROUP, BusError, open_bus
from skyweave.bus.redis import RedisBus
from tests.services import service_url
from tests.unit.bus.test_contract import eventually

LONG = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_bus() -> Iterator[RedisBus]:
    bus = RedisBus(service_url("redis"), prefix=f"test-{uuid.uuid4().hex[:12]}", retry_s=5.0)
    try:
        yield bus
    finally:
        bus.purge()
        bus.close()


def test_open_bus_without_the_redis_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.delitem(sys.modules, "skyweave.bus.redis", raising=False)
    with pytest.raises(BusError, match=r"pip install 'skyweave\[redis\]'") as caught:
        open_bus("redis://127.0.0.1:6379/0")
    assert "needs the redis package" in str(caught.value)


def test_unreachable_server_is_retried_with_logged_backoff_then_a_clear_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://127.0.0.1:{_free_port()}/0?retry_s=0.3"
    with caplog.at_level(logging.WARNING, logger="skyweave.bus.redis"), \
            pytest.raises(BusError, match=r"cannot reach the Redis bus at redis://127\.0\.0\.1") as caught:
        open_bus(url)
    assert "retry_s" in (caught.value.hint or "")
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) >= 2, "each retry is logged"


@pytest.mark.parametrize("query", ["max_deliveries=many", "retry_s=soon"])
def test_bad_url_parameters_are_refused(query: str) -> None:
    with pytest.raises(BusError, match=f"bad {query.partition('=')[0]}"):
        RedisBus(f"redis://127.0.0.1:1/0?{query}")


@pytest.mark.integration
def test_url_parameters_reach_the_bus() -> None:
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    bus = open_bus(f"{service_url('redis')}?prefix={prefix}&max_deliveries=3&retry_s=7")
    try:
        assert isinstance(bus, RedisBus)
        assert (bus.prefix, bus.max_deliveries, bus.retry_s) == (prefix, 3, 7.0)
    finally:
        bus.purge()  # type: ignore[attr-defined]
        bus.close()


@pytest.mark.integration
def test_poison_dispatch_goes_to_the_dead_letters_after_max_deliveries(redis_bus: RedisBus) -> None:
    redis_bus.max_deliveries = 2
    redis_bus.enqueue([("poison", 5, b"crashes every worker")])
    for delivery in (1, 2):  # each 1 ms lease runs out: the next claim gets "poison" again
        [claimed] = eventually(lambda: redis_bus.claim("w", 1, 0.001))
        assert (claimed.id, claimed.deliveries) == ("poison", delivery)
    assert eventually(lambda: redis_bus.claim("w", 5, LONG) == [] and redis_bus.dead_letters())
    [letter] = redis_bus.dead_letters()
    assert letter.data == b"crashes every worker"
    assert "poison was delivered 2 times without being acknowledged" in letter.error
    assert redis_bus.queued() == 0
    redis_bus.enqueue([("poison", 5, b"a fresh dispatch of that id"), ("fine", 0, b"ok")])
    assert [(c.id, c.deliveries) for c in redis_bus.claim("w", 5, LONG)] == [("poison", 1), ("fine", 1)]


@pytest.mark.integration
def test_groups_are_created_again_when_redis_lost_its_data(redis_bus: RedisBus) -> None:
    redis_bus.publish([b"e1", b"e2"])
    redis_bus.commit(CONTROLLER_GROUP, redis_bus.read(CONTROLLER_GROUP, 10)[-1].offset)
    redis_bus.read("listener", 10)
    redis_bus._client.delete(redis_bus._key("events"))  # as after a restart without its append-only file
    redis_bus.publish([b"e3"])
    assert [d.data for d in redis_bus.read("listener", 10)] == [b"e3"]
    groups = {g["name"].decode() for g in redis_bus._client.xinfo_groups(redis_bus._key("events"))}
    assert groups == {CONTROLLER_GROUP, "listener"}
    redis_bus.commit("listener", "99-0")
    assert [d.data for d in redis_bus.read(CONTROLLER_GROUP, 10)] == [b"e3"], "listeners trim nothing unread"
