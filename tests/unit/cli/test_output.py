"""``cli/output.py`` prints user text as it is, never as rich markup (issue 11, point 13)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from skyweave.cli import output

TRICKY = ["raw[/]scan.fits", "[bold]x[/bold]", "a[red]b", "[", "]", "\\[x]", "[/x]"]


@pytest.fixture
def printed(monkeypatch: pytest.MonkeyPatch) -> tuple[io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(output, "console", Console(file=out, width=500, markup=False, color_system=None))
    monkeypatch.setattr(output, "err_console", Console(file=err, width=500, markup=False, color_system=None))
    return out, err


@pytest.mark.parametrize("text", TRICKY)
def test_error_and_hint_keep_user_text(text: str, printed: tuple[io.StringIO, io.StringIO]) -> None:
    output.error(f"no file {text}", f"check {text}")
    assert printed[1].getvalue() == f"error: no file {text}\n  hint: check {text}\n"


@pytest.mark.parametrize("text", TRICKY)
def test_table_cells_and_title_keep_user_text(text: str, printed: tuple[io.StringIO, io.StringIO]) -> None:
    output.table(f"runs of {text}", ["id", "uri"], [("p1", text), (text, None)])
    shown = printed[0].getvalue()
    assert f"runs of {text}" in shown
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in shown.splitlines() if line.startswith("│")]
    assert cells == [["p1", text], [text, "-"]]


@pytest.mark.parametrize("text", TRICKY)
def test_styled_escapes_its_values_only(text: str) -> None:
    line = output.styled("run [bold]{}[/] in {}", text, text)
    assert line.plain == f"run {text} in {text}"
    assert [(s.start, s.end, str(s.style)) for s in line.spans] == [(4, 4 + len(text), "bold")]


def test_the_consoles_do_not_read_markup() -> None:
    """Anything printed with a plain string (a future ``console.print(f"... {path}")``) is safe."""
    for console in (output.console, output.err_console):
        with console.capture() as captured:
            console.print("raw[/]scan [bold]x", highlight=False)
        assert captured.get() == "raw[/]scan [bold]x\n"
