"""What every CLI module shares: the ``--store`` and ``--json`` options and the ``friendly`` wrapper.

Kept apart from ``cli/main.py`` so that command modules (``cli/lineage.py``...) can use them
without importing ``main``, which imports them to register their commands.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from skyweave.cli import output
from skyweave.errors import SkyweaveError

F = TypeVar("F", bound=Callable[..., Any])

StoreOpt = Annotated[str | None, typer.Option("--store", help="Store directory or URL "
                                              "(default ./.skyweave or $SKYWEAVE_STORE).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def friendly(fn: F) -> F:
    """Turn skyweave errors into one clear message and an exit code, never a bare traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SkyweaveError as exc:
            output.error(exc.message, exc.hint)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            output.error("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]
