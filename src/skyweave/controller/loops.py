"""Bounded loops: after each iteration, decide from ``until=`` whether to run another one."""

from __future__ import annotations

from typing import Any, Protocol

from skyweave.controller.expressions import evaluate
from skyweave.controller.runstate import DONE, FAILED, Blocked, Instance, NotReady, RunState, Skip
from skyweave.errors import DefinitionError
from skyweave.model.records import ActivityRecord


class Host(Protocol):
    """What a loop needs of the controller: how an instance's end spreads, how a run ends, and a
    new activity for the next iteration."""

    def propagate(self, run: RunState, inst: Instance) -> None: ...
    def check_run_done(self, run: RunState) -> None: ...
    def touch(self, rec: ActivityRecord) -> None: ...
    def new_activity(self, run: RunState, inst: Instance, args: dict[str, Any], *,
                     failed: str | None = None, parent: str | None = None) -> ActivityRecord: ...


def loop_continues(run: RunState, inst: Instance, rec: ActivityRecord) -> bool:
    loop = run.nodes[inst.node].get("loop")
    if not loop:
        return False
    try:
        done = bool(evaluate(loop["until"], lambda n, p: run.resolve_ref(n, p, inst.key), rec.result))
    except (DefinitionError, NotReady, Skip, Blocked):
        done = True
    return not done and rec.iteration + 1 < loop["max_iterations"]


def loop_step(ctrl: Host, run: RunState, inst: Instance, rec: ActivityRecord, result: Any) -> None:
    loop = run.nodes[inst.node]["loop"]
    try:
        converged = bool(evaluate(loop["until"], lambda n, p: run.resolve_ref(n, p, inst.key), result))
    except DefinitionError as exc:
        run.finish_instance(inst, FAILED)
        rec.error = {"type": "skyweave.DefinitionError", "message": f"loop until=: {exc.message}",
                     "retryable": False}
        run.failures += 1
        ctrl.propagate(run, inst)
        ctrl.check_run_done(run)
        return
    if converged or rec.iteration + 1 >= loop["max_iterations"]:
        if not converged and loop.get("on_exhausted") == "fail":
            run.finish_instance(inst, FAILED)
            run.failures += 1
            rec.error = {"type": "skyweave.LoopExhausted", "retryable": False, "message":
                         f"loop did not converge in {loop['max_iterations']} iterations"}
        else:
            run.finish_instance(inst, DONE, result)
            if not converged:
                rec.error = {"type": "skyweave.LoopExhausted", "retryable": False, "message":
                             f"accepted the last result: no convergence in {loop['max_iterations']} "
                             "iterations"}
        ctrl.touch(rec)
        ctrl.propagate(run, inst)
        ctrl.check_run_done(run)
        return
    args = dict(rec.arguments)
    args[loop["state_arg"]] = result
    inst.iteration = rec.iteration + 1
    ctrl.new_activity(run, inst, args, parent=rec.id)
