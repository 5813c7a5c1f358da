"""``skyweave server`` (the HTTP API, ``skyweave.server``) and ``skyweave tokens create|list|revoke``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from skyweave.cli import output
from skyweave.cli.common import JsonOpt, StoreOpt, friendly
from skyweave.cli.services import service_logging
from skyweave.config.settings import load_settings
from skyweave.server.tokens import SCOPES, create_token
from skyweave.store import open_store

tokens_app = typer.Typer(no_args_is_help=True, help="The server's API tokens.")


@friendly
def server(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface; put "
                                           "TLS in front, see docs/remote.md).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    store: StoreOpt = None,
    bus: Annotated[str | None, typer.Option(help="Bus URL (default <store>/bus.db).")] = None,
    controller: Annotated[bool, typer.Option(
        "--controller/--no-controller", help="Also run the controller in this process (else run "
                                             "`skyweave controller` beside it).")] = False,
    workers: Annotated[int, typer.Option(help="With --controller: an in-process worker with this "
                                              "many slots (0: none; run `skyweave worker`s).")] = 0,
    workflows: Annotated[Path | None, typer.Option(
        help="A directory whose workflow files clients may name by relative path.")] = None,
    module: Annotated[list[str] | None, typer.Option(
        "--module", help="A package whose module:NAME workflows clients may name (repeatable).")] = None,
    max_body_mb: Annotated[float, typer.Option(help="Largest JSON request body, in MiB.")] = 1.0,
    max_upload_mb: Annotated[float, typer.Option(help="Largest upload, in MiB.")] = 1024.0,
) -> None:
    """Serve the HTTP API (JSON under /api/v1, live run events as SSE) over a store and bus."""
    from skyweave.server.serve import serve  # FastAPI and uvicorn: the server extra
    from skyweave.server.state import Limits, MiB

    service_logging()
    settings = load_settings(store=store, bus=bus, workers=workers or None)
    limits = Limits(body_bytes=int(max_body_mb * MiB), upload_bytes=int(max_upload_mb * MiB))
    serve(settings, host=host, port=port, controller=controller, workers=workers, workflows_dir=workflows,
          modules=tuple(module or ()), limits=limits)


@tokens_app.command("create")
@friendly
def tokens_create(
    name: Annotated[str, typer.Option("--name", help="Whose it is, e.g. alice-notebook.")],
    scope: Annotated[list[str] | None, typer.Option(
        "--scope", help=f"{' or '.join(SCOPES)} (repeatable; write implies read; default read).")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make a token; it is printed once and only its hash is kept."""
    st = open_store(load_settings(store=store).store)
    try:
        token, record = create_token(st, name, scope or ["read"])
    finally:
        st.close()
    if as_json:
        output.print_json({"token": token, "id": record.id, "name": record.name, "scopes": record.scopes})
        return
    output.console.print(token)
    output.err_console.print(f"token {record.id} ({record.name}, {'+'.join(record.scopes)}): keep it "
                             "now, it is not shown again", highlight=False)


@tokens_app.command("list")
@friendly
def tokens_list(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Every token (never its secret): id, name, scopes, when made and revoked."""
    st = open_store(load_settings(store=store).store)
    try:
        rows = st.list_tokens()
    finally:
        st.close()
    if as_json:
        output.print_json([{"id": t.id, "name": t.name, "scopes": t.scopes, "created_at": t.created_at,
                            "revoked_at": t.revoked_at} for t in rows])
        return
    output.table("tokens", ["id", "name", "scopes", "created", "revoked"],
                 [(t.id, t.name, "+".join(t.scopes), output.when(t.created_at), output.when(t.revoked_at))
                  for t in rows])


@tokens_app.command("revoke")
@friendly
def tokens_revoke(token_id: Annotated[str, typer.Argument(help="The token's id (tokens list).")],
                  store: StoreOpt = None) -> None:
    """Revoke a token: the server refuses it from its next request on."""
    st = open_store(load_settings(store=store).store)
    try:
        record = st.revoke_token(token_id, time.time())
    finally:
        st.close()
    output.console.print(f"revoked {record.id} ({record.name})")
