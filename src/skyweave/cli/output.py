"""Printing for the CLI: JSON for machines, rich tables for people, one clear line for errors.

User text (paths, names, messages, parameters) is never read as rich markup: both consoles are
made with ``markup=False``, table cells and titles are ``Text``, and the few styled lines are built
with ``styled``, which escapes every value it is given.  A path such as ``raw[/]scan.fits`` prints
as it is (rich would otherwise stop with a ``MarkupError`` or swallow ``[bold]``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

console = Console(markup=False)
err_console = Console(stderr=True, markup=False)


def styled(template: str, *values: Any) -> Text:
    """``template`` (rich markup with ``{}`` placeholders) filled with ``values``, each escaped,
    so that only the template's own tags style the line: ``styled("run [bold]{}[/]", run_id)``."""
    return Text.from_markup(template.format(*(escape(str(v)) for v in values)))


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def to_jsonable(value: Any) -> Any:
    return msgspec.to_builtins(value)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(value), indent=2, default=str) + "\n")


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    t = Table(title=Text(title, style="table.title"), show_lines=False)
    for c in columns:
        t.add_column(Text(c), overflow="fold")  # a long id or URI wraps: never cut short with "…"
    for row in rows:
        t.add_row(*[Text("-" if v is None else str(v)) for v in row])
    console.print(t)


def warning(message: str) -> None:
    err_console.print(Text.assemble(("warning:", "bold yellow"), " ", message), highlight=False)


def error(message: str, hint: str | None = None) -> None:
    err_console.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False)
    if hint:
        err_console.print(Text.assemble("  ", ("hint:", "yellow"), " ", hint), highlight=False)
