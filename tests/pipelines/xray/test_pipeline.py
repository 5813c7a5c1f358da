"""The whole X-ray pipeline run through skyweave (local process-pool executor, 2 workers) on
simulated observations, checked against the simulator's truth.

Tolerances (measured values when they were set, on the two observations below, in brackets):
* positions: every detection matched to an injected source lies within ``POSITION_TOL_ARCSEC``
  = 30" (5 sky pixels, 2 PSF core sigmas) of it [largest offset 14"];
* completeness: every injected source with at least ``COMPLETE_ABOVE_COUNTS`` = 100 expected
  counts is detected [all 22 injected sources were, down to 30 counts];
* spurious: at most ``MAX_SPURIOUS`` = 1 unmatched detection per observation [0 and 0];
* fluxes: the net rate (aperture- and PSF-corrected) of sources with >= 200 counts is within
  ``FLUX_FRACTION`` = 20 % of the injected rate (the source's events over the good time)
  [largest deviation 3 %], and every matched source is within 3 sigma + 10 % [largest 1.7 sigma];
* the transient: one alert, on the injected flare (within 30"), peak time within the flare's
  first 3 decay times, the VOEvent time that MET in UTC, VOEvent 2.0 valid [28.5 sigma, flare
  contrast 40]; no alert at all in the quiet observation [no source flagged].
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import voeventparse as vp
from astropy.io import fits
from astropy.time import Time

from skyweave import Client
from skyweave.model import messages as m
from xray_ep import conventions as cv
from xray_ep.simulate import simulate_observation
from xray_ep.workflow import event_list, observation

from . import urgent_flows

POSITION_TOL_ARCSEC = 30.0
COMPLETE_ABOVE_COUNTS = 100
MAX_SPURIOUS = 1
FLUX_FRACTION = 0.20
ALERT_PRIORITY = 10


def separation_arcsec(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    a1, d1, a2, d2 = (np.radians(v) for v in (ra1, dec1, ra2, dec2))
    hav = np.sin((d1 - d2) / 2) ** 2 + np.cos(d1) * np.cos(d2) * np.sin((a1 - a2) / 2) ** 2
    return float(np.degrees(2 * np.arcsin(np.sqrt(hav))) * 3600)


def match(found: list[dict[str, Any]], injected: list[dict[str, Any]]) -> tuple[dict[int, dict[str, Any]], list]:
    """Injected source id -> its detection (nearest within the tolerance, each used once); the
    unmatched detections."""
    pairs = sorted((separation_arcsec(d["ra"], d["dec"], s["ra"], s["dec"]), i, s["id"])
                   for i, d in enumerate(found) for s in injected)
    matched: dict[int, dict[str, Any]] = {}
    used: set[int] = set()
    for sep, i, sid in pairs:
        if sep <= POSITION_TOL_ARCSEC and i not in used and sid not in matched:
            matched[sid] = {**found[i], "offset_arcsec": sep}
            used.add(i)
    return matched, [d for i, d in enumerate(found) if i not in used]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two observations run together: a quiet one (aux missing: fetched by backtracking), submitted
    first, and one with a transient (aux registered).  Seeds 1 and 4 see the sky for the whole
    1200 s (no Earth occultation)."""
    base = tmp_path_factory.mktemp("xray")
    archive = base / "archive"
    quiet = simulate_observation(base / "q", "ep0004", 4, aux="missing", archive_dir=archive)
    flare = simulate_observation(base / "t", "ep0001", 1, transient=True, archive_dir=archive)
    out: dict[str, Any] = {"archive": archive, "sims": {"ep0004": quiet, "ep0001": flare}, "store": base / "st"}
    with Client(str(base / "st"), workers=2) as client:
        assert client.settings.executor == "local"
        l0 = {}
        for sim in (quiet, flare):
            l0[sim["obs_id"]] = client.add_product(sim["l0"], type=cv.L0_TELEMETRY, obs_id=sim["obs_id"])
        aux = [client.add_product(flare[k], type=t, obs_id="ep0001")
               for k, t in (("attitude", cv.AUX_ATTITUDE), ("orbit", cv.AUX_ORBIT))]
        handles = {o: client.submit(observation, {"l0": l0[o].id, "obs_id": o, "archive": str(archive)})
                   for o in ("ep0004", "ep0001")}
        for obs_id, handle in handles.items():
            handle.wait(timeout=240)
            assert handle.status == "succeeded", handle.summary()
            out[obs_id] = {"results": handle.results(), "activities": handle.activities(),
                           "products": handle.products(), "l0": l0[obs_id],
                           "truth": json.loads(Path(out["sims"][obs_id]["truth"]).read_text())}
        out["aux"] = aux
        alerts = out["ep0001"]["results"]["alerts"]
        out["lineage"] = [client.store.lineage(a.id, direction="up") for a in alerts]
        # the merged L2 list of the flare observation, through the event-list workflow (by product id)
        again = client.submit(event_list, {"events": out["ep0001"]["results"]["events"].id})
        again.wait(timeout=240)
        assert again.status == "succeeded", again.summary()
        out["again"] = {"results": again.results(), "activities": again.activities()}
    return out


