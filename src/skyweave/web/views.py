"""The dashboard's pages (``/ui``), served by ``skyweave server`` behind the same tokens as the API.

A person logs in once with a token (``/ui/login``: kept in an HttpOnly, SameSite=Strict cookie);
pages are rendered here from the store (Jinja2 templates in ``web/templates``), graphs drawn in
the browser by cytoscape + dagre from elements built server-side (``web/graphs.py``), live
updates taken from the API's server-sent events, actions posted to the API by htmx with the
``X-Skyweave-UI`` header (a write token shows the buttons; a read token shows none, and the API
refuses writes without the write scope).  Every script and style is shipped in the package
(``web/static``): no CDN.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from skyweave.errors import NotFoundError
from skyweave.logs import log_parts
from skyweave.model.records import TokenRecord, utc
from skyweave.model.triggers import FiringState
from skyweave.server.state import COOKIE, State, Write
from skyweave.server.tokens import authenticate
from skyweave.web.graphs import lineage_elements, run_elements, timeline

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
PAGE = 50
"""Rows per page of the runs list."""
ACTIVITIES_SHOWN = 200
"""Activities listed on a run's page (the graph and timeline cover all of them)."""
RECENT = 5_000
"""Runs the runs page filters (newest first)."""

router = APIRouter(prefix="/ui", include_in_schema=False)


def _when(ts: float | None) -> str:
    found = utc(ts)
    return "-" if found is None else found.strftime("%Y-%m-%d %H:%M:%S")


templates.env.filters["when"] = _when


def _viewer(request: Request) -> TokenRecord:
    """The cookie's token, or a redirect to the login page (a browser gets a page, not a 401)."""
    try:
        return _cookie_token(request)
    except HTTPException:
        raise HTTPException(
            303, headers={"Location": "/ui/login?" + urlencode({"next": str(request.url.path)})}
        ) from None


def _cookie_token(request: Request) -> TokenRecord:
    state = request.app.state.skyweave
    token = request.cookies.get(COOKIE)
    record = authenticate(state.client.store, token) if token else None
    if record is None:
        raise HTTPException(401)
    request.state.by_cookie = True
    return record


Viewer = Annotated[TokenRecord, Depends(_viewer)]


