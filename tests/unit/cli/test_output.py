"""CLI tables: on a narrow terminal a long id or URI wraps onto more lines, it is never cut short."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from skyweave.cli import output

RUN_ID = "run-01m954gcbv1zhq7pzgpj"
URI = "file:///data/skyweave/products/run-01m954gcbv1zhq7pzgpj/act-01m954gcc8ncyqtt7bsx/image_cmos04.fits"


def _cells(text: str, column: int) -> str:
    """The content of one column of a rendered table, its wrapped lines joined."""
    rows = [line.split("│") for line in text.splitlines() if line.startswith("│")]
    return "".join(row[column].strip() for row in rows if len(row) > column)


def test_a_narrow_table_wraps_ids_and_uris_instead_of_cutting_them(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(output, "console", Console(file=screen, width=48, markup=False))
    output.table("products", ["id", "uri", "state"], [(RUN_ID, URI, "available")])
    text = screen.getvalue()
    assert "…" not in text
    assert _cells(text, 1) == RUN_ID
    assert _cells(text, 2) == URI