def _exposure(result: dict[str, Any]) -> float:
    return float(fits.getheader(result["events"].local_path, cv.EVENTS_EXT)[cv.KW_EXPOSURE])


@pytest.mark.parametrize("obs_id", ["ep0001", "ep0004"])
def test_sources_match_the_injected_sky(runs: dict[str, Any], obs_id: str) -> None:
    run, truth = runs[obs_id], runs[obs_id]["truth"]
    exposure = _exposure(run["results"])
    assert exposure == pytest.approx(1200.0, abs=1.0)  # seeds chosen for no Earth occultation
    injected = truth["sources"]
    matched, spurious = match(run["results"]["sources"], injected)
    assert len(spurious) <= MAX_SPURIOUS, spurious
    for src in injected:
        if src["n_events"] >= COMPLETE_ABOVE_COUNTS:
            assert src["id"] in matched, f"missed {src} ({len(matched)}/{len(injected)} found)"
    for sid, det in matched.items():
        src = injected[sid]
        assert det["offset_arcsec"] <= POSITION_TOL_ARCSEC
        true_rate = src["n_events"] / exposure
        if src["n_events"] >= 200:
            assert det["rate"] == pytest.approx(true_rate, rel=FLUX_FRACTION), (src, det)
        assert abs(det["rate"] - true_rate) <= 3 * det["rate_err"] + 0.1 * true_rate, (src, det)


def test_the_transient_is_found_and_alerted(runs: dict[str, Any]) -> None:
    run, truth = runs["ep0001"], runs["ep0001"]["truth"]
    flare = next(s for s in truth["sources"] if s["transient"])
    alerts = run["results"]["alerts"]
    assert len(alerts) == 1
    with alerts[0].local_path.open("rb") as f:
        v = vp.load(f)
    assert vp.valid_as_v2_0(v)
    pos = vp.get_event_position(v)
    assert separation_arcsec(pos.ra, pos.dec, flare["ra"], flare["dec"]) <= POSITION_TOL_ARCSEC
    params = vp.get_grouped_params(v)["transient"]
    assert params["obs_id"]["value"] == "ep0001"
    assert float(params["significance"]["value"]) >= 5.0
    t_peak = float(params["peak_time_met"]["value"])
    f = flare["flare"]
    assert f["t_peak"] - 2 * f["rise"] <= t_peak <= f["t_peak"] + 3 * f["decay"]
    # the event time in WhereWhen is that MET on the mission's time scale (MJDREF, TT), in UTC
    expected = Time(cv.MJDREFI + cv.MJDREFF + t_peak / 86400.0, format="mjd", scale="tt").utc.datetime
    assert abs((vp.get_event_time_as_utc(v).replace(tzinfo=None) - expected).total_seconds()) < 0.01
    # the flagged source is the flare and only it
    flagged = [t for t in run["results"]["tests"] if t["is_transient"]]
    assert len(flagged) == 1
    # a satellite in Earth orbit (IVOA STC library location GEOLUN), not a ground station
    assert v.WhereWhen.ObsDataLocation.ObservatoryLocation.attrib["id"] == "GEOLUN"


def test_the_own_l2_list_through_the_event_list_workflow_finds_the_same(runs: dict[str, Any]) -> None:
    first, again = runs["ep0001"]["results"], runs["again"]["results"]
    plan = again["plan"]
    assert (plan["telescope"], plan["instrument"]) == (cv.TELESCOP, cv.INSTRUME)
    assert plan["imaging"] and plan["exposure_map"] and again["skipped"] == {}  # ASPHIST: nothing skipped
    assert {a.task_name for a in runs["again"]["activities"] if a.state == "skipped"} <= {"make_voevent"}
    assert len(again["sources"]) == len(first["sources"])
    for a, b in zip(again["sources"], first["sources"], strict=True):
        assert separation_arcsec(a["ra"], a["dec"], b["ra"], b["dec"]) < 1.0
        assert a["net_counts"] == pytest.approx(b["net_counts"], rel=1e-9)  # same image binning
    assert len(again["alerts"]) == len(first["alerts"]) == 1


