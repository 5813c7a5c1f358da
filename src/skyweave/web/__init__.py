"""The web dashboard of ``skyweave server`` (``/ui``): see ``views.py``."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


def mount(app: FastAPI) -> None:
    """Add the dashboard's pages and its shipped scripts and styles to the server's application."""
    from skyweave.web.views import router

    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
