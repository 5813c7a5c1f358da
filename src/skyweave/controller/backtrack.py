"""Backtracking: how the controller answers "an input is missing or insufficient".

1. look for an existing matching product in the store (not one already tried);
2. else run the provider task the task names for that product type, with the parameters the
   activity suggested (e.g. a wider time window), then run the activity again with its product;
3. else (or if the provider made nothing that matches) park the activity — no polling: it is woken
   by the registration of a matching product, or fails at its deadline;
4. give up after ``max_detours``.  Every step is a ``Detour`` on the activity.
"""

from __future__ import annotations

from typing import Any, Protocol

from skyweave.controller.decisions import Decisions, LookupProducts, ProductsFound, Timer, walk_products
from skyweave.controller.runstate import RunState
from skyweave.errors import DefinitionError
from skyweave.model import messages as m
from skyweave.model.records import ActivityRecord, Detour, ProductRecord
from skyweave.model.specs import TaskSpec
from skyweave.model.states import ActivityState as A
from skyweave.model.states import activity_transition


class Host(Protocol):
    """What backtracking needs of the controller."""

    now: float
    out: Decisions
    runs: dict[str, RunState]
    activities: dict[str, ActivityRecord]
    registry: dict[str, dict[str, TaskSpec]]
    products: dict[str, m.ProductRef]

    def current_attempt(self, activity_id: str, attempt: int) -> ActivityRecord | None: ...
    def end_attempt(self, rec: ActivityRecord, ev: Any, state: str) -> None: ...
    def spec_for(self, run: RunState, task_name: str) -> TaskSpec: ...
    def new_provider_activity(self, blocked: ActivityRecord, spec: TaskSpec, args: dict[str, Any]
                              ) -> ActivityRecord: ...
    def requeue(self, rec: ActivityRecord, *, retry: bool = False) -> None: ...
    def fail(self, rec: ActivityRecord, error: dict[str, Any]) -> None: ...
    def touch(self, rec: ActivityRecord) -> None: ...
    def announce(self, rec: ActivityRecord) -> None: ...


def matches(product: ProductRecord | m.ProductRef, product_type: str, match: dict[str, Any]) -> bool:
    if product.type != product_type:
        return False
    for field, want in match.items():
        got = getattr(product, field, None) if field in ("obs_id", "detector", "version", "name") \
            else product.attributes.get(field)
        if got != want:
            return False
    return True