def _page(request: Request, name: str, viewer: TokenRecord, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(
        request, name, {"viewer": viewer, "can_write": "write" in viewer.scopes, **context}
    )


# -- login ----------------------------------------------------------------------------------------
@router.get("/login")
def login_page(request: Request, next: str = "/ui/runs", error: str = "") -> HTMLResponse:
    return templates.TemplateResponse(
        request, "login.html", {"next": _local(next), "error": error, "viewer": None, "can_write": False}
    )


def _local(target: str) -> str:
    """Only a path of this dashboard (never another site) after logging in."""
    return target if target.startswith("/ui/") and "//" not in target else "/ui/runs"


@router.post("/login")
def login(
    request: Request,
    state: State,
    token: Annotated[str, Form(max_length=300)],
    next: Annotated[str, Form()] = "/ui/runs",
) -> Response:
    record = authenticate(state.client.store, token.strip())
    if record is None:
        return RedirectResponse(
            "/ui/login?" + urlencode({"next": _local(next), "error": "unknown or revoked token"}),
            status_code=303,
        )
    response = RedirectResponse(_local(next), status_code=303)
    response.set_cookie(
        COOKIE,
        token.strip(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("")
@router.get("/")
def home() -> Response:
    return RedirectResponse("/ui/runs", status_code=303)


# -- runs -------------------------------------------------------------------------------------------
@router.get("/runs")
def runs_page(
    request: Request,
    state: State,
    viewer: Viewer,
    *,
    workflow: str = "",
    status: str = "",
    obs_id: str = "",
    since: str = "",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> HTMLResponse:
    store = state.client.store
    runs = store.list_runs(states=[status] if status else None, limit=RECENT, graph=False)
    after = _since(since)
    if workflow:
        runs = [r for r in runs if workflow.lower() in r.workflow.lower()]
    if obs_id:
        runs = [
            r for r in runs if str(r.params.get("obs_id", "")) == obs_id or r.labels.get("obs_id") == obs_id
        ]
    if after is not None:
        runs = [r for r in runs if r.created_at >= after]
    shown = runs[(page - 1) * PAGE : page * PAGE]
    counts = {r.id: store.count_activities(r.id) for r in shown}
    query = {"workflow": workflow, "status": status, "obs_id": obs_id, "since": since}
    return _page(
        request,
        "runs.html",
        viewer,
        runs=shown,
        counts=counts,
        page=page,
        total=len(runs),
        pages=max(1, -(-len(runs) // PAGE)),
        query=query,
        qs=urlencode(query),
        states=["submitted", "running", "paused", "succeeded", "failed", "cancelled"],
    )


def _since(text: str) -> float | None:
    """``since`` as hours back (``6h``), days back (``2d``) or a date (``2026-12-01``)."""
    text = text.strip()
    if not text:
        return None
    try:
        if text.endswith("h"):
            return time.time() - float(text[:-1]) * 3600
        if text.endswith("d"):
            return time.time() - float(text[:-1]) * 86400
        from datetime import UTC, datetime

        return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


@router.get("/runs/{run_id}")
def run_page(request: Request, state: State, viewer: Viewer, run_id: str) -> HTMLResponse:
    store = state.client.store
    run = _found(lambda: store.get_run(run_id))
    groups = store.activity_groups(run_id)
    total = sum(g.count for g in groups)
    return _page(
        request,
        "run.html",
        viewer,
        run=run,
        elements=run_elements(run.graph, groups),
        bars=timeline(groups),
        total=total,
        counts=store.count_activities(run_id),
        activities=store.list_activities(run_id=run_id, limit=ACTIVITIES_SHOWN),
    )


@router.get("/runs/{run_id}/graph")
def run_graph(state: State, _viewer: Viewer, run_id: str) -> dict[str, Any]:
    """The collapsed graph, timeline and counts again (the run page refreshes them on events)."""
    store = state.client.store
    run = _found(lambda: store.get_run(run_id))
    groups = store.activity_groups(run_id)
    return {
        "status": run.state,
        "elements": run_elements(run.graph, groups),
        "bars": timeline(groups),
        "counts": store.count_activities(run_id),
        "total": sum(g.count for g in groups),
    }


def _found(fetch: Any) -> Any:
    try:
        return fetch()
    except NotFoundError as exc:
        raise HTTPException(404, exc.message) from None


# -- activities, products ---------------------------------------------------------------------------
@router.get("/activities/{activity_id}")
def activity_page(request: Request, state: State, viewer: Viewer, activity_id: str) -> HTMLResponse:
    store = state.client.store
    act = _found(lambda: store.get_activity(activity_id))
    used = store.list_usages(activity_id=activity_id)
    inputs = [(u.role, _maybe_product(state, u.product_id), u.product_id) for u in used]
    outputs = store.find_products(activity_id=activity_id, state=None)
    logs = log_parts(store, state.client.settings.store_dir, act)
    return _page(
        request,
        "activity.html",
        viewer,
        act=act,
        attempts=store.list_attempts(activity_id),
        inputs=inputs,
        outputs=outputs,
        logs=logs,
    )


def _maybe_product(state: Any, product_id: str) -> Any:
    try:
        return state.client.store.get_product(product_id)
    except NotFoundError:
        return None


@router.get("/products/{product_id}")
def product_page(
    request: Request,
    state: State,
    viewer: Viewer,
    product_id: str,
    depth: Annotated[int, Query(ge=1, le=50)] = 5,
) -> HTMLResponse:
    store = state.client.store
    product = _found(lambda: store.get_product(product_id))
    up = store.lineage(product_id, direction="up", depth=depth)
    down = store.lineage(product_id, direction="down", depth=depth)
    return _page(
        request,
        "product.html",
        viewer,
        product=product,
        depth=depth,
        up=lineage_elements(up),
        down=lineage_elements(down),
        up_truncated=up.truncated,
        down_truncated=down.truncated,
        formats=[
            ("provjson", "W3C PROV-JSON"),
            ("provn", "W3C PROV-N"),
            ("provxml", "W3C PROV-XML"),
            ("ivoa", "IVOA ProvDM"),
        ],
    )


# -- tasks, queue, triggers, dead letters ---------------------------------------------------------------
@router.get("/tasks")
def tasks_page(request: Request, state: State, viewer: Viewer) -> HTMLResponse:
    rows = sorted(state.client.store.list_tasks(), key=lambda t: (t[0].name, t[0].version))
    return _page(request, "tasks.html", viewer, tasks=rows)


@router.get("/queue")
def queue_page(request: Request, state: State, viewer: Viewer) -> HTMLResponse:
    waiting = state.client.store.list_activities(
        states=["queued", "dispatched", "retry_wait", "parked"], limit=2_000
    )
    waiting.sort(key=lambda a: (-a.priority, a.queued_at))
    return _page(request, "queue.html", viewer, waiting=waiting)


@router.get("/triggers")
def triggers_page(request: Request, state: State, viewer: Viewer) -> HTMLResponse:
    store = state.client.store
    rows = [(t, store.trigger_counts(t.spec.name)) for t in store.list_triggers()]
    return _page(request, "triggers.html", viewer, triggers=rows)


@router.get("/triggers/{name}")
def trigger_page(request: Request, state: State, viewer: Viewer, name: str) -> HTMLResponse:
    store = state.client.store
    record = _found(lambda: store.get_trigger(name))
    return _page(
        request,
        "trigger.html",
        viewer,
        trigger=record,
        history=store.trigger_history(name, limit=500),
        counts=store.trigger_counts(name),
        states=[s.value for s in FiringState],
    )


@router.get("/dead-letters")
def dead_letters_page(request: Request, state: State, viewer: Viewer) -> HTMLResponse:
    letters = state.client.bus.dead_letters()
    return _page(
        request,
        "dead_letters.html",
        viewer,
        letters=[(d, d.data.decode("utf-8", errors="replace")[:400]) for d in letters],
    )


@router.post("/triggers/{name}/{action}", dependencies=[Write])
def trigger_action(state: State, name: str, action: str) -> dict[str, str]:
    """Pause or resume a trigger (the dashboard's buttons; the write scope and the UI header)."""
    from skyweave.model.triggers import TriggerState

    states = {"pause": TriggerState.PAUSED, "resume": TriggerState.ACTIVE}
    if action not in states:
        raise HTTPException(404, f"no trigger action {action!r}: pause or resume")
    record = _found(lambda: state.client.store.set_trigger_state(name, states[action]))
    return {"trigger": name, "state": record.state.value}
