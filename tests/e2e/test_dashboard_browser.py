"""The dashboard in a real browser (issue 16, point 9): Playwright drives Debian's Chromium (by
``executable_path``; ``playwright install`` is never run) against ``skyweave server --controller``
and a worker on 127.0.0.1.  The runs page, a live run whose graph grows while the test watches, a
failed activity's logs, a product's lineage, cancel with a write token and its absence with a
read token, and the notice when the live connection drops.  Screenshots go to
``.artifacts/screenshots/`` (``SKYWEAVE_ARTIFACTS`` moves it)."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import skyweave

from .helpers import CLI, WORKFLOWS, poll, stop

playwright = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("SKYWEAVE_ARTIFACTS", ROOT / ".artifacts")) / "screenshots"
FLOW = str(WORKFLOWS / "dash.py")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


def chromium() -> str:
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(candidate).is_file():
            return candidate
    message = "Debian's chromium is not installed: run scripts/browser.sh (make test does)"
    if os.environ.get("SKYWEAVE_REQUIRE_SERVICES"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Server:
    url: str
    write: str
    read: str
    cli: CLI
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _up(url: str) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", int(url.rsplit(":", 1)[1]))) == 0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("dash")
    cli = CLI(root, root / "store")
    write = cli.json("tokens", "create", "--name", "operator", "--scope", "write")["token"]
    read = cli.json("tokens", "create", "--name", "visitor", "--scope", "read")["token"]
    port = _free_port()
    srv = Server(f"http://127.0.0.1:{port}", write, read, cli)
    try:
        srv.procs.append(cli.popen("server", "--port", str(port), "--controller", log=root / "server.log"))
        srv.procs.append(cli.popen("worker", "--slots", "4", log=root / "worker.log"))
        poll(lambda: _up(srv.url), deadline=90, what="the server to listen")
        yield srv
    finally:
        for p in srv.procs:
            stop(p)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium(), headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def login(browser: Any, server: Server, token: str) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(f"{server.url}/ui/runs")
    assert "/ui/login" in page.url  # no cookie yet: the login page
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/runs")
    return page


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def submit(server: Server, workflow: str, params: dict[str, Any]) -> str:
    with skyweave.Client(server.url, token=server.write) as client:
        return str(client.submit(f"{FLOW}:{workflow}", params).id)


def test_a_live_run_grows_in_the_graph_and_its_product_shows_its_lineage(server: Server, browser: Any,
                                                                         tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    run_id = submit(server, "growing", {"n": 6, "gate": str(gate)})
    page = login(browser, server, server.write)
    assert page.locator(f"a[href='/ui/runs/{run_id}']").count() == 1
    shot(page, "runs")
    page.goto(f"{server.url}/ui/runs/{run_id}")
    page.wait_for_function("Number(document.getElementById('graph').dataset.drawn || 0) >= 3")
    # the fan-out appears while the test watches: split, then six calibrations held at the gate
    page.wait_for_function("Number(document.getElementById('graph').dataset.total || 0) >= 7")
    assert page.locator("#run-state").inner_text() == "running"
    shot(page, "run-growing")
    gate.write_text("open")
    page.wait_for_function("document.getElementById('run-state').textContent === 'succeeded'")
    assert page.evaluate("document.getElementById('graph').dataset.total") == "8"
    shot(page, "run-finished")

    page.click("#activities a >> nth=-1")  # an activity of the run (the mosaic's or a chip's)
    page.wait_for_selector("h2:has-text('Outputs')")
    product_link = page.locator("h2:has-text('Outputs') + ul a").first
    product_link.click()
    page.wait_for_selector("#lineage-up")
    page.wait_for_function("Number(document.getElementById('lineage-up').dataset.drawn || 0) >= 2")
    assert page.locator("a.download", has_text="IVOA ProvDM").count() == 1
    shot(page, "product-lineage")
    page.close()


def test_a_failed_activity_shows_its_error_and_logs(server: Server, browser: Any) -> None:
    run_id = submit(server, "broken", {})
    page = login(browser, server, server.read)
    page.goto(f"{server.url}/ui/runs/{run_id}")
    page.wait_for_function("document.getElementById('run-state').textContent === 'failed'")
    page.reload()
    page.click("#activities a")
    page.wait_for_selector("#logs")
    text = page.inner_text("main")
    assert "the detector table 'wxt-cmos3' is empty" in text and "ValueError" in text
    shot(page, "failed-activity")
    page.close()


def test_cancel_needs_a_write_token(server: Server, browser: Any, tmp_path: Path) -> None:
    run_id = submit(server, "growing", {"n": 3, "gate": str(tmp_path / "never")})
    viewer = login(browser, server, server.read)
    viewer.goto(f"{server.url}/ui/runs/{run_id}")
    assert viewer.locator("button", has_text="Cancel").count() == 0  # read only: no buttons
    assert viewer.locator(".who").inner_text().startswith("visitor (read only)")
    viewer.close()
    operator = login(browser, server, server.write)
    operator.goto(f"{server.url}/ui/runs/{run_id}")
    operator.on("dialog", lambda dialog: dialog.accept())
    operator.click("button:has-text('Cancel')")
    operator.wait_for_function("document.getElementById('run-state').textContent === 'cancelled'")
    shot(operator, "run-cancelled")
    operator.close()


def test_the_page_says_so_when_the_live_connection_drops(server: Server, browser: Any, tmp_path: Path) -> None:
    run_id = submit(server, "growing", {"n": 2, "gate": str(tmp_path / "never")})
    page = login(browser, server, server.read)
    page.goto(f"{server.url}/ui/runs/{run_id}")
    page.wait_for_function("document.body.dataset.live === '1'")
    stop(server.procs[0])  # the server goes away (last test of the module)
    page.wait_for_selector("#notice:not([hidden])")
    assert "Live updates disconnected" in page.inner_text("#notice")
    shot(page, "connection-dropped")
    page.close()