class Backtracker:
    def __init__(self, ctrl: Host) -> None:
        self.ctrl = ctrl
        self.needs: dict[str, m.InputNeed] = {}
        self.tried: dict[str, set[str]] = {}
        self.parked: dict[str, dict[str, dict[str, Any]]] = {}
        self.providers: dict[str, list[str]] = {}
        """Provider activity id -> the blocked activities waiting for what it makes."""
        self.providing: dict[tuple[str, str], str] = {}
        """(product type, match) -> the provider activity already making it, so that a hundred
        activities missing the same attitude file start one provider, not a hundred."""

    # -- the signal --------------------------------------------------------------------------------
    def on_needs_input(self, ev: m.ActivityNeedsInput) -> None:
        ctrl = self.ctrl
        rec = ctrl.current_attempt(ev.activity_id, ev.attempt)
        if rec is None:
            return
        ctrl.end_attempt(rec, ev, "needs_input")
        need = ev.need
        spec = ctrl.registry.get(rec.task_name, {}).get(rec.task_version)
        max_detours = spec.backtrack.max_detours if spec else 0
        asked = sum(1 for d in rec.detours if d.kind == "lookup" and d.param == need.param)
        if asked >= max_detours:
            self.fail(rec, f"input {need.param!r} ({need.product_type}) still "
                           f"{'insufficient' if need.insufficient else 'missing'} after {asked} detours "
                           "for it: "
                           f"{need.reason}", hint="raise max_detours or fix the provider")
            return
        if need.param not in rec.arguments and spec is not None and need.param not in spec.parameters:
            self.fail(rec, f"the task asked for input {need.param!r}, which is not one of its parameters")
            return
        tried = self.tried.setdefault(rec.id, set())
        tried.update(walk_products(rec.arguments.get(need.param)))
        self.needs[rec.id] = need
        rec.state = activity_transition(rec.state, A.BACKTRACKING)
        rec.max_attempts += 1  # a detour is not a failure: it does not use up a retry
        rec.detours.append(Detour(kind="lookup", product_type=need.product_type, param=need.param,
                                  reason=need.reason, at=ctrl.now, match=dict(need.match),
                                  provider_params=dict(need.provider_params)))
        ctrl.touch(rec)
        ctrl.announce(rec)
        ctrl.out.lookups.append(LookupProducts(rec.id, rec.attempt, need, tuple(sorted(tried))))

    def on_products_found(self, ev: ProductsFound) -> None:
        ctrl = self.ctrl
        rec = ctrl.activities.get(ev.activity_id)
        if rec is None or rec.state != A.BACKTRACKING or rec.attempt != ev.attempt:
            return
        need = self.needs[rec.id]
        candidates = [p for p in ev.products if p.id not in self.tried.get(rec.id, set())]
        if candidates:
            ctrl.products[candidates[0].id] = candidates[0]
            self._bind(rec, need, candidates[0].id, "found")
            return
        spec = ctrl.registry.get(rec.task_name, {}).get(rec.task_version)
        provider = spec.backtrack.providers.get(need.product_type) if spec else None
        if provider:
            self._provide(rec, need, provider)
        elif spec is not None and spec.backtrack.park_s > 0:
            self._park(rec, need, spec.backtrack.park_s)
        else:
            self.fail(rec, f"input {need.param!r} ({need.product_type}) is missing: {need.reason}",
                      hint=f"give task {rec.task_name!r} providers={{'{need.product_type}': ...}} or "
                           "park=SECONDS, or add the product with `skyweave products add`")

    # -- provider ----------------------------------------------------------------------------------
    def _provide(self, rec: ActivityRecord, need: m.InputNeed, provider: str) -> None:
        ctrl = self.ctrl
        run = ctrl.runs[rec.run_id]
        want = (need.product_type, repr(sorted(need.match.items())))
        running = self.providing.get(want)
        if running is not None and running in self.providers:
            self.providers[running].append(rec.id)
            rec.detours.append(Detour(kind="provide", product_type=need.product_type, param=need.param,
                                      reason=need.reason, at=ctrl.now, provider_activity=running,
                                      match=dict(need.match), provider_params=dict(need.provider_params)))
            ctrl.touch(rec)
            return
        try:
            pspec = ctrl.spec_for(run, provider)
        except DefinitionError as exc:
            self.fail(rec, f"provider of {need.product_type}: {exc.message}", hint=exc.hint)
            return
        args = {k: v for k, v in need.match.items() if k in pspec.parameters}
        args.update({k: v for k, v in need.provider_params.items() if k in pspec.parameters})
        missing = [p for p in pspec.parameters if p not in args and p not in pspec.defaults]
        if missing and pspec.kind == "python":
            self.fail(rec, f"provider {provider!r} needs parameter {missing[0]!r}, which the activity's "
                           "MissingInput did not give", hint="pass it in provider_params=")
            return
        prov = ctrl.new_provider_activity(rec, pspec, args)
        self.providers[prov.id] = [rec.id]
        self.providing[want] = prov.id
        rec.detours.append(Detour(kind="provide", product_type=need.product_type, param=need.param,
                                  reason=need.reason, at=ctrl.now, provider_activity=prov.id,
                                  match=dict(need.match), provider_params=dict(need.provider_params)))
        ctrl.touch(rec)

    def _waiting_for(self, prov: ActivityRecord) -> list[ActivityRecord]:
        blocked = list(dict.fromkeys(self.providers.pop(prov.id, [])))
        for key, pid in list(self.providing.items()):
            if pid == prov.id:
                del self.providing[key]
        recs = [self.ctrl.activities.get(b) for b in blocked]
        return [r for r in recs if r is not None and r.state == A.BACKTRACKING and r.id in self.needs]

    def on_provider_done(self, prov: ActivityRecord, products: list[m.NewProduct]) -> None:
        for rec in self._waiting_for(prov):
            need = self.needs[rec.id]
            made = [p for p in products if matches(self.ctrl.products[p.id], need.product_type, need.match)]
            if made:
                self._bind(rec, need, made[0].id, "provided")
            else:
                self._after_provider(rec, need, f"provider {prov.task_name!r} made no "
                                                f"{need.product_type} product matching {need.match}")

    def on_provider_failed(self, prov: ActivityRecord) -> None:
        message = (prov.error or {}).get("message", "")
        for rec in self._waiting_for(prov):
            self._after_provider(rec, self.needs[rec.id], f"provider {prov.task_name!r} failed: {message}")

    def _after_provider(self, rec: ActivityRecord, need: m.InputNeed, why: str) -> None:
        spec = self.ctrl.registry.get(rec.task_name, {}).get(rec.task_version)
        if spec is not None and spec.backtrack.park_s > 0:
            self._park(rec, need, spec.backtrack.park_s)
        else:
            self.fail(rec, why)

    # -- parking -----------------------------------------------------------------------------------
    def _park(self, rec: ActivityRecord, need: m.InputNeed, seconds: float) -> None:
        ctrl = self.ctrl
        rec.state = activity_transition(rec.state, A.PARKED)
        until = ctrl.now + seconds
        rec.detours.append(Detour(kind="park", product_type=need.product_type, param=need.param,
                                  reason=need.reason, at=ctrl.now, match=dict(need.match), until=until))
        self.parked.setdefault(need.product_type, {})[rec.id] = dict(need.match)
        ctrl.out.timers.append(Timer(at=until, kind="park", activity_id=rec.id))
        ctrl.touch(rec)
        ctrl.announce(rec)

    def on_product(self, product: ProductRecord) -> None:
        waiting = self.parked.get(product.type)
        if not waiting:
            return
        for aid, match in list(waiting.items()):
            rec = self.ctrl.activities.get(aid)
            if rec is None or rec.state != A.PARKED:
                waiting.pop(aid, None)
                continue
            if matches(product, product.type, match) and product.id not in self.tried.get(aid, set()):
                waiting.pop(aid, None)
                self._bind(rec, self.needs[aid], product.id, "woken")

    def on_deadline(self, rec: ActivityRecord) -> None:
        need = self.needs.get(rec.id)
        self.parked.get(need.product_type if need else "", {}).pop(rec.id, None)
        park = next((d for d in reversed(rec.detours) if d.kind == "park"), None)
        waited = (self.ctrl.now - park.at) if park else 0.0
        if park is not None:
            park.ended_at = self.ctrl.now
        kind = need.product_type if need else "product"
        why = (f"deadline passed after waiting {waited:.0f} s for a {kind} "
               f"matching {need.match if need else {}}: {need.reason if need else ''}")
        rec.detours.append(Detour(kind="deadline", product_type=need.product_type if need else "",
                                  param=need.param if need else "", at=self.ctrl.now, reason=why))
        self.fail(rec, why, hint="register the product (`skyweave products add`) and retry the activity")

    # -- outcome -----------------------------------------------------------------------------------
    def _bind(self, rec: ActivityRecord, need: m.InputNeed, product_id: str, how: str) -> None:
        ctrl = self.ctrl
        rec.arguments = {**rec.arguments, need.param: {"$product": product_id}}
        self.tried.setdefault(rec.id, set()).add(product_id)
        for d in rec.detours:
            if d.ended_at is None:
                d.ended_at = ctrl.now
        rec.detours[-1].product_id = product_id
        if how in ("found", "woken"):
            event = "was registered" if how == "woken" else "was found in the store"
            reason = f"{product_id} {event}, matching {need.match}" + (
                f"; it had been missing: {need.reason}" if need.reason else "")
            rec.detours.append(Detour(kind=how, product_type=need.product_type, param=need.param,
                                      at=ctrl.now, product_id=product_id, ended_at=ctrl.now, reason=reason))
        self.needs.pop(rec.id, None)
        ctrl.requeue(rec)

    def fail(self, rec: ActivityRecord, message: str, *, hint: str | None = None) -> None:
        self.forget(rec.id)
        error: dict[str, Any] = {"type": "skyweave.MissingInput", "message": message, "retryable": False}
        if hint:
            error["hint"] = hint
        self.ctrl.fail(rec, error)

    def forget(self, activity_id: str) -> None:
        need = self.needs.pop(activity_id, None)
        if need is not None:
            self.parked.get(need.product_type, {}).pop(activity_id, None)

    def restore(self, rec: ActivityRecord) -> None:
        """Re-arm waits after a controller restart."""
        if rec.parent_activity and not rec.node:
            self.providers.setdefault(rec.id, []).append(rec.parent_activity)
        if rec.state == A.BACKTRACKING and rec.detours and rec.detours[-1].kind == "provide":
            prov = rec.detours[-1].provider_activity
            if prov and rec.id not in self.providers.setdefault(prov, []):
                self.providers[prov].append(rec.id)
        if rec.state not in (A.PARKED, A.BACKTRACKING) or not rec.detours:
            return
        last = rec.detours[-1]
        need = m.InputNeed(param=last.param, product_type=last.product_type, match=dict(last.match),
                           reason=last.reason, provider_params=dict(last.provider_params))
        self.needs[rec.id] = need
        self.tried[rec.id] = {d.product_id for d in rec.detours if d.product_id}
        if rec.state == A.PARKED:
            self.parked.setdefault(need.product_type, {})[rec.id] = dict(need.match)
            self.ctrl.out.timers.append(Timer(at=last.until or self.ctrl.now, kind="park",
                                             activity_id=rec.id))
        elif last.kind == "lookup":
            self.ctrl.out.lookups.append(LookupProducts(rec.id, rec.attempt, need,
                                                       tuple(sorted(self.tried[rec.id]))))
