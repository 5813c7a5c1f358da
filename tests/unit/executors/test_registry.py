"""Executors are chosen by name or URL scheme through a registry; the worker's hooks are methods of
the ports (``Bus.on_enqueue``, ``Executor.wake``), not attributes probed for."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from skyweave.bus import MemoryBus, SQLiteBus
from skyweave.config.settings import Settings
from skyweave.engine import make_executor
from skyweave.errors import SkyweaveError
from skyweave.executors import EXECUTORS, executor_key, open_executor, register_executor
from skyweave.executors.base import Capabilities, ExecutionEnv, Executor, Outcome
from skyweave.executors.local import LocalExecutor
from skyweave.executors.per_process import SubprocessExecutor
from skyweave.executors.threads import ThreadExecutor
from skyweave.executors.worker import WorkerService
from skyweave.model.messages import DispatchActivity


class _Remote(Executor):
    """What a later executor looks like to the registry: built from its URL."""

    name = "remote"
    capabilities = Capabilities(stops_running_work=True, enforces_memory=False)

    def __init__(self, setting: str, slots: int) -> None:
        self.setting, self._slots = setting, slots

    @property
    def slots(self) -> int:
        return self._slots

    @property
    def active(self) -> int:
        return 0

    def start(self) -> None: ...
    def submit(self, batch: Sequence[DispatchActivity]) -> None: ...
    def collect(self, timeout: float) -> list[Outcome]:
        return []
    def cancel(self, activity_ids: Sequence[str]) -> None: ...
    def close(self) -> None: ...


def test_the_settings_name_the_executor_by_name(env: ExecutionEnv) -> None:
    assert isinstance(make_executor(Settings(executor="threads", workers=3), env), ThreadExecutor)
    local = make_executor(Settings(executor="local", workers=2), env)
    assert isinstance(local, LocalExecutor) and local.slots == 2
    local.close()
    assert isinstance(make_executor(Settings(executor="subprocess", workers=2), env), SubprocessExecutor)


def test_a_new_executor_joins_by_url_scheme_and_gets_its_whole_setting(
        env: ExecutionEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(EXECUTORS, "remote", lambda setting, _env, slots: _Remote(setting, slots))
    made = make_executor(Settings(executor="Remote://scheduler:8786", workers=5), env)
    assert isinstance(made, _Remote)
    assert (made.setting, made.slots) == ("Remote://scheduler:8786", 5)
    assert executor_key("dask://h:1") == "dask" and executor_key(" Local ") == "local"


def test_register_executor_adds_to_the_registry(env: ExecutionEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(EXECUTORS, "other", EXECUTORS["threads"])  # restored after the test
    register_executor("Other", lambda setting, _env, slots: _Remote(setting, slots))
    assert isinstance(open_executor("other", env, slots=1), _Remote)


def test_an_unknown_executor_is_refused_naming_the_known_ones(env: ExecutionEnv) -> None:
    with pytest.raises(SkyweaveError) as caught:
        open_executor("condor", env, slots=1)
    assert "unknown executor 'condor'" in str(caught.value)
    assert "local" in (caught.value.hint or "") and "slurm" in (caught.value.hint or "")


def test_a_bus_that_cannot_tell_of_enqueues_says_so(tmp_path: Path) -> None:
    bus = SQLiteBus(tmp_path / "bus.db")
    try:
        assert bus.on_enqueue(lambda: None) is None
    finally:
        bus.close()


def test_the_worker_hooks_the_executor_wake_onto_the_bus(env: ExecutionEnv) -> None:
    woken: list[int] = []

    class Wakeable(_Remote):
        def wake(self) -> None:
            woken.append(1)

    bus = MemoryBus()
    worker = WorkerService(bus, Wakeable("wakeable", 1))
    worker.start()
    worker._armed = True  # waiting in collect with a slot free
    bus.enqueue([("d1", 0, b"x")])
    worker._armed = False  # busy: no wake needed
    bus.enqueue([("d2", 0, b"x")])
    worker.close()
    bus.enqueue([("d3", 0, b"x")])  # unhooked at close
    assert woken == [1]
    # an executor that cannot be woken keeps the default, which does nothing
    _Remote("plain", 1).wake()
