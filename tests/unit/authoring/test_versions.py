"""The warnings of a submission whose tasks will not run as its file defines them."""

from __future__ import annotations

from skyweave.authoring.versions import routing_warnings
from skyweave.model.specs import TaskKind, TaskSpec

V1 = TaskSpec(name="total", version="1", ref="/work/slow.py:total")
V2 = TaskSpec(name="total", version="2", ref="/work/.skyweave/code/ab12/slow_v2.py:total")
CMD = TaskSpec(name="total", version="7", kind=TaskKind.COMMAND, ref="sum-up {params.values}")


def test_a_known_version_that_is_not_current_names_both_versions_and_how_to_switch() -> None:
    (message,) = routing_warnings({"total": V1}, {"total": V2}, {"total": V2}, pinned=False)
    assert "defines version '1' (Python task /work/slow.py:total)" in message
    assert "this run uses version '2' (Python task /work/.skyweave/code/ab12/slow_v2.py:total)" in message
    assert "`skyweave tasks register /work/slow.py:total`" in message and "pin=True" in message


def test_no_warning_when_the_files_version_runs_or_the_run_is_pinned() -> None:
    assert routing_warnings({"total": V2}, {"total": V2}, {"total": V2}, pinned=False) == []
    assert routing_warnings({"total": V1}, {"total": V2}, {"total": V2}, pinned=True) == []
    assert routing_warnings({"total": V1}, {}, {"total": V1}, pinned=False) == []          # first seen
    assert routing_warnings({"total": V2}, {"total": V1}, {"total": V2}, pinned=False) == []  # new code


def test_a_task_of_another_kind_under_the_same_name_is_named_with_the_one_it_replaces() -> None:
    (message,) = routing_warnings({"total": CMD}, {"total": V2}, {"total": CMD}, pinned=False)
    assert "version '7' of this submission (command task `sum-up {params.values}`)" in message
    assert "replaces version '2' (Python task /work/.skyweave/code/ab12/slow_v2.py:total)" in message
    assert "different names" in message


def test_a_known_command_version_that_is_not_current_says_to_register_it_again() -> None:
    (message,) = routing_warnings({"total": CMD}, {"total": V2}, {"total": V2}, pinned=False)
    assert "command task `sum-up {params.values}`" in message and "register it again" in message
