"""Aspects: the chain's order and pattern selection, failures in hooks, loading by reference,
and the built-ins as units (the boundary tests cover them end to end)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, ClassVar

import pytest

from skyweave.aspects import (
    Aspect,
    AspectChain,
    AspectOutcome,
    InputValidationAspect,
    InvalidInput,
    LogCaptureAspect,
    TimingAspect,
    load_aspect,
)
from skyweave.authoring.external import Folder, from_product
from skyweave.errors import DefinitionError, Fatal
from skyweave.executors.base import ExecutionEnv
from skyweave.executors.boundary import execute
from skyweave.model.context import ActivityContext
from skyweave.model.messages import ActivityFailed, ActivityFinished, DispatchActivity
from skyweave.model.product import Product
from skyweave.model.signals import MissingInput
from skyweave.model.specs import TaskSpec
from skyweave.storage import inplace
from skyweave.storage import local as storage_module
from skyweave.storage.local import LocalStorage, checksum_file

CALLS: list[str] = []
NESTED = ["before:first", "before:second", "before:third", "after:third", "after:second", "after:first"]


class Recorder(Aspect):
    """Records its hook calls in ``CALLS``; the name comes from the subclass."""

    seen: ClassVar[list[AspectOutcome]] = []

    def before(self, ctx: ActivityContext) -> None:
        CALLS.append(f"before:{self.name}")

    def after(self, ctx: ActivityContext, outcome: AspectOutcome) -> None:
        CALLS.append(f"after:{self.name}")
        Recorder.seen.append(outcome)


class First(Recorder):
    name = "first"


class Second(Recorder):
    name = "second"


class Third(Recorder):
    name = "third"


class RefusesInBefore(Aspect):
    name = "refuser"

    def before(self, ctx: ActivityContext) -> None:
        raise Fatal("calibration database is read-only")


class BreaksInBefore(Aspect):
    name = "flaky-stager"

    def before(self, ctx: ActivityContext) -> None:
        raise ConnectionError("object store unreachable")


class BreaksInAfter(Aspect):
    name = "recorder-that-breaks"

    def after(self, ctx: ActivityContext, outcome: AspectOutcome) -> None:
        raise RuntimeError("provenance sink full")


class AsksForInput(Aspect):
    name = "stager"

    def before(self, ctx: ActivityContext) -> None:
        raise MissingInput("orbit", "ep.aux.orbit", reason="not staged")


class CountsProducts(Aspect):
    name = "counter"

    def after(self, ctx: ActivityContext, outcome: AspectOutcome) -> None:
        outcome.usage["products_seen"] = len(outcome.products)


def noop_task() -> int:
    return 7


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()
    Recorder.seen.clear()


def ctx_for(task_name: str, tmp_path: Path, **extra: Any) -> ActivityContext:
    return ActivityContext(
        activity_id="act-1",
        run_id="run-1",
        attempt=1,
        task=TaskSpec(name=task_name, version="1"),
        workdir=tmp_path,
        log=logging.getLogger(f"skyweave.activity.{task_name}"),
        extra=dict(extra),
    )


def ref(cls: type, query: str = "") -> str:
    return f"{__name__}:{cls.__qualname__}{query}"


def dispatch(task_name: str = "l2_calibrate") -> DispatchActivity:
    task = TaskSpec(name=task_name, version="1", ref=f"{__name__}:noop_task")
    return DispatchActivity(activity_id="act-1", attempt=1, run_id="run-1", task=task, arguments={})


def env_with(tmp_path: Path, *refs: str, builtin: bool = False) -> ExecutionEnv:
    return ExecutionEnv(worker="w", storage_root=tmp_path / "s", work_root=tmp_path / "w",
                        log_root=tmp_path / "l", aspects=refs, builtin_aspects=builtin)


# --------------------------------------------------------------------------------------------- chain


def test_before_in_order_after_in_reverse(tmp_path: Path) -> None:
    chain = AspectChain([First(), Second(), Third()])
    ctx = ctx_for("l1_decode", tmp_path)
    entered = chain.before(ctx)
    chain.after(ctx, entered, AspectOutcome(ok=True, result=1))
    assert CALLS == NESTED


def test_pattern_selects_the_tasks_an_aspect_wraps(tmp_path: Path) -> None:
    only_l2 = Second()
    only_l2.pattern = "l2_*"
    chain = AspectChain([First(), only_l2])
    assert [a.name for a in chain.for_task("l2_calibrate")] == ["first", "second"]
    assert [a.name for a in chain.for_task("l1_decode")] == ["first"]


def test_through_the_boundary_with_references_and_a_pattern(tmp_path: Path) -> None:
    env = env_with(tmp_path, ref(First), ref(Second, "?pattern=l2_*"), ref(Third))
    outcome = execute(dispatch("l2_calibrate"), env)
    assert isinstance(outcome, ActivityFinished)
    assert outcome.aspects == ["first", "second", "third"]
    assert CALLS == NESTED
    assert Recorder.seen[0].ok
    assert Recorder.seen[0].result == 7

    CALLS.clear()
    outcome = execute(dispatch("l1_decode"), env)
    assert isinstance(outcome, ActivityFinished)
    assert outcome.aspects == ["first", "third"]
    assert CALLS == ["before:first", "before:third", "after:third", "after:first"]


def test_a_refusal_in_before_names_the_aspect_and_unwinds(tmp_path: Path) -> None:
    outcome = execute(dispatch(), env_with(tmp_path, ref(First), ref(RefusesInBefore), ref(Third)))
    assert isinstance(outcome, ActivityFailed)
    assert "aspect 'refuser' failed in before: calibration database is read-only" in outcome.message
    assert outcome.retryable is False  # Fatal says so
    assert outcome.error_type == "skyweave.errors.Fatal"
    assert CALLS == ["before:first", "after:first"]  # third never entered, first unwound
    assert not Recorder.seen[0].ok
    assert outcome.aspects == ["first", "refuser"]


def test_an_unexpected_error_in_before_is_retryable(tmp_path: Path) -> None:
    outcome = execute(dispatch(), env_with(tmp_path, ref(BreaksInBefore)))
    assert isinstance(outcome, ActivityFailed)
    assert outcome.retryable is True
    assert outcome.error_type == "ConnectionError"
    assert "aspect 'flaky-stager'" in outcome.message
    assert "object store unreachable" in outcome.traceback


def test_an_error_in_after_fails_the_activity_and_later_hooks_still_run(tmp_path: Path) -> None:
    outcome = execute(dispatch(), env_with(tmp_path, ref(First), ref(BreaksInAfter)))
    assert isinstance(outcome, ActivityFailed)
    assert "aspect 'recorder-that-breaks' failed in after: provenance sink full" in outcome.message
    assert CALLS == ["before:first", "after:first"]
    assert not Recorder.seen[0].ok


def test_missing_input_from_an_aspect_is_a_need_not_a_failure(tmp_path: Path) -> None:
    chain = AspectChain([First(), AsksForInput()])
    with pytest.raises(MissingInput):
        chain.before(ctx_for("x", tmp_path))
    assert CALLS == ["before:first", "after:first"]


def test_aspects_may_fill_usage(tmp_path: Path) -> None:
    chain = AspectChain([CountsProducts()])
    ctx = ctx_for("x", tmp_path)
    outcome = AspectOutcome(ok=True)
    chain.after(ctx, chain.before(ctx), outcome)
    assert outcome.usage == {"products_seen": 0}


# --------------------------------------------------------------------------------------------- loading


def test_load_aspect_with_options() -> None:
    aspect = load_aspect(ref(First, "?pattern=l2_*&name=renamed"))
    assert isinstance(aspect, First)
    assert aspect.pattern == "l2_*"
    assert aspect.name == "renamed"
    assert First.pattern == "*"  # the class is untouched


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("no_colon_here", "is not of the form"),
        ("skyweave_no_such_module:Thing", "cannot load aspect"),
        (f"{__name__}:Missing", "cannot load aspect"),
        (f"{__name__}:noop_task", "not an Aspect"),
        (f"{__name__}:First?colour=red", "unknown option(s) colour"),
    ],
)
def test_load_aspect_errors_say_what_to_fix(reference: str, message: str) -> None:
    with pytest.raises(DefinitionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_aspect(reference)


# --------------------------------------------------------------------------------------------- built-ins


A_PRODUCT = object()


@pytest.mark.parametrize(
    ("type_name", "value", "ok"),
    [
        ("int", 3, True), ("int", True, False), ("int", 3.0, False), ("float", 3, True),
        ("float", 2.5, True), ("str", "a", True), ("str", 1, False), ("bool", False, True),
        ("bool", 0, False), ("list", [1], True), ("list", (1,), True), ("dict", {}, True),
        ("dict", [], False), ("Product", A_PRODUCT, True), ("Product", "/x", False),
        ("any", object(), True),
    ],
)
def test_parameter_types(tmp_path: Path, type_name: str, value: Any, ok: bool) -> None:
    if value is A_PRODUCT:
        (tmp_path / "x.fits").write_text("x")
        value = Product(tmp_path / "x.fits")
    ctx = ctx_for("t", tmp_path, arguments={"p": value})
    ctx.task = TaskSpec(name="t", version="1", parameters={"p": type_name})
    aspect = InputValidationAspect()
    if ok:
        aspect.before(ctx)
    else:
        with pytest.raises(InvalidInput, match=f"parameter 'p' of task 't' expects {type_name}, got "):
            aspect.before(ctx)


def test_none_is_accepted_when_it_is_the_default(tmp_path: Path) -> None:
    ctx = ctx_for("t", tmp_path, arguments={"p": None})
    ctx.task = TaskSpec(name="t", version="1", parameters={"p": "int"}, defaults={"p": None})
    InputValidationAspect().before(ctx)


def test_input_product_checks(tmp_path: Path) -> None:
    data = tmp_path / "events.fits"
    data.write_bytes(b"x" * 3_000_000)  # several checksum blocks
    good = Product(data, id="prd-1", checksum=checksum_file(data))
    InputValidationAspect().before(ctx_for("t", tmp_path, arguments={"ev": [good]}))

    stale = Product(data, id="prd-1", checksum="sha256:" + "0" * 64)
    with pytest.raises(InvalidInput, match="does not match its recorded checksum"):
        InputValidationAspect().before(ctx_for("t", tmp_path, arguments={"ev": {"k": stale}}))
    InputValidationAspect(validate_checksums=False).before(ctx_for("t", tmp_path, arguments={"ev": stale}))

    gone = Product(tmp_path / "gone.fits", id="prd-2")
    with pytest.raises(InvalidInput, match=r"input product prd-2 \(parameter 'ev'\) is missing"):
        InputValidationAspect().before(ctx_for("t", tmp_path, arguments={"ev": gone}))


def test_data_named_in_place_that_changed_after_submission_is_refused(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.txt").write_text("1")
    registered = inplace.record(Folder(raw).spec())
    given = from_product(Product(raw, id=registered.id, uri=registered.uri, checksum=registered.checksum,
                                 attributes=registered.attributes))
    assert isinstance(given, Folder)
    InputValidationAspect().before(ctx_for("t", tmp_path, arguments={"raw": given}))
    (raw / "b.txt").write_text("2")  # a file arrives between submission and execution
    with pytest.raises(InvalidInput, match=r"parameter 'raw'\).*files were added") as caught:
        InputValidationAspect().before(ctx_for("t", tmp_path, arguments={"raw": given}))
    assert "submit the run again" in (caught.value.hint or "")


def test_an_input_this_process_stored_or_checked_is_not_read_again_until_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "part.npz"
    source.write_bytes(b"p" * 2_000_000)
    stored = LocalStorage(tmp_path / "store").store_file(source, "run-1", "act-1")
    path = LocalStorage.local_path(stored.uri)
    reads: list[Path] = []
    real = storage_module.checksum_file
    monkeypatch.setattr(storage_module, "checksum_file", lambda p: reads.append(Path(p)) or real(p))
    part = Product(path, id="prd-1", checksum=stored.checksum)
    for _ in range(3):
        InputValidationAspect().before(ctx_for("t", tmp_path, arguments={"vis": part}))
    assert reads == []  # hashed once, as it was stored
    with path.open("r+b") as handle:  # changed in place, same size
        handle.write(b"q")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1))
    with pytest.raises(InvalidInput, match="does not match its recorded checksum"):
        InputValidationAspect().before(ctx_for("t", tmp_path, arguments={"vis": part}))
    assert reads == [path]


def test_timing_measures_cpu(tmp_path: Path) -> None:
    aspect = TimingAspect()
    ctx = ctx_for("t", tmp_path)
    aspect.before(ctx)
    total = sum(i * i for i in range(300_000))
    outcome = AspectOutcome(ok=True, result=total)
    aspect.after(ctx, outcome)
    assert outcome.usage["wall_s"] > 0
    assert outcome.usage["cpu_user_s"] + outcome.usage["cpu_system_s"] > 0
    assert outcome.usage["max_rss_kb"] > 0


def test_log_capture_without_output_makes_no_file(tmp_path: Path) -> None:
    for capture_fds in (True, False):
        aspect = LogCaptureAspect(tmp_path / "logs", capture_fds=capture_fds)
        ctx = ctx_for("t", tmp_path)
        aspect.before(ctx)
        outcome = AspectOutcome(ok=True)
        aspect.after(ctx, outcome)
        assert outcome.log_uri == ""
        assert not (tmp_path / "logs" / "act-1.1.log").exists()


def test_log_capture_keeps_activities_apart(tmp_path: Path) -> None:
    aspect = LogCaptureAspect(tmp_path / "logs", capture_fds=False)
    one = ctx_for("t", tmp_path)
    aspect.before(one)
    one.log.info("first activity")
    aspect.after(one, AspectOutcome(ok=True))
    two = ctx_for("t", tmp_path)
    two.attempt = 2
    aspect.before(two)
    two.log.warning("second attempt")
    aspect.after(two, AspectOutcome(ok=True))
    assert "first activity" in (tmp_path / "logs" / "act-1.1.log").read_text()
    second = (tmp_path / "logs" / "act-1.2.log").read_text()
    assert "WARNING skyweave.activity.t: second attempt" in second
    assert "first activity" not in second
