"""Printing for the CLI: JSON for machines, rich tables for people, one clear line for errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def to_jsonable(value: Any) -> Any:
    return msgspec.to_builtins(value)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(value), indent=2, default=str) + "\n")


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    t = Table(title=title, show_lines=False)
    for c in columns:
        t.add_column(c)
    for row in rows:
        t.add_row(*["-" if v is None else str(v) for v in row])
    console.print(t)


def error(message: str, hint: str | None = None) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    if hint:
        err_console.print(f"  [yellow]hint:[/] {hint}", highlight=False)
