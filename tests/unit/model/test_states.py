"""The state tables are the law: terminal sets come from them, and the controller changes a state
only through the transition functions, which refuse what the tables do not allow."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from skyweave.errors import InvalidTransitionError
from skyweave.model.states import (
    ACTIVITY_TERMINAL,
    ACTIVITY_TRANSITIONS,
    RUN_TERMINAL,
    RUN_TRANSITIONS,
    ActivityState,
    RunState,
    activity_transition,
    run_transition,
)

CONTROLLER = Path(__file__).resolve().parents[3] / "src" / "skyweave" / "controller"


def test_every_state_has_a_row_and_terminal_means_no_way_on() -> None:
    assert set(ACTIVITY_TRANSITIONS) == set(ActivityState)
    assert set(RUN_TRANSITIONS) == set(RunState)
    assert {"succeeded", "failed", "skipped", "cancelled"} == ACTIVITY_TERMINAL
    assert {"succeeded", "failed", "cancelled"} == RUN_TERMINAL


def test_transitions_outside_the_tables_are_refused() -> None:
    assert activity_transition("queued", ActivityState.DISPATCHED) == "dispatched"
    with pytest.raises(InvalidTransitionError, match="from succeeded to queued"):
        activity_transition("succeeded", ActivityState.QUEUED, retry=True)
    with pytest.raises(InvalidTransitionError, match="from failed to queued"):
        activity_transition("failed", ActivityState.QUEUED)
    assert activity_transition("failed", ActivityState.QUEUED, retry=True) == "queued"
    with pytest.raises(InvalidTransitionError, match="from retry_wait to running"):
        activity_transition("retry_wait", ActivityState.RUNNING)
    with pytest.raises(InvalidTransitionError, match="run cannot go from cancelled to running"):
        run_transition("cancelled", RunState.RUNNING)
    assert run_transition("cancelled", RunState.RUNNING, retry=True) == "running"


def test_the_controller_changes_states_only_through_the_transition_functions() -> None:
    bypass = []
    for path in sorted(CONTROLLER.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Assign):
                continue
            for target in node.targets:
                if (isinstance(target, ast.Attribute) and target.attr == "state"
                        and not (isinstance(target.value, ast.Name) and target.value.id == "inst")):
                    call = node.value
                    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                            and call.func.id in ("activity_transition", "run_transition")):
                        bypass.append(f"{path.name}:{node.lineno}")
    assert not bypass, f"state set without activity_transition/run_transition: {bypass}"
