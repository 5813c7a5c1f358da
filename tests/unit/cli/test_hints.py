"""Every `skyweave COMMAND` that a message, a hint or a page tells users to type exists.

A hint naming a command that does not exist (``skyweave registry``) sends a user nowhere.  The
check reads every string literal of the source (f-strings included) and the Markdown pages, and
follows each backticked ``skyweave WORD [WORD]`` through the real command tree of the CLI: the
first word must be a command or a group, and after a group the second word one of its commands.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import typer

from skyweave.cli.main import app

ROOT = Path(__file__).resolve().parents[3]
MENTION = re.compile(r"`skyweave ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?")


def _texts_of_source() -> list[tuple[str, str]]:
    found = []
    for path in sorted((ROOT / "src" / "skyweave").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.append((f"{path.relative_to(ROOT)}:{node.lineno}", node.value))
    return found


def _texts_of_pages() -> list[tuple[str, str]]:
    pages = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md", ROOT / "ARCHITECTURE.md"]
    return [(str(p.relative_to(ROOT)), p.read_text()) for p in pages if p.exists()]


def unknown_commands(texts: list[tuple[str, str]], root: Any) -> list[str]:
    bad = []
    for where, text in texts:
        for first, second in MENTION.findall(text):
            command = root.commands.get(first)
            if command is None:
                bad.append(f"{where}: `skyweave {first}` is not a command")
            elif hasattr(command, "commands") and second and second not in command.commands:  # a group
                bad.append(f"{where}: `skyweave {first} {second}` is not a command")
    return bad


def test_every_command_named_in_messages_and_pages_exists() -> None:
    root = typer.main.get_command(app)
    texts = _texts_of_source() + _texts_of_pages()
    assert sum(len(MENTION.findall(t)) for _, t in texts) > 50           # the scan sees the mentions
    bad = unknown_commands(texts, root)
    assert not bad, "\n".join(bad)


def test_the_check_catches_a_command_that_does_not_exist() -> None:
    root = typer.main.get_command(app)
    texts = [("x", "register the task first (`skyweave registry`)"), ("y", "see `skyweave tasks lst`"),
             ("z", "see `skyweave tasks list` or `skyweave status RUN`")]
    assert unknown_commands(texts, root) == ["x: `skyweave registry` is not a command",
                                             "y: `skyweave tasks lst` is not a command"]