def test_a_quiet_observation_raises_no_alert(runs: dict[str, Any]) -> None:
    run = runs["ep0004"]
    assert not runs["ep0004"]["truth"]["transient"]
    assert run["results"]["alerts"] in ([], None) or all(a is None for a in run["results"]["alerts"])
    assert not any(t["is_transient"] for t in run["results"]["tests"])
    assert not [p for p in run["products"] if p.type == cv.ALERT_VOEVENT]
    assert len(run["results"]["tests"]) == len(run["results"]["sources"]) > 0


def test_the_alert_ran_urgently_and_overtook_queued_work(runs: dict[str, Any], tmp_path: Path) -> None:
    """The flare's alert made again while normal work is queued: two activities hold both worker
    slots (each until its own gate opens), a backlog of four waits behind them, then the alert is
    queued.  When one slot frees, the alert takes it: every backlog activity, queued before the
    alert, starts after it (the other slot stays held until the alert has run)."""
    results = runs["ep0001"]["results"]
    [flagged] = [i for i, t in enumerate(results["tests"]) if t["is_transient"]]
    gate = str(tmp_path / "gate")
    with Client(str(runs["store"]), workers=2) as client:
        holding = client.submit(urgent_flows.holders, {"gate": gate})
        wait_for(lambda: all(Path(f"{gate}.holding{k}").exists() for k in range(urgent_flows.HOLDERS)),
                 "both slots held")
        queued = client.submit(urgent_flows.backlog, {"n": 4})
        wait_for(lambda: len([a for a in queued.activities() if a.state == "dispatched"]) == 4, "the backlog")
        run = client.submit(urgent_flows.alert_again, {
            "source": results["sources"][flagged], "test": results["tests"][flagged],
            "lc": results["light_curves"][flagged].id, "obs_id": "ep0001"})
        [alert] = wait_for(lambda: [a for a in run.activities() if a.state == "dispatched"], "the alert queued")
        wait_for(lambda: client.bus.present([m.dispatch_id(alert.id, alert.attempt)]), "the alert on the bus")
        Path(f"{gate}.0").touch()  # one slot frees: the alert or a backlog activity takes it
        assert run.wait(timeout=120).status == "succeeded", run.summary()
        Path(f"{gate}.1").touch()
        for handle in (holding, queued):
            assert handle.wait(timeout=120).status == "succeeded", handle.summary()
        [alert] = run.activities()
        backlog = queued.activities()
    assert alert.priority == ALERT_PRIORITY and alert.task_name == "make_voevent"
    assert all(a.queued_at < alert.queued_at for a in backlog)
    assert all(alert.started_at < a.started_at for a in backlog), "queued work went first"
    # it waited for a free slot only, not behind the queue
    assert alert.started_at - alert.queued_at < min(a.started_at - a.queued_at for a in backlog)


def wait_for(probe: Any, what: str, timeout: float = 120.0) -> Any:
    """Call ``probe`` until it returns something truthy (the store is read, across processes)."""
    end = time.monotonic() + timeout
    while not (found := probe()):
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)
    return found


def test_every_product_has_obs_id_detector_and_version(runs: dict[str, Any]) -> None:
    for obs_id in ("ep0001", "ep0004"):
        products = runs[obs_id]["products"]
        types = {p.type for p in products}
        assert {cv.L1_EVENTS, cv.L2_EVENTS, cv.L3_IMAGE, cv.L3_EXPMAP, cv.L3_LC, cv.L3_SPECTRUM} <= types
        for p in products:
            assert p.obs_id == obs_id, p
            assert p.version, p
            if p.type == cv.L1_EVENTS or (p.type == cv.L2_EVENTS and p.name != f"{obs_id}_l2.fits"):
                assert p.detector in runs["sims"][obs_id]["cmos"], p
    # backtracking fetched the quiet observation's aux files: they are products of its run too
    assert {cv.AUX_ATTITUDE, cv.AUX_ORBIT} <= {p.type for p in runs["ep0004"]["products"]}


def test_alert_lineage_reaches_telemetry_and_aux(runs: dict[str, Any]) -> None:
    (graph,) = runs["lineage"]
    ids = {p.id for p in graph.products}
    assert runs["ep0001"]["l0"].id in ids
    for aux in runs["aux"]:
        assert aux.id in ids, aux.type
    # the product chain (the source list and the test result are values, recorded as the
    # alert activity's arguments, not products: they are not nodes of the product lineage)
    tasks = {a.task_name for a in graph.activities}
    assert {"decode_cmos", "calibrate", "merge_events", "light_curve", "make_voevent"} <= tasks
    types = {p.type for p in graph.products}
    assert {cv.L0_TELEMETRY, cv.AUX_ATTITUDE, cv.AUX_ORBIT, cv.L1_EVENTS, cv.L2_EVENTS, cv.L3_LC,
            cv.ALERT_VOEVENT} <= types
